//! PlugzAPI and Z-API (the same API): `GET /instances/{id}/token/{token}/status`.
//!
//! The token sits in the URL path, so the URL is built only in `poll` and never formatted into
//! anything that is logged.

use std::time::Duration;

use serde::Deserialize;

use crate::config::GatewayConfig;
use crate::error::PollError;
use crate::exposition::{Family, FragmentWriter};
use crate::http::fetch;
use crate::secret::Secret;

pub struct Source {
    client: reqwest::Client,
    /// The full status URL, token included.
    url: Secret,
    client_token: Option<Secret>,
}

impl Source {
    pub fn new(cfg: &GatewayConfig, client: reqwest::Client) -> Result<Self, String> {
        let (Some(instance), Some(token)) = (&cfg.instance, &cfg.token) else {
            return Err("needs instance and token".into());
        };
        let url = format!(
            "{}/instances/{}/token/{}/status",
            cfg.url,
            path_segment(instance),
            path_segment(token.expose())
        );
        Ok(Source {
            client,
            url: Secret::new(url),
            client_token: cfg.client_token.clone(),
        })
    }

    pub async fn poll(&self, timeout: Duration) -> Result<Box<dyn super::Observation>, PollError> {
        // No per-request timeout: `Gateway::poll` bounds the whole poll, body included.
        let mut req = self
            .client
            .get(self.url.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(ct) = &self.client_token {
            req = req.header("Client-Token", ct.expose());
        }
        let answer = fetch(req, timeout).await?;
        answer.check_status()?;
        Ok(Box::new(parse(&answer.body)?))
    }
}

/// Percent-encodes what would break out of a path segment; instance ids and tokens are plain
/// alphanumerics in practice.
pub(crate) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Deserialize)]
struct StatusResponse {
    #[serde(default, deserialize_with = "super::lenient_bool")]
    connected: Option<bool>,
    #[serde(default, deserialize_with = "super::lenient_bool")]
    session: Option<bool>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(
        default,
        rename = "smartphoneConnected",
        deserialize_with = "super::lenient_bool"
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

/// The `error` field, reduced to the values the documentation lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusError {
    None,
    AlreadyConnected,
    RestoreSession,
    NotConnected,
    Other,
}

pub const ERROR_STATES: [&str; 5] = [
    "none",
    "already_connected",
    "restore_session",
    "not_connected",
    "other",
];

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

    pub fn as_str(self) -> &'static str {
        ERROR_STATES[self as usize]
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

impl super::Observation for Status {
    fn connected(&self) -> bool {
        self.connected
    }

    fn write(&self, w: &mut FragmentWriter) {
        if let Some(s) = self.session {
            w.gauge_bool(Family::SessionActive, &[], s);
        }
        if let Some(p) = self.smartphone_connected {
            w.gauge_bool(Family::PhoneConnected, &[], p);
        }
        w.state_set(
            Family::StatusError,
            &[],
            "error",
            &ERROR_STATES,
            self.error.as_str(),
        );
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
    use crate::sources::Observation;

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
        let mut w = FragmentWriter::new(&[]);
        s.write(&mut w);
        let f = w.finish();
        assert_eq!(
            f.family(Family::SessionActive),
            "whatsapp_session_active{} 0\n"
        );
        assert_eq!(
            f.family(Family::PhoneConnected),
            "whatsapp_phone_connected{} 0\n"
        );
        assert!(f
            .family(Family::StatusError)
            .contains("whatsapp_status_error{error=\"not_connected\"} 1\n"));
        assert!(f
            .family(Family::StatusError)
            .contains("whatsapp_status_error{error=\"none\"} 0\n"));
    }

    #[test]
    fn null_error_and_missing_fields() {
        let s = parse(br#"{"connected":true,"error":null}"#).unwrap();
        assert_eq!(s.error, StatusError::None);
        assert_eq!(s.session, None);
        let mut w = FragmentWriter::new(&[]);
        s.write(&mut w);
        assert_eq!(
            w.finish().family(Family::SessionActive),
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

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("3C7A1B"), "3C7A1B");
        assert_eq!(path_segment("a/../b c"), "a%2F..%2Fb%20c");
    }
}
