//! The status answer: its shape, read leniently, and the series it becomes.

use serde::Deserialize;

use super::ZapiFamily;
use crate::error::PollError;
use crate::exposition::FragmentWriter;
use crate::json::lenient_bool;
use crate::providers::shape::Observation;

#[derive(Debug, Deserialize)]
struct StatusResponse {
    #[serde(default, deserialize_with = "lenient_bool")]
    connected: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    session: Option<bool>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(
        default,
        rename = "smartphoneConnected",
        deserialize_with = "lenient_bool"
    )]
    smartphone_connected: Option<bool>,
}

/// The instance status.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub connected: bool,
    pub session: Option<bool>,
    pub smartphone_connected: Option<bool>,
    pub error: StatusError,
}

crate::labels::closed_set! {
    /// The `error` field, reduced to the values the documentation lists.
    pub enum StatusError {
        None => "none",
        AlreadyConnected => "already_connected",
        RestoreSession => "restore_session",
        NotConnected => "not_connected",
        Other => "other",
    }
}

impl StatusError {
    /// Error strings come with and without the final period, and in any case.
    pub fn from_text(text: Option<&str>) -> Self {
        let Some(t) = text else {
            return StatusError::None;
        };
        let t = t.trim().trim_end_matches('.').trim().to_ascii_lowercase();
        match t.as_str() {
            "" => StatusError::None,
            "you are already connected" => StatusError::AlreadyConnected,
            "you need to restore the session" => StatusError::RestoreSession,
            "you are not connected" => StatusError::NotConnected,
            _ => StatusError::Other,
        }
    }
}

/// Parses a status answer. A `null` body, or one without `connected`, is not a status.
pub fn parse(body: &[u8]) -> Result<Status, PollError> {
    let r: Option<StatusResponse> =
        serde_json::from_slice(body).map_err(|e| PollError::from_json(&e))?;
    let r = r.ok_or_else(|| PollError::InvalidResponse("the answer is null".into()))?;
    let connected = r
        .connected
        .ok_or_else(|| PollError::InvalidResponse("the answer has no `connected` field".into()))?;
    let error = match &r.error {
        None | Some(serde_json::Value::Null) => StatusError::None,
        Some(serde_json::Value::String(s)) => StatusError::from_text(Some(s)),
        Some(_) => StatusError::Other,
    };
    Ok(Status {
        connected,
        session: r.session,
        smartphone_connected: r.smartphone_connected,
        error,
    })
}

impl Observation for Status {
    fn connected(&self) -> bool {
        self.connected
    }

    fn write(&self, w: &mut FragmentWriter) {
        if let Some(s) = self.session {
            w.gauge_bool(ZapiFamily::SessionActive, &[], s);
        }
        if let Some(p) = self.smartphone_connected {
            w.gauge_bool(ZapiFamily::PhoneConnected, &[], p);
        }
        w.states(ZapiFamily::StatusError, &[], "error", self.error);
    }

    fn summary(&self) -> String {
        let yn = |b: Option<bool>| match b {
            Some(true) => "yes",
            Some(false) => "no",
            None => "?",
        };
        format!(
            "session {}, phone {}, error {}",
            yn(self.session),
            yn(self.smartphone_connected),
            self.error.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> FragmentWriter {
        FragmentWriter::new(&[], &super::super::FAMILIES)
    }

    #[test]
    fn seed_answer() {
        let s = parse(br#"{"connected": true, "session": true, "error": "You are already connected.", "smartphoneConnected": true}"#).unwrap();
        assert_eq!(
            s,
            Status {
                connected: true,
                session: Some(true),
                smartphone_connected: Some(true),
                error: StatusError::AlreadyConnected
            }
        );
    }

    #[test]
    fn error_strings_with_and_without_period() {
        for (text, want) in [
            ("You are already connected.", StatusError::AlreadyConnected),
            ("You are already connected", StatusError::AlreadyConnected),
            (
                "You need to restore the session.",
                StatusError::RestoreSession,
            ),
            (
                "you need to restore the session",
                StatusError::RestoreSession,
            ),
            ("You are not connected.", StatusError::NotConnected),
            (" You are not connected ", StatusError::NotConnected),
            ("Something new happened.", StatusError::Other),
            ("", StatusError::None),
        ] {
            assert_eq!(StatusError::from_text(Some(text)), want, "{text:?}");
        }
    }

    #[test]
    fn disconnected_phone_offline() {
        let s = parse(br#"{"connected":false,"session":false,"error":"You are not connected","smartphoneConnected":false,"extra":1}"#).unwrap();
        assert!(!s.connected());
        let mut w = writer();
        s.write(&mut w);
        let f = w.finish();
        assert_eq!(
            f.family(ZapiFamily::SessionActive),
            "whatsapp_session_active{} 0\n"
        );
        assert_eq!(
            f.family(ZapiFamily::PhoneConnected),
            "whatsapp_phone_connected{} 0\n"
        );
        assert!(f
            .family(ZapiFamily::StatusError)
            .contains("whatsapp_status_error{error=\"not_connected\"} 1\n"));
        assert!(f
            .family(ZapiFamily::StatusError)
            .contains("whatsapp_status_error{error=\"none\"} 0\n"));
    }

    #[test]
    fn null_error_and_missing_fields() {
        let s = parse(br#"{"connected":true,"error":null}"#).unwrap();
        assert_eq!(s.error, StatusError::None);
        assert_eq!(s.session, None);
        let mut w = writer();
        s.write(&mut w);
        assert_eq!(
            w.finish().family(ZapiFamily::SessionActive),
            "",
            "a missing field is absent, not 0"
        );
    }

    #[test]
    fn booleans_as_strings() {
        let s =
            parse(br#"{"connected":"true","session":"false","smartphoneConnected":1}"#).unwrap();
        assert!(s.connected);
        assert_eq!(s.session, Some(false));
        assert_eq!(s.smartphone_connected, Some(true));
    }

    #[test]
    fn broken_answers_are_invalid_responses() {
        for body in [
            &b"null"[..],
            b"",
            b"<html>502 Bad Gateway</html>",
            b"{\"error\":\"Instance not found\"}",
            b"[]",
            b"{\"connected\":",
        ] {
            let e = parse(body).unwrap_err();
            assert_eq!(
                e.reason(),
                "invalid_response",
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
