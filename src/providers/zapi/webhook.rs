//! Z-API and PlugzAPI callbacks (`POST /webhooks/<gateway>?secret=S`), read leniently.
//!
//! The discriminator is `type` (Z-API docs, `webhooks/*.mdx`): ConnectedCallback,
//! DisconnectedCallback, MessageStatusCallback (`status`, `ids[]`), DeliveryCallback
//! (`messageId`, `error`/`errorCode` on failure only), ReceivedCallback (`fromMe`),
//! PresenceChatCallback. `momment` is milliseconds in most callbacks and seconds in the
//! documented DisconnectedCallback: both are read. A body is one callback or a list of them.
//!
//! Z-API documents a single error code, `SHADOW_BAN`; every other failure comes as free text.
//! The documented texts are grouped into a few bounded codes (see [`error_code`]); the text itself
//! is never kept.

use serde_json::Value;

use crate::flow::{self, Batch, Event, FlowSpec, MessageKey, MessageStatus, Refused, ReplayKey};

/// Event names, as Z-API writes `type`.
pub static EVENTS: [&str; 8] = [
    "ConnectedCallback",
    "DisconnectedCallback",
    "MessageStatusCallback",
    "DeliveryCallback",
    "ReceivedCallback",
    "PresenceChatCallback",
    flow::OTHER,
    flow::UNPARSED,
];

/// Error codes: Z-API's one documented `errorCode`, then groups of its documented error texts.
pub static CODES: [&str; 7] = [
    "SHADOW_BAN",
    "rejected",
    "no_permission",
    "timeout",
    "invalid_number",
    "invalid_media",
    flow::OTHER,
];

pub static SPEC: FlowSpec = FlowSpec {
    events: &EVENTS,
    codes: &CODES,
    cloud: None,
    disconnects: &[],
};

/// The events of a body: one callback, or a list of them.
pub fn parse(body: &[u8]) -> Result<Batch, Refused> {
    parse_value(&flow::json(body)?)
}

/// The events of a body already read as JSON.
pub fn parse_value(v: &Value) -> Result<Batch, Refused> {
    let mut batch = Batch::default();
    for entry in flow::entries(v) {
        match event(entry) {
            Some(e) => batch.items.push(e),
            None => batch.unparsed += 1,
        }
    }
    if batch.items.is_empty() {
        return Err(Refused::UnknownEvent);
    }
    Ok(batch)
}

/// One callback; `None` when it is not an object with a `type`.
pub fn event(v: &Value) -> Option<Event> {
    let o = v.as_object()?;
    let kind = o.get("type")?.as_str()?.trim();
    let mut e = Event::named(flow::known(&EVENTS[..6], kind));
    e.timestamp = flow::unix_time(o.get("momment").or_else(|| o.get("moment")));
    e.replay = replay_key(o, kind);
    match e.name {
        "ConnectedCallback" => e.connected = Some(true),
        "DisconnectedCallback" => e.connected = Some(false),
        "MessageStatusCallback" => {
            e.status = Some(status(o.get("status").and_then(Value::as_str)));
            e.messages = match o.get("ids") {
                Some(Value::Array(ids)) => ids
                    .iter()
                    .filter_map(|id| MessageKey::of_value(Some(id)))
                    .collect(),
                _ => MessageKey::of_value(o.get("messageId"))
                    .into_iter()
                    .collect(),
            };
        }
        "DeliveryCallback" => {
            e.messages = MessageKey::of_value(o.get("messageId"))
                .into_iter()
                .collect();
            let error = o.get("error").and_then(Value::as_str).map(str::trim);
            let code = o.get("errorCode").and_then(Value::as_str).map(str::trim);
            match (
                error.filter(|s| !s.is_empty()),
                code.filter(|s| !s.is_empty()),
            ) {
                (None, None) => e.accepted = true,
                (text, code) => {
                    e.status = Some(MessageStatus::Failed);
                    e.errors.push(error_code(code, text));
                }
            }
        }
        "ReceivedCallback" => {
            let own = o.get("fromMe").and_then(crate::json::boolean) == Some(true);
            let message = !own && !is_notification(o);
            e.received = u32::from(message);
            if message {
                // `phone` is the chat (the sender) and `messageId` the message, as read-message
                // names them; kept for a canary's message only.
                let text = o.get("text").and_then(|t| t.get("message"));
                let s = |k: &str| o.get(k).and_then(Value::as_str);
                e.canary = flow::CanaryArrival::of(
                    text.and_then(Value::as_str),
                    s("phone"),
                    s("messageId"),
                );
            }
        }
        _ => {}
    }
    Some(e)
}

/// A ReceivedCallback with a `notification` (CALL_MISSED_VOICE, MEMBERSHIP_APPROVAL_REQUEST,
/// GROUP_PARTICIPANT_ADD, ...) is a WhatsApp system notice, no message anyone sent the number:
/// counted as an event, never as received, as a missed call would otherwise pass for traffic.
fn is_notification(o: &serde_json::Map<String, Value>) -> bool {
    o.get("notification")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.trim().is_empty())
}

/// What makes a callback the same callback: the message ids it names (`messageId`, or a status
/// callback's `ids`), its type, status, time and error. Callbacks without a message id are never
/// taken for replays.
fn replay_key(o: &serde_json::Map<String, Value>, kind: &str) -> Option<ReplayKey> {
    let ids: Vec<&str> = match o.get("ids") {
        Some(Value::Array(ids)) => ids.iter().filter_map(Value::as_str).collect(),
        _ => o
            .get("messageId")
            .and_then(Value::as_str)
            .into_iter()
            .collect(),
    };
    let (first, rest) = ids.split_first()?;
    let text = |k: &str| match o.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    // The time and the error keep apart two callbacks of one message that differ in them.
    let said = [
        text("status"),
        text("momment"),
        text("moment"),
        text("errorCode"),
        text("error"),
        ids.len().to_string(),
    ];
    let mut parts = vec![kind];
    parts.extend(said.iter().map(String::as_str));
    parts.extend(rest);
    ReplayKey::of(first, &parts)
}

/// A MessageStatusCallback `status`: RECEIVED is delivery to the phone; READ_BY_ME (the connected
/// number read an incoming message) is no outgoing status.
pub fn status(s: Option<&str>) -> MessageStatus {
    match s.map(|s| s.trim().to_ascii_uppercase()).as_deref() {
        Some("SENT") => MessageStatus::Sent,
        Some("RECEIVED" | "DELIVERED") => MessageStatus::Delivered,
        Some("READ") => MessageStatus::Read,
        Some("PLAYED") => MessageStatus::Played,
        _ => MessageStatus::Other,
    }
}

/// The bounded code of a failed delivery: `errorCode` when Z-API sends one it documents, else the
/// group of the documented `error` text (on-message-send-examples.mdx), else `other`.
pub fn error_code(code: Option<&str>, text: Option<&str>) -> &'static str {
    if code.is_some_and(|c| c.eq_ignore_ascii_case("SHADOW_BAN")) {
        return "SHADOW_BAN";
    }
    let Some(t) = text.map(str::to_ascii_lowercase) else {
        return flow::OTHER;
    };
    let has = |needles: &[&str]| needles.iter().any(|n| t.contains(n));
    if has(&["shadow ban"]) {
        "SHADOW_BAN"
    } else if has(&["whatsapp rejected", "whatsapp did not allow"]) {
        "rejected"
    } else if has(&["permission", "can only be sent in groups", "accept buttons"]) {
        "no_permission"
    } else if has(&["timeout on send", "error on send message"]) {
        "timeout"
    } else if has(&["phone number does not exist", "invalid phone number"]) {
        "invalid_number"
    } else if has(&["media", "404 error", "not a valid url", "sticker format"]) {
        "invalid_media"
    } else {
        flow::OTHER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/webhooks/zapi/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let f: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        serde_json::to_vec(&f["body"]).unwrap()
    }

    fn one(name: &str) -> Event {
        let b = parse(&fixture(name)).unwrap();
        assert_eq!(b.unparsed, 0, "{name}");
        assert_eq!(b.items.len(), 1, "{name}");
        b.items[0].clone()
    }

    #[test]
    fn documented_statuses() {
        for (f, want) in [
            ("message_status_sent", MessageStatus::Sent),
            ("message_status_received", MessageStatus::Delivered),
            ("message_status_read", MessageStatus::Read),
            ("message_status_played", MessageStatus::Played),
            ("message_status_read_by_me", MessageStatus::Other),
        ] {
            let e = one(f);
            assert_eq!(e.name, "MessageStatusCallback");
            assert_eq!(e.status, Some(want), "{f}");
            assert_eq!(e.messages.len(), 1, "{f}");
            assert_eq!(e.timestamp, Some(1632234645.0), "{f}: milliseconds");
        }
    }

    #[test]
    fn delivery_success_and_failures() {
        let ok = one("delivery_ok");
        assert!(ok.accepted && ok.status.is_none() && ok.errors.is_empty());
        assert_eq!(ok.messages.len(), 1);
        let failed = one("delivery_error");
        assert_eq!(failed.status, Some(MessageStatus::Failed));
        assert_eq!(failed.errors.len(), 1);
        assert!(CODES.contains(&failed.errors[0]));
        let shadow = one("delivery_error_shadow_ban");
        assert_eq!(shadow.errors, vec!["SHADOW_BAN"]);
        assert_eq!(
            error_code(None, Some("Phone number does not exist")),
            "invalid_number"
        );
        assert_eq!(
            error_code(None, Some("Whatsapp rejected sending this message")),
            "rejected"
        );
        assert_eq!(error_code(None, Some("Timeout on send message")), "timeout");
        assert_eq!(
            error_code(None, Some("Got a 404 error while trying to send message")),
            "invalid_media"
        );
        assert_eq!(
            error_code(Some("NEW_CODE"), Some("something new")),
            flow::OTHER
        );
    }

    #[test]
    fn connection_pushes() {
        let c = one("connected");
        assert_eq!(c.connected, Some(true));
        assert_eq!(c.timestamp, None, "the documented value fits no unit");
        let d = one("disconnected");
        assert_eq!(d.connected, Some(false));
        assert_eq!(d.timestamp, Some(1580163342.0), "seconds in this callback");
    }

    #[test]
    fn received_messages() {
        let r = one("received_text");
        assert_eq!((r.name, r.received), ("ReceivedCallback", 1));
        assert_eq!(one("received_image").received, 1);
        let own = parse(br#"{"type":"ReceivedCallback","fromMe":true}"#).unwrap();
        assert_eq!(own.items[0].received, 0, "sent from the phone");
        assert_eq!(r.canary, None, "an ordinary text");
        let canary = parse(
            br#"{"type":"ReceivedCallback","fromMe":false,"phone":"5544999999999","messageId":"A20DA9C0183A2D35A260F53F5D2B9244","text":{"message":"whatsapp_exporter canary 00000000000000ff"}}"#,
        )
        .unwrap();
        let a = canary.items[0].canary.as_deref().unwrap();
        assert_eq!(a.nonce, 255);
        assert_eq!(a.chat.as_ref().unwrap().expose(), "5544999999999");
        assert_eq!(
            a.id.as_ref().unwrap().expose(),
            "A20DA9C0183A2D35A260F53F5D2B9244"
        );
        let shown = format!("{canary:?}");
        assert!(!shown.contains("whatsapp_exporter") && !shown.contains("5544999999999"));
    }

    #[test]
    fn notifications_are_events_not_received_messages() {
        for f in [
            "received_notification_call_missed_voice",
            "received_notification_membership_approval_request",
        ] {
            let e = one(f);
            assert_eq!((e.name, e.received), ("ReceivedCallback", 0), "{f}");
            assert_eq!(e.canary, None, "{f}");
        }
        let blank = parse(br#"{"type":"ReceivedCallback","fromMe":false,"notification":null,"text":{"message":"oi"}}"#).unwrap();
        assert_eq!(
            blank.items[0].received, 1,
            "a null notification is a message"
        );
    }

    #[test]
    fn mixed_batches_are_read_entry_by_entry() {
        let body = format!(
            "[{}, 7, {{\"no\":\"type\"}}, {{\"type\":\"SomethingNew\"}}]",
            String::from_utf8(fixture("message_status_read")).unwrap()
        );
        let b = parse(body.as_bytes()).unwrap();
        assert_eq!(b.unparsed, 2);
        let names: Vec<_> = b.items.iter().map(|e| e.name).collect();
        assert_eq!(names, ["MessageStatusCallback", "other"]);
        assert_eq!(parse(b"{\"a\":1}"), Err(Refused::UnknownEvent));
        assert_eq!(parse(b"[]"), Err(Refused::UnknownEvent));
        assert_eq!(parse(b"{\"type\":"), Err(Refused::InvalidJson));
    }

    #[test]
    fn nothing_private_is_kept() {
        for f in ["received_text", "delivery_error", "message_status_read"] {
            let kept = format!("{:?}", parse(&fixture(f)).unwrap());
            for private in [
                "5544999999999",
                "A20DA9C0183A2D35A260F53F5D2B9244",
                "test",
                "999999999999999999999",
            ] {
                assert!(!kept.contains(private), "{f}: {private} in {kept}");
            }
        }
    }

    #[test]
    fn a_callback_is_known_again_by_its_ids_type_and_status() {
        let key = |body: &str| parse(body.as_bytes()).unwrap().items[0].replay;
        let read = r#"{"type":"MessageStatusCallback","status":"READ","ids":["A","B"],"momment":1632234645000}"#;
        assert!(key(read).is_some());
        assert_eq!(key(read), key(read));
        assert_ne!(key(read), key(&read.replace("READ", "PLAYED")));
        assert_ne!(key(read), key(&read.replace(r#"["A","B"]"#, r#"["A"]"#)));
        let error =
            r#"{"type":"DeliveryCallback","messageId":"A","error":"x","momment":1632234645000}"#;
        assert_ne!(
            key(error),
            key(&error.replace(r#""error":"x""#, r#""errorCode":"SHADOW_BAN""#))
        );
        let connected = r#"{"type":"ConnectedCallback","connected":true,"momment":1632234645000}"#;
        assert_eq!(key(connected), None, "no id, never a replay");
    }
}
