//! Black-box tests of Green API: state polling and the notification queue, against a mock Green
//! API on 127.0.0.1 that holds `receiveNotification` like the real long poll, hands out the head of
//! its queue until it is deleted, and can fail deletes, answer 429 or garbage on demand.

mod common;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{reply, sample, samples, Exporter, Mock, MockBody};
use hyper::{Method, Response};

const TOKEN: &str = "tok-GREEN-9d41c07be2";
const INSTANCE: &str = "1101000001";
/// Private data the fixtures carry: none of it may reach a log line, a metric or a page.
const PHONE: &str = "5511987654321";
const SENDER_NAME: &str = "Zelda Privatename";
const TEXT: &str = "meet me at the old mill 4417";
const MESSAGE_ID: &str = "BAE5F4C2D1E0A9B8";

const KNOWN_TYPES: [&str; 10] = [
    "incomingMessageReceived",
    "outgoingMessageReceived",
    "outgoingAPIMessageReceived",
    "outgoingMessageStatus",
    "stateInstanceChanged",
    "statusInstanceChanged",
    "deviceInfo",
    "incomingCall",
    "incomingBlock",
    "quotaExceeded",
];
const STATUSES: [&str; 7] = [
    "sent",
    "delivered",
    "read",
    "failed",
    "noAccount",
    "notInGroup",
    "yellowCard",
];

/// How the mock answers a receiveNotification on an empty queue.
#[derive(Clone, Copy)]
enum WhenEmpty {
    /// Like the real API: hold the request until a notification arrives or the time is up.
    Hold(Duration),
    /// A server that does not hold: `null` at once.
    Instant,
}

/// How the mock answers the first DELETE of a receipt.
#[derive(Clone, Copy)]
enum DeleteFault {
    Http500,
    ResultFalse,
}

struct GreenApi {
    state: Mutex<String>,
    queue: Mutex<VecDeque<(u64, String)>>,
    when_empty: Mutex<WhenEmpty>,
    delete_faults: Mutex<HashMap<u64, DeleteFault>>,
    /// Answers given to the next receiveNotification calls before the queue is looked at:
    /// (status, body, Retry-After).
    script: Mutex<VecDeque<(u16, String, Option<u64>)>>,
    /// When each receiveNotification arrived.
    receives: Mutex<Vec<Instant>>,
}

impl GreenApi {
    fn new() -> Arc<Self> {
        Arc::new(GreenApi {
            state: Mutex::new("authorized".into()),
            queue: Mutex::new(VecDeque::new()),
            when_empty: Mutex::new(WhenEmpty::Hold(Duration::from_secs(1))),
            delete_faults: Mutex::new(HashMap::new()),
            script: Mutex::new(VecDeque::new()),
            receives: Mutex::new(Vec::new()),
        })
    }

    async fn start(self: &Arc<Self>) -> Mock {
        let api = self.clone();
        Mock::start(move |seen| {
            let api = api.clone();
            async move { api.answer(seen).await }
        })
        .await
    }

    fn set_state(&self, s: &str) {
        *self.state.lock().unwrap() = s.into();
    }

    fn push(&self, receipt: u64, body: String) {
        self.queue.lock().unwrap().push_back((receipt, body));
    }

    fn queued(&self) -> usize {
        self.queue.lock().unwrap().len()
    }

    fn receives(&self) -> Vec<Instant> {
        self.receives.lock().unwrap().clone()
    }

    async fn answer(&self, s: common::Seen) -> Response<MockBody> {
        let parts: Vec<&str> = s.path.trim_matches('/').split('/').collect();
        let [inst, method, token, rest @ ..] = &parts[..] else {
            return reply(404, "");
        };
        if *inst != format!("waInstance{INSTANCE}") || *token != TOKEN {
            return reply(401, "");
        }
        match (*method, rest) {
            ("getStateInstance", []) => reply(
                200,
                format!(r#"{{"stateInstance":"{}"}}"#, self.state.lock().unwrap()),
            ),
            ("receiveNotification", []) => self.receive().await,
            ("deleteNotification", [receipt]) if s.method == Method::DELETE => {
                self.delete(receipt.parse().unwrap())
            }
            _ => reply(404, ""),
        }
    }

    async fn receive(&self) -> Response<MockBody> {
        self.receives.lock().unwrap().push(Instant::now());
        let scripted = self.script.lock().unwrap().pop_front();
        if let Some((status, body, retry_after)) = scripted {
            let mut r = reply(status, body);
            if let Some(secs) = retry_after {
                r.headers_mut()
                    .insert("retry-after", secs.to_string().parse().unwrap());
            }
            return r;
        }
        let hold = match *self.when_empty.lock().unwrap() {
            WhenEmpty::Hold(d) => d,
            WhenEmpty::Instant => Duration::ZERO,
        };
        let deadline = Instant::now() + hold;
        loop {
            if let Some((_, body)) = self.queue.lock().unwrap().front() {
                return reply(200, body.clone());
            }
            if Instant::now() >= deadline {
                return reply(200, "null");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn delete(&self, receipt: u64) -> Response<MockBody> {
        match self.delete_faults.lock().unwrap().remove(&receipt) {
            Some(DeleteFault::Http500) => return reply(500, r#"{"message":"internal error"}"#),
            Some(DeleteFault::ResultFalse) => return reply(200, r#"{"result":false}"#),
            None => {}
        }
        let mut q = self.queue.lock().unwrap();
        let before = q.len();
        q.retain(|(r, _)| *r != receipt);
        reply(200, format!(r#"{{"result":{}}}"#, q.len() < before))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A notification as Green API sends it, private fields included.
fn notification(receipt: u64, kind: &str, timestamp: u64, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(",{extra}")
    };
    format!(
        r#"{{"receiptId":{receipt},"body":{{"typeWebhook":"{kind}","instanceData":{{"idInstance":{INSTANCE},"wid":"{PHONE}@c.us","typeInstance":"whatsapp"}},"timestamp":{timestamp},"idMessage":"{MESSAGE_ID}","senderData":{{"chatId":"{PHONE}@c.us","sender":"{PHONE}@c.us","senderName":"{SENDER_NAME}"}},"messageData":{{"typeMessage":"textMessage","textMessageData":{{"textMessage":"{TEXT}"}}}}{extra}}}}}"#
    )
}

fn message(receipt: u64) -> String {
    notification(receipt, "incomingMessageReceived", now() - 5, "")
}

fn config(url: &str, name: &str, extra: &str) -> String {
    format!(
        "global:\n  interval: 1s\n  timeout: 500ms\ngateways:\n  - name: {name}\n    provider: greenapi\n    url: {url}\n    instance: \"{INSTANCE}\"\n    token: {TOKEN}\n{extra}"
    )
}

const CONSUME: &str = "    notifications: consume\n";

/// Notifications are counted in the message-flow families every provider shares.
fn count(m: &str, gw: &str, webhook_type: &str) -> Option<f64> {
    sample(
        m,
        "whatsapp_webhook_events_total",
        &[("gateway", gw), ("event", webhook_type)],
    )
}

fn total(m: &str, gw: &str) -> f64 {
    samples(m, "whatsapp_webhook_events_total", &[("gateway", gw)])
        .iter()
        .sum()
}

fn state(m: &str, gw: &str, s: &str) -> Option<f64> {
    sample(
        m,
        "whatsapp_greenapi_state",
        &[("gateway", gw), ("state", s)],
    )
}

fn requests_to(mock: &Mock, method: &str) -> Vec<common::Seen> {
    mock.seen()
        .into_iter()
        .filter(|s| s.path.contains(&format!("/{method}/")))
        .collect()
}

#[tokio::test]
async fn state_is_polled_and_changes_are_seen_within_an_interval() {
    let api = GreenApi::new();
    let mock = api.start().await;
    let ex = Exporter::start(&config(&mock.url(), "support", "")).await;
    let m = ex
        .wait_for(5, |m| state(m, "support", "authorized") == Some(1.0))
        .await;
    let gw = [("gateway", "support"), ("provider", "greenapi")];
    assert_eq!(sample(&m, "whatsapp_up", &gw), Some(1.0));
    assert_eq!(sample(&m, "whatsapp_connected", &gw), Some(1.0));
    assert_eq!(
        samples(&m, "whatsapp_greenapi_state", &gw)
            .iter()
            .sum::<f64>(),
        1.0,
        "one state at a time"
    );
    assert_eq!(
        samples(&m, "whatsapp_greenapi_state", &gw).len(),
        8,
        "every state of the set"
    );
    assert_eq!(
        mock.seen()[0].path,
        format!("/waInstance{INSTANCE}/getStateInstance/{TOKEN}")
    );

    api.set_state("yellowCard");
    let m = ex
        .wait_for(3, |m| state(m, "support", "yellowCard") == Some(1.0))
        .await;
    assert_eq!(state(&m, "support", "authorized"), Some(0.0));
    assert_eq!(sample(&m, "whatsapp_connected", &gw), Some(0.0));
    assert_eq!(
        sample(&m, "whatsapp_connected_changes_total", &gw),
        Some(1.0)
    );

    // The SDKs' successor of the deprecated yellowCard: its own state, restricted like it.
    api.set_state("suspended");
    let m = ex
        .wait_for(3, |m| state(m, "support", "suspended") == Some(1.0))
        .await;
    assert_eq!(state(&m, "support", "yellowCard"), Some(0.0));
    assert_eq!(state(&m, "support", "unknown"), Some(0.0));
    assert_eq!(sample(&m, "whatsapp_connected", &gw), Some(0.0));
    let (_, page) = ex.get("/").await;
    assert!(
        page.contains("state suspended (sending suspended for a while)"),
        "{page}"
    );

    api.set_state("pendingCode");
    let m = ex
        .wait_for(3, |m| state(m, "support", "unknown") == Some(1.0))
        .await;
    assert_eq!(sample(&m, "whatsapp_connected", &gw), Some(0.0));
    ex.stop().await;
}

#[tokio::test]
async fn without_consume_the_queue_is_never_touched() {
    let api = GreenApi::new();
    for r in 1..=3 {
        api.push(r, message(r));
    }
    let mock = api.start().await;
    let yaml = format!(
        "{}  - name: explicit\n    provider: greenapi\n    url: {}\n    instance: \"{INSTANCE}\"\n    token: {TOKEN}\n    notifications: off\n",
        config(&mock.url(), "default", ""),
        mock.url()
    );
    let ex = Exporter::start(&yaml).await;
    let m = ex
        .wait_for(8, |m| {
            ["default", "explicit"].iter().all(|gw| {
                sample(m, "whatsapp_polls_total", &[("gateway", gw)]).unwrap_or(0.0) >= 3.0
            })
        })
        .await;
    assert!(requests_to(&mock, "receiveNotification").is_empty());
    assert!(requests_to(&mock, "deleteNotification").is_empty());
    assert!(api.receives().is_empty());
    assert_eq!(api.queued(), 3, "the queue belongs to someone else");
    assert!(!m.contains("whatsapp_webhook_events_total"));
    assert!(!m.contains("whatsapp_message_status_total"));
    assert!(!m.contains("whatsapp_greenapi_notification_delay_seconds"));
    ex.stop().await;
}

#[tokio::test]
async fn every_notification_type_and_status_is_counted_exactly() {
    let api = GreenApi::new();
    let two_minutes_ago = now() - 120;
    let mut r = 0;
    let mut next = || {
        r += 1;
        r
    };
    for kind in KNOWN_TYPES {
        match kind {
            "outgoingMessageStatus" => continue,
            "stateInstanceChanged" => {
                let n = next();
                api.push(
                    n,
                    notification(n, kind, two_minutes_ago, r#""stateInstance":"authorized""#),
                )
            }
            _ => {
                let n = next();
                api.push(n, notification(n, kind, two_minutes_ago, ""))
            }
        }
    }
    for status in STATUSES.iter().chain(&["pending"]) {
        let n = next();
        api.push(
            n,
            notification(
                n,
                "outgoingMessageStatus",
                two_minutes_ago,
                &format!(r#""status":"{status}","sendByApi":true"#),
            ),
        );
    }
    // Unknown types, stamped by a clock an hour ahead of ours.
    for kind in ["somethingNew", "incomingReaction"] {
        let n = next();
        api.push(n, notification(n, kind, now() + 3600, ""));
    }
    let expected = api.queued();
    assert_eq!(expected, 19);

    let mock = api.start().await;
    let ex = Exporter::start(&config(&mock.url(), "support", CONSUME)).await;
    let m = ex
        .wait_for(15, |m| {
            // The queue's own series come with the first poll; the message-flow ones at once.
            total(m, "support") >= expected as f64
                && api.queued() == 0
                && m.contains("whatsapp_greenapi_notification_delay_seconds_count")
        })
        .await;
    assert_eq!(total(&m, "support"), expected as f64);
    for kind in KNOWN_TYPES {
        let want = match kind {
            "outgoingMessageStatus" => 8.0,
            _ => 1.0,
        };
        assert_eq!(count(&m, "support", kind), Some(want), "{kind}");
    }
    assert_eq!(count(&m, "support", "other"), Some(2.0));
    assert!(!m.contains("somethingNew"), "unknown types are `other`");
    // noAccount, notInGroup and yellowCard are failures, told apart by their code.
    for (status, n) in [
        ("sent", 1.0),
        ("delivered", 1.0),
        ("read", 1.0),
        ("failed", 4.0),
    ] {
        assert_eq!(
            sample(
                &m,
                "whatsapp_message_status_total",
                &[("gateway", "support"), ("status", status)]
            ),
            Some(n),
            "{status}"
        );
    }
    for code in ["noAccount", "notInGroup", "yellowCard", "other"] {
        assert_eq!(
            sample(
                &m,
                "whatsapp_message_errors_total",
                &[("gateway", "support"), ("code", code)]
            ),
            Some(1.0),
            "{code}"
        );
    }
    assert_eq!(
        sample(
            &m,
            "whatsapp_message_status_total",
            &[("gateway", "support"), ("status", "other")]
        ),
        Some(1.0),
        "pending is not a documented status"
    );
    let delay = |le: &str| {
        sample(
            &m,
            "whatsapp_greenapi_notification_delay_seconds_bucket",
            &[("gateway", "support"), ("le", le)],
        )
    };
    assert_eq!(
        delay("1"),
        Some(2.0),
        "a timestamp ahead of us is a delay of 0"
    );
    assert_eq!(delay("60"), Some(2.0));
    assert_eq!(delay("300"), Some(expected as f64));
    assert_eq!(
        sample(
            &m,
            "whatsapp_greenapi_notification_delay_seconds_count",
            &[("gateway", "support")]
        ),
        Some(expected as f64)
    );

    let deletes = requests_to(&mock, "deleteNotification");
    assert_eq!(deletes.len(), expected, "each deleted once");
    for (i, d) in deletes.iter().enumerate() {
        assert_eq!(d.method, Method::DELETE);
        assert_eq!(
            d.path,
            format!("/waInstance{INSTANCE}/deleteNotification/{TOKEN}/{}", i + 1)
        );
    }
    ex.stop().await;
}

#[tokio::test]
async fn failed_deletes_are_retried_and_counted_once() {
    let api = GreenApi::new();
    for r in 1..=6 {
        api.push(r, message(r));
    }
    api.delete_faults.lock().unwrap().extend([
        (2, DeleteFault::Http500),
        (4, DeleteFault::ResultFalse),
        (5, DeleteFault::Http500),
    ]);
    let mock = api.start().await;
    let ex = Exporter::start(&config(&mock.url(), "support", CONSUME)).await;
    ex.wait_for(20, |_| api.queued() == 0).await;
    // Give a wrongly repeated count time to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = ex.metrics().await;
    assert_eq!(count(&m, "support", "incomingMessageReceived"), Some(6.0));
    assert_eq!(total(&m, "support"), 6.0);
    assert_eq!(
        sample(
            &m,
            "whatsapp_greenapi_notification_delay_seconds_count",
            &[("gateway", "support")]
        ),
        Some(6.0)
    );
    let deletes: Vec<String> = requests_to(&mock, "deleteNotification")
        .into_iter()
        .map(|s| s.path.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(deletes, ["1", "2", "2", "3", "4", "4", "5", "5", "6"]);
    ex.stop().await;
}

#[tokio::test]
async fn an_empty_queue_is_long_polled_not_hammered() {
    let api = GreenApi::new();
    *api.when_empty.lock().unwrap() = WhenEmpty::Hold(Duration::from_millis(1500));
    let mock = api.start().await;
    let ex = Exporter::start(&config(&mock.url(), "support", CONSUME)).await;
    // Every series exists at 0 as soon as the consumer runs, so rate() works from the start.
    let m = ex
        .wait_for(5, |m| {
            count(m, "support", "quotaExceeded") == Some(0.0)
                && m.contains("whatsapp_greenapi_notification_delay_seconds_count")
        })
        .await;
    assert_eq!(
        samples(
            &m,
            "whatsapp_webhook_events_total",
            &[("gateway", "support")]
        ),
        vec![0.0; 15]
    );
    assert_eq!(
        samples(
            &m,
            "whatsapp_message_status_total",
            &[("gateway", "support")]
        ),
        vec![0.0; 6]
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_greenapi_notification_delay_seconds_count",
            &[("gateway", "support")]
        ),
        Some(0.0)
    );

    let first = api.receives().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = api.receives().len() - first;
    assert!(
        (1..=6).contains(&during),
        "{during} long polls in 5 s on a queue that holds each for 1.5 s"
    );
    let receives = requests_to(&mock, "receiveNotification");
    let timeout: u64 = receives[0]
        .query
        .strip_prefix("receiveTimeout=")
        .unwrap()
        .parse()
        .unwrap();
    assert!((5..=60).contains(&timeout), "receiveTimeout={timeout}");
    assert!(requests_to(&mock, "deleteNotification").is_empty());
    ex.stop().await;
}

#[tokio::test]
async fn an_instant_null_is_not_spun_on() {
    let api = GreenApi::new();
    *api.when_empty.lock().unwrap() = WhenEmpty::Instant;
    let mock = api.start().await;
    let ex = Exporter::start(&config(&mock.url(), "support", CONSUME)).await;
    ex.wait_for(5, |_| !api.receives().is_empty()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = api.receives().len();
    assert!(
        n <= 6,
        "{n} receiveNotification calls in about 3 s on a server that answers null at once"
    );
    // A notification that arrives is still taken at once.
    api.push(1, message(1));
    ex.wait_for(5, |m| {
        count(m, "support", "incomingMessageReceived") == Some(1.0)
    })
    .await;
    drop(mock);
    ex.stop().await;
}

#[tokio::test]
async fn failures_back_off_and_429_honours_retry_after() {
    let api = GreenApi::new();
    api.script.lock().unwrap().extend([
        (
            429,
            r#"{"message":"too many requests"}"#.to_string(),
            Some(2),
        ),
        (500, "<html>500</html>".to_string(), None),
        (500, "<html>500</html>".to_string(), None),
        (502, "<html>502</html>".to_string(), None),
    ]);
    api.push(1, message(1));
    let mock = api.start().await;
    let ex = Exporter::start(&config(&mock.url(), "support", CONSUME)).await;
    ex.wait_for(20, |m| {
        count(m, "support", "incomingMessageReceived") == Some(1.0)
    })
    .await;
    let at = api.receives();
    assert!(at.len() >= 5, "{}", at.len());
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] >= Duration::from_millis(1900),
        "Retry-After: 2 honoured: {gaps:?}"
    );
    // The backoff: 1 s, 2 s, 4 s after the failures that follow.
    assert!(gaps[1] >= Duration::from_millis(900), "{gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(1900), "{gaps:?}");
    assert!(gaps[3] >= Duration::from_millis(3900), "{gaps:?}");
    let logs = common::logs();
    assert!(logs.contains("notification queue failed"));
    assert!(logs.contains("notification queue readable again"));
    drop(mock);
    ex.stop().await;
}

/// A gateway name whose first poll falls in the first 300 ms of a 60 s interval.
fn early_name() -> String {
    (0..100_000)
        .map(|i| format!("gw-{i}"))
        .find(|n| {
            whatsapp_exporter::scheduler::start_offset(n, Duration::from_secs(60))
                < Duration::from_millis(300)
        })
        .unwrap()
}

#[tokio::test]
async fn state_instance_changed_updates_the_state_before_the_next_poll() {
    let api = GreenApi::new();
    let mock = api.start().await;
    let name = early_name();
    let yaml = format!(
        "gateways:\n  - name: {name}\n    provider: greenapi\n    url: {}\n    instance: \"{INSTANCE}\"\n    token: {TOKEN}\n    interval: 60s\n    timeout: 2s\n    notifications: consume\n",
        mock.url()
    );
    let ex = Exporter::start(&yaml).await;
    let m = ex
        .wait_for(5, |m| state(m, &name, "authorized") == Some(1.0))
        .await;
    let polls = [("gateway", name.as_str())];
    assert_eq!(sample(&m, "whatsapp_polls_total", &polls), Some(1.0));

    // The phone was logged out just now; then a change from an hour ago, still queued, which
    // the poll has long overtaken and must not bring back.
    let ts = now();
    api.push(
        1,
        notification(
            1,
            "stateInstanceChanged",
            ts,
            r#""stateInstance":"notAuthorized""#,
        ),
    );
    api.push(
        2,
        notification(
            2,
            "stateInstanceChanged",
            ts - 3600,
            r#""stateInstance":"authorized""#,
        ),
    );
    let m = ex
        .wait_for(5, |m| count(m, &name, "stateInstanceChanged") == Some(2.0))
        .await;
    assert_eq!(state(&m, &name, "notAuthorized"), Some(1.0));
    assert_eq!(state(&m, &name, "authorized"), Some(0.0));
    assert_eq!(sample(&m, "whatsapp_connected", &polls), Some(0.0));
    assert_eq!(
        sample(&m, "whatsapp_connected_changes_total", &polls),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "whatsapp_polls_total", &polls),
        Some(1.0),
        "no poll came in between"
    );
    ex.stop().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_long_poll() {
    let api = GreenApi::new();
    *api.when_empty.lock().unwrap() = WhenEmpty::Hold(Duration::from_secs(60));
    let mock = api.start().await;
    let ex = Exporter::start(&config(&mock.url(), "support", CONSUME)).await;
    ex.wait_for(5, |_| !api.receives().is_empty()).await;
    tokio::time::timeout(Duration::from_secs(5), ex.stop())
        .await
        .expect("shutdown finished while a long poll was in flight");
    assert!(
        !common::logs().contains("some tasks did not stop in time"),
        "the consumer stopped within the grace"
    );
    drop(mock);
}

#[tokio::test]
async fn private_data_never_leaves() {
    let api = GreenApi::new();
    // A truncated answer quoting a phone number, then real notifications full of private data.
    api.script.lock().unwrap().push_back((
        200,
        format!(
            r#"{{"receiptId":1,"body":{{"senderName":"{SENDER_NAME}","chatId":"{PHONE}@c.us","#
        ),
        None,
    ));
    api.push(1, message(1));
    api.push(
        2,
        notification(
            2,
            "outgoingMessageStatus",
            now(),
            &format!(r#""chatId":"{PHONE}@c.us","status":"{SENDER_NAME}""#),
        ),
    );
    api.push(3, notification(3, &format!("x{PHONE}"), now(), ""));
    let mock = api.start().await;
    let ex = Exporter::start(&config(&mock.url(), "support", CONSUME)).await;
    ex.wait_for(10, |m| total(m, "support") == 3.0).await;
    let m = ex.metrics().await;
    assert_eq!(count(&m, "support", "other"), Some(1.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_message_status_total",
            &[("gateway", "support"), ("status", "other")]
        ),
        Some(1.0)
    );
    let (_, page) = ex.get("/").await;
    let (_, probe) = ex.get("/probe?target=support").await;
    let logs = common::logs();
    assert!(
        logs.contains("invalid answer"),
        "the broken answer was logged"
    );
    for (what, text) in [
        ("/metrics", &m),
        ("/", &page),
        ("/probe", &probe),
        ("logs", &logs),
    ] {
        for private in [TOKEN, PHONE, SENDER_NAME, TEXT, MESSAGE_ID] {
            assert!(!text.contains(private), "{private} in {what}");
        }
    }
    drop(mock);
    ex.stop().await;
}
