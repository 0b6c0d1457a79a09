//! A simulated Evolution API server of thirteen instances: most connected, two flapping, one
//! logged out for a while, one stuck waiting for its QR code to be scanned, and one named as real
//! Brazilian instances are (`Loja Centro`), exported under its name as it is.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::Request;
use serde_json::json;

use crate::providers::simulator::{no_hold, Simulator, DEMO_TOKEN, DEMO_WEBHOOK_SECRET};

pub static SIMULATOR: Simulator = Simulator {
    route,
    hold: no_hold,
    gateways,
};

/// `evo`: the whole server, every instance discovered; its webhooks come to `/webhooks/evo`.
fn gateways(addr: SocketAddr) -> String {
    format!(
        r#"  - name: evo
    provider: evolution
    url: http://{addr}
    token: {DEMO_TOKEN}
    instances: all
    webhooks:
      secret: {DEMO_WEBHOOK_SECRET}
"#
    )
}

/// The instances of the server, in the order it lists them.
pub const INSTANCES: [&str; 13] = [
    "sales",
    "support",
    "billing",
    "ops",
    "marketing",
    "onboarding",
    "promo",
    "store-01",
    "store-02",
    "store-03",
    "store-04",
    "store-05",
    "Loja Centro",
];

/// The state of an instance at second `t` of the cycle.
pub fn state(instance: &str, t: u64) -> &'static str {
    match instance {
        // Logged out on the phone, then paired again.
        "ops" if (60..120).contains(&t) => "close",
        // The socket drops and reconnects.
        "billing" if (100..130).contains(&t) => "connecting",
        // Waits for its QR code to be scanned, all the time.
        "onboarding" => "connecting",
        // Flapping.
        "promo" if (t / 15) % 2 == 1 => "close",
        "store-03" if (t / 30) % 2 == 1 => "connecting",
        _ => "open",
    }
}

fn apikey_ok(req: &Request<Incoming>) -> bool {
    req.headers()
        .get("apikey")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|k| k == DEMO_TOKEN)
}

const UNAUTHORIZED: &str =
    r#"{"status":401,"error":"Unauthorized","response":{"message":"Unauthorized"}}"#;

pub fn route(req: &Request<Incoming>, parts: &[&str], t: u64) -> Option<(u16, String)> {
    match parts {
        ["instance", "fetchInstances"] => {
            if !apikey_ok(req) {
                return Some((401, UNAUTHORIZED.into()));
            }
            Some((200, listing(t)))
        }
        ["instance", "connectionState", name] => {
            // The instance guard answers before the key is checked.
            let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            if !INSTANCES.contains(&&*name) {
                let body = json!({
                    "status": 404,
                    "error": "Not Found",
                    "response": {"message": [format!("The \"{name}\" instance does not exist")]},
                });
                return Some((404, body.to_string()));
            }
            if !apikey_ok(req) {
                return Some((401, UNAUTHORIZED.into()));
            }
            let body = json!({"instance": {"instanceName": name, "state": state(&name, t)}});
            Some((200, body.to_string()))
        }
        _ => None,
    }
}

/// `fetchInstances` at second `t`: the database rows, in the shape of Evolution API 2.
pub fn listing(t: u64) -> String {
    let rows: Vec<_> = INSTANCES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({
                "id": format!("demo-instance-{i:02}"),
                "name": name,
                "connectionStatus": state(name, t),
                "ownerJid": null,
                "profileName": null,
                "profilePicUrl": null,
                "integration": "WHATSAPP-BAILEYS",
                "number": null,
                "businessId": null,
                "token": format!("demo-instance-token-{i:02}"),
                "clientName": "evolution_exchange",
                "disconnectionReasonCode": if state(name, t) == "close" { json!(401) } else { json!(null) },
                "disconnectionObject": null,
                "disconnectionAt": null,
                "Setting": {"rejectCall": false, "groupsIgnore": false, "alwaysOnline": false},
                "_count": {"Message": 10 * i, "Contact": i, "Chat": i},
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Instances;
    use crate::providers::discovery::Selector;
    use crate::providers::evolution::{parse_listing, State};
    use crate::providers::shape::Observation;

    #[test]
    fn the_server_tells_its_story_in_one_listing() {
        let at = |t| {
            let rows = parse_listing(listing(t).as_bytes()).unwrap();
            Selector::new(Instances::All, 1000).select(
                rows.into_iter()
                    .map(|(n, s)| (n, Box::new(s) as Box<dyn Observation>)),
            )
        };
        let d = at(0);
        assert_eq!(d.instances.len(), 13, "every instance");
        assert_eq!(d.skipped, 0, "Loja Centro is exported as it is");
        assert!(d.instances.iter().any(|(n, _)| n == "Loja Centro"));
        assert_eq!(d.connected_count(), 12, "onboarding waits for its QR code");
        assert_eq!(
            at(80).connected_count(),
            10,
            "ops logged out, promo flapped"
        );
        for t in 0..180 {
            assert_eq!(state("onboarding", t), "connecting");
        }
        let flaps = (1..180)
            .filter(|t| state("promo", *t) != state("promo", t - 1))
            .count();
        assert!(flaps >= 10, "{flaps}");
        assert_eq!(
            parse_listing(listing(65).as_bytes()).unwrap()[3].1.state,
            State::Close
        );
    }
}
