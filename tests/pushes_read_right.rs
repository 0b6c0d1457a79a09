//! What real pushes showed the exporter read wrong (issue 25), replayed black-box against mock
//! gateways on 127.0.0.1: Z-API notifications taken for received messages, Evolution v1's
//! `messages.update` id, a disconnection push older than the last poll, the logs of pushed
//! disconnections and of pushed re-polls, and webhook secrets shorter than 16 characters.

mod common;

use std::time::Duration;

use common::{fixture_body, hourly, reply, sample, unix_now, webhook_fixture, Exporter, Mock};

const ZAPI_SECRET: &str = "zapi-webhook-secret-0123456789";
const EVO_SECRET: &str = "evolution-webhook-secret-0123456789";
const WAHA_SECRET: &str = "waha-url-secret-0123456789abcdef";
/// WAHA's documented example key (waha/hmac_docs_example.json): 13 characters.
const WAHA_DOCS_KEY: &str = "my-secret-key";
const GREEN_SHORT: &str = "gr33n-t0k3n";

async fn post(ex: &Exporter, path: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    let mut req = common::client()
        .post(ex.url(path))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}

/// Answers every gateway's status call as connected: Z-API's status, WAHA's session, Evolution's
/// connectionState, Green API's state.
async fn connected_mock() -> Mock {
    Mock::start(|s| async move {
        let p = s.path.as_str();
        if p.starts_with("/api/sessions/") {
            reply(
                200,
                r#"{"name":"default","status":"WORKING","config":{},"me":null}"#,
            )
        } else if p.starts_with("/instance/connectionState/") {
            reply(
                200,
                r#"{"instance":{"instanceName":"my-instance","state":"open"}}"#,
            )
        } else if p.contains("getStateInstance") {
            reply(200, r#"{"stateInstance":"authorized"}"#)
        } else {
            reply(
                200,
                r#"{"connected":true,"session":true,"error":"","smartphoneConnected":true}"#,
            )
        }
    })
    .await
}

#[tokio::test]
async fn a_zapi_notification_is_an_event_not_a_received_message() {
    let mock = connected_mock().await;
    let ex = Exporter::start(&hourly(&format!(
        "  - name: zsales\n    provider: zapi\n    url: {}\n    instance: I\n    token: zapi-token-for-tests\n    webhooks:\n      secret: {ZAPI_SECRET}\n",
        mock.url()
    )))
    .await;
    let path = format!("/webhooks/zsales?secret={ZAPI_SECRET}");
    for f in [
        "received_notification_call_missed_voice",
        "received_notification_membership_approval_request",
        "received_text",
    ] {
        assert_eq!(
            post(&ex, &path, &[], &fixture_body("zapi", f)).await,
            200,
            "{f}"
        );
    }
    let m = ex.metrics().await;
    let gw = ("gateway", "zsales");
    assert_eq!(
        sample(
            &m,
            "whatsapp_webhook_events_total",
            &[gw, ("event", "ReceivedCallback")]
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "whatsapp_messages_received_total", &[gw]),
        Some(1.0),
        "a missed call and a join request are no messages: {m}"
    );
    assert!(
        !m.contains("5544999999999") && !m.contains("CALL_MISSED"),
        "{m}"
    );
    ex.stop().await;
}

#[tokio::test]
async fn an_evolution_v1_update_measures_delivery_time() {
    let mock = connected_mock().await;
    let ex = Exporter::start(&hourly(&format!(
        "  - name: evo-v1\n    provider: evolution\n    url: {}\n    token: evo-GLOBAL-KEY-4b7e1d93\n    instance: my-instance\n    webhooks:\n      secret: {EVO_SECRET}\n",
        mock.url()
    )))
    .await;
    let path = format!("/webhooks/evo-v1?secret={EVO_SECRET}");
    let mut sent: serde_json::Value =
        serde_json::from_str(&fixture_body("evolution", "send_message")).unwrap();
    sent["data"]["messageTimestamp"] = serde_json::Value::from(unix_now().floor());
    assert_eq!(post(&ex, &path, &[], &sent.to_string()).await, 200);
    let v1 = fixture_body("evolution", "messages_update_v1_delivery_ack");
    assert_eq!(post(&ex, &path, &[], &v1).await, 200);
    let m = ex.metrics().await;
    let gw = ("gateway", "evo-v1");
    assert_eq!(
        sample(
            &m,
            "whatsapp_message_status_total",
            &[gw, ("status", "delivered")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "whatsapp_message_delivery_seconds_count", &[gw]),
        Some(1.0),
        "sent to delivered, matched by the v1 data.id: {m}"
    );
    for private in ["BAE594145F4C59B4", "5511988887777", "B3844804"] {
        assert!(!m.contains(private), "{private}");
    }
    ex.stop().await;
}

fn waha_failed(id: &str, at: f64) -> String {
    format!(
        r#"{{"id":"{id}","timestamp":{},"event":"session.status","session":"default","payload":{{"name":"default","status":"FAILED"}}}}"#,
        (at * 1000.0) as u64
    )
}

#[tokio::test]
async fn a_disconnection_older_than_the_last_poll_changes_nothing() {
    let mock = connected_mock().await;
    let ex = Exporter::start(&hourly(&format!(
        "  - name: waha-late\n    provider: waha\n    url: {}\n    instance: default\n    webhooks:\n      secret: {WAHA_SECRET}\n",
        mock.url()
    )))
    .await;
    ex.poll("waha-late").await;
    let path = format!("/webhooks/waha-late?secret={WAHA_SECRET}");
    let gw = ("gateway", "waha-late");
    let connected = |m: &str| sample(m, "whatsapp_connected", &[gw]);
    let failed = |m: &str| sample(m, "whatsapp_disconnects_total", &[gw, ("code", "FAILED")]);
    let logged = || {
        common::logs()
            .lines()
            .filter(|l| {
                l.contains("pushed: the number is not connected") && l.contains("gateway=waha-late")
            })
            .count()
    };
    // A minute before the poll, which saw the session WORKING since: history.
    let old = waha_failed("evt_old_failed", unix_now() - 60.0);
    assert_eq!(post(&ex, &path, &[], &old).await, 200);
    let m = ex.metrics().await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_webhook_events_total",
            &[gw, ("event", "session.status")]
        ),
        Some(1.0),
        "counted as an event"
    );
    assert_eq!(connected(&m), Some(1.0), "not set by an older push");
    assert_eq!(failed(&m), Some(0.0), "nor counted: {m}");
    assert_eq!(logged(), 0);
    // After the poll: both at once, and one line in the log.
    let new = waha_failed("evt_new_failed", unix_now() + 1.0);
    assert_eq!(post(&ex, &path, &[], &new).await, 200);
    let m = ex.metrics().await;
    assert_eq!(connected(&m), Some(0.0));
    assert_eq!(failed(&m), Some(1.0));
    assert_eq!(logged(), 1);
    let line = common::logs()
        .lines()
        .find(|l| l.contains("gateway=waha-late") && l.contains("pushed:"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        line.contains("level=info") && line.contains("event=session.status"),
        "{line}"
    );
    assert!(
        !line.contains(WAHA_SECRET) && !line.contains("evt_new"),
        "{line}"
    );
    ex.stop().await;
}

#[tokio::test]
async fn short_webhook_secrets_are_taken_with_a_warning() {
    let mock = connected_mock().await;
    let ex = Exporter::start(&hourly(&format!(
        "  - name: waha-docs\n    provider: waha\n    url: {url}\n    instance: default\n    webhooks:\n      hmac_key: {WAHA_DOCS_KEY}\n  - name: green-old\n    provider: greenapi\n    url: {url}\n    instance: \"1101000001\"\n    token: green-api-token-for-tests\n    webhooks:\n      token: {GREEN_SHORT}\n",
        url = mock.url()
    )))
    .await;
    // WAHA's documented example, signed with its documented key, is accepted.
    let f = webhook_fixture("waha", "hmac_docs_example");
    let hmac = f["headers"]["X-Webhook-Hmac"].as_str().unwrap();
    let code = post(
        &ex,
        "/webhooks/waha-docs",
        &[
            ("x-webhook-hmac", hmac),
            ("x-webhook-hmac-algorithm", "sha512"),
        ],
        f["raw_body"].as_str().unwrap(),
    )
    .await;
    assert_eq!(code, 200);
    let green = fixture_body("greenapi", "incoming_text");
    let bearer = format!("Bearer {GREEN_SHORT}");
    let code = post(
        &ex,
        "/webhooks/green-old",
        &[("authorization", &bearer)],
        &green,
    )
    .await;
    assert_eq!(code, 200);
    let m = ex.metrics().await;
    for gw in ["waha-docs", "green-old"] {
        let accepted: f64 =
            common::samples(&m, "whatsapp_webhook_events_total", &[("gateway", gw)])
                .iter()
                .sum();
        assert_eq!(accepted, 1.0, "{gw}: {m}");
    }
    let logs = common::logs();
    for (gw, key) in [
        ("waha-docs", "webhooks.hmac_key"),
        ("green-old", "webhooks.token"),
    ] {
        assert!(
            logs.lines().any(|l| l.contains("level=warn")
                && l.contains("shorter than advised")
                && l.contains(&format!("({gw})"))
                && l.contains(&format!("key={key}"))),
            "{gw}: {logs}"
        );
    }
    assert!(!logs.contains(WAHA_DOCS_KEY) && !logs.contains(GREEN_SHORT));
    ex.stop().await;
}

/// A Cloud API number, its app's webhooks, and a mock Graph API that counts its calls.
fn cloud_config(url: &str) -> String {
    format!(
        "global:\n  interval: 1h\n  timeout: 5s\ngateways:\n  - name: brand\n    provider: cloudapi\n    url: {url}\n    phone_number_id: \"106540352242922\"\n    token: meta-token-for-tests\n  - name: other\n    provider: cloudapi\n    url: {url}\n    phone_number_id: \"1122334455667\"\n    token: meta-token-for-tests\nwebhooks:\n  cloudapi:\n    - app: main\n      app_secret: test_app_secret_do_not_use\n      verify_token: meta-verify-token-0123456789\n"
    )
}

#[tokio::test]
async fn polling_now_is_told_only_when_the_poll_starts() {
    let mock = Mock::start(|_| async {
        reply(
            200,
            r#"{"status":"CONNECTED","quality_rating":"GREEN","id":"106540352242922"}"#,
        )
    })
    .await;
    let ex = Exporter::start(&cloud_config(&mock.url())).await;
    // `brand` was just called: the 10-second gap turns its re-poll away; `other` is polled.
    assert_eq!(ex.get("/probe?target=brand").await.0, 200);
    let hits = mock.hits();
    let f = webhook_fixture("cloudapi", "account_restriction");
    let sig = f["headers"]["X-Hub-Signature-256"].as_str().unwrap();
    let body = fixture_body("cloudapi", "account_restriction");
    let code = post(
        &ex,
        "/webhooks/cloudapi/main",
        &[("x-hub-signature-256", sig)],
        &body,
    )
    .await;
    assert_eq!(code, 200);
    for _ in 0..50 {
        if mock.hits() > hits {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The skipped re-poll has nothing more to do; give it the time the polled one took.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mock.hits(), hits + 1, "only `other` is polled");
    let polling_now = |gw: &str| {
        common::logs()
            .lines()
            .filter(|l| {
                l.contains("polling now") && l.split(' ').any(|f| f == format!("gateway={gw}"))
            })
            .count()
    };
    assert_eq!(polling_now("other"), 1);
    assert_eq!(polling_now("brand"), 0, "no poll, no line");
    ex.stop().await;
}
