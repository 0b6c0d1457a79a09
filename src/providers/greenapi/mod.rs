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

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::config::{GatewayConfig, GreenApiConfig, Notifications};
use crate::error::PollError;
use crate::exposition::FragmentWriter;
use crate::http::fetch;
use crate::http::path_segment;
use crate::providers::shape::{Observation, Poller};
use crate::secret::Secret;

pub mod demo;
mod queue;
pub mod send;
mod state;
pub mod webhook;

use queue::QueueStats;
pub use queue::{
    delay_seconds, parse_delete, parse_notification, Backoff, MessageStatus, Notification,
    RecentReceipts, WebhookType,
};
pub use state::{judge, parse, InstanceState, Status};

crate::exposition::families! {
    /// Green API series: the instance state, and the queue's counters once it is consumed.
    pub enum GreenApiFamily in FAMILIES {
        State => "whatsapp_greenapi_state", Gauge, "Green API: stateInstance, as a state set.";
        NotificationDelay => "whatsapp_greenapi_notification_delay_seconds", Histogram, "Green API: receipt time minus the notification's timestamp.";
    }
}

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
pub const DELETE_GRACE: Duration = Duration::from_millis(500);

/// `whatsapp_greenapi_notification_delay_seconds`: the queue keeps notifications 24 h, and the
/// timestamps are whole seconds.
pub static DELAY_BUCKETS: [f64; 15] = [
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0,
    43200.0, 86400.0,
];

/// `getStateInstance` is limited to one request a second per instance, and a state takes up to 5
/// minutes to settle after the phone comes back: polling faster than this only spends the limit.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
pub const MIN_INTERVAL_WHY: &str =
    "getStateInstance is limited to 1 request a second per instance and a state takes minutes to settle";

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
    pub fn new(gw: &GatewayConfig, cfg: &GreenApiConfig, client: reqwest::Client) -> Self {
        let base = format!("{}/waInstance{}", gw.url, path_segment(&cfg.instance));
        let token = path_segment(cfg.token.expose());
        Source {
            client,
            state_url: Secret::new(format!("{base}/getStateInstance/{token}")),
            receive_url: Secret::new(format!(
                "{base}/receiveNotification/{token}?receiveTimeout={RECEIVE_TIMEOUT_SECS}"
            )),
            delete_prefix: Secret::new(format!("{base}/deleteNotification/{token}/")),
            consume: cfg.notifications == Notifications::Consume,
            timeout: gw.timeout,
            stats: Box::default(),
        }
    }

    /// Whether this gateway reads (and so empties) the notification queue.
    pub fn consumes_queue(&self) -> bool {
        self.consume
    }

    fn stats(&self) -> MutexGuard<'_, QueueStats> {
        crate::sync::lock(&self.stats)
    }

    /// From now on the queue's series are written: the consumer runs.
    pub fn start_consuming(&self) {
        self.stats().start();
    }

    /// Counts a notification taken from the queue.
    pub fn count(&self, n: &Notification) {
        self.stats().count(n, SystemTime::now());
    }

    /// Takes the head of the queue, waiting up to [`RECEIVE_TIMEOUT_SECS`] for one.
    pub async fn receive(&self) -> Result<Option<Notification>, PollError> {
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

    pub async fn delete(&self, receipt: u64) -> Result<(), PollError> {
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

impl Poller for Source {
    async fn poll(&self, timeout: Duration) -> Result<Box<dyn Observation>, PollError> {
        let req = self
            .client
            .get(self.state_url.expose())
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        let answer = fetch(req, timeout).await?;
        Ok(Box::new(judge(&answer)?))
    }

    /// The queue counters, once the consumer runs.
    fn write_kept(&self, w: &mut FragmentWriter) {
        self.stats().write(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::FragmentWriter;
    use crate::labels::LabelSet;
    use crate::providers::shape::Observation;
    use queue::QueueStats;

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
                event: crate::flow::Event {
                    name: "outgoingMessageReceived",
                    timestamp: Some(1588091580.0),
                    replay: crate::flow::ReplayKey::of("488645", &["receipt"]),
                    ..Default::default()
                },
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
        for t in WebhookType::LABELS {
            let body = format!(r#"{{"receiptId":1,"body":{{"typeWebhook":"{t}"}}}}"#);
            let n = parse_notification(body.as_bytes()).unwrap().unwrap();
            assert_eq!(n.kind.as_str(), *t);
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
        for s in InstanceState::LABELS {
            let st = parse(format!(r#"{{"stateInstance":"{s}"}}"#).as_bytes()).unwrap();
            assert_eq!(st.state.as_str(), *s);
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
        let suspended = parse(br#"{"stateInstance":"suspended"}"#).unwrap();
        assert_eq!(suspended.state, InstanceState::Suspended);
        assert!(
            !suspended.connected(),
            "sending is restricted, like yellowCard"
        );
        assert_eq!(
            suspended.summary(),
            "state suspended (sending suspended for a while)"
        );
        for body in [&b"null"[..], b"{}", b"", b"{\"stateInstance\":"] {
            assert_eq!(parse(body).unwrap_err().reason(), "invalid_response");
        }
    }

    #[test]
    fn state_is_a_state_set() {
        let mut w = FragmentWriter::new(&[], &FAMILIES);
        parse(br#"{"stateInstance":"sleepMode"}"#)
            .unwrap()
            .write(&mut w);
        let f = w.finish();
        let lines = f.family(GreenApiFamily::State);
        assert!(lines.contains("whatsapp_greenapi_state{state=\"sleepMode\"} 1\n"));
        assert!(lines.contains("whatsapp_greenapi_state{state=\"authorized\"} 0\n"));
        assert_eq!(lines.lines().count(), InstanceState::COUNT);
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
        let mut w = FragmentWriter::new(&[], &FAMILIES);
        s.write(&mut w);
        assert_eq!(w.finish().family(GreenApiFamily::NotificationDelay), "");
        s.start();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        s.count(
            &Notification {
                receipt_id: 1,
                kind: WebhookType::OutgoingMessageStatus,
                timestamp: Some(9_880.0),
                status: Some(MessageStatus::Read),
                state: None,
                event: crate::flow::Event::named("outgoingMessageStatus"),
            },
            now,
        );
        let mut w = FragmentWriter::new(&[], &FAMILIES);
        s.write(&mut w);
        let f = w.finish();
        let delay = f.family(GreenApiFamily::NotificationDelay);
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
        assert_eq!(r.len(), 3);
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

    fn answer(code: u16, body: &str) -> crate::http::Answer {
        crate::http::Answer {
            status: reqwest::StatusCode::from_u16(code).unwrap(),
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
            retry_after: None,
        }
    }

    #[test]
    fn a_deleted_instance_is_not_found() {
        // Green API's common errors: HTTP 400 "Instance is deleted", as text or in a JSON body.
        for body in [
            "Instance is deleted",
            r#"{"message":"Instance is deleted"}"#,
        ] {
            let e = judge(&answer(400, body)).unwrap_err();
            assert_eq!(e.reason(), "not_found", "{body}");
        }
        for (code, body, reason) in [
            (
                400,
                "Instance account is expired. Renew your instance from personal area",
                "http_status",
            ),
            (401, "Unauthorized", "unauthorized"),
            (429, "Instance is deleted", "rate_limited"),
            (500, "Instance is deleted", "http_status"),
        ] {
            assert_eq!(judge(&answer(code, body)).unwrap_err().reason(), reason);
        }
        assert!(judge(&answer(200, r#"{"stateInstance":"authorized"}"#)).is_ok());
    }
}
