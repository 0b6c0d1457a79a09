//! The notification queue: what a notification says, the counters kept of them, and the memory
//! of receipts that makes counting exactly once.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::{webhook, GreenApiFamily, InstanceState, BACKOFF_FIRST, BACKOFF_MAX, DELAY_BUCKETS};
use crate::clock::unix_seconds;
use crate::error::PollError;
use crate::exposition::{FragmentWriter, Histogram};
use crate::flow::{Event, ReplayKey};

crate::labels::closed_set! {
    /// The `typeWebhook` of a notification; anything else is `other`.
    pub enum WebhookType {
        IncomingMessageReceived => "incomingMessageReceived",
        OutgoingMessageReceived => "outgoingMessageReceived",
        OutgoingApiMessageReceived => "outgoingAPIMessageReceived",
        OutgoingMessageStatus => "outgoingMessageStatus",
        StateInstanceChanged => "stateInstanceChanged",
        /// Documented as deprecated (the socket's online/offline), still listed.
        StatusInstanceChanged => "statusInstanceChanged",
        DeviceInfo => "deviceInfo",
        IncomingCall => "incomingCall",
        IncomingBlock => "incomingBlock",
        QuotaExceeded => "quotaExceeded",
        Other => "other",
    }
}

impl WebhookType {
    pub fn from_text(s: Option<&str>) -> Self {
        s.and_then(|s| crate::labels::find_ignoring_case(s.trim()))
            .unwrap_or(WebhookType::Other)
    }
}

crate::labels::closed_set! {
    /// The `status` of an outgoingMessageStatus notification; anything else is `other`.
    pub enum MessageStatus {
        Sent => "sent",
        Delivered => "delivered",
        Read => "read",
        Failed => "failed",
        NoAccount => "noAccount",
        NotInGroup => "notInGroup",
        YellowCard => "yellowCard",
        Other => "other",
    }
}

impl MessageStatus {
    pub fn from_text(s: &str) -> Self {
        crate::labels::find_ignoring_case(s.trim()).unwrap_or(MessageStatus::Other)
    }
}

/// What the exporter keeps of a notification: nothing of the message, its sender or its chat.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub receipt_id: u64,
    pub kind: WebhookType,
    /// Unix seconds, when the notification says.
    pub timestamp: Option<f64>,
    /// outgoingMessageStatus only.
    pub status: Option<MessageStatus>,
    /// stateInstanceChanged only.
    pub state: Option<InstanceState>,
    /// The same notification as the webhook reader sees it, for the message-flow families.
    pub event: Event,
}

/// Only the fields the metrics need are read; serde skips the rest (message text, senderData,
/// chat ids) without keeping them.
#[derive(Debug, Deserialize)]
struct NotificationEnvelope {
    #[serde(default, rename = "receiptId")]
    receipt_id: Option<ReceiptId>,
    #[serde(default, deserialize_with = "object_or_nothing")]
    body: Option<NotificationBody>,
}

/// Reads `body` when it is an object and skips anything else, without buffering it (an untagged
/// enum would hold the whole message in memory to try each shape).
fn object_or_nothing<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<NotificationBody>, D::Error> {
    struct Lenient;
    impl<'de> serde::de::Visitor<'de> for Lenient {
        type Value = Option<NotificationBody>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a notification body")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            NotificationBody::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                .map(Some)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Lenient)
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ReceiptId {
    Number(u64),
    Text(String),
    Other(serde::de::IgnoredAny),
}

#[derive(Debug, Default, Deserialize)]
struct NotificationBody {
    #[serde(default, rename = "typeWebhook")]
    type_webhook: Option<serde_json::Value>,
    #[serde(default)]
    timestamp: Option<serde_json::Value>,
    #[serde(default)]
    status: Option<serde_json::Value>,
    #[serde(default, rename = "stateInstance")]
    state_instance: Option<serde_json::Value>,
    /// Kept only to be hashed into a message key.
    #[serde(default, rename = "idMessage")]
    id_message: Option<serde_json::Value>,
    /// Read only for its leading error id (`SWE004: ...`).
    #[serde(default)]
    description: Option<serde_json::Value>,
    /// Read only for a canary's nonce.
    #[serde(default, rename = "messageData")]
    message_data: Option<serde_json::Value>,
    /// Read only for a canary's chat.
    #[serde(default, rename = "senderData")]
    sender_data: Option<serde_json::Value>,
}

/// Parses a `receiveNotification` answer: `null` is an empty queue. Without a usable
/// `receiptId` the notification cannot be deleted, so it is an invalid answer; a body of an
/// unexpected shape is still a notification, of type `other`, that must leave the queue.
pub fn parse_notification(body: &[u8]) -> Result<Option<Notification>, PollError> {
    let r: Option<NotificationEnvelope> =
        serde_json::from_slice(body).map_err(|e| PollError::from_json(&e))?;
    let Some(r) = r else {
        return Ok(None);
    };
    let receipt_id = match r.receipt_id {
        Some(ReceiptId::Number(n)) => Some(n),
        Some(ReceiptId::Text(s)) => s.trim().parse().ok(),
        Some(ReceiptId::Other(_)) | None => None,
    }
    .ok_or_else(|| PollError::InvalidResponse("the notification has no usable receiptId".into()))?;
    let b = r.body.unwrap_or_default();
    let text =
        |v: &Option<serde_json::Value>| v.as_ref().and_then(|v| v.as_str().map(str::to_owned));
    let kind = WebhookType::from_text(text(&b.type_webhook).as_deref());
    let status = (kind == WebhookType::OutgoingMessageStatus)
        .then(|| MessageStatus::from_text(text(&b.status).as_deref().unwrap_or("")));
    let state = (kind == WebhookType::StateInstanceChanged)
        .then(|| text(&b.state_instance).map(|s| InstanceState::from_text(&s)))
        .flatten();
    let timestamp = b.timestamp.as_ref().and_then(crate::json::number);
    fn s(v: &Option<serde_json::Value>) -> Option<&str> {
        v.as_ref().and_then(|v| v.as_str())
    }
    let mut event = webhook::event(webhook::Fields {
        kind: s(&b.type_webhook),
        timestamp: b.timestamp.as_ref(),
        id: s(&b.id_message),
        status: s(&b.status),
        description: s(&b.description),
        state: s(&b.state_instance),
        text: webhook::message_text(b.message_data.as_ref()),
        chat: webhook::sender_chat(b.sender_data.as_ref()),
    });
    // The queue names each notification by its receipt: given again, it is the same one.
    event.replay = ReplayKey::of(&receipt_id.to_string(), &["receipt"]);
    Ok(Some(Notification {
        receipt_id,
        kind,
        timestamp,
        status,
        state,
        event,
    }))
}

#[derive(Debug, Deserialize)]
struct DeleteResponse {
    #[serde(default, deserialize_with = "crate::json::lenient_bool")]
    result: Option<bool>,
}

/// Parses a `deleteNotification` answer: `result: false` means the notification stays queued.
pub fn parse_delete(body: &[u8]) -> Result<(), PollError> {
    let r: Option<DeleteResponse> =
        serde_json::from_slice(body).map_err(|e| PollError::from_json(&e))?;
    match r.and_then(|r| r.result) {
        Some(false) => Err(PollError::InvalidResponse(
            "the gateway did not delete the notification".into(),
        )),
        _ => Ok(()),
    }
}

/// The queue's own series, kept between polls; what notifications say goes to the message-flow
/// families of the gateway.
#[derive(Debug)]
pub(super) struct QueueStats {
    /// Set once the consumer runs: only then are the series written.
    running: bool,
    delay: Histogram,
}

impl Default for QueueStats {
    fn default() -> Self {
        QueueStats {
            running: false,
            delay: Histogram::new(&DELAY_BUCKETS),
        }
    }
}

impl QueueStats {
    pub(super) fn start(&mut self) {
        self.running = true;
    }

    pub(super) fn count(&mut self, n: &Notification, now: SystemTime) {
        if let Some(ts) = n.timestamp {
            self.delay.observe(delay_seconds(ts, now));
        }
    }

    pub(super) fn write(&self, w: &mut FragmentWriter) {
        if !self.running {
            return;
        }
        w.histogram(GreenApiFamily::NotificationDelay, &[], &self.delay);
    }
}

/// Receipt time minus the notification's own time; a clock ahead of ours gives 0, not a negative.
pub fn delay_seconds(timestamp: f64, now: SystemTime) -> f64 {
    (unix_seconds(now) - timestamp).max(0.0)
}

/// The last receipts counted, to recognise a notification handed out again.
#[derive(Debug)]
pub struct RecentReceipts {
    order: VecDeque<u64>,
    seen: HashSet<u64>,
    cap: usize,
}

impl RecentReceipts {
    pub fn new(cap: usize) -> Self {
        RecentReceipts {
            order: VecDeque::with_capacity(cap),
            seen: HashSet::with_capacity(cap),
            cap: cap.max(1),
        }
    }

    /// How many receipts are remembered.
    pub fn len(&self) -> usize {
        debug_assert_eq!(self.order.len(), self.seen.len());
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Remembers `id`; false when it was remembered already.
    pub fn insert(&mut self, id: u64) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        if self.order.len() == self.cap {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(id);
        true
    }
}

/// Exponential backoff after failures.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }
}

impl Backoff {
    /// The wait after a failure: what the gateway asked for (at least a second), else the next
    /// step of the backoff.
    pub fn fail(&mut self, retry_after: Option<Duration>) -> Duration {
        if let Some(r) = retry_after {
            return r.max(BACKOFF_FIRST);
        }
        let step = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        step
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }
}
