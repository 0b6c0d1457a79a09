//! The delivery canary, black-box: mock gateways on 127.0.0.1 answer the send endpoint and then
//! relay the message, pushing its status to the exporter as `from`'s webhooks and its arrival as
//! `to`'s, with the delays, losses and refusals each test asks for. The tests run the canary
//! themselves (`run_now`, as its schedule would); its first scheduled run is 30 s or more after
//! the start, past the end of every test. They record the cleanup calls (deletes on `from`,
//! mark-reads on `to`) too, and answer them as the plan says.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{reply, sample, Exporter, Mock, MockBody, Seen};
use hyper::Response;
use whatsapp_exporter::canary::RunResult;

const NUMBER: &str = "5511988887777";
/// `from`'s own number, as `to`'s webhooks name the chat the message came in.
const FROM_NUMBER: &str = "5511977776666";
const ZAPI_SECRET: &str = "zapi-webhook-secret-0123456789";
const GREEN_TOKEN: &str = "green-webhook-token-0123456789";
const APP_SECRET: &str = "meta-app-secret-0123456789";

/// What the relay does with the next sends.
#[derive(Clone)]
struct Plan {
    /// The send endpoint's answer: `None` accepts with an id.
    refuse: Option<(u16, &'static str)>,
    /// Delay of the `delivered` status, none when `None`.
    status: Option<Duration>,
    /// A failed delivery (Z-API's DeliveryCallback with SHADOW_BAN) instead of a status.
    banned: bool,
    /// Delay of the arrival on `to`, none when `None`.
    arrival: Option<Duration>,
    /// Push the status and the arrival before answering the send.
    before_answer: bool,
    /// The status of the delete endpoint's answer.
    delete_status: u16,
    /// The status of the mark-read endpoint's answer; `None` answers as the provider documents.
    read_status: Option<u16>,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            refuse: None,
            status: Some(Duration::from_millis(30)),
            banned: false,
            arrival: Some(Duration::from_millis(60)),
            before_answer: false,
            delete_status: 204,
            read_status: None,
        }
    }
}

/// Which providers stand at each end.
#[derive(Clone, Copy, PartialEq)]
enum End {
    Zapi,
    Green,
    Cloud,
}

/// The mock gateways and where they push.
struct Relay {
    plan: Mutex<Plan>,
    exporter: OnceLock<String>,
    from: End,
    to: End,
    /// The texts sent, as the gateway saw them.
    texts: Mutex<Vec<String>>,
    ids: Mutex<u32>,
    /// The ids sent, in order.
    sent: Mutex<Vec<String>>,
    /// The delete calls: method, path, query, body.
    deletes: Mutex<Vec<Seen>>,
    /// The mark-read calls.
    reads: Mutex<Vec<Seen>>,
}

impl Relay {
    fn new(from: End, to: End) -> Arc<Relay> {
        Arc::new(Relay {
            plan: Mutex::new(Plan::default()),
            exporter: OnceLock::new(),
            from,
            to,
            texts: Mutex::new(Vec::new()),
            ids: Mutex::new(0),
            sent: Mutex::new(Vec::new()),
            deletes: Mutex::new(Vec::new()),
            reads: Mutex::new(Vec::new()),
        })
    }

    fn set(&self, p: Plan) {
        *self.plan.lock().unwrap() = p;
    }

    fn deletes(&self) -> Vec<Seen> {
        self.deletes.lock().unwrap().clone()
    }

    fn reads(&self) -> Vec<Seen> {
        self.reads.lock().unwrap().clone()
    }

    fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap().clone()
    }

    async fn handle(self: Arc<Self>, s: Seen) -> Response<MockBody> {
        let p = &s.path;
        if p.ends_with("/status") {
            return reply(
                200,
                r#"{"connected":true,"session":true,"smartphoneConnected":true}"#,
            );
        }
        if p.contains("getStateInstance") {
            return reply(200, r#"{"stateInstance":"authorized"}"#);
        }
        let json: serde_json::Value = serde_json::from_slice(&s.body).unwrap_or_default();
        if p.ends_with("/read-message") || p.contains("/readChat/") || json["status"] == "read" {
            let (status, documented) = match self.to {
                End::Zapi => (204, "{}"),
                End::Green => (200, r#"{"setRead":true}"#),
                End::Cloud => (200, r#"{"success":true}"#),
            };
            let status = self.plan.lock().unwrap().read_status.unwrap_or(status);
            self.reads.lock().unwrap().push(s);
            return reply(status, documented);
        }
        if s.method == hyper::Method::DELETE || p.contains("/deleteMessage/") {
            let status = self.plan.lock().unwrap().delete_status;
            self.deletes.lock().unwrap().push(s);
            return reply(status, if status == 204 { "" } else { "{}" });
        }
        if !(p.ends_with("/send-text") || p.contains("/sendMessage/") || p.ends_with("/messages")) {
            // The Cloud API number's own poll.
            return reply(
                200,
                r#"{"id":"106540352242922","verified_name":"Test","code_verification_status":"VERIFIED","quality_rating":"GREEN","platform_type":"CLOUD_API","throughput":{"level":"STANDARD"},"status":"CONNECTED","name_status":"APPROVED"}"#,
            );
        }
        let body: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
        let text = body["message"]
            .as_str()
            .or_else(|| body["template"]["components"][0]["parameters"][0]["text"].as_str())
            .unwrap()
            .to_string();
        self.texts.lock().unwrap().push(text.clone());
        let plan = self.plan.lock().unwrap().clone();
        if let Some((code, answer)) = plan.refuse {
            return reply(code, answer);
        }
        let id = {
            let mut n = self.ids.lock().unwrap();
            *n += 1;
            format!("3EB0C767D097B7C7{:04}", *n)
        };
        self.sent.lock().unwrap().push(id.clone());
        let pushes = {
            let me = self.clone();
            let (id, text) = (id.clone(), text.clone());
            async move {
                let status = async {
                    if plan.banned {
                        me.push_from_failure(&id).await;
                    } else if let Some(d) = plan.status {
                        tokio::time::sleep(d).await;
                        me.push_status(&id).await;
                    }
                };
                let arrival = async {
                    if let Some(d) = plan.arrival {
                        tokio::time::sleep(d).await;
                        me.push_arrival(&text, &id).await;
                    }
                };
                tokio::join!(status, arrival);
            }
        };
        if plan.before_answer {
            pushes.await;
        } else {
            tokio::spawn(pushes);
        }
        match self.from {
            End::Zapi => reply(
                200,
                format!(r#"{{"zaapId":"Z{id}","messageId":"{id}","id":"{id}"}}"#),
            ),
            End::Green => reply(200, format!(r#"{{"idMessage":"{id}"}}"#)),
            End::Cloud => reply(
                200,
                format!(
                    r#"{{"messaging_product":"whatsapp","contacts":[{{"input":"{NUMBER}","wa_id":"{NUMBER}"}}],"messages":[{{"id":"wamid.{id}","message_status":"accepted"}}]}}"#
                ),
            ),
        }
    }

    async fn post(&self, end: End, gateway: &str, body: String) {
        let base = self.exporter.get().unwrap();
        let c = common::client();
        let req = match end {
            End::Zapi => c.post(format!("{base}/webhooks/{gateway}?secret={ZAPI_SECRET}")),
            End::Green => c
                .post(format!("{base}/webhooks/{gateway}"))
                .header("authorization", format!("Bearer {GREEN_TOKEN}")),
            End::Cloud => {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, APP_SECRET.as_bytes());
                let tag = ring::hmac::sign(&key, body.as_bytes());
                let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
                c.post(format!("{base}/webhooks/cloudapi/app"))
                    .header("x-hub-signature-256", format!("sha256={hex}"))
            }
        };
        let r = req
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "the exporter refused a push");
    }

    async fn push_status(&self, id: &str) {
        let body = match self.from {
            End::Zapi => format!(
                r#"{{"type":"MessageStatusCallback","status":"RECEIVED","ids":["{id}"],"momment":{}}}"#,
                now_ms()
            ),
            End::Green => format!(
                r#"{{"typeWebhook":"outgoingMessageStatus","timestamp":{},"idMessage":"{id}","status":"delivered","sendByApi":true}}"#,
                now_ms() / 1000
            ),
            End::Cloud => format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"metadata":{{"phone_number_id":"106540352242922"}},"statuses":[{{"id":"wamid.{id}","status":"delivered","timestamp":"{}","recipient_id":"{NUMBER}"}}]}}}}]}}]}}"#,
                now_ms() / 1000
            ),
        };
        self.post(self.from, "sales", body).await;
    }

    async fn push_from_failure(&self, id: &str) {
        let body = format!(
            r#"{{"type":"DeliveryCallback","messageId":"{id}","error":"Your number is shadow banned","errorCode":"SHADOW_BAN"}}"#
        );
        self.post(End::Zapi, "sales", body).await;
    }

    /// The message arrives on `to` under its own id there, `IN` and the sent id, from the chat
    /// of `from`'s number ([`FROM_NUMBER`]).
    async fn push_arrival(&self, text: &str, id: &str) {
        let text = serde_json::to_string(text).unwrap();
        let body = match self.to {
            End::Zapi => format!(
                r#"{{"type":"ReceivedCallback","fromMe":false,"phone":"{FROM_NUMBER}","messageId":"IN{id}","momment":{},"text":{{"message":{text}}}}}"#,
                now_ms()
            ),
            End::Green => format!(
                r#"{{"typeWebhook":"incomingMessageReceived","timestamp":{},"idMessage":"IN{id}","senderData":{{"chatId":"{FROM_NUMBER}@c.us"}},"messageData":{{"typeMessage":"textMessage","textMessageData":{{"textMessage":{text}}}}}}}"#,
                now_ms() / 1000
            ),
            End::Cloud => format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"phone_number_id":"106540352242922"}},"messages":[{{"from":"{FROM_NUMBER}","id":"wamid.IN{id}","timestamp":"{}","type":"text","text":{{"body":{text}}}}}]}}}}]}}]}}"#,
                now_ms() / 1000
            ),
        };
        self.post(self.to, "support", body).await;
    }
}

fn now_ms() -> u64 {
    (common::unix_now() * 1000.0) as u64
}

fn gateway_yaml(end: End, name: &str, url: &str) -> String {
    match end {
        End::Zapi => format!(
            "  - name: {name}\n    provider: zapi\n    url: {url}\n    instance: I{name}\n    token: zapi-token-for-tests-{name}\n    webhooks: {{secret: {ZAPI_SECRET}}}\n"
        ),
        End::Green => format!(
            "  - name: {name}\n    provider: greenapi\n    url: {url}\n    instance: 1101000001\n    token: green-token-for-tests-{name}\n    webhooks: {{token: {GREEN_TOKEN}}}\n"
        ),
        End::Cloud => format!(
            "  - name: {name}\n    provider: cloudapi\n    url: {url}\n    phone_number_id: '106540352242922'\n    token: cloud-token-for-tests\n"
        ),
    }
}

fn config(from: End, to: End, url: &str, extra: &str) -> String {
    let template = if from == End::Cloud {
        "    template: {name: canary, language: en}\n"
    } else {
        ""
    };
    let apps = if from == End::Cloud || to == End::Cloud {
        format!("webhooks:\n  cloudapi:\n    - {{app: app, app_secret: {APP_SECRET}, verify_token: verify-token-0123456789}}\n")
    } else {
        String::new()
    };
    format!(
        "global:\n  interval: 1h\n  timeout: 5s\ngateways:\n{}{}{apps}canaries:\n  - name: probe\n    from: sales\n    to: support\n    to_number: '+55 11 98888-7777'\n    interval: 5m\n    timeout: 2s\n{template}{extra}",
        gateway_yaml(from, "sales", url),
        gateway_yaml(to, "support", url),
    )
}

async fn world(from: End, to: End, extra: &str) -> (Arc<Relay>, Mock, Exporter) {
    let relay = Relay::new(from, to);
    let r = relay.clone();
    let mock = Mock::start(move |s| r.clone().handle(s)).await;
    let ex = Exporter::start(&config(from, to, &mock.url(), extra)).await;
    relay.exporter.set(ex.url("")).unwrap();
    (relay, mock, ex)
}

async fn run(ex: &Exporter) -> Option<RunResult> {
    let canaries = &ex.running.as_ref().unwrap().exporter.canaries;
    tokio::time::timeout(Duration::from_secs(10), canaries.run_now("probe"))
        .await
        .expect("a run ends within its timeout")
}

fn runs(m: &str, result: &str) -> f64 {
    sample(
        m,
        "whatsapp_canary_runs_total",
        &[
            ("canary", "probe"),
            ("from", "sales"),
            ("to", "support"),
            ("result", result),
        ],
    )
    .unwrap_or_else(|| panic!("no runs_total{{result={result}}} in\n{m}"))
}

fn count(m: &str, family: &str) -> f64 {
    sample(m, &format!("{family}_count"), &[("canary", "probe")]).unwrap()
}

fn nothing_private(m: &str) {
    let logs = common::logs();
    for private in [
        NUMBER,
        FROM_NUMBER,
        "98888-7777",
        "zapi-token-for-tests",
        "green-token-for-tests",
        "cloud-token-for-tests",
        "whatsapp_exporter canary ",
    ] {
        assert!(!m.contains(private), "{private} in /metrics");
        assert!(!logs.contains(private), "{private} in the logs");
    }
}

#[tokio::test]
async fn a_message_that_arrives_is_timed_end_to_end() {
    let (relay, mock, ex) = world(End::Zapi, End::Green, "").await;
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    let m = ex.metrics().await;
    assert_eq!(runs(&m, "delivered"), 1.0);
    for r in ["lost", "status_only", "send_failed"] {
        assert_eq!(runs(&m, r), 0.0, "{r}");
    }
    for f in [
        "whatsapp_canary_accept_seconds",
        "whatsapp_canary_delivered_seconds",
        "whatsapp_canary_arrival_seconds",
    ] {
        assert_eq!(count(&m, f), 1.0, "{f}");
    }
    let last = sample(
        &m,
        "whatsapp_canary_last_success_timestamp_seconds",
        &[("canary", "probe")],
    )
    .unwrap();
    assert!((last - common::unix_now()).abs() < 60.0);
    // The gateway was asked to send a recognisable text to the configured number.
    let send = mock
        .seen()
        .into_iter()
        .find(|s| s.path.ends_with("/send-text"))
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&send.body).unwrap();
    assert_eq!(body["phone"], NUMBER);
    let text = relay.texts.lock().unwrap()[0].clone();
    assert!(
        text.starts_with("whatsapp_exporter canary ") && text.len() == 41,
        "{text}"
    );
    // The message-flow series count the canary's events like any other.
    assert_eq!(
        sample(
            &m,
            "whatsapp_messages_received_total",
            &[("gateway", "support")]
        ),
        Some(1.0)
    );
    nothing_private(&m);
    ex.stop().await;
}

#[tokio::test]
async fn a_message_that_never_comes_back_is_lost() {
    let (relay, _mock, ex) = world(End::Zapi, End::Green, "").await;
    relay.set(Plan {
        status: None,
        arrival: None,
        ..Plan::default()
    });
    assert_eq!(run(&ex).await, Some(RunResult::Lost));
    let m = ex.metrics().await;
    assert_eq!(runs(&m, "lost"), 1.0);
    assert_eq!(
        count(&m, "whatsapp_canary_accept_seconds"),
        1.0,
        "it was accepted"
    );
    assert_eq!(count(&m, "whatsapp_canary_arrival_seconds"), 0.0);
    assert!(sample(&m, "whatsapp_canary_last_success_timestamp_seconds", &[]).is_none());
    ex.stop().await;
}

#[tokio::test]
async fn refused_sends_are_send_failed() {
    let (relay, _mock, ex) = world(End::Zapi, End::Green, "").await;
    for (code, body) in [
        (401, r#"{"error":"Unauthorized"}"#),
        (
            403,
            r#"{"error":"Client-Token zapi-token-for-tests-sales not allowed"}"#,
        ),
        (429, r#"{"error":"Too many requests"}"#),
        (200, r#"{"error":"Unable to send message"}"#),
    ] {
        relay.set(Plan {
            refuse: Some((code, body)),
            ..Plan::default()
        });
        assert_eq!(run(&ex).await, Some(RunResult::SendFailed), "{code} {body}");
    }
    let m = ex.metrics().await;
    assert_eq!(runs(&m, "send_failed"), 4.0);
    assert_eq!(count(&m, "whatsapp_canary_accept_seconds"), 0.0);
    assert!(common::logs().contains("canary send refused"));
    nothing_private(&m);
    ex.stop().await;
}

#[tokio::test]
async fn a_banned_number_fails_at_once_and_counts_as_lost() {
    let (relay, _mock, ex) = world(End::Zapi, End::Green, "").await;
    relay.set(Plan {
        banned: true,
        status: None,
        arrival: None,
        ..Plan::default()
    });
    let started = std::time::Instant::now();
    assert_eq!(run(&ex).await, Some(RunResult::Lost));
    // The run's timeout is 2 s: the failure ends it before.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the failure ends the run"
    );
    let m = ex.metrics().await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_message_errors_total",
            &[("gateway", "sales"), ("code", "SHADOW_BAN")]
        ),
        Some(1.0)
    );
    ex.stop().await;
}

#[tokio::test]
async fn delivered_without_arrival_is_status_only() {
    let (relay, _mock, ex) = world(End::Zapi, End::Green, "").await;
    relay.set(Plan {
        arrival: None,
        ..Plan::default()
    });
    assert_eq!(run(&ex).await, Some(RunResult::StatusOnly));
    let m = ex.metrics().await;
    assert_eq!(runs(&m, "status_only"), 1.0);
    assert_eq!(count(&m, "whatsapp_canary_delivered_seconds"), 1.0);
    assert_eq!(count(&m, "whatsapp_canary_arrival_seconds"), 0.0);
    ex.stop().await;
}

#[tokio::test]
async fn an_arrival_without_a_status_is_delivered() {
    let (relay, _mock, ex) = world(End::Zapi, End::Green, "").await;
    relay.set(Plan {
        status: None,
        ..Plan::default()
    });
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    let m = ex.metrics().await;
    assert_eq!(count(&m, "whatsapp_canary_delivered_seconds"), 0.0);
    assert_eq!(count(&m, "whatsapp_canary_arrival_seconds"), 1.0);
    ex.stop().await;
}

#[tokio::test]
async fn status_and_arrival_before_the_send_answer_still_count() {
    let (relay, _mock, ex) = world(End::Zapi, End::Green, "").await;
    relay.set(Plan {
        before_answer: true,
        status: Some(Duration::ZERO),
        arrival: Some(Duration::ZERO),
        ..Plan::default()
    });
    let started = std::time::Instant::now();
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "both were there already"
    );
    let m = ex.metrics().await;
    assert_eq!(count(&m, "whatsapp_canary_delivered_seconds"), 1.0);
    ex.stop().await;
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_run_leaves_nothing_stuck_or_counted_twice() {
    let (relay, mock, ex) = world(End::Zapi, End::Green, "").await;
    relay.set(Plan {
        status: None,
        arrival: None,
        ..Plan::default()
    });
    let canaries = ex.running.as_ref().unwrap().exporter.canaries.clone();
    let first = tokio::spawn(async move { canaries.run_now("probe").await });
    for _ in 0..200 {
        if !relay.texts.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let old_text = relay.texts.lock().unwrap()[0].clone();
    ex.stop().await;
    let stopped = tokio::time::timeout(Duration::from_secs(2), first).await;
    assert_eq!(
        stopped.expect("the stopped run ends").unwrap(),
        None,
        "and counts nothing"
    );

    // The next process: the old message's arrival is nobody's run.
    let ex = Exporter::start(&config(End::Zapi, End::Green, &mock.url(), "")).await;
    let relay2 = Relay::new(End::Zapi, End::Green);
    relay2.exporter.set(ex.url("")).unwrap();
    relay2.push_arrival(&old_text, "OLD").await;
    let m = ex.metrics().await;
    for r in ["delivered", "lost", "status_only", "send_failed"] {
        assert_eq!(runs(&m, r), 0.0, "{r}");
    }
    ex.stop().await;
}

#[tokio::test]
async fn the_daily_cap_stops_the_runs() {
    let (relay, _mock, ex) = world(End::Zapi, End::Green, "    daily_cap: 2\n").await;
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    assert_eq!(run(&ex).await, None, "over the cap");
    assert_eq!(relay.texts.lock().unwrap().len(), 2, "two sends only");
    let m = ex.metrics().await;
    assert_eq!(runs(&m, "delivered"), 2.0);
    assert!(common::logs().contains("daily_cap is reached"));
    ex.stop().await;
}

#[tokio::test]
async fn a_green_api_sender() {
    let (relay, mock, ex) = world(End::Green, End::Zapi, "").await;
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    let send = mock
        .seen()
        .into_iter()
        .find(|s| s.path.contains("/sendMessage/"))
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&send.body).unwrap();
    assert_eq!(body["chatId"], format!("{NUMBER}@c.us"));
    let m = ex.metrics().await;
    assert_eq!(count(&m, "whatsapp_canary_delivered_seconds"), 1.0);
    assert_eq!(relay.texts.lock().unwrap().len(), 1);
    ex.stop().await;
}

#[tokio::test]
async fn a_cloud_api_sender_sends_its_template() {
    let (relay, mock, ex) = world(End::Cloud, End::Zapi, "").await;
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    let send = mock
        .seen()
        .into_iter()
        .find(|s| s.path.ends_with("/messages"))
        .unwrap();
    assert_eq!(send.path, "/v26.0/106540352242922/messages");
    let body: serde_json::Value = serde_json::from_slice(&send.body).unwrap();
    assert_eq!(body["type"], "template");
    assert_eq!(body["template"]["name"], "canary");
    assert_eq!(body["to"], NUMBER);
    let m = ex.metrics().await;
    assert_eq!(
        count(&m, "whatsapp_canary_delivered_seconds"),
        1.0,
        "the signed status came"
    );
    assert_eq!(relay.texts.lock().unwrap().len(), 1);
    ex.stop().await;
}

#[tokio::test]
async fn a_canary_whose_end_is_deaf_is_refused_with_the_fix() {
    let yaml = config(End::Zapi, End::Green, "http://127.0.0.1:9", "")
        .replace(&format!("    webhooks: {{token: {GREEN_TOKEN}}}\n"), "");
    let e = Exporter::try_start(&yaml).await.err().unwrap();
    assert!(
        e.contains("canaries[0] (probe): to: gateway \"support\" receives no webhooks"),
        "{e}"
    );
    assert!(e.contains("notifications: consume"), "{e}");
    assert!(!e.contains(NUMBER) && !e.contains("98888"), "{e}");
    let fast = config(End::Zapi, End::Green, "http://127.0.0.1:9", "")
        .replace("interval: 5m", "interval: 4m");
    let e = Exporter::try_start(&fast).await.err().unwrap();
    assert!(
        e.contains("canaries[0] (probe): interval: 4m is shorter"),
        "{e}"
    );
}

#[tokio::test]
async fn a_canary_runs_without_background_polling() {
    let relay = Relay::new(End::Zapi, End::Green);
    let r = relay.clone();
    let mock = Mock::start(move |s| r.clone().handle(s)).await;
    let polling = whatsapp_exporter::Polling {
        shard: None,
        no_background: true,
    };
    let ex = Exporter::try_start_full(
        &config(End::Zapi, End::Green, &mock.url(), ""),
        None,
        polling,
    )
    .await
    .unwrap();
    relay.exporter.set(ex.url("")).unwrap();
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    let m = ex.metrics().await;
    assert_eq!(runs(&m, "delivered"), 1.0, "canary series stay on /metrics");
    ex.stop().await;
}

/// The Z-API delete of message `id`, as the docs have it: query parameters, no body.
fn assert_zapi_delete(d: &Seen, id: &str) {
    assert_eq!(d.method, hyper::Method::DELETE);
    assert_eq!(
        d.path,
        "/instances/Isales/token/zapi-token-for-tests-sales/messages"
    );
    assert_eq!(
        d.query,
        format!("messageId={id}&phone={NUMBER}&owner=true"),
        "the documented parameters"
    );
    assert!(d.body.is_empty());
}

#[tokio::test]
async fn a_delivered_message_is_deleted_for_everyone_once() {
    let (relay, _mock, ex) = world(End::Zapi, End::Green, "").await;
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    let deletes = relay.deletes();
    assert_eq!(deletes.len(), 1, "one delete");
    assert_zapi_delete(&deletes[0], &relay.sent()[0]);
    let m = ex.metrics().await;
    assert_eq!(cleanup_failures(&m, "delete"), Some(0.0));
    assert_eq!(cleanup_failures(&m, "mark_read"), Some(0.0));
    let (_, page) = ex.get("/").await;
    assert!(!page.contains(NUMBER) && !page.contains(&relay.sent()[0]));
    nothing_private(&m);
    assert!(
        !common::logs().contains(&relay.sent()[0]),
        "the id in the logs"
    );
    ex.stop().await;
}

#[tokio::test]
async fn a_lost_message_is_deleted_too_and_a_refused_send_deletes_nothing() {
    let (relay, _mock, ex) = world(End::Zapi, End::Green, "").await;
    relay.set(Plan {
        status: None,
        arrival: None,
        ..Plan::default()
    });
    assert_eq!(run(&ex).await, Some(RunResult::Lost));
    assert_eq!(relay.deletes().len(), 1);
    assert_zapi_delete(&relay.deletes()[0], &relay.sent()[0]);
    relay.set(Plan {
        refuse: Some((500, r#"{"error":"boom"}"#)),
        ..Plan::default()
    });
    assert_eq!(run(&ex).await, Some(RunResult::SendFailed));
    assert_eq!(relay.deletes().len(), 1, "no id, nothing to delete");
    ex.stop().await;
}

#[tokio::test]
async fn cleanup_false_keeps_the_messages() {
    let (relay, _mock, ex) = world(End::Zapi, End::Green, "    cleanup: false\n").await;
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    relay.set(Plan {
        status: None,
        arrival: None,
        ..Plan::default()
    });
    assert_eq!(run(&ex).await, Some(RunResult::Lost));
    assert!(relay.deletes().is_empty());
    assert!(relay.reads().is_empty(), "nor marked read");
    ex.stop().await;
}

#[tokio::test]
async fn a_failed_delete_is_counted_and_leaves_the_result() {
    let (relay, _mock, ex) = world(End::Zapi, End::Green, "").await;
    relay.set(Plan {
        delete_status: 500,
        ..Plan::default()
    });
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    assert_eq!(relay.deletes().len(), 1);
    let m = ex.metrics().await;
    assert_eq!(runs(&m, "delivered"), 1.0, "the result stands");
    assert_eq!(cleanup_failures(&m, "delete"), Some(1.0));
    assert!(sample(
        &m,
        "whatsapp_canary_last_success_timestamp_seconds",
        &[("canary", "probe")]
    )
    .is_some());
    let logs = common::logs();
    assert!(logs.contains("canary cleanup call failed"), "logged");
    assert!(!logs.contains(&relay.sent()[0]), "the id in the logs");
    nothing_private(&m);
    let (_, page) = ex.get("/").await;
    assert!(!page.contains(NUMBER));
    ex.stop().await;
}

#[tokio::test]
async fn a_green_api_sender_deletes_with_delete_message() {
    let (relay, _mock, ex) = world(End::Green, End::Zapi, "").await;
    relay.set(Plan {
        delete_status: 200,
        ..Plan::default()
    });
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    let d = relay.deletes();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].method, hyper::Method::POST);
    assert_eq!(
        d[0].path,
        "/waInstance1101000001/deleteMessage/green-token-for-tests-sales"
    );
    let body: serde_json::Value = serde_json::from_slice(&d[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"chatId": format!("{NUMBER}@c.us"), "idMessage": relay.sent()[0]}),
        "for everyone: no onlySenderDelete"
    );
    ex.stop().await;
}

#[tokio::test]
async fn a_cloud_api_sender_has_nothing_to_delete() {
    let (relay, _mock, ex) = world(End::Cloud, End::Zapi, "").await;
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    assert!(relay.deletes().is_empty(), "the Cloud API has no delete");
    let m = ex.metrics().await;
    assert_eq!(cleanup_failures(&m, "delete"), Some(0.0));
    ex.stop().await;
}

/// `whatsapp_canary_cleanup_failures_total` of the canary's `step`, under its three labels.
fn cleanup_failures(m: &str, step: &str) -> Option<f64> {
    sample(
        m,
        "whatsapp_canary_cleanup_failures_total",
        &[
            ("canary", "probe"),
            ("from", "sales"),
            ("to", "support"),
            ("step", step),
        ],
    )
}

/// The one mark-read call of the run: its path and JSON body.
fn one_read(relay: &Relay) -> (String, serde_json::Value) {
    let reads = relay.reads();
    assert_eq!(reads.len(), 1, "one mark-read");
    assert_eq!(reads[0].method, hyper::Method::POST);
    let body = serde_json::from_slice(&reads[0].body).unwrap();
    (reads[0].path.clone(), body)
}

#[tokio::test]
async fn an_arrived_message_is_marked_read_on_a_green_api_to() {
    let (relay, _mock, ex) = world(End::Zapi, End::Green, "").await;
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    let (path, body) = one_read(&relay);
    assert_eq!(
        path,
        "/waInstance1101000001/readChat/green-token-for-tests-support"
    );
    let incoming = format!("IN{}", relay.sent()[0]);
    assert_eq!(
        body,
        serde_json::json!({"chatId": format!("{FROM_NUMBER}@c.us"), "idMessage": incoming}),
        "the chat and the id the arrival named"
    );
    assert_eq!(relay.deletes().len(), 1, "and deleted on from");
    let m = ex.metrics().await;
    assert_eq!(cleanup_failures(&m, "mark_read"), Some(0.0));
    assert_eq!(cleanup_failures(&m, "delete"), Some(0.0));
    nothing_private(&m);
    assert!(
        !common::logs().contains(&incoming),
        "the incoming id in the logs"
    );
    ex.stop().await;
}

#[tokio::test]
async fn an_arrived_message_is_marked_read_on_a_zapi_to() {
    let (relay, _mock, ex) = world(End::Green, End::Zapi, "").await;
    relay.set(Plan {
        delete_status: 200,
        ..Plan::default()
    });
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    let (path, body) = one_read(&relay);
    assert_eq!(
        path,
        "/instances/Isupport/token/zapi-token-for-tests-support/read-message"
    );
    assert_eq!(
        body,
        serde_json::json!({"phone": FROM_NUMBER, "messageId": format!("IN{}", relay.sent()[0])})
    );
    ex.stop().await;
}

#[tokio::test]
async fn an_arrived_message_is_marked_read_on_a_cloud_api_to() {
    let (relay, _mock, ex) = world(End::Zapi, End::Cloud, "").await;
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    let (path, body) = one_read(&relay);
    assert_eq!(path, "/v26.0/106540352242922/messages");
    assert_eq!(
        body,
        serde_json::json!({"messaging_product": "whatsapp", "status": "read", "message_id": format!("wamid.IN{}", relay.sent()[0])})
    );
    let m = ex.metrics().await;
    assert_eq!(cleanup_failures(&m, "mark_read"), Some(0.0));
    nothing_private(&m);
    ex.stop().await;
}

#[tokio::test]
async fn a_message_that_did_not_arrive_has_nothing_to_mark_read() {
    let (relay, _mock, ex) = world(End::Zapi, End::Green, "").await;
    relay.set(Plan {
        arrival: None,
        ..Plan::default()
    });
    assert_eq!(run(&ex).await, Some(RunResult::StatusOnly));
    assert!(relay.reads().is_empty());
    assert_eq!(relay.deletes().len(), 1, "still deleted on from");
    ex.stop().await;
}

#[tokio::test]
async fn a_failed_mark_read_is_counted_and_the_delete_still_goes() {
    let (relay, _mock, ex) = world(End::Zapi, End::Green, "").await;
    relay.set(Plan {
        read_status: Some(466),
        ..Plan::default()
    });
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    assert_eq!(relay.reads().len(), 1);
    assert_eq!(relay.deletes().len(), 1, "the delete is not skipped");
    let m = ex.metrics().await;
    assert_eq!(runs(&m, "delivered"), 1.0, "the result stands");
    assert_eq!(cleanup_failures(&m, "mark_read"), Some(1.0));
    assert_eq!(cleanup_failures(&m, "delete"), Some(0.0));
    let logs = common::logs();
    assert!(logs.contains("canary cleanup call failed") && logs.contains("mark_read"));
    nothing_private(&m);
    assert!(!logs.contains(&format!("IN{}", relay.sent()[0])));
    ex.stop().await;
}

/// A WAHA sender whose send answer names the message `..`: a URL would drop that dot segment
/// and turn the cleanup's delete of one message into WAHA's "delete the chat".
#[tokio::test]
async fn a_send_answer_id_of_dots_is_a_failed_send_and_deletes_nothing() {
    for id in ["..", ".", "...."] {
        let answer = format!(r#"{{"id":"{id}","fromMe":true,"ack":1}}"#);
        let mock = Mock::start(move |s| {
            let answer = answer.clone();
            async move {
                match s.path.as_str() {
                    "/api/sendText" => reply(201, answer),
                    p if p.contains("getStateInstance") => {
                        reply(200, r#"{"stateInstance":"authorized"}"#)
                    }
                    _ => reply(200, "{}"),
                }
            }
        })
        .await;
        let yaml = config(End::Zapi, End::Green, &mock.url(), "").replace(
            &gateway_yaml(End::Zapi, "sales", &mock.url()),
            &format!(
                "  - name: sales\n    provider: waha\n    url: {}\n    instance: default\n    webhooks: {{secret: {ZAPI_SECRET}}}\n",
                mock.url()
            ),
        );
        let ex = Exporter::start(&yaml).await;
        assert_eq!(run(&ex).await, Some(RunResult::SendFailed), "{id:?}");
        let seen = mock.seen();
        assert!(seen.iter().any(|s| s.path == "/api/sendText"), "it sent");
        assert!(
            !seen.iter().any(|s| s.method == hyper::Method::DELETE),
            "{id:?}: a DELETE reached WAHA"
        );
        let m = ex.metrics().await;
        assert_eq!(runs(&m, "send_failed"), 1.0);
        assert_eq!(cleanup_failures(&m, "delete"), Some(0.0));
        assert!(!common::logs().contains("chats/"), "no URL in the logs");
        ex.stop().await;
    }
}

/// The exporter with `--storage.path` `dir`, its relay pushing to it.
async fn stored_world(
    relay: &Arc<Relay>,
    mock: &Mock,
    extra: &str,
    dir: Option<&common::TempDir>,
) -> Exporter {
    let yaml = config(End::Zapi, End::Green, &mock.url(), extra);
    let storage = dir.map(|d| d.0.clone());
    let ex = Exporter::try_start_stored(&yaml, None, Default::default(), storage)
        .await
        .unwrap_or_else(|e| panic!("exporter did not start: {e}"));
    relay.exporter.set(ex.url("")).ok();
    ex
}

fn first_run_at(ex: &Exporter) -> tokio::time::Instant {
    let canaries = &ex.running.as_ref().unwrap().exporter.canaries;
    canaries.get("probe").unwrap().first_run_at()
}

/// An out-of-memory restart loop must not send a billed message on every start.
#[tokio::test]
async fn the_daily_cap_holds_across_a_restart_with_a_storage_path() {
    let relay = Relay::new(End::Zapi, End::Green);
    let r = relay.clone();
    let mock = Mock::start(move |s| r.clone().handle(s)).await;
    let dir = common::TempDir::new();
    let cap = "    daily_cap: 1\n";
    let before = tokio::time::Instant::now();
    let ex = stored_world(&relay, &mock, cap, Some(&dir)).await;
    assert!(
        first_run_at(&ex) < before + Duration::from_secs(300),
        "with a state file the first run comes before a full interval"
    );
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    assert!(dir.0.join(whatsapp_exporter::canary::STATE_FILE).exists());
    ex.stop().await;

    for _ in 0..3 {
        let ex = stored_world(&relay, &mock, cap, Some(&dir)).await;
        assert_eq!(
            run(&ex).await,
            None,
            "the day's run was spent before the restart"
        );
        ex.stop().await;
    }
    assert_eq!(relay.texts.lock().unwrap().len(), 1, "one send that day");
    assert!(common::logs().contains("daily_cap is reached"));
}

/// A reload that changes the canary builds it afresh, but its runs of the day stay with its name.
#[tokio::test]
async fn the_daily_cap_holds_across_a_reload_that_changes_the_canary() {
    let (relay, mock, ex) = world(End::Zapi, End::Green, "    daily_cap: 1\n").await;
    assert_eq!(run(&ex).await, Some(RunResult::Delivered));
    let changed = config(End::Zapi, End::Green, &mock.url(), "    daily_cap: 1\n")
        .replace("timeout: 2s", "timeout: 3s");
    ex.write_config(&changed);
    let reload = common::client()
        .post(ex.url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status().as_u16(), 200);
    let canaries = &ex.running.as_ref().unwrap().exporter.canaries;
    assert_eq!(
        canaries.get("probe").unwrap().config.timeout,
        Duration::from_secs(3),
        "the reload took"
    );
    assert_eq!(
        run(&ex).await,
        None,
        "the day's run was spent before the reload"
    );
    assert_eq!(relay.texts.lock().unwrap().len(), 1, "one send that day");
    ex.stop().await;
}

/// Without a state file, the process cannot know when the last run before it was.
#[tokio::test]
async fn without_a_storage_path_the_first_run_waits_a_full_interval() {
    let relay = Relay::new(End::Zapi, End::Green);
    let r = relay.clone();
    let mock = Mock::start(move |s| r.clone().handle(s)).await;
    let before = tokio::time::Instant::now();
    let ex = stored_world(&relay, &mock, "", None).await;
    assert!(first_run_at(&ex) >= before + Duration::from_secs(300));
    ex.stop().await;
}

/// The demo's gateways start with the process, so its canaries run soon, as its README says.
#[tokio::test]
async fn the_demo_canaries_run_soon_after_the_start() {
    let before = tokio::time::Instant::now();
    let running = common::start_demo().await;
    let list = running.exporter.canaries.list();
    assert!(!list.is_empty());
    for c in list.iter() {
        assert!(
            c.first_run_at() <= before + Duration::from_secs(60) + Duration::from_secs(1),
            "{}",
            c.config.name
        );
    }
    running.shutdown().await;
}
