//! Green API webhooks, black-box: the documented notification bodies posted to
//! `/webhooks/<gateway>` with `Authorization: Bearer <webhookUrlToken>`.

mod common;

use common::{fixture_body, reply, sample, samples, unix_now, Exporter, Mock};

const TOKEN: &str = "green-webhook-url-token-0123456789";

async fn gateway_mock() -> Mock {
    Mock::start(|_| async { reply(200, r#"{"stateInstance":"authorized"}"#) }).await
}

fn config(url: &str, extra: &str) -> String {
    format!(
        r#"global:
  interval: 1h
  timeout: 5s
gateways:
  - name: support
    provider: greenapi
    url: {url}
    instance: "1101000001"
    token: green-api-token-for-tests
    webhooks:
      token: {TOKEN}
{extra}"#
    )
}

async fn post(ex: &Exporter, auth: Option<&str>, body: &str) -> u16 {
    let mut req = common::client()
        .post(ex.url("/webhooks/support"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap().status().as_u16()
}

async fn hook(ex: &Exporter, body: &str) -> u16 {
    post(ex, Some(&format!("Bearer {TOKEN}")), body).await
}

fn g(labels: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut l = vec![("gateway", "support")];
    l.extend_from_slice(labels);
    l
}

#[tokio::test]
async fn documented_notifications_are_counted() {
    let mock = gateway_mock().await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    let fixtures = [
        "incoming_text",
        "outgoing_message_received",
        "outgoing_api_message_received",
        "status_sent",
        "status_delivered",
        "status_read",
        "status_failed",
        "status_noaccount",
        "status_notingroup",
        "status_yellowcard",
        "status_instance_online",
        "device_info",
        "incoming_call",
        "incoming_block",
        "quota_exceeded",
    ];
    for f in fixtures {
        assert_eq!(hook(&ex, &fixture_body("greenapi", f)).await, 200, "{f}");
    }
    let m = ex.metrics().await;
    let events = |e: &'static str| sample(&m, "whatsapp_webhook_events_total", &g(&[("event", e)]));
    assert_eq!(events("outgoingMessageStatus"), Some(7.0));
    assert_eq!(events("incomingMessageReceived"), Some(1.0));
    assert_eq!(events("quotaExceeded"), Some(1.0));
    let total: f64 = samples(&m, "whatsapp_webhook_events_total", &g(&[]))
        .iter()
        .sum();
    assert_eq!(total, fixtures.len() as f64);
    let status =
        |s: &'static str| sample(&m, "whatsapp_message_status_total", &g(&[("status", s)]));
    assert_eq!(status("sent"), Some(1.0));
    assert_eq!(status("delivered"), Some(1.0));
    assert_eq!(status("read"), Some(1.0));
    assert_eq!(status("failed"), Some(4.0));
    for code in ["SWE004", "noAccount", "notInGroup", "yellowCard"] {
        assert_eq!(
            sample(&m, "whatsapp_message_errors_total", &g(&[("code", code)])),
            Some(1.0),
            "{code}"
        );
    }
    assert_eq!(
        sample(&m, "whatsapp_messages_received_total", &g(&[])),
        Some(1.0)
    );
    ex.stop().await;
}

#[tokio::test]
async fn only_the_exact_bearer_token_is_accepted() {
    let mock = gateway_mock().await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    let body = fixture_body("greenapi", "status_read");
    for auth in [
        None,
        Some(TOKEN.to_string()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[1..])),
        Some(format!("Basic {TOKEN}")),
        Some("Bearer wrong-token-0123456789abcdef".to_string()),
    ] {
        assert_eq!(post(&ex, auth.as_deref(), &body).await, 401, "{auth:?}");
    }
    // The token in the query string is not the header.
    let r = common::client()
        .post(ex.url(&format!("/webhooks/support?secret={TOKEN}")))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(hook(&ex, "{\"typeWebhook\"").await, 400);
    assert_eq!(hook(&ex, "{\"typeWebbook\":\"x\"}").await, 422);
    let m = ex.metrics().await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_webhook_rejected_total",
            &g(&[("reason", "unauthorized")])
        ),
        Some(7.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_webhook_rejected_total",
            &g(&[("reason", "invalid_json")])
        ),
        Some(1.0)
    );
    let total: f64 = samples(&m, "whatsapp_webhook_events_total", &g(&[]))
        .iter()
        .sum();
    assert_eq!(total, 0.0);
    assert_eq!(
        sample(
            &m,
            "whatsapp_message_status_total",
            &g(&[("status", "read")])
        ),
        Some(0.0)
    );
    assert!(!common::logs().contains(TOKEN));
    ex.stop().await;
}

#[tokio::test]
async fn a_pushed_state_change_is_seen_at_once() {
    let mock = gateway_mock().await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    let gw = ex
        .running
        .as_ref()
        .unwrap()
        .exporter
        .gateway("support")
        .unwrap();
    gw.poll().await.unwrap();
    // The documented example is old: the poll after it knows better.
    assert_eq!(
        hook(&ex, &fixture_body("greenapi", "state_blocked")).await,
        200
    );
    let m = ex.metrics().await;
    assert_eq!(sample(&m, "whatsapp_connected", &g(&[])), Some(1.0));
    let body = format!(
        r#"{{"typeWebhook":"stateInstanceChanged","instanceData":{{"idInstance":1,"wid":"11001234567@c.us","typeInstance":"whatsapp"}},"timestamp":{},"stateInstance":"notAuthorized"}}"#,
        unix_now() as u64
    );
    assert_eq!(hook(&ex, &body).await, 200);
    let m = ex.metrics().await;
    assert_eq!(sample(&m, "whatsapp_connected", &g(&[])), Some(0.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_greenapi_state",
            &g(&[("state", "notAuthorized")])
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "whatsapp_connected_changes_total", &g(&[])),
        Some(1.0)
    );
    gw.poll().await.unwrap();
    let m = ex.metrics().await;
    assert_eq!(sample(&m, "whatsapp_connected", &g(&[])), Some(1.0));
    ex.stop().await;
}

#[tokio::test]
async fn sent_through_the_api_to_delivered() {
    let mock = gateway_mock().await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    let now = unix_now() as u64;
    let api = format!(
        r#"{{"typeWebhook":"outgoingAPIMessageReceived","timestamp":{},"idMessage":"BAE5F4886F6F2D05"}}"#,
        now - 20
    );
    let status = |s: &str, t: u64| {
        format!(
            r#"{{"typeWebhook":"outgoingMessageStatus","chatId":"11001234567@c.us","timestamp":{t},"idMessage":"BAE5F4886F6F2D05","status":"{s}","sendByApi":true}}"#
        )
    };
    assert_eq!(hook(&ex, &api).await, 200);
    assert_eq!(hook(&ex, &status("sent", now - 19)).await, 200);
    assert_eq!(hook(&ex, &status("delivered", now - 15)).await, 200);
    assert_eq!(hook(&ex, &status("read", now - 1)).await, 200);
    let m = ex.metrics().await;
    assert_eq!(
        sample(&m, "whatsapp_message_delivery_seconds_count", &g(&[])),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "whatsapp_message_delivery_seconds_sum", &g(&[])),
        Some(5.0)
    );
    ex.stop().await;
}

#[tokio::test]
async fn consuming_the_queue_and_webhooks_are_refused_together() {
    let yaml = config("http://127.0.0.1:9", "")
        .replace("    webhooks:", "    notifications: consume\n    webhooks:");
    let err = Exporter::try_start(&yaml).await.err().expect("refused");
    assert!(
        err.contains("gateways[0] (support): webhooks: cannot be set with notifications: consume"),
        "{err}"
    );
    assert!(err.contains("stops the notification queue"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");
}
