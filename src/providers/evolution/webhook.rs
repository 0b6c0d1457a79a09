//! Evolution API webhooks (`POST /webhooks/<gateway>?secret=S`), read leniently.
//!
//! Every push is one envelope `{event, instance, data, date_time, sender, server_url, apikey}`
//! (`WebhookController.emit`, evolution-api v2.3.6): `event` is the lower-case dotted name
//! (`connection.update`); the upper-case form of the webhook's `events` list
//! (`CONNECTION_UPDATE`) is read as the same event. `apikey` is the instance's token and `sender`
//! its phone number: neither is read. `date_time` is the server's local wall time written with a
//! `Z`, wrong by the server's UTC offset, so it is not used for the lag: only
//! `data.messageTimestamp` (Unix seconds) and `status.instance`'s `disconnectionAt` (ISO UTC) are.
//!
//! | event | read as |
//! | --- | --- |
//! | `connection.update` | `data.state` open / connecting / close / refused → connected; close and refused count a disconnection by `statusReason` |
//! | `status.instance` | `data.status` closed / removed → not connected (the close that follows counts the disconnection) |
//! | `messages.upsert` | `key.fromMe` false: a received message; true: a sent one (`key.id`) |
//! | `send.message` | a message taken for sending (`key.id`): where sent→delivered starts |
//! | `messages.update` | `status` SERVER_ACK sent, DELIVERY_ACK delivered, READ read, PLAYED played, ERROR failed (the message: v2 `keyId` or `key.id`, v1 `id`, the Baileys key spread into `data`) |
//! | `qrcode.updated` | counted; the QR code itself is never read |
//!
//! A disconnection's code is the Baileys `DisconnectReason` status code Evolution gives as
//! `statusReason` (Baileys 7.0.0-rc.6 `src/Types/index.ts`): 401 loggedOut, 403 forbidden,
//! 408 connectionLost/timedOut, 411 multideviceMismatch, 428 connectionClosed, 440
//! connectionReplaced, 500 badSession, 503 unavailableService, 515 restartRequired, and 402 and
//! 406, which Evolution does not reconnect from either; any other value is `other`.

use serde_json::{Map, Value};

use crate::flow::{self, Batch, Event, FlowSpec, MessageKey, MessageStatus, Refused, ReplayKey};
use crate::providers::discovery::{pushed_name, Push};

/// Event names, as Evolution writes `event`.
pub static EVENTS: [&str; 11] = [
    "connection.update",
    "status.instance",
    "qrcode.updated",
    "messages.upsert",
    "messages.update",
    "messages.delete",
    "send.message",
    "logout.instance",
    "remove.instance",
    flow::OTHER,
    flow::UNPARSED,
];

/// A failed message (`messages.update` status ERROR): Evolution tells no reason.
pub static CODES: [&str; 2] = ["ERROR", flow::OTHER];

/// Disconnection reason codes (`statusReason`), see the module documentation.
pub static DISCONNECTS: [&str; 12] = [
    "401",
    "402",
    "403",
    "406",
    "408",
    "411",
    "428",
    "440",
    "500",
    "503",
    "515",
    flow::OTHER,
];

pub static SPEC: FlowSpec = FlowSpec {
    events: &EVENTS,
    codes: &CODES,
    cloud: None,
    disconnects: &DISCONNECTS,
};

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

/// The canonical name of an event written either way (`messages.update`, `MESSAGES_UPDATE`).
pub fn event_name(s: &str) -> &'static str {
    let norm = |s: &str| -> String {
        s.trim()
            .chars()
            .map(|c| match c {
                '.' | '-' => '_',
                c => c.to_ascii_lowercase(),
            })
            .collect()
    };
    let given = norm(s);
    EVENTS[..EVENTS.len() - 2]
        .iter()
        .copied()
        .find(|k| norm(k) == given)
        .unwrap_or(flow::OTHER)
}

/// The message a `messages.update` is about: v2 names it `keyId` (or `key.id`); v1 spreads the
/// Baileys key into `data`, so its id is `data.id` (its `datetime`, `owner` and `remoteJid` sit
/// beside it).
fn updated_message(data: &Map<String, Value>) -> Option<MessageKey> {
    let key_id = data
        .get("key")
        .and_then(Value::as_object)
        .and_then(|k| k.get("id"));
    MessageKey::of_value(data.get("keyId"))
        .or_else(|| MessageKey::of_value(key_id))
        .or_else(|| MessageKey::of_value(data.get("id")))
}

/// One envelope; `None` when it is not an object with an `event`.
pub fn push(v: &Value) -> Option<Push> {
    let o = v.as_object()?;
    let name = event_name(o.get("event")?.as_str()?);
    let empty = Map::new();
    let data = o.get("data").and_then(Value::as_object).unwrap_or(&empty);
    let mut e = Event::named(name);
    e.replay = replay_key(name, data);
    let mut disconnect = None;
    match name {
        "connection.update" => {
            let state = super::State::from_text(data.get("state").and_then(Value::as_str));
            if state != super::State::Unknown {
                e.state = Some(state.as_str());
                e.connected = Some(state == super::State::Open);
            }
            if matches!(state, super::State::Close | super::State::Refused) {
                disconnect = Some(disconnect_code(data.get("statusReason")));
            }
        }
        "status.instance" => {
            let status = data.get("status").and_then(Value::as_str).map(str::trim);
            if status.is_some_and(|s| s.eq_ignore_ascii_case("closed") || s == "removed") {
                e.connected = Some(false);
                e.state = Some(super::State::Close.as_str());
            }
            e.timestamp = iso_time(data.get("disconnectionAt"));
        }
        "messages.upsert" | "send.message" => {
            let key = data.get("key").and_then(Value::as_object);
            let own = key
                .and_then(|k| k.get("fromMe"))
                .and_then(crate::json::boolean);
            e.timestamp = flow::unix_time(data.get("messageTimestamp"));
            let id = MessageKey::of_value(key.and_then(|k| k.get("id")));
            if name == "send.message" {
                e.accepted = true;
                e.messages = id.into_iter().collect();
            } else if own == Some(true) {
                e.status = Some(MessageStatus::Sent);
                e.messages = id.into_iter().collect();
            } else {
                e.received = 1;
                // Baileys carries a plain text as `conversation`, a text with a preview or a
                // reply as `extendedTextMessage.text`; only a canary's nonce is read from it.
                let message = data.get("message");
                let text = message
                    .and_then(|m| m.get("conversation"))
                    .or_else(|| {
                        message
                            .and_then(|m| m.get("extendedTextMessage"))
                            .and_then(|x| x.get("text"))
                    })
                    .and_then(Value::as_str);
                // markMessageAsRead names a message by its key's remoteJid and id, and skips a
                // remoteJid in `@lid` form: the number's own JID is then in `remoteJidAlt`.
                let k = |f: &str| key.and_then(|k| k.get(f)).and_then(Value::as_str);
                let chat = k("remoteJid")
                    .filter(|j| !j.ends_with("@lid"))
                    .or_else(|| k("remoteJidAlt"));
                e.canary = flow::CanaryArrival::of(text, chat, k("id"));
            }
        }
        "messages.update" => {
            let own = data.get("fromMe").and_then(crate::json::boolean);
            // An update of a message the number received (it read it) is no outgoing status.
            if own != Some(false) {
                let s = status(data.get("status"));
                e.status = Some(s);
                if s == MessageStatus::Failed {
                    e.errors.push("ERROR");
                }
                e.messages = updated_message(data).into_iter().collect();
            }
        }
        "logout.instance" | "remove.instance" => e.connected = Some(false),
        _ => {}
    }
    let instance = pushed_name(o.get("instance")).or_else(|| pushed_name(data.get("instance")));
    Some(Push {
        instance,
        event: e,
        disconnect,
    })
}

/// What makes a message's event the same event: its key id, with the event and the status.
/// Evolution gives other events no id, and they are never taken for replays.
fn replay_key(name: &str, data: &Map<String, Value>) -> Option<ReplayKey> {
    let key_id = data
        .get("key")
        .and_then(Value::as_object)
        .and_then(|k| k.get("id"));
    let id = match name {
        "messages.upsert" | "send.message" => key_id,
        "messages.update" => data.get("keyId").or(key_id).or_else(|| data.get("id")),
        _ => None,
    };
    let status = match data.get("status") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    ReplayKey::of_value(id, &[name, &status])
}

/// A `messages.update` status: the names of Evolution's `renderStatus`, or their numbers.
pub fn status(v: Option<&Value>) -> MessageStatus {
    let name = match v {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => "ERROR",
            Some(2) => "SERVER_ACK",
            Some(3) => "DELIVERY_ACK",
            Some(4) => "READ",
            Some(5) => "PLAYED",
            _ => "",
        },
        Some(Value::String(s)) => s.trim(),
        _ => "",
    };
    match name.to_ascii_uppercase().as_str() {
        "SERVER_ACK" => MessageStatus::Sent,
        "DELIVERY_ACK" => MessageStatus::Delivered,
        "READ" => MessageStatus::Read,
        "PLAYED" => MessageStatus::Played,
        "ERROR" => MessageStatus::Failed,
        _ => MessageStatus::Other,
    }
}

/// The bounded code of a `statusReason` (a number, or a number in a string).
pub fn disconnect_code(v: Option<&Value>) -> &'static str {
    let Some(n) = v.and_then(crate::json::number) else {
        return flow::OTHER;
    };
    if n.fract() != 0.0 || !(100.0..1000.0).contains(&n) {
        return flow::OTHER;
    }
    flow::known(&DISCONNECTS[..DISCONNECTS.len() - 1], &format!("{n:.0}"))
}

/// An ISO 8601 time in UTC (`2025-10-21T14:40:39.123Z`) in Unix seconds.
pub fn iso_time(v: Option<&Value>) -> Option<f64> {
    let s = v?.as_str()?.trim();
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let secs = t.unix_timestamp() as f64 + f64::from(t.millisecond()) / 1000.0;
    flow::unix_time(Some(&Value::from(secs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/webhooks/evolution/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let f: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        serde_json::to_vec(&f["body"]).unwrap()
    }

    fn one(name: &str) -> Push {
        let b = parse(&fixture(name)).unwrap();
        assert_eq!((b.unparsed, b.items.len()), (0, 1), "{name}");
        let p = b.items[0].clone();
        assert_eq!(p.instance.as_deref(), Some("my-instance"), "{name}");
        p
    }

    #[test]
    fn connection_states_and_disconnections() {
        let open = one("connection_update_open");
        assert_eq!(open.event.name, "connection.update");
        assert_eq!(
            (open.event.connected, open.event.state, open.disconnect),
            (Some(true), Some("open"), None)
        );
        let connecting = one("connection_update_connecting");
        assert_eq!(connecting.event.connected, Some(false));
        assert_eq!(connecting.disconnect, None);
        let out = one("connection_update_close_logged_out");
        assert_eq!(out.event.connected, Some(false));
        assert_eq!(out.disconnect, Some("401"));
        let refused = one("connection_update_refused");
        assert_eq!(
            (refused.event.state, refused.disconnect),
            (Some("refused"), Some("428"))
        );
        let closed = one("status_instance_closed");
        assert_eq!(closed.event.name, "status.instance");
        assert_eq!(closed.event.connected, Some(false));
        assert_eq!(closed.disconnect, None, "the close that follows counts it");
        assert_eq!(closed.event.timestamp, Some(1761057639.123));
    }

    #[test]
    fn reason_codes_are_bounded() {
        let v = |j: &str| serde_json::from_str::<Value>(j).unwrap();
        assert_eq!(disconnect_code(Some(&v("515"))), "515");
        assert_eq!(disconnect_code(Some(&v("\"440\""))), "440");
        assert_eq!(disconnect_code(Some(&v("200"))), "other");
        assert_eq!(disconnect_code(Some(&v("401.5"))), "other");
        assert_eq!(disconnect_code(Some(&v("\"5511999999999\""))), "other");
        assert_eq!(disconnect_code(None), "other");
    }

    #[test]
    fn event_names_either_way() {
        assert_eq!(event_name("CONNECTION_UPDATE"), "connection.update");
        assert_eq!(event_name("messages.update"), "messages.update");
        assert_eq!(event_name("SEND_MESSAGE"), "send.message");
        assert_eq!(event_name("contacts.upsert"), "other");
        let upper = r#"{"event":"MESSAGES_UPDATE","instance":"a","data":{"keyId":"K","fromMe":true,"status":"READ"}}"#;
        let p = parse(upper.as_bytes()).unwrap().items.remove(0);
        assert_eq!(p.event.status, Some(MessageStatus::Read));
    }

    #[test]
    fn documented_statuses() {
        for (f, want) in [
            ("messages_update_server_ack", MessageStatus::Sent),
            ("messages_update_delivery_ack", MessageStatus::Delivered),
            ("messages_update_read", MessageStatus::Read),
            ("messages_update_played", MessageStatus::Played),
        ] {
            let e = one(f).event;
            assert_eq!((e.name, e.status), ("messages.update", Some(want)), "{f}");
            assert_eq!(
                e.messages,
                vec![MessageKey::of("BAE594145F4C59B4").unwrap()]
            );
            assert_eq!(e.timestamp, None, "no time in messages.update");
        }
        let v1 = one("messages_update_v1_delivery_ack").event;
        assert_eq!(v1.status, Some(MessageStatus::Delivered));
        assert_eq!(
            v1.messages,
            vec![MessageKey::of("BAE594145F4C59B4").unwrap()]
        );
        assert!(v1.replay.is_some(), "a v1 update is known again by its id");
        let failed = parse(br#"{"event":"messages.update","data":{"keyId":"K","status":"ERROR"}}"#)
            .unwrap()
            .items
            .remove(0);
        assert_eq!(failed.event.status, Some(MessageStatus::Failed));
        assert_eq!(failed.event.errors, vec!["ERROR"]);
        assert_eq!(failed.instance, None);
        let theirs = parse(
            br#"{"event":"messages.update","data":{"keyId":"K","fromMe":false,"status":"READ"}}"#,
        )
        .unwrap();
        assert_eq!(theirs.items[0].event.status, None);
    }

    #[test]
    fn a_canary_nonce_is_read_from_a_received_text_only() {
        assert_eq!(one("messages_upsert_text").event.canary, None);
        let text = flow::canary_text(0xab);
        for body in [
            format!(
                r#"{{"event":"messages.upsert","data":{{"key":{{"remoteJid":"553198296801@s.whatsapp.net","fromMe":false,"id":"X"}},"message":{{"conversation":"{text}"}}}}}}"#
            ),
            format!(
                r#"{{"event":"messages.upsert","data":{{"key":{{"remoteJid":"553198296801@s.whatsapp.net","fromMe":false,"id":"X"}},"message":{{"extendedTextMessage":{{"text":"{text}"}}}}}}}}"#
            ),
        ] {
            let e = parse(body.as_bytes()).unwrap().items.remove(0).event;
            assert_eq!(
                e.canary.as_deref().map(|a| a.parts()),
                Some((0xab, Some("553198296801@s.whatsapp.net"), Some("X")))
            );
        }
        let lid = format!(
            r#"{{"event":"messages.upsert","data":{{"key":{{"remoteJid":"123456789012345@lid","remoteJidAlt":"553198296801@s.whatsapp.net","fromMe":false,"id":"X"}},"message":{{"conversation":"{text}"}}}}}}"#
        );
        let e = parse(lid.as_bytes()).unwrap().items.remove(0).event;
        assert_eq!(
            e.canary.as_deref().map(|a| a.parts().1),
            Some(Some("553198296801@s.whatsapp.net")),
            "markMessageAsRead skips @lid chats"
        );
        let own = format!(
            r#"{{"event":"messages.upsert","data":{{"key":{{"fromMe":true,"id":"X"}},"message":{{"conversation":"{text}"}}}}}}"#
        );
        assert_eq!(parse(own.as_bytes()).unwrap().items[0].event.canary, None);
    }

    #[test]
    fn messages_in_and_out() {
        let r = one("messages_upsert_text").event;
        assert_eq!((r.received, r.status), (1, None));
        assert_eq!(r.timestamp, Some(1761057639.0));
        let s = one("send_message").event;
        assert!(s.accepted && s.status.is_none());
        assert_eq!(
            s.messages,
            vec![MessageKey::of("BAE594145F4C59B4").unwrap()]
        );
        let own = parse(
            br#"{"event":"messages.upsert","data":{"key":{"fromMe":true,"id":"X1"},"messageTimestamp":1761057639}}"#,
        )
        .unwrap();
        assert_eq!(own.items[0].event.status, Some(MessageStatus::Sent));
        assert_eq!(own.items[0].event.received, 0);
        let qr = one("qrcode_updated").event;
        assert_eq!((qr.name, qr.connected), ("qrcode.updated", None));
        assert_eq!(one("qrcode_limit_reached").event.name, "qrcode.updated");
    }

    #[test]
    fn mixed_batches_are_read_entry_by_entry() {
        let body = format!(
            "[{}, 7, {{\"no\":\"event\"}}, {{\"event\":\"contacts.update\"}}]",
            String::from_utf8(fixture("messages_update_read")).unwrap()
        );
        let b = parse(body.as_bytes()).unwrap();
        assert_eq!(b.unparsed, 2);
        let names: Vec<_> = b.items.iter().map(|p| p.event.name).collect();
        assert_eq!(names, ["messages.update", "other"]);
        assert_eq!(parse(b"{\"a\":1}"), Err(Refused::UnknownEvent));
        assert_eq!(parse(b"{\"event\":"), Err(Refused::InvalidJson));
    }

    #[test]
    fn nothing_private_is_kept() {
        for f in [
            "messages_upsert_text",
            "send_message",
            "status_instance_closed",
            "connection_update_open",
        ] {
            let kept = format!("{:?}", parse(&fixture(f)).unwrap());
            for private in [
                "5511999999999",
                "5511988887777",
                "BAE594145F4C59B4",
                "3A5FD0A1C2B3D4E5F607",
                "B3844804-481D-47A4-B69C-F14B4206EB56",
                "Hello",
                "Contact Name",
            ] {
                assert!(!kept.contains(private), "{f}: {private} in {kept}");
            }
        }
    }

    #[test]
    fn a_message_event_is_known_again_by_its_key_id_and_status() {
        let key = |body: &str| parse(body.as_bytes()).unwrap().items[0].event.replay;
        let update = r#"{"event":"messages.update","instance":"i","data":{"keyId":"3EB0A","fromMe":true,"status":"DELIVERY_ACK"}}"#;
        assert!(key(update).is_some());
        assert_eq!(key(update), key(update));
        assert_ne!(key(update), key(&update.replace("DELIVERY_ACK", "READ")));
        assert_ne!(key(update), key(&update.replace("3EB0A", "3EB0B")));
        let sent = r#"{"event":"send.message","instance":"i","data":{"key":{"id":"3EB0A","fromMe":true}}}"#;
        assert!(key(sent).is_some());
        assert_ne!(key(update), key(sent), "another event of the message");
        let state = r#"{"event":"connection.update","instance":"i","data":{"state":"close","statusReason":401}}"#;
        assert_eq!(key(state), None, "no id, never a replay");
    }
}
