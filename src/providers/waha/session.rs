//! A session's status: `GET /api/sessions/{session}` for one session, and the `status` of every
//! element of `GET /api/sessions?all=true` for a server.

use serde::Deserialize;

use super::WahaFamily;
use crate::error::PollError;
use crate::exposition::FragmentWriter;
use crate::json::lenient;
use crate::number_state::{Problem, Problems};
use crate::providers::shape::Observation;

crate::labels::closed_set! {
    /// The status of a session (WAHA's own names). Newer versions add PASSKEY_REQUIRED and
    /// PASSKEY_CONFIRMATION_REQUIRED while a login waits for a passkey: those read as `unknown`.
    pub enum SessionStatus {
        Stopped => "STOPPED",
        Starting => "STARTING",
        ScanQrCode => "SCAN_QR_CODE",
        Working => "WORKING",
        Failed => "FAILED",
        Unknown => "unknown",
    }
}

impl SessionStatus {
    /// In any case; what the list does not know, or no status at all, is `unknown`.
    pub fn from_text(s: Option<&str>) -> Self {
        s.and_then(|s| crate::labels::find_ignoring_case(s.trim()))
            .unwrap_or(SessionStatus::Unknown)
    }
}

/// The status of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub status: SessionStatus,
}

impl Observation for Status {
    fn connected(&self) -> bool {
        self.status == SessionStatus::Working
    }

    /// Waiting for its QR code is logged out; stopped, starting or failed is the socket down.
    fn number_evidence(&self) -> (bool, Problems) {
        let problem = match self.status {
            SessionStatus::Working => return (true, Problems::default()),
            SessionStatus::ScanQrCode => Problem::LoggedOut,
            _ => Problem::SocketDown,
        };
        (false, Problems::default().with(problem))
    }

    fn write(&self, w: &mut FragmentWriter) {
        w.states(WahaFamily::Status, &[], "status", self.status);
    }

    fn summary(&self) -> String {
        format!("status {}", self.status)
    }
}

/// A SessionInfo: `{name, status, config, me, engine}`. Only the name and status are read (`me`
/// holds the phone number, `config` the webhook URLs and their HMAC keys).
#[derive(Debug, Default, Deserialize)]
pub struct Session {
    #[serde(default, deserialize_with = "lenient")]
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    status: Option<String>,
}

impl Session {
    pub fn into_status(self) -> (Option<String>, Status) {
        let status = SessionStatus::from_text(self.status.as_deref());
        (self.name, Status { status })
    }
}

/// Parses a `GET /api/sessions/{session}` answer; one without `status` is not a session.
pub fn parse(body: &[u8]) -> Result<Status, PollError> {
    let s: Option<Session> = serde_json::from_slice(body).map_err(|e| PollError::from_json(&e))?;
    let status = s
        .and_then(|s| s.status)
        .ok_or_else(|| PollError::InvalidResponse("the answer has no `status` field".into()))?;
    Ok(Status {
        status: SessionStatus::from_text(Some(&status)),
    })
}

/// Parses a `GET /api/sessions?all=true` answer: every session of the server with its status.
pub fn parse_listing(body: &[u8]) -> Result<Vec<(Option<String>, Status)>, PollError> {
    Ok(crate::providers::discovery::listing::<Session>(body)?
        .into_iter()
        .map(Session::into_status)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::LabelSet;

    /// The answer a fixture of `tests/fixtures/real/waha/` gives for `path`.
    fn fixture(text: &str, path: &str) -> (u16, Vec<u8>) {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let a = &v["answers"][path];
        (
            a["status"].as_u64().unwrap() as u16,
            serde_json::to_vec(&a["body"]).unwrap(),
        )
    }

    const PATH: &str = "/api/sessions/default";

    #[test]
    fn statuses_of_the_fixtures() {
        for (text, want) in [
            (
                include_str!("../../../tests/fixtures/real/waha/session_working.json"),
                SessionStatus::Working,
            ),
            (
                include_str!("../../../tests/fixtures/real/waha/session_stopped.json"),
                SessionStatus::Stopped,
            ),
            (
                include_str!("../../../tests/fixtures/real/waha/session_starting.json"),
                SessionStatus::Starting,
            ),
            (
                include_str!("../../../tests/fixtures/real/waha/session_scan_qr_code.json"),
                SessionStatus::ScanQrCode,
            ),
            (
                include_str!("../../../tests/fixtures/real/waha/session_failed.json"),
                SessionStatus::Failed,
            ),
        ] {
            let (code, body) = fixture(text, PATH);
            assert_eq!(code, 200);
            let st = parse(&body).unwrap();
            assert_eq!(st.status, want);
            assert_eq!(st.connected(), want == SessionStatus::Working);
            assert!(!format!("{st:?}").contains("79111111"));
        }
    }

    #[test]
    fn error_answers_are_no_status() {
        for (text, path, code) in [
            (
                include_str!("../../../tests/fixtures/real/waha/session_not_found.json"),
                "/api/sessions/nosuch",
                404,
            ),
            (
                include_str!("../../../tests/fixtures/real/waha/session_unauthorized.json"),
                PATH,
                401,
            ),
        ] {
            let (got, body) = fixture(text, path);
            assert_eq!(got, code);
            assert_eq!(parse(&body).unwrap_err().reason(), "invalid_response");
        }
    }

    #[test]
    fn every_status_and_the_rest() {
        for s in SessionStatus::LABELS {
            let body = format!(r#"{{"name":"default","status":"{s}"}}"#);
            assert_eq!(parse(body.as_bytes()).unwrap().status.as_str(), *s);
        }
        for (body, want) in [
            (&br#"{"status":"working"}"#[..], SessionStatus::Working),
            (br#"{"status":"PASSKEY_REQUIRED"}"#, SessionStatus::Unknown),
        ] {
            assert_eq!(parse(body).unwrap().status, want);
        }
        for body in [
            &b"null"[..],
            b"{}",
            b"{\"status\":7}",
            b"",
            b"{\"status\":",
            b"<html>",
        ] {
            assert_eq!(parse(body).unwrap_err().reason(), "invalid_response");
        }
    }

    #[test]
    fn the_listing_of_the_docs() {
        let text = include_str!("../../../tests/fixtures/real/waha/sessions_all.json");
        let (_, body) = fixture(text, "/api/sessions?all=true");
        let rows = parse_listing(&body).unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|(n, s)| (n.as_deref().unwrap(), s.status))
            .collect();
        assert_eq!(
            got,
            [
                ("default", SessionStatus::Working),
                ("sales", SessionStatus::Stopped),
                ("support", SessionStatus::Failed)
            ]
        );
        let kept = format!("{rows:?}");
        for private in ["79111111", "webhook.site"] {
            assert!(!kept.contains(private), "{private} kept: {kept}");
        }
    }

    #[test]
    fn a_status_is_a_state_set() {
        let mut w = FragmentWriter::new(&[], &super::super::FAMILIES);
        Status {
            status: SessionStatus::ScanQrCode,
        }
        .write(&mut w);
        let f = w.finish();
        let lines = f.family(WahaFamily::Status);
        assert!(lines.contains("whatsapp_waha_status{status=\"SCAN_QR_CODE\"} 1\n"));
        assert!(lines.contains("whatsapp_waha_status{status=\"WORKING\"} 0\n"));
        assert_eq!(lines.lines().count(), SessionStatus::COUNT);
    }
}
