//! Green API: the instance state from `GET /waInstance{id}/getStateInstance/{token}`, and, with
//! `notifications: consume`, the notification queue read with `receiveNotification` (a long poll)
//! and emptied with `deleteNotification/{receiptId}`.
//!
//! The token sits in the URL path, so every URL is built once in `new`, kept in a [`Secret`] and
//! never formatted into anything that is logged.
//!
//! Counting is exactly once within a process: a notification is counted when it is received and
//! its `receiptId` remembered, so one whose delete failed, and which the queue therefore hands out
//! again, is deleted again but not counted twice. Across a restart the memory of receipts is gone:
//! a notification counted but not deleted before the restart is counted again after it
//! (at least once). A stop lets a delete in flight finish for a moment to make that rare.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::plugzapi::path_segment;
use crate::config::{GatewayConfig, Notifications};
use crate::error::PollError;
use crate::exposition::{Family, FragmentWriter, Histogram};
use crate::gateway::{unix_seconds, Gateway};
use crate::http::fetch;
use crate::secret::Secret;

/// How long `receiveNotification` holds a request on an empty queue (the API allows 5..60).
pub const RECEIVE_TIMEOUT_SECS: u64 = 20;
/// An empty answer faster than this is waited out, so a server that does not hold the long poll
/// is not asked in a tight loop.
pub const MIN_EMPTY_CYCLE: Duration = Duration::from_secs(1);
/// Backoff after failures: from the first value, doubling, up to the last.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How many receipts are remembered to tell a redelivery from a new notification.
pub const RECENT_RECEIPTS: usize = 1024;
/// How long a stop waits for a delete in flight (below the exporter's shutdown grace).
const DELETE_GRACE: Duration = Duration::from_millis(500);

/// `whatsapp_greenapi_notification_delay_seconds`: the queue keeps notifications 24 h, and the
/// timestamps are whole seconds.
pub static DELAY_BUCKETS: [f64; 15] = [
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0,
    43200.0, 86400.0,
];

pub struct Source {
    client: reqwest::Client,
    /// `getStateInstance`, token included.
    state_url: Secret,
    /// `receiveNotification?receiveTimeout=…`, token included.
    receive_url: Secret,
    /// `deleteNotification/{token}/`, to be followed by the receipt id.
    delete_prefix: Secret,
    consume: bool,
    /// The gateway's timeout, for requests the consumer makes on its own.
    timeout: Duration,
    /// Boxed: the counters would make this the largest `Source` variant by far.
    stats: Box<Mutex<QueueStats>>,
}

impl Source {
    pub fn new(cfg: &GatewayConfig, client: reqwest::Client) -> Result<Self, String> {
        let (Some(instance), Some(token)) = (&cfg.instance, &cfg.token) else {
            return Err("needs instance and token".into());
        };
        let base = format!("{}/waInstance{}", cfg.url, path_segment(instance));
        let token = path_segment(token.expose());
        Ok(Source {
            client,
            state_url: Secret::new(format!("{base}/getStateInstance/{token}")),
            receive_url: Secret::new(format!(
                "{base}/receiveNotification/{token}?receiveTimeout={RECEIVE_TIMEOUT_SECS}"
            )),
            delete_prefix: Secret::new(format!("{base}/deleteNotification/{token}/")),
            consume: cfg.notifications == Notifications::Consume,
            timeout: cfg.timeout,
            stats: Box::default(),
        })
    }

    pub async fn poll(&self, timeout: Duration) -> Result<Box<dyn super::Observation>, PollError> {
        let req = self
            .client
            .get(self.state_url.expose())
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        let answer = fetch(req, timeout).await?;
        answer.check_status()?;
        Ok(Box::new(parse(&answer.body)?))
    }

    /// Whether this gateway reads (and so empties) the notification queue.
    pub fn consumes_queue(&self) -> bool {
        self.consume
    }

    /// The queue counters, once the consumer runs.
    pub fn write_kept(&self, w: &mut FragmentWriter) {
        self.stats().write(w);
    }

    fn stats(&self) -> MutexGuard<'_, QueueStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the head of the queue, waiting up to [`RECEIVE_TIMEOUT_SECS`] for one.
    async fn receive(&self) -> Result<Option<Notification>, PollError> {
        // The server holds the request for receiveTimeout: the client must wait longer.
        let timeout = Duration::from_secs(RECEIVE_TIMEOUT_SECS) + self.timeout;
        let req = self
            .client
            .get(self.receive_url.expose())
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        let answer = fetch(req, timeout).await?;
        answer.check_status()?;
        parse_notification(&answer.body)
    }

    async fn delete(&self, receipt: u64) -> Result<(), PollError> {
        let url = format!("{}{receipt}", self.delete_prefix.expose());
        let req = self
            .client
            .delete(url)
            .timeout(self.timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        let answer = fetch(req, self.timeout).await?;
        answer.check_status()?;
        parse_delete(&answer.body)
    }
}

/// Reads the queue of `gw` until `stop`, counting each notification once and deleting it.
pub async fn consume(gw: Arc<Gateway>, stop: CancellationToken) {
    let super::Source::GreenApi(src) = &gw.source else {
        return;
    };
    if !src.consume {
        return;
    }
    tracing::info!(gateway = %gw.name(), "consuming the Green API notification queue (notifications are deleted once counted)");
    src.stats().start();
    gw.rerender();
    let mut recent = RecentReceipts::new(RECENT_RECEIPTS);
    let mut backoff = Backoff::default();
    let mut failing = false;
    loop {
        let started = Instant::now();
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            r = src.receive() => r,
        };
        let outcome = match received {
            Ok(None) => Ok(MIN_EMPTY_CYCLE.saturating_sub(started.elapsed())),
            Ok(Some(n)) => {
                if recent.insert(n.receipt_id) {
                    count(&gw, src, &n);
                }
                match delete_unless_stopped(src, n.receipt_id, &stop).await {
                    Some(r) => r.map(|()| Duration::ZERO),
                    None => return,
                }
            }
            Err(e) => Err(e),
        };
        let pause = match outcome {
            Ok(pause) => {
                if std::mem::take(&mut failing) {
                    tracing::info!(gateway = %gw.name(), "notification queue readable again");
                }
                backoff.reset();
                pause
            }
            Err(e) => {
                log_failure(&gw, &e, !std::mem::replace(&mut failing, true));
                backoff.fail(e.retry_after())
            }
        };
        if !pause.is_zero() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Deletes a counted notification; on stop the delete gets a moment to finish, as one left in the
/// queue would be counted again after a restart. `None` when stopped.
async fn delete_unless_stopped(
    src: &Source,
    receipt: u64,
    stop: &CancellationToken,
) -> Option<Result<(), PollError>> {
    let del = src.delete(receipt);
    tokio::pin!(del);
    tokio::select! {
        r = &mut del => Some(r),
        _ = stop.cancelled() => {
            let _ = tokio::time::timeout(DELETE_GRACE, del).await;
            None
        }
    }
}

fn count(gw: &Gateway, src: &Source, n: &Notification) {
    src.stats().count(n, SystemTime::now());
    gw.rerender();
    if let (WebhookType::StateInstanceChanged, Some(state)) = (n.kind, n.state) {
        if is_current(gw, n.timestamp) {
            gw.push_observation(Box::new(Status { state }));
        }
    }
}

/// A state change older than the last poll is history (the queue keeps 24 h): the poll already
/// saw what came after it. Timestamps are whole seconds, hence the second of slack.
fn is_current(gw: &Gateway, timestamp: Option<f64>) -> bool {
    let last_poll = gw.state().last_success.map(unix_seconds);
    match (timestamp, last_poll) {
        (Some(ts), Some(polled)) => ts + 1.0 >= polled,
        _ => true,
    }
}

fn log_failure(gw: &Gateway, e: &PollError, first: bool) {
    if first {
        tracing::warn!(gateway = %gw.name(), reason = e.reason(), error = %e, "notification queue failed; backing off");
    } else {
        tracing::debug!(gateway = %gw.name(), reason = e.reason(), error = %e, "notification queue failed");
    }
}

/// The instance state, as `getStateInstance` and `stateInstanceChanged` tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    Authorized,
    NotAuthorized,
    Blocked,
    SleepMode,
    Starting,
    YellowCard,
    Unknown,
}

pub const STATES: [&str; 7] = [
    "authorized",
    "notAuthorized",
    "blocked",
    "sleepMode",
    "starting",
    "yellowCard",
    "unknown",
];

impl InstanceState {
    pub fn from_text(s: &str) -> Self {
        use InstanceState::*;
        [
            Authorized,
            NotAuthorized,
            Blocked,
            SleepMode,
            Starting,
            YellowCard,
        ]
        .into_iter()
        .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
        .unwrap_or(Unknown)
    }

    pub fn as_str(self) -> &'static str {
        STATES[self as usize]
    }
}

/// The answer of `getStateInstance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub state: InstanceState,
}

#[derive(Debug, Deserialize)]
struct StateResponse {
    #[serde(default, rename = "stateInstance")]
    state_instance: Option<String>,
}

/// Parses a `getStateInstance` answer; one without `stateInstance` is not a state.
pub fn parse(body: &[u8]) -> Result<Status, PollError> {
    let r: Option<StateResponse> =
        serde_json::from_slice(body).map_err(|e| PollError::from_json(&e))?;
    let state = r.and_then(|r| r.state_instance).ok_or_else(|| {
        PollError::InvalidResponse("the answer has no `stateInstance` field".into())
    })?;
    Ok(Status {
        state: InstanceState::from_text(&state),
    })
}

impl super::Observation for Status {
    fn connected(&self) -> bool {
        self.state == InstanceState::Authorized
    }

    fn write(&self, w: &mut FragmentWriter) {
        w.state_set(
            Family::GreenApiState,
            &[],
            "state",
            &STATES,
            self.state.as_str(),
        );
    }

    fn summary(&self) -> String {
        format!("state {}", self.state.as_str())
    }
}

/// The `typeWebhook` of a notification; anything else is `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookType {
    IncomingMessageReceived,
    OutgoingMessageReceived,
    OutgoingApiMessageReceived,
    OutgoingMessageStatus,
    StateInstanceChanged,
    StatusInstanceChanged,
    DeviceInfo,
    IncomingCall,
    IncomingBlock,
    QuotaExceeded,
    Other,
}

pub const WEBHOOK_TYPES: [&str; 11] = [
    "incomingMessageReceived",
    "outgoingMessageReceived",
    "outgoingAPIMessageReceived",
    "outgoingMessageStatus",
    "stateInstanceChanged",
    // Documented as deprecated (the socket's online/offline), still listed.
    "statusInstanceChanged",
    "deviceInfo",
    "incomingCall",
    "incomingBlock",
    "quotaExceeded",
    "other",
];

impl WebhookType {
    const KNOWN: [WebhookType; 10] = [
        WebhookType::IncomingMessageReceived,
        WebhookType::OutgoingMessageReceived,
        WebhookType::OutgoingApiMessageReceived,
        WebhookType::OutgoingMessageStatus,
        WebhookType::StateInstanceChanged,
        WebhookType::StatusInstanceChanged,
        WebhookType::DeviceInfo,
        WebhookType::IncomingCall,
        WebhookType::IncomingBlock,
        WebhookType::QuotaExceeded,
    ];

    pub fn from_text(s: Option<&str>) -> Self {
        let Some(s) = s else {
            return WebhookType::Other;
        };
        Self::KNOWN
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .unwrap_or(WebhookType::Other)
    }

    pub fn as_str(self) -> &'static str {
        WEBHOOK_TYPES[self as usize]
    }
}

/// The `status` of an outgoingMessageStatus notification; anything else is `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    Sent,
    Delivered,
    Read,
    Failed,
    NoAccount,
    NotInGroup,
    YellowCard,
    Other,
}

pub const MESSAGE_STATUSES: [&str; 8] = [
    "sent",
    "delivered",
    "read",
    "failed",
    "noAccount",
    "notInGroup",
    "yellowCard",
    "other",
];

impl MessageStatus {
    const KNOWN: [MessageStatus; 7] = [
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Read,
        MessageStatus::Failed,
        MessageStatus::NoAccount,
        MessageStatus::NotInGroup,
        MessageStatus::YellowCard,
    ];

    pub fn from_text(s: &str) -> Self {
        Self::KNOWN
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
            .unwrap_or(MessageStatus::Other)
    }

    pub fn as_str(self) -> &'static str {
        MESSAGE_STATUSES[self as usize]
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
    let timestamp = b.timestamp.as_ref().and_then(|v| match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    });
    Ok(Some(Notification {
        receipt_id,
        kind,
        timestamp: timestamp.filter(|t| t.is_finite()),
        status,
        state,
    }))
}

#[derive(Debug, Deserialize)]
struct DeleteResponse {
    #[serde(default, deserialize_with = "super::lenient_bool")]
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

/// The queue's counters, kept between polls.
#[derive(Debug)]
struct QueueStats {
    /// Set once the consumer runs: only then are the series written.
    running: bool,
    by_type: [u64; WEBHOOK_TYPES.len()],
    by_status: [u64; MESSAGE_STATUSES.len()],
    delay: Histogram,
}

impl Default for QueueStats {
    fn default() -> Self {
        QueueStats {
            running: false,
            by_type: [0; WEBHOOK_TYPES.len()],
            by_status: [0; MESSAGE_STATUSES.len()],
            delay: Histogram::new(&DELAY_BUCKETS),
        }
    }
}

impl QueueStats {
    fn start(&mut self) {
        self.running = true;
    }

    fn count(&mut self, n: &Notification, now: SystemTime) {
        self.by_type[n.kind as usize] += 1;
        if let Some(s) = n.status {
            self.by_status[s as usize] += 1;
        }
        if let Some(ts) = n.timestamp {
            self.delay.observe(delay_seconds(ts, now));
        }
    }

    fn write(&self, w: &mut FragmentWriter) {
        if !self.running {
            return;
        }
        for (t, n) in WEBHOOK_TYPES.iter().zip(self.by_type) {
            w.sample(
                Family::GreenApiNotifications,
                &[("webhook_type", t)],
                n as f64,
            );
        }
        for (s, n) in MESSAGE_STATUSES.iter().zip(self.by_status) {
            w.sample(Family::GreenApiMessageStatus, &[("status", s)], n as f64);
        }
        w.histogram(Family::GreenApiNotificationDelay, &[], &self.delay);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Observation;

    /// The example answer of receiveNotification in the Green API documentation.
    const SEED_NOTIFICATION: &str = r#"{
"receiptId": 488645,
"body": {
"typeWebhook": "outgoingMessageReceived",
"instanceData": {
"idInstance": 33012345,
"wid": "79001234567@c.us",
"typeInstance": "whatsapp"
},
"timestamp": 1588091580,
"idMessage": "F7AEC1B7086ECDC7E6E45923F5EDB825",
"senderData": {
"chatId": "79001234568@c.us",
"sender": "79001234568@c.us",
"senderName": "Green API"
},
"messageData": {
"typeMessage": "textMessage",
"textMessageData": {
"textMessage": "I use Green-API to send this message to you!"
}
}
}
}"#;

    #[test]
    fn seed_notification() {
        let n = parse_notification(SEED_NOTIFICATION.as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(
            n,
            Notification {
                receipt_id: 488645,
                kind: WebhookType::OutgoingMessageReceived,
                timestamp: Some(1588091580.0),
                status: None,
                state: None,
            }
        );
        let kept = format!("{n:?}");
        for private in ["79001234568", "Green API", "I use Green-API", "F7AEC1B7"] {
            assert!(!kept.contains(private), "{private} kept: {kept}");
        }
    }

    #[test]
    fn seed_delete_answer() {
        assert!(parse_delete(br#"{"result": true}"#).is_ok());
        assert!(parse_delete(br#"{}"#).is_ok(), "absent result: assume done");
        assert_eq!(
            parse_delete(br#"{"result":false}"#).unwrap_err().reason(),
            "invalid_response"
        );
        assert!(parse_delete(b"<html>").is_err());
    }

    #[test]
    fn empty_queue_is_null() {
        assert_eq!(parse_notification(b"null").unwrap(), None);
        assert_eq!(parse_notification(b" null\n").unwrap(), None);
    }

    #[test]
    fn message_statuses() {
        for (s, want) in [
            ("sent", MessageStatus::Sent),
            ("delivered", MessageStatus::Delivered),
            ("read", MessageStatus::Read),
            ("failed", MessageStatus::Failed),
            ("noAccount", MessageStatus::NoAccount),
            ("notInGroup", MessageStatus::NotInGroup),
            ("yellowCard", MessageStatus::YellowCard),
            ("pending", MessageStatus::Other),
        ] {
            let body = format!(
                r#"{{"receiptId":7,"body":{{"typeWebhook":"outgoingMessageStatus","chatId":"79001234568@c.us","timestamp":1588091580,"idMessage":"X","status":"{s}","sendByApi":true}}}}"#
            );
            let n = parse_notification(body.as_bytes()).unwrap().unwrap();
            assert_eq!(n.kind, WebhookType::OutgoingMessageStatus);
            assert_eq!(n.status, Some(want), "{s}");
            assert_eq!(want.as_str() == s, want != MessageStatus::Other);
        }
        let n = parse_notification(
            br#"{"receiptId":8,"body":{"typeWebhook":"outgoingMessageStatus"}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(n.status, Some(MessageStatus::Other));
        assert_eq!(n.timestamp, None, "missing, not 0");
    }

    #[test]
    fn state_instance_changed() {
        let n = parse_notification(br#"{"receiptId":"9","body":{"typeWebhook":"stateInstanceChanged","instanceData":{"idInstance":1,"wid":"79876543210@c.us","typeInstance":"whatsapp"},"timestamp":1586700690,"stateInstance":"notAuthorized"}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(n.receipt_id, 9);
        assert_eq!(n.kind, WebhookType::StateInstanceChanged);
        assert_eq!(n.state, Some(InstanceState::NotAuthorized));
        assert_eq!(n.status, None);
    }

    #[test]
    fn webhook_types() {
        for t in WEBHOOK_TYPES {
            let body = format!(r#"{{"receiptId":1,"body":{{"typeWebhook":"{t}"}}}}"#);
            let n = parse_notification(body.as_bytes()).unwrap().unwrap();
            assert_eq!(n.kind.as_str(), t);
        }
        for body in [
            &br#"{"receiptId":1,"body":{"typeWebhook":"somethingNew"}}"#[..],
            br#"{"receiptId":1,"body":{"typeWebhook":42}}"#,
            br#"{"receiptId":1,"body":{}}"#,
            br#"{"receiptId":1,"body":"garbage"}"#,
            br#"{"receiptId":1,"body":[1,{"a":[2]}]}"#,
            br#"{"receiptId":1,"body":null}"#,
            br#"{"receiptId":1}"#,
        ] {
            let n = parse_notification(body).map(|n| n.map(|n| (n.receipt_id, n.kind)));
            assert_eq!(
                n,
                Ok(Some((1, WebhookType::Other))),
                "a notification of an unknown shape still has to leave the queue: {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn notifications_without_receipts_are_invalid() {
        for body in [
            &br#"{"body":{"typeWebhook":"incomingMessageReceived"}}"#[..],
            br#"{"receiptId":null}"#,
            br#"{"receiptId":"abc"}"#,
            br#"{"receiptId":-1}"#,
            b"[]",
            b"",
            b"<html>502</html>",
        ] {
            assert_eq!(
                parse_notification(body).unwrap_err().reason(),
                "invalid_response",
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn broken_json_is_never_quoted() {
        let e =
            parse_notification(br#"{"receiptId":1,"body":{"senderName":"Zelda 5511987654321", "#)
                .unwrap_err();
        assert!(!e.to_string().contains("5511987654321"), "{e}");
        let e = parse(br#"{"stateInstance": ["5511987654321"]}"#).unwrap_err();
        assert!(!e.to_string().contains("5511987654321"), "{e}");
    }

    #[test]
    fn states() {
        for s in STATES {
            let st = parse(format!(r#"{{"stateInstance":"{s}"}}"#).as_bytes()).unwrap();
            assert_eq!(st.state.as_str(), s);
        }
        assert_eq!(
            parse(br#"{"stateInstance":"pendingCode"}"#).unwrap().state,
            InstanceState::Unknown
        );
        assert!(parse(br#"{"stateInstance":"authorized"}"#)
            .unwrap()
            .connected());
        assert!(!parse(br#"{"stateInstance":"yellowCard"}"#)
            .unwrap()
            .connected());
        for body in [&b"null"[..], b"{}", b"", b"{\"stateInstance\":"] {
            assert_eq!(parse(body).unwrap_err().reason(), "invalid_response");
        }
    }

    #[test]
    fn state_is_a_state_set() {
        let mut w = FragmentWriter::new(&[]);
        parse(br#"{"stateInstance":"sleepMode"}"#)
            .unwrap()
            .write(&mut w);
        let f = w.finish();
        let lines = f.family(Family::GreenApiState);
        assert!(lines.contains("whatsapp_greenapi_state{state=\"sleepMode\"} 1\n"));
        assert!(lines.contains("whatsapp_greenapi_state{state=\"authorized\"} 0\n"));
        assert_eq!(lines.lines().count(), STATES.len());
    }

    #[test]
    fn delay_is_clamped_at_zero() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(delay_seconds(900.0, now), 100.0);
        assert_eq!(delay_seconds(1_500.0, now), 0.0);
    }

    #[test]
    fn stats_are_written_only_once_the_consumer_runs() {
        let mut s = QueueStats::default();
        let mut w = FragmentWriter::new(&[]);
        s.write(&mut w);
        assert_eq!(w.finish().family(Family::GreenApiNotifications), "");
        s.start();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        s.count(
            &Notification {
                receipt_id: 1,
                kind: WebhookType::OutgoingMessageStatus,
                timestamp: Some(9_880.0),
                status: Some(MessageStatus::Read),
                state: None,
            },
            now,
        );
        let mut w = FragmentWriter::new(&[]);
        s.write(&mut w);
        let f = w.finish();
        let types = f.family(Family::GreenApiNotifications);
        assert_eq!(types.lines().count(), WEBHOOK_TYPES.len());
        assert!(types.contains("{webhook_type=\"outgoingMessageStatus\"} 1\n"));
        assert!(types.contains("{webhook_type=\"quotaExceeded\"} 0\n"));
        let statuses = f.family(Family::GreenApiMessageStatus);
        assert!(statuses.contains("{status=\"read\"} 1\n"));
        assert!(statuses.contains("{status=\"noAccount\"} 0\n"));
        let delay = f.family(Family::GreenApiNotificationDelay);
        assert!(delay.contains("_bucket{le=\"60\"} 0\n"), "{delay}");
        assert!(delay.contains("_bucket{le=\"120\"} 1\n"), "{delay}");
        assert!(delay.contains("_sum{} 120\n"), "{delay}");
    }

    #[test]
    fn recent_receipts_are_bounded() {
        let mut r = RecentReceipts::new(3);
        assert!(r.insert(1));
        assert!(!r.insert(1));
        assert!(r.insert(2) && r.insert(3) && r.insert(4));
        assert!(r.insert(1), "the oldest was forgotten");
        assert!(!r.insert(4));
        assert_eq!(r.order.len(), 3);
        assert_eq!(r.seen.len(), 3);
    }

    #[test]
    fn backoff_doubles_up_to_a_cap_and_honours_retry_after() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..8).map(|_| b.fail(None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        b.reset();
        assert_eq!(b.fail(None), Duration::from_secs(1));
        assert_eq!(
            b.fail(Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(b.fail(Some(Duration::ZERO)), Duration::from_secs(1));
        assert_eq!(
            b.fail(None),
            Duration::from_secs(2),
            "Retry-After is no step"
        );
    }
}
