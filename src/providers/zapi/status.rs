//! The status answer: its shape, read leniently, and the series it becomes; and what an answer
//! that is not a status says went wrong.
//!
//! Z-API tells many problems in the body rather than the status code: a refused or missing
//! Client-Token or an address outside the IP allow-list comes as `{"error": "..."}` with HTTP 200
//! or 400, and an instance id and token that do not belong together as `{"error":"Instance not
//! found"}`. [`judge`] reads such a body before the status code, and keeps only which case it is:
//! the text itself can echo the Client-Token, so it is never copied into the error.

use serde::Deserialize;
use serde_json::Value;

use super::ZapiFamily;
use crate::error::PollError;
use crate::exposition::FragmentWriter;
use crate::http::Answer;
use crate::json::lenient_bool;
use crate::number_state::{Problem, Problems};
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

/// A problem the body of a Z-API answer tells in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `null not allowed`, `your client-token is not configured`: the account requires the
    /// `Client-Token` header and the request has none.
    ClientTokenMissing,
    /// `Client-Token ... not allowed`: the header was sent but is not the account's.
    ClientTokenWrong,
    /// `... not allowed` for the caller's address: the account's IP allow-list refuses it.
    AddressNotAllowed,
    /// `Instance not found`: no instance with this id, or the token is not this instance's.
    InstanceNotFound,
}

impl Refusal {
    /// Reads the `error` (or `message`) text of an answer that is not a status.
    pub fn from_text(text: &str) -> Option<Self> {
        let t = text.trim().trim_end_matches('.').trim().to_lowercase();
        let client_token = t.contains("client-token") || t.contains("client token");
        if t == "null not allowed" || (client_token && t.contains("not configured")) {
            Some(Refusal::ClientTokenMissing)
        } else if client_token {
            Some(Refusal::ClientTokenWrong)
        } else if t.ends_with("not allowed") {
            Some(Refusal::AddressNotAllowed)
        } else if t.contains("instance not found")
            || t.contains("instance does not exist")
            || (t.contains("instância") && t.contains("não encontrada"))
        {
            Some(Refusal::InstanceNotFound)
        } else {
            None
        }
    }

    /// The error of a poll that got this refusal with HTTP status `code`.
    pub fn error(self, code: u16) -> PollError {
        match self {
            Refusal::ClientTokenMissing => PollError::Unauthorized(
                code,
                ", the account requires a Client-Token header: set client_token",
            ),
            Refusal::ClientTokenWrong => PollError::Unauthorized(
                code,
                ", the Client-Token sent is not the account's security token",
            ),
            Refusal::AddressNotAllowed => PollError::Unauthorized(
                code,
                ", the account's IP allow-list does not include the exporter's address",
            ),
            Refusal::InstanceNotFound => PollError::NotFound(
                code,
                ", no instance with this id, or the token is not this instance's",
            ),
        }
    }
}

/// The refusal an answer's body tells: a JSON object without `connected` whose `error` or
/// `message` is one of the texts Z-API answers with.
fn refusal(body: &[u8]) -> Option<Refusal> {
    let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    if o.contains_key("connected") {
        return None;
    }
    ["error", "message"]
        .iter()
        .filter_map(|k| o.get(*k).and_then(Value::as_str))
        .find_map(Refusal::from_text)
}

/// What an answer means: the instance status, or why the poll failed. A refusal told in the body
/// wins over the status code (Z-API sends them with 200 and 400 alike), except for 429 and 5xx,
/// which say more about the moment than the body does.
pub fn judge(answer: &Answer) -> Result<Status, PollError> {
    let code = answer.status.as_u16();
    if code != 429 && code < 500 {
        if let Some(r) = refusal(&answer.body) {
            return Err(r.error(code));
        }
    }
    answer.check_status()?;
    parse(&answer.body)
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

    /// Not connected: logged out when the session is gone or Z-API says "not connected" (a QR
    /// code must be read), the phone offline when it says so, else the socket down. A connected
    /// multi-device session works with its phone offline, so that is no problem then.
    fn number_evidence(&self) -> (bool, Problems) {
        let mut p = Problems::default();
        if !self.connected {
            if self.session == Some(false) || self.error == StatusError::NotConnected {
                p.add(Problem::LoggedOut);
            } else if self.smartphone_connected == Some(false) {
                p.add(Problem::PhoneOffline);
            } else {
                p.add(Problem::SocketDown);
            }
        }
        (self.connected, p)
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
            b"{\"error\":\"Something else went wrong\"}",
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

    fn answer(code: u16, body: &str) -> Answer {
        Answer {
            status: reqwest::StatusCode::from_u16(code).unwrap(),
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
            retry_after: None,
        }
    }

    #[test]
    fn refusals_told_in_the_body() {
        // The bodies Z-API documents (security/client-token, security/ip-block) and integrators
        // quote, with 200 and 400 alike.
        for (code, body, reason, refusal) in [
            (
                200,
                r#"{"error":"null not allowed"}"#,
                "unauthorized",
                Refusal::ClientTokenMissing,
            ),
            (
                400,
                r#"{"error":"null not allowed"}"#,
                "unauthorized",
                Refusal::ClientTokenMissing,
            ),
            (
                400,
                r#"{"error":"your client-token is not configured"}"#,
                "unauthorized",
                Refusal::ClientTokenMissing,
            ),
            (
                403,
                r#"{"error":"Client-Token F0e1d2C3b4A5 not allowed"}"#,
                "unauthorized",
                Refusal::ClientTokenWrong,
            ),
            (
                200,
                r#"{"error":"[IP request] not allowed"}"#,
                "unauthorized",
                Refusal::AddressNotAllowed,
            ),
            (
                200,
                r#"{"error":"203.0.113.7 not allowed"}"#,
                "unauthorized",
                Refusal::AddressNotAllowed,
            ),
            (
                400,
                r#"{"error":"Instance not found"}"#,
                "not_found",
                Refusal::InstanceNotFound,
            ),
            (
                404,
                r#"{"error":"Instance not found."}"#,
                "not_found",
                Refusal::InstanceNotFound,
            ),
            (
                200,
                r#"{"message":"instance not found"}"#,
                "not_found",
                Refusal::InstanceNotFound,
            ),
        ] {
            let e = judge(&answer(code, body)).unwrap_err();
            assert_eq!(e.reason(), reason, "{code} {body}");
            assert_eq!(e, refusal.error(code), "{code} {body}");
        }
    }

    #[test]
    fn refusals_never_quote_the_body() {
        let e = judge(&answer(
            403,
            r#"{"error":"Client-Token F0e1d2C3b4A5 not allowed"}"#,
        ))
        .unwrap_err();
        assert!(!e.to_string().contains("F0e1d2C3b4A5"), "{e}");
        let e = judge(&answer(200, r#"{"error":"203.0.113.7 not allowed"}"#)).unwrap_err();
        assert!(!e.to_string().contains("203.0.113.7"), "{e}");
    }

    #[test]
    fn statuses_still_decide_without_a_known_refusal() {
        assert!(judge(&answer(
            200,
            r#"{"connected":true,"error":"You are already connected."}"#
        ))
        .is_ok());
        // A status whose `error` merely mentions the words is a status.
        assert!(judge(&answer(200, r#"{"connected":false,"error":"not allowed"}"#)).is_ok());
        for (code, body, reason) in [
            (401, "", "unauthorized"),
            (403, "Forbidden", "unauthorized"),
            (
                404,
                r#"{"error":"NOT_FOUND","message":"Unable to find matching target resource method"}"#,
                "http_status",
            ),
            (400, r#"{"error":"Bad request"}"#, "http_status"),
            (429, r#"{"error":"null not allowed"}"#, "rate_limited"),
            (502, r#"{"error":"Instance not found"}"#, "http_status"),
            (200, r#"{"error":"Something new"}"#, "invalid_response"),
            (200, "<html>", "invalid_response"),
        ] {
            assert_eq!(
                judge(&answer(code, body)).unwrap_err().reason(),
                reason,
                "{code} {body}"
            );
        }
    }
}
