//! Simulated PlugzAPI and Z-API instances.

use hyper::body::Incoming;
use hyper::Request;

use std::net::SocketAddr;

use crate::providers::simulator::{
    no_hold, Simulator, DEMO_CLIENT_TOKEN, DEMO_TOKEN, DEMO_WEBHOOK_SECRET,
};

pub static SIMULATOR: Simulator = Simulator {
    route,
    hold: no_hold,
    gateways,
};

/// `sales` on PlugzAPI and `support` on Z-API, with a Client-Token.
fn gateways(addr: SocketAddr) -> String {
    format!(
        r#"  - name: sales
    provider: plugzapi
    url: http://{addr}
    instance: DEMO-SALES
    token: {DEMO_TOKEN}
    webhooks:
      secret: {DEMO_WEBHOOK_SECRET}
  - name: support
    provider: zapi
    url: http://{addr}
    instance: DEMO-SUPPORT
    token: {DEMO_TOKEN}
    client_token: {DEMO_CLIENT_TOKEN}
    webhooks:
      secret: {DEMO_WEBHOOK_SECRET}
"#
    )
}

pub fn route(req: &Request<Incoming>, parts: &[&str], t: u64) -> Option<(u16, String)> {
    let ["instances", instance, "token", token, "status"] = parts else {
        return None;
    };
    if *token != DEMO_TOKEN {
        return Some((401, r#"{"error":"Unauthorized"}"#.into()));
    }
    Some(match *instance {
        "DEMO-SALES" => (200, plugzapi_sales(t)),
        "DEMO-SUPPORT" => {
            let ct = req
                .headers()
                .get("client-token")
                .and_then(|v| v.to_str().ok());
            if ct != Some(DEMO_CLIENT_TOKEN) {
                return Some((
                    400,
                    r#"{"error":"your client-token is not configured"}"#.into(),
                ));
            }
            zapi_support(t)
        }
        _ => (404, r#"{"error":"Instance not found"}"#.into()),
    })
}

/// PlugzAPI `sales`: connected; the phone goes offline; the number disconnects; the session needs
/// restoring; back to connected.
pub fn plugzapi_sales(t: u64) -> String {
    let (connected, session, phone, error) = match t {
        0..=59 => (true, true, true, "You are already connected."),
        60..=89 => (true, true, false, "You are already connected."),
        90..=119 => (false, false, true, "You are not connected."),
        120..=134 => (false, true, true, "You need to restore the session"),
        _ => (true, true, true, "You are already connected"),
    };
    format!(
        r#"{{"connected":{connected},"session":{session},"error":"{error}","smartphoneConnected":{phone}}}"#
    )
}

/// Z-API `support`: healthy, but its API answers 503 for a while.
pub fn zapi_support(t: u64) -> (u16, String) {
    if (150..165).contains(&t) {
        return (
            503,
            "<html><body>503 Service Unavailable</body></html>".into(),
        );
    }
    (
        200,
        r#"{"connected":true,"session":true,"error":null,"smartphoneConnected":true}"#.into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::zapi::{parse, StatusError};

    #[test]
    fn sales_story_goes_through_every_state() {
        let at = |t| parse(plugzapi_sales(t).as_bytes()).unwrap();
        assert!(at(0).connected && at(0).smartphone_connected == Some(true));
        assert_eq!(at(70).smartphone_connected, Some(false));
        assert!(!at(100).connected);
        assert_eq!(at(125).error, StatusError::RestoreSession);
        assert!(at(170).connected);
    }

    #[test]
    fn support_answers_503_for_a_while() {
        assert_eq!(zapi_support(155).0, 503);
        assert_eq!(zapi_support(10).0, 200);
    }
}
