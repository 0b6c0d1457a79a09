//! WAHA webhooks (`POST /webhooks/<gateway>`), read leniently.
//!
//! Every push is one envelope `{id, timestamp, event, session, me, payload, engine,
//! environment}` (waha.devlike.pro/docs/how-to/events, "Event Payload"): `timestamp` is the
//! event's time in Unix milliseconds, `session` the session's name. `me` holds the number and is
//! never read, nor are a message's `from`, `to` or `body`.
//!
//! | event | read as |
//! | --- | --- |
//! | `session.status` | `payload.status`: WORKING connected, anything else not; FAILED counts a disconnection |
//! | `message` | an incoming message (unless `fromMe`) |
//! | `message.any` | every message; one of the number's own (`fromMe`) is taken for sending: where sent→delivered starts |
//! | `message.ack` | `ack` -1 ERROR failed, 1 SERVER sent, 2 DEVICE delivered, 3 READ read, 4 PLAYED played (0 PENDING: other) |
//!
//! Authentication: with a session webhook's `hmac.key` (or WHATSAPP_HOOK_HMAC_KEY), WAHA sends
//! `X-Webhook-Hmac`, the hex HMAC-SHA512 of the raw body, and `X-Webhook-Hmac-Algorithm:
//! sha512`; [`hmac_matches`] checks it before this parser runs. WAHA tells no reason with FAILED
//! ("authorization is required again or the device was disconnected"): its disconnections are
//! counted under the code `FAILED`.

use serde_json::{Map, Value};

use crate::flow::{self, Batch, Event, FlowSpec, MessageKey, MessageStatus, Refused, ReplayKey};
use crate::providers::discovery::{pushed_name, Push};

/// Event names, as WAHA writes `event`.
pub static EVENTS: [&str; 6] = [
    "session.status",
    "message",
    "message.any",
    "message.ack",
    flow::OTHER,
    flow::UNPARSED,
];

/// A failed message (ack -1 ERROR): WAHA tells no reason.
pub static CODES: [&str; 2] = ["ERROR", flow::OTHER];

/// The one disconnection WAHA pushes: a session that went FAILED.
pub static DISCONNECTS: [&str; 1] = ["FAILED"];

pub static SPEC: FlowSpec = FlowSpec {
    events: &EVENTS,
    codes: &CODES,
    cloud: None,
    disconnects: &DISCONNECTS,
};

/// The header of the signature, and of its algorithm.
pub const HMAC_HEADER: &str = "x-webhook-hmac";
pub const HMAC_ALGORITHM_HEADER: &str = "x-webhook-hmac-algorithm";

/// Whether `header` is the hex HMAC-SHA512 of `body` under `key`, compared in constant time.
/// An algorithm header other than sha512, when present, fails.
pub fn hmac_matches(
    key: &[u8],
    body: &[u8],
    header: Option<&[u8]>,
    algorithm: Option<&[u8]>,
) -> bool {
    if algorithm.is_some_and(|a| !a.trim_ascii().eq_ignore_ascii_case(b"sha512")) {
        return false;
    }
    let Some(given) = header.and_then(|h| crate::inbound::decode_hex::<64>(h.trim_ascii())) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA512, key);
    ring::hmac::verify(&key, body, &given).is_ok()
}

/// The events of a body: one envelope, or a list of them.
pub fn parse(body: &[u8]) -> Result<Batch<Push>, Refused> {
    parse_value(&flow::json(body)?)
}

pub fn parse_value(v: &Value) -> Result<Batch<Push>, Refused> {
    let mut batch = Batch::default();
    for entry in flow::entries(v) {
        match push(entry) {
            Some(p) => batch.items.push(p),
            None => batch.unparsed += 1,
        }
    }
    if batch.items.is_empty() {
        return Err(Refused::UnknownEvent);
    }
    Ok(batch)
}

/// One envelope; `None` when it is not an object with an `event`.
pub fn push(v: &Value) -> Option<Push> {
    let o = v.as_object()?;
    let name = flow::known(
        &EVENTS[..EVENTS.len() - 2],
        o.get("event")?.as_str()?.trim(),
    );
    let empty = Map::new();
    let payload = o
        .get("payload")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut e = Event::named(name);
    e.timestamp = flow::unix_time(o.get("timestamp"));
    e.replay = replay_key(o, payload);
    let mut disconnect = None;
    let own = payload.get("fromMe").and_then(crate::json::boolean);
    match name {
        "session.status" => {
            let status = payload.get("status").and_then(Value::as_str);
            if let Some(s) = status {
                let s = super::SessionStatus::from_text(Some(s));
                e.state = Some(s.as_str());
                e.connected = Some(s == super::SessionStatus::Working);
                if s == super::SessionStatus::Failed {
                    disconnect = Some("FAILED");
                }
            }
            if e.timestamp.is_none() {
                // The documented example has no envelope time: the latest status's time.
                e.timestamp = payload
                    .get("statuses")
                    .and_then(Value::as_array)
                    .and_then(|l| l.last())
                    .and_then(|s| flow::unix_time(s.get("timestamp")));
            }
        }
        "message" => {
            e.received = u32::from(own != Some(true));
            if own != Some(true) {
                // sendSeen names the chat (`from`) and the message's serialized `id`.
                let s = |k: &str| payload.get(k).and_then(Value::as_str);
                e.canary = flow::CanaryArrival::of(s("body"), s("from"), s("id"));
            }
            e.timestamp = flow::unix_time(payload.get("timestamp")).or(e.timestamp);
        }
        "message.any" => {
            if own == Some(true) {
                e.accepted = true;
                e.messages = MessageKey::of_value(payload.get("id"))
                    .into_iter()
                    .collect();
            }
            e.timestamp = flow::unix_time(payload.get("timestamp")).or(e.timestamp);
        }
        // Acks of messages the number received (it read them) are no outgoing status.
        "message.ack" if own != Some(false) => {
            let s = ack(payload.get("ack"), payload.get("ackName"));
            e.status = Some(s);
            if s == MessageStatus::Failed {
                e.errors.push("ERROR");
            }
            e.messages = MessageKey::of_value(payload.get("id"))
                .into_iter()
                .collect();
        }
        _ => {}
    }
    let instance = pushed_name(o.get("session"));
    Some(Push {
        instance,
        event: e,
        disconnect,
    })
}

/// Every push has its own id (`evt_…`), the same when WAHA sends it again with the same signed
/// body. What the event says rides along, so that two pushes under one id (a reused id, as in
/// WAHA's own examples) are never taken for each other.
fn replay_key(o: &Map<String, Value>, payload: &Map<String, Value>) -> Option<ReplayKey> {
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let parts = [
        text(o.get("event")),
        text(o.get("timestamp")),
        text(payload.get("id")),
        text(payload.get("status")),
        text(payload.get("ack")),
    ];
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    ReplayKey::of_value(o.get("id"), &parts)
}

/// A `message.ack` level: the number `ack`, else its name `ackName`.
pub fn ack(level: Option<&Value>, name: Option<&Value>) -> MessageStatus {
    let by_level = level.and_then(crate::json::number).map(|n| match n as i64 {
        _ if n.fract() != 0.0 => MessageStatus::Other,
        -1 => MessageStatus::Failed,
        1 => MessageStatus::Sent,
        2 => MessageStatus::Delivered,
        3 => MessageStatus::Read,
        4 => MessageStatus::Played,
        _ => MessageStatus::Other,
    });
    by_level.unwrap_or_else(|| {
        match name
            .and_then(Value::as_str)
            .map(|s| s.trim().to_ascii_uppercase())
            .as_deref()
        {
            Some("ERROR") => MessageStatus::Failed,
            Some("SERVER") => MessageStatus::Sent,
            Some("DEVICE") => MessageStatus::Delivered,
            Some("READ") => MessageStatus::Read,
            Some("PLAYED") => MessageStatus::Played,
            _ => MessageStatus::Other,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/webhooks/waha/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn fixture(name: &str) -> Vec<u8> {
        serde_json::to_vec(&file(name)["body"]).unwrap()
    }

    fn one(name: &str) -> Push {
        let b = parse(&fixture(name)).unwrap();
        assert_eq!((b.unparsed, b.items.len()), (0, 1), "{name}");
        let p = b.items[0].clone();
        assert_eq!(p.instance.as_deref(), Some("default"), "{name}");
        p
    }

    #[test]
    fn a_canary_nonce_is_read_from_a_received_message_only() {
        let text = flow::canary_text(0xcd);
        let theirs = format!(
            r#"{{"event":"message","session":"default","payload":{{"id":"false_11111111111@c.us_AAAAAAAAAAAAAAAAAAAA","from":"11111111111@c.us","fromMe":false,"body":"{text}"}}}}"#
        );
        let own = format!(
            r#"{{"event":"message","session":"default","payload":{{"fromMe":true,"body":"{text}"}}}}"#
        );
        let e = parse(theirs.as_bytes()).unwrap().items.remove(0).event;
        assert_eq!(
            e.canary.as_deref().map(|a| a.parts()),
            Some((
                0xcd,
                Some("11111111111@c.us"),
                Some("false_11111111111@c.us_AAAAAAAAAAAAAAAAAAAA")
            ))
        );
        assert_eq!(parse(own.as_bytes()).unwrap().items[0].event.canary, None);
    }

    #[test]
    fn the_documented_hmac_and_the_signed_fixtures() {
        let f = file("hmac_docs_example");
        let raw = f["raw_body"].as_str().unwrap().as_bytes();
        let key = f["test_hmac_key"].as_str().unwrap().as_bytes();
        let sig = f["headers"]["X-Webhook-Hmac"].as_str().unwrap().as_bytes();
        assert!(hmac_matches(key, raw, Some(sig), Some(b"sha512")));
        assert!(hmac_matches(key, raw, Some(sig), None));
        assert!(!hmac_matches(key, raw, Some(sig), Some(b"sha256")));
        assert!(!hmac_matches(b"other-key", raw, Some(sig), None));
        assert!(!hmac_matches(key, b"{}", Some(sig), None));
        assert!(!hmac_matches(key, raw, None, None));
        assert!(!hmac_matches(key, raw, Some(&sig[..64]), None));
        assert!(!hmac_matches(key, raw, Some(b"zz"), None));
        for name in [
            "message_ack_device",
            "session_status_failed",
            "message_any_sent_by_api",
        ] {
            let f = file(name);
            let raw = f["raw_body"].as_str().unwrap().as_bytes();
            let key = f["test_hmac_key"].as_str().unwrap().as_bytes();
            let sig = f["headers"]["X-Webhook-Hmac"].as_str().unwrap().as_bytes();
            assert!(hmac_matches(key, raw, Some(sig), None), "{name}");
        }
    }

    #[test]
    fn session_statuses() {
        for (f, status, connected) in [
            ("session_status_working", "WORKING", true),
            ("session_status_stopped", "STOPPED", false),
            ("session_status_starting", "STARTING", false),
            ("session_status_scan_qr_code", "SCAN_QR_CODE", false),
            ("session_status_failed", "FAILED", false),
        ] {
            let p = one(f);
            assert_eq!(p.event.name, "session.status");
            assert_eq!(
                (p.event.state, p.event.connected),
                (Some(status), Some(connected)),
                "{f}"
            );
            assert_eq!(
                p.disconnect,
                (status == "FAILED").then_some("FAILED"),
                "{f}"
            );
        }
        assert_eq!(
            one("session_status_failed").event.timestamp,
            Some(1761057639.123),
            "the envelope's milliseconds"
        );
        assert_eq!(
            one("session_status_working").event.timestamp,
            Some(1700000003.0),
            "no envelope time: the latest status's"
        );
    }

    #[test]
    fn acks() {
        for (f, want) in [
            ("message_ack_error", MessageStatus::Failed),
            ("message_ack_pending", MessageStatus::Other),
            ("message_ack_server", MessageStatus::Sent),
            ("message_ack_device", MessageStatus::Delivered),
            ("message_ack_read", MessageStatus::Read),
            ("message_ack_played", MessageStatus::Played),
        ] {
            let e = one(f).event;
            assert_eq!((e.name, e.status), ("message.ack", Some(want)), "{f}");
            let id = "true_11111111111@c.us_4CC5EDD64BC22EBA6D639F2AF571346C";
            assert_eq!(e.messages, vec![MessageKey::of(id).unwrap()], "{f}");
            assert_eq!(e.errors.len(), usize::from(want == MessageStatus::Failed));
        }
        let by_name = ack(None, Some(&Value::from("DEVICE")));
        assert_eq!(by_name, MessageStatus::Delivered);
    }

    #[test]
    fn messages() {
        let m = one("message").event;
        assert_eq!(m.received, 0, "the documented example is the number's own");
        assert_eq!(m.timestamp, Some(1667561485.0));
        let incoming = parse(br#"{"event":"message","session":"s","payload":{"fromMe":false}}"#);
        assert_eq!(incoming.unwrap().items[0].event.received, 1);
        let own = one("message_any_sent_by_api").event;
        assert!(own.accepted);
        let id = "true_22222222222@c.us_3EB0C767D097B7C7C030";
        assert_eq!(own.messages, vec![MessageKey::of(id).unwrap()]);
        assert_eq!(own.timestamp, Some(1761057639.0));
    }

    #[test]
    fn mixed_batches_are_read_entry_by_entry() {
        let body = format!(
            "[{}, null, {{\"payload\":{{}}}}, {{\"event\":\"presence.update\",\"session\":\"x\"}}]",
            String::from_utf8(fixture("message_ack_read")).unwrap()
        );
        let b = parse(body.as_bytes()).unwrap();
        assert_eq!(b.unparsed, 2);
        let names: Vec<_> = b.items.iter().map(|p| p.event.name).collect();
        assert_eq!(names, ["message.ack", "other"]);
        assert_eq!(parse(b"[1, 2]"), Err(Refused::UnknownEvent));
        assert_eq!(parse(b"nope"), Err(Refused::InvalidJson));
    }

    #[test]
    fn nothing_private_is_kept() {
        for f in [
            "message",
            "message_any_sent_by_api",
            "session_status_working",
        ] {
            let kept = format!("{:?}", parse(&fixture(f)).unwrap());
            for private in [
                "11111111111",
                "22222222222",
                "7911111",
                "Hi there!",
                "3EB0C767D097B7C7C030",
            ] {
                assert!(!kept.contains(private), "{f}: {private} in {kept}");
            }
        }
    }

    #[test]
    fn a_push_is_known_again_by_its_event_id() {
        let key = |body: &str| parse(body.as_bytes()).unwrap().items[0].event.replay;
        let failed = r#"{"id":"evt_01","timestamp":1761057639123,"event":"session.status","session":"default","payload":{"status":"FAILED"}}"#;
        assert!(key(failed).is_some());
        assert_eq!(key(failed), key(failed), "the same push again");
        let working = failed.replace("FAILED", "WORKING");
        assert_ne!(key(failed), key(&working), "one id, another status");
        let later = failed.replace("1761057639123", "1761057640000");
        assert_ne!(key(failed), key(&later), "one id, another time");
        let no_id = failed.replace(r#""id":"evt_01","#, "");
        assert_eq!(key(&no_id), None, "no id, never a replay");
    }
}
