//! Green API webhooks (`POST /webhooks/<gateway>`, `Authorization: Bearer <webhookUrlToken>`),
//! which are the `body` of the queue's notifications: one reader serves both.
//!
//! The discriminator is `typeWebhook`; `timestamp` is Unix seconds; `idMessage` names the message
//! of outgoing events and statuses. outgoingMessageStatus `status` is sent, delivered, read,
//! failed, noAccount, notInGroup or yellowCard (green-api.com/en/docs/api/receiving/
//! notifications-format/outgoing-message/OutgoingMessageStatus); the last three are failures and
//! become error codes, as does the documented error id `SWE004` at the start of `description`.

use serde_json::Value;

use super::InstanceState;
use crate::flow::{self, Batch, Event, FlowSpec, MessageKey, MessageStatus, Refused, ReplayKey};

/// `typeWebhook` values: those of the official SDKs (NotificationMapper.java of
/// whatsapp-api-client-java and of whatsapp-api-webhook-server-java).
pub static EVENTS: [&str; 15] = [
    "incomingMessageReceived",
    "outgoingMessageReceived",
    "outgoingAPIMessageReceived",
    "outgoingMessageStatus",
    "stateInstanceChanged",
    "statusInstanceChanged",
    "deviceInfo",
    "incomingCall",
    "outgoingCall",
    "incomingBlock",
    "quotaExceeded",
    "editedMessage",
    "deletedMessage",
    flow::OTHER,
    flow::UNPARSED,
];

/// Failure statuses, then the documented error id of `description`.
pub static CODES: [&str; 5] = [
    "noAccount",
    "notInGroup",
    "yellowCard",
    "SWE004",
    flow::OTHER,
];

pub static SPEC: FlowSpec = FlowSpec {
    events: &EVENTS,
    codes: &CODES,
    cloud: None,
    disconnects: &[],
};

/// The fields an event is made of, wherever they were read from.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fields<'a> {
    pub kind: Option<&'a str>,
    pub timestamp: Option<&'a Value>,
    pub id: Option<&'a str>,
    pub status: Option<&'a str>,
    pub description: Option<&'a str>,
    pub state: Option<&'a str>,
    /// An incoming message's text, read only for a canary's nonce.
    pub text: Option<&'a str>,
    /// An incoming message's chat (`senderData.chatId`), kept for a canary's message only.
    pub chat: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn of(o: &'a serde_json::Map<String, Value>) -> Self {
        let s = |k: &str| o.get(k).and_then(Value::as_str);
        Fields {
            kind: s("typeWebhook"),
            timestamp: o.get("timestamp"),
            id: s("idMessage"),
            status: s("status"),
            description: s("description"),
            state: s("stateInstance"),
            text: message_text(o.get("messageData")),
            chat: sender_chat(o.get("senderData")),
        }
    }
}

/// The events of a webhook body: one notification body, or a list of them.
pub fn parse(body: &[u8]) -> Result<Batch, Refused> {
    let v = flow::json(body)?;
    let mut batch = Batch::default();
    for entry in flow::entries(&v) {
        match entry
            .as_object()
            .map(Fields::of)
            .filter(|f| f.kind.is_some())
        {
            Some(f) => batch.items.push(event(f)),
            None => batch.unparsed += 1,
        }
    }
    if batch.items.is_empty() {
        return Err(Refused::UnknownEvent);
    }
    Ok(batch)
}

/// The chat an incoming message came in, `senderData.chatId`: what ReadChat names.
pub fn sender_chat(data: Option<&Value>) -> Option<&str> {
    data?.get("chatId").and_then(Value::as_str)
}

/// The text of an incoming message's `messageData`: `textMessageData.textMessage`, or
/// `extendedTextMessageData.text` (a text with a link preview).
pub fn message_text(data: Option<&Value>) -> Option<&str> {
    let d = data?;
    d.get("textMessageData")
        .and_then(|t| t.get("textMessage"))
        .or_else(|| d.get("extendedTextMessageData").and_then(|t| t.get("text")))
        .and_then(Value::as_str)
}

/// One notification.
pub fn event(f: Fields) -> Event {
    let kind = f.kind.map(str::trim).unwrap_or("");
    let mut e = Event::named(flow::known(&EVENTS[..13], kind));
    e.timestamp = flow::unix_time(f.timestamp);
    // A message's notification of one kind, status and time, the same again, is a retry.
    let time = match f.timestamp {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    e.replay = ReplayKey::of(f.id.unwrap_or(""), &[kind, f.status.unwrap_or(""), &time]);
    let key = || MessageKey::of(f.id.unwrap_or("")).into_iter().collect();
    match e.name {
        "incomingMessageReceived" => {
            e.received = 1;
            e.canary = flow::CanaryArrival::of(f.text, f.chat, f.id);
        }
        "outgoingAPIMessageReceived" => {
            e.accepted = true;
            e.messages = key();
        }
        "outgoingMessageStatus" => {
            let (status, code) = status(f.status.unwrap_or(""), f.description);
            e.status = Some(status);
            e.errors.extend(code);
            e.messages = key();
        }
        "stateInstanceChanged" => {
            if let Some(s) = f.state {
                let state = InstanceState::from_text(s);
                e.state = Some(state.as_str());
                e.connected = Some(state == InstanceState::Authorized);
            }
        }
        _ => {}
    }
    e
}

/// A status and, for a failure, its code.
pub fn status(s: &str, description: Option<&str>) -> (MessageStatus, Option<&'static str>) {
    match s.trim() {
        "sent" => (MessageStatus::Sent, None),
        "delivered" => (MessageStatus::Delivered, None),
        "read" => (MessageStatus::Read, None),
        "failed" => {
            let id = description.and_then(|d| d.trim().split(':').next());
            (
                MessageStatus::Failed,
                Some(flow::known(&CODES[3..4], id.unwrap_or("").trim())),
            )
        }
        failure @ ("noAccount" | "notInGroup" | "yellowCard") => {
            (MessageStatus::Failed, Some(flow::known(&CODES, failure)))
        }
        _ => (MessageStatus::Other, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/webhooks/greenapi/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let f: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        serde_json::to_vec(&f["body"]).unwrap()
    }

    fn one(name: &str) -> Event {
        let b = parse(&fixture(name)).unwrap();
        assert_eq!((b.items.len(), b.unparsed), (1, 0), "{name}");
        b.items[0].clone()
    }

    #[test]
    fn documented_statuses() {
        for (f, status, code) in [
            ("status_sent", MessageStatus::Sent, None),
            ("status_delivered", MessageStatus::Delivered, None),
            ("status_read", MessageStatus::Read, None),
            ("status_failed", MessageStatus::Failed, Some("SWE004")),
            ("status_noaccount", MessageStatus::Failed, Some("noAccount")),
            (
                "status_notingroup",
                MessageStatus::Failed,
                Some("notInGroup"),
            ),
            (
                "status_yellowcard",
                MessageStatus::Failed,
                Some("yellowCard"),
            ),
        ] {
            let e = one(f);
            assert_eq!(e.name, "outgoingMessageStatus");
            assert_eq!(e.status, Some(status), "{f}");
            assert_eq!(e.errors, code.into_iter().collect::<Vec<_>>(), "{f}");
            assert_eq!(e.messages.len(), 1, "{f}");
            assert!(e.timestamp.is_some_and(|t| t > 1.5e9), "{f}: seconds");
        }
        assert_eq!(status("failed", Some("SWE999: new")).1, Some(flow::OTHER));
        assert_eq!(status("failed", None).1, Some(flow::OTHER));
        assert_eq!(status("pending", None), (MessageStatus::Other, None));
    }

    #[test]
    fn states() {
        for (f, state, connected) in [
            ("state_authorized", "authorized", true),
            ("state_not_authorized", "notAuthorized", false),
            ("state_blocked", "blocked", false),
            ("state_starting", "starting", false),
            ("state_yellowcard", "yellowCard", false),
        ] {
            let e = one(f);
            assert_eq!(e.name, "stateInstanceChanged");
            assert_eq!(
                (e.state, e.connected),
                (Some(state), Some(connected)),
                "{f}"
            );
        }
        let s = one("state_suspended");
        assert_eq!(s.connected, Some(false));
    }

    #[test]
    fn every_documented_kind() {
        for (f, name) in [
            ("incoming_text", "incomingMessageReceived"),
            ("outgoing_message_received", "outgoingMessageReceived"),
            (
                "outgoing_api_message_received",
                "outgoingAPIMessageReceived",
            ),
            ("status_instance_online", "statusInstanceChanged"),
            ("status_instance_offline", "statusInstanceChanged"),
            ("device_info", "deviceInfo"),
            ("incoming_call", "incomingCall"),
            ("incoming_block", "incomingBlock"),
            ("quota_exceeded", "quotaExceeded"),
        ] {
            assert_eq!(one(f).name, name, "{f}");
        }
        assert_eq!(one("incoming_text").received, 1);
        assert_eq!(one("incoming_text").canary, None);
        let canary = parse(br#"{"typeWebhook":"incomingMessageReceived","idMessage":"F7AEC1B7086ECDC7E6E45923F5EDB825","senderData":{"chatId":"79001234568@c.us","sender":"79001234568@c.us"},"messageData":{"typeMessage":"extendedTextMessage","extendedTextMessageData":{"text":"whatsapp_exporter canary 000000000000abcd"}}}"#).unwrap();
        assert_eq!(
            canary.items[0].canary.as_deref().map(|a| a.parts()),
            Some((
                0xabcd,
                Some("79001234568@c.us"),
                Some("F7AEC1B7086ECDC7E6E45923F5EDB825")
            ))
        );
        let api = one("outgoing_api_message_received");
        assert!(api.accepted && api.messages.len() == 1);
        assert_eq!(one("quota_exceeded").timestamp, None);
    }

    #[test]
    fn mixed_batches() {
        let body = format!(
            "[{}, null, {{\"typeWebhook\":\"brandNew\"}}, {{\"nothing\":1}}]",
            String::from_utf8(fixture("status_read")).unwrap()
        );
        let b = parse(body.as_bytes()).unwrap();
        assert_eq!(b.unparsed, 2);
        assert_eq!(b.items[1].name, flow::OTHER);
        assert_eq!(parse(b"{\"a\":1}"), Err(Refused::UnknownEvent));
        assert_eq!(parse(b"not json"), Err(Refused::InvalidJson));
    }

    #[test]
    fn nothing_private_is_kept() {
        let kept = format!("{:?}", parse(&fixture("incoming_text")).unwrap());
        for private in ["79001234568", "@c.us", "idMessage", "senderName"] {
            assert!(!kept.contains(private), "{private} in {kept}");
        }
    }

    #[test]
    fn a_notification_is_known_again_by_its_message_kind_and_status() {
        let key = |body: &str| parse(body.as_bytes()).unwrap().items[0].replay;
        let status = r#"{"typeWebhook":"outgoingMessageStatus","timestamp":1588091580,"idMessage":"3EB0A","status":"delivered"}"#;
        assert!(key(status).is_some());
        assert_eq!(key(status), key(status));
        assert_ne!(key(status), key(&status.replace("delivered", "read")));
        assert_ne!(key(status), key(&status.replace("3EB0A", "3EB0B")));
        let state = r#"{"typeWebhook":"stateInstanceChanged","timestamp":1588091580,"stateInstance":"authorized"}"#;
        assert_eq!(key(state), None, "no id, never a replay");
    }
}
