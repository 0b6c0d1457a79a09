//! A simulated WAHA server: one session working, one that fails and comes back, one stuck
//! waiting for its QR code, and one stopped.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::Request;
use serde_json::json;

use crate::providers::simulator::{no_hold, Simulator, DEMO_TOKEN, DEMO_WAHA_HMAC_KEY};

pub static SIMULATOR: Simulator = Simulator {
    route,
    hold: no_hold,
    gateways,
};

/// `waha`: the whole server, every session discovered; its webhooks, signed, come to
/// `/webhooks/waha`.
fn gateways(addr: SocketAddr) -> String {
    format!(
        r#"  - name: waha
    provider: waha
    url: http://{addr}
    token: {DEMO_TOKEN}
    instances: all
    webhooks:
      hmac_key: {DEMO_WAHA_HMAC_KEY}
"#
    )
}

pub const SESSIONS: [&str; 4] = ["default", "sales", "support", "archive"];

/// The status of a session at second `t` of the cycle.
pub fn status(session: &str, t: u64) -> &'static str {
    match session {
        "sales" => "SCAN_QR_CODE",
        "support" if (60..100).contains(&t) => "FAILED",
        "support" if (100..110).contains(&t) => "STARTING",
        "archive" => "STOPPED",
        _ => "WORKING",
    }
}

fn session(name: &str, t: u64) -> serde_json::Value {
    let status = status(name, t);
    json!({
        "name": name,
        "status": status,
        "config": {"proxy": null, "webhooks": [], "debug": false},
        "me": null,
        "engine": {"engine": "NOWEB"},
    })
}

pub fn route(req: &Request<Incoming>, parts: &[&str], t: u64) -> Option<(u16, String)> {
    let ["api", "sessions", rest @ ..] = parts else {
        return None;
    };
    // The key is checked before any route.
    let key = req.headers().get("x-api-key").and_then(|v| v.to_str().ok());
    if key != Some(DEMO_TOKEN) {
        return Some((401, r#"{"message":"Unauthorized","statusCode":401}"#.into()));
    }
    match rest {
        [] => {
            let all = req.uri().query().is_some_and(|q| q.contains("all=true"));
            let list: Vec<_> = SESSIONS
                .iter()
                .filter(|s| all || status(s, t) != "STOPPED")
                .map(|s| session(s, t))
                .collect();
            Some((200, serde_json::Value::Array(list).to_string()))
        }
        [name] if SESSIONS.contains(name) => Some((200, session(name, t).to_string())),
        [_] => Some((
            404,
            r#"{"message":"Session not found","error":"Not Found","statusCode":404}"#.into(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::waha::{parse, parse_listing, SessionStatus};

    #[test]
    fn the_sessions_tell_their_story() {
        let all = |t| parse_listing(session_list(t).as_bytes()).unwrap();
        let rows = all(0);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[1].1.status, SessionStatus::ScanQrCode);
        assert_eq!(all(70)[2].1.status, SessionStatus::Failed);
        assert_eq!(all(105)[2].1.status, SessionStatus::Starting);
        assert_eq!(
            parse(session("archive", 0).to_string().as_bytes())
                .unwrap()
                .status,
            SessionStatus::Stopped
        );
    }

    fn session_list(t: u64) -> String {
        serde_json::Value::Array(SESSIONS.iter().map(|s| session(s, t)).collect()).to_string()
    }
}
