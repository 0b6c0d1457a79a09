//! Z-API / PlugzAPI webhooks, black-box: the documented callbacks posted to `/webhooks/<gateway>`
//! with the secret in the URL, against a mock status endpoint on 127.0.0.1.

mod common;

use common::{fixture_body, reply, sample, samples, unix_now, Exporter, Mock};

const SECRET: &str = "sales-webhook-secret-0123456789";

async fn gateway_mock() -> Mock {
    Mock::start(|_| async {
        reply(
            200,
            r#"{"connected":true,"session":true,"error":"","smartphoneConnected":true}"#,
        )
    })
    .await
}

fn config(url: &str) -> String {
    format!(
        r#"global:
  interval: 1h
  timeout: 5s
gateways:
  - name: sales
    provider: zapi
    url: {url}
    instance: I
    token: zapi-token-for-tests
    webhooks:
      secret: {SECRET}
  - name: quiet
    provider: plugzapi
    url: {url}
    instance: I
    token: zapi-token-for-tests
"#
    )
}

async fn post(ex: &Exporter, path: &str, content_type: Option<&str>, body: &str) -> u16 {
    let mut req = common::client().post(ex.url(path)).body(body.to_string());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().await.unwrap().status().as_u16()
}

async fn hook(ex: &Exporter, body: &str) -> u16 {
    post(
        ex,
        &format!("/webhooks/sales?secret={SECRET}"),
        Some("application/json"),
        body,
    )
    .await
}

fn events(m: &str, event: &str) -> Option<f64> {
    sample(
        m,
        "whatsapp_webhook_events_total",
        &[("gateway", "sales"), ("event", event)],
    )
}

fn rejected(m: &str, gateway: &str, reason: &str) -> Option<f64> {
    sample(
        m,
        "whatsapp_webhook_rejected_total",
        &[("gateway", gateway), ("reason", reason)],
    )
}

fn status(m: &str, s: &str) -> Option<f64> {
    sample(
        m,
        "whatsapp_message_status_total",
        &[("gateway", "sales"), ("status", s)],
    )
}

fn ms(t: f64) -> u64 {
    (t * 1000.0) as u64
}

#[tokio::test]
async fn documented_callbacks_are_counted_from_zero() {
    let mock = gateway_mock().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    let m = ex.metrics().await;
    for e in [
        "ConnectedCallback",
        "DisconnectedCallback",
        "MessageStatusCallback",
        "DeliveryCallback",
        "ReceivedCallback",
        "PresenceChatCallback",
        "other",
        "unparsed",
    ] {
        assert_eq!(events(&m, e), Some(0.0), "{e}");
    }
    assert_eq!(
        sample(
            &m,
            "whatsapp_message_errors_total",
            &[("gateway", "sales"), ("code", "SHADOW_BAN")]
        ),
        Some(0.0)
    );
    assert!(
        !m.lines()
            .any(|l| l.starts_with("whatsapp_webhook_") && l.contains("gateway=\"quiet\"")),
        "no webhooks, no message-flow series"
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_webhook_last_event_timestamp_seconds",
            &[("gateway", "sales")]
        ),
        None
    );

    for f in [
        "message_status_sent",
        "message_status_received",
        "message_status_read",
        "message_status_read_by_me",
        "message_status_played",
        "delivery_ok",
        "delivery_error",
        "delivery_error_shadow_ban",
        "received_text",
        "received_image",
        "connected",
        "disconnected",
    ] {
        assert_eq!(hook(&ex, &fixture_body("zapi", f)).await, 200, "{f}");
    }
    let m = ex.metrics().await;
    assert_eq!(events(&m, "MessageStatusCallback"), Some(5.0));
    assert_eq!(events(&m, "DeliveryCallback"), Some(3.0));
    assert_eq!(events(&m, "ReceivedCallback"), Some(2.0));
    assert_eq!(events(&m, "ConnectedCallback"), Some(1.0));
    assert_eq!(events(&m, "DisconnectedCallback"), Some(1.0));
    assert_eq!(status(&m, "sent"), Some(1.0));
    assert_eq!(status(&m, "delivered"), Some(1.0), "RECEIVED is delivery");
    assert_eq!(status(&m, "read"), Some(1.0));
    assert_eq!(status(&m, "played"), Some(1.0));
    assert_eq!(status(&m, "other"), Some(1.0), "READ_BY_ME");
    assert_eq!(status(&m, "failed"), Some(2.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_message_errors_total",
            &[("gateway", "sales"), ("code", "SHADOW_BAN")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_messages_received_total",
            &[("gateway", "sales")]
        ),
        Some(2.0)
    );
    let last = sample(
        &m,
        "whatsapp_webhook_last_event_timestamp_seconds",
        &[("gateway", "sales")],
    )
    .unwrap();
    assert!((last - unix_now()).abs() < 30.0);
    let (_, page) = ex.get("/").await;
    assert!(
        page.contains("<td data-label=\"Gateway\">sales</td><td data-label=\"Events\">12</td><td data-label=\"Rejected\">0</td>"),
        "{page}"
    );
    assert!(!page.contains("<td data-label=\"Gateway\">quiet</td><td data-label=\"Events\">"));
    ex.stop().await;
}

#[tokio::test]
async fn refusals_are_counted_and_change_nothing() {
    let mock = gateway_mock().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    let body = fixture_body("zapi", "message_status_read");
    let json = Some("application/json");
    assert_eq!(post(&ex, "/webhooks/sales", json, &body).await, 401);
    assert_eq!(
        post(
            &ex,
            "/webhooks/sales?secret=wrong-secret-0123456789",
            json,
            &body
        )
        .await,
        401
    );
    let prefix = &SECRET[..SECRET.len() - 1];
    assert_eq!(
        post(
            &ex,
            &format!("/webhooks/sales?secret={prefix}"),
            json,
            &body
        )
        .await,
        401
    );
    // The secret in a header is not the URL's.
    let r = common::client()
        .post(ex.url("/webhooks/sales"))
        .header("authorization", format!("Bearer {SECRET}"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let ok = format!("/webhooks/sales?secret={SECRET}");
    let r = common::client().get(ex.url(&ok)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert_eq!(post(&ex, &ok, Some("text/plain"), &body).await, 415);
    assert_eq!(post(&ex, &ok, json, "{\"type\":").await, 400);
    assert_eq!(post(&ex, &ok, json, "{\"no\":\"type\"}").await, 422);
    assert_eq!(post(&ex, &ok, json, "[]").await, 422);
    let big = format!("[{}]", vec![body.as_str(); 20000].join(","));
    assert!(big.len() > 1 << 20);
    assert_eq!(post(&ex, &ok, json, &big).await, 413);
    // Unknown gateways, and gateways without webhooks, tell nothing.
    for path in [
        "/webhooks/nosuch",
        "/webhooks/quiet",
        "/webhooks/sales/extra",
        "/webhooks/",
    ] {
        let r = common::client()
            .post(ex.url(path))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
        let text = r.text().await.unwrap();
        assert!(!text.contains("sales") && !text.contains("quiet"), "{text}");
    }
    let m = ex.metrics().await;
    assert_eq!(rejected(&m, "sales", "unauthorized"), Some(4.0));
    assert_eq!(rejected(&m, "sales", "method_not_allowed"), Some(1.0));
    assert_eq!(rejected(&m, "sales", "unsupported_media_type"), Some(1.0));
    assert_eq!(rejected(&m, "sales", "invalid_json"), Some(1.0));
    assert_eq!(rejected(&m, "sales", "unknown_event"), Some(2.0));
    assert_eq!(rejected(&m, "sales", "too_large"), Some(1.0));
    assert_eq!(rejected(&m, "", "unknown_gateway"), Some(4.0));
    assert!(!m.contains("nosuch"));
    let accepted: f64 = samples(&m, "whatsapp_webhook_events_total", &[("gateway", "sales")])
        .iter()
        .sum();
    assert_eq!(accepted, 0.0, "refusals change nothing");
    assert_eq!(status(&m, "read"), Some(0.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_webhook_last_event_timestamp_seconds",
            &[("gateway", "sales")]
        ),
        None
    );
    ex.stop().await;
}

#[tokio::test]
async fn mixed_batches_are_read_entry_by_entry() {
    let mock = gateway_mock().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    let body = format!(
        "[{}, 7, {{\"no\":\"type\"}}, {{\"type\":\"BrandNewCallback\"}}, {}]",
        fixture_body("zapi", "message_status_read"),
        fixture_body("zapi", "delivery_error_shadow_ban"),
    );
    assert_eq!(hook(&ex, &body).await, 200);
    let m = ex.metrics().await;
    assert_eq!(events(&m, "MessageStatusCallback"), Some(1.0));
    assert_eq!(events(&m, "DeliveryCallback"), Some(1.0));
    assert_eq!(events(&m, "other"), Some(1.0));
    assert_eq!(events(&m, "unparsed"), Some(2.0));
    assert!(!m.contains("BrandNew"));
    ex.stop().await;
}

#[tokio::test]
async fn sent_to_delivered_out_of_order_and_late() {
    let mock = gateway_mock().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    let now = unix_now();
    let cb = |status: &str, id: &str, at: f64| {
        format!(
            r#"{{"type":"MessageStatusCallback","status":"{status}","ids":["{id}"],"momment":{},"phone":"5544999999999","instanceId":"i"}}"#,
            ms(at)
        )
    };
    // Sent, then delivered 4 s later.
    assert_eq!(hook(&ex, &cb("SENT", "M1", now - 10.0)).await, 200);
    assert_eq!(hook(&ex, &cb("RECEIVED", "M1", now - 6.0)).await, 200);
    // Read before delivered: the delivery time is taken at the read, the late delivered adds none.
    assert_eq!(hook(&ex, &cb("SENT", "M2", now - 10.0)).await, 200);
    assert_eq!(hook(&ex, &cb("READ", "M2", now - 8.0)).await, 200);
    assert_eq!(hook(&ex, &cb("RECEIVED", "M2", now - 9.0)).await, 200);
    // Delivered, never sent.
    assert_eq!(hook(&ex, &cb("RECEIVED", "M3", now)).await, 200);
    // A DeliveryCallback starts the clock as well.
    let accepted = format!(
        r#"{{"type":"DeliveryCallback","messageId":"M4","momment":{}}}"#,
        ms(now - 30.0)
    );
    assert_eq!(hook(&ex, &accepted).await, 200);
    assert_eq!(hook(&ex, &cb("PLAYED", "M4", now - 20.0)).await, 200);
    // Ten minutes late.
    assert_eq!(hook(&ex, &cb("READ", "OLD", now - 600.0)).await, 200);
    let m = ex.metrics().await;
    let g = [("gateway", "sales")];
    assert_eq!(
        sample(&m, "whatsapp_message_delivery_seconds_count", &g),
        Some(3.0)
    );
    let sum = sample(&m, "whatsapp_message_delivery_seconds_sum", &g).unwrap();
    assert!((sum - (4.0 + 2.0 + 10.0)).abs() < 0.01, "{sum}");
    assert_eq!(status(&m, "delivered"), Some(3.0));
    let lag = |le: &str| {
        sample(
            &m,
            "whatsapp_webhook_lag_seconds_bucket",
            &[("gateway", "sales"), ("le", le)],
        )
    };
    let total = sample(&m, "whatsapp_webhook_lag_seconds_count", &g).unwrap();
    assert_eq!(total, 9.0);
    assert_eq!(
        lag("300"),
        Some(8.0),
        "all but the late one within 5 minutes"
    );
    assert_eq!(lag("1800"), Some(9.0));
    assert_eq!(
        sample(&m, "whatsapp_message_tracking_evictions_total", &g),
        Some(0.0)
    );
    ex.stop().await;
}

#[tokio::test]
async fn a_pushed_disconnection_is_seen_at_once_and_the_next_poll_corrects_it() {
    let mock = gateway_mock().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    let exporter = ex.running.as_ref().unwrap().exporter.clone();
    let gw = exporter.gateway("sales").unwrap();
    gw.poll().await.unwrap();
    let connected = |m: &str| sample(m, "whatsapp_connected", &[("gateway", "sales")]);
    let flaps = |m: &str| {
        sample(
            m,
            "whatsapp_connected_changes_total",
            &[("gateway", "sales")],
        )
    };
    assert_eq!(connected(&ex.metrics().await), Some(1.0));
    // The documented example is from 2020: older than the last poll, it changes nothing.
    assert_eq!(hook(&ex, &fixture_body("zapi", "disconnected")).await, 200);
    assert_eq!(connected(&ex.metrics().await), Some(1.0));
    let now = format!(
        r#"{{"momment":{},"error":"Device has been disconnected","disconnected":true,"type":"DisconnectedCallback","instanceId":"i"}}"#,
        ms(unix_now())
    );
    assert_eq!(hook(&ex, &now).await, 200);
    let m = ex.metrics().await;
    assert_eq!(connected(&m), Some(0.0), "at once, before any poll");
    assert_eq!(flaps(&m), Some(1.0));
    // The gateway says connected: the poll corrects the push.
    gw.poll().await.unwrap();
    let m = ex.metrics().await;
    assert_eq!(connected(&m), Some(1.0));
    assert_eq!(flaps(&m), Some(2.0));
    ex.stop().await;
}

#[tokio::test]
async fn nothing_private_leaves() {
    let mock = gateway_mock().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    for f in [
        "received_text",
        "delivery_error",
        "message_status_read",
        "connected",
    ] {
        assert_eq!(hook(&ex, &fixture_body("zapi", f)).await, 200);
    }
    post(
        &ex,
        "/webhooks/sales?secret=wrong-but-long-0123456789",
        None,
        "{}",
    )
    .await;
    let m = ex.metrics().await;
    let (_, page) = ex.get("/").await;
    let logs = common::logs();
    for (what, text) in [("/metrics", &m), ("/", &page), ("logs", &logs)] {
        for private in [
            SECRET,
            "wrong-but-long",
            "5544999999999",
            "554499999999",
            "A20DA9C0183A2D35A260F53F5D2B9244",
            "999999999999999999999",
            "Phone number does not exist",
        ] {
            assert!(!text.contains(private), "{private} in {what}");
        }
    }
    ex.stop().await;
}

/// In probe mode a gateway's pushes are served with its poll, by `/probe?target=<gateway>`, so
/// that alerts joining them with `whatsapp_connected` find both under the probe job's labels;
/// `/metrics` stays the exporter's own.
#[tokio::test]
async fn in_probe_mode_the_pushes_come_with_the_probe() {
    let mock = gateway_mock().await;
    let polling = whatsapp_exporter::Polling {
        shard: None,
        no_background: true,
    };
    let ex = Exporter::try_start_full(&config(&mock.url()), None, polling)
        .await
        .unwrap();
    assert_eq!(
        hook(&ex, &fixture_body("zapi", "message_status_read")).await,
        200
    );
    let (code, probe) = ex.get("/probe?target=sales").await;
    assert_eq!(code, 200);
    assert_eq!(
        events(&probe, "MessageStatusCallback"),
        Some(1.0),
        "{probe}"
    );
    assert_eq!(
        sample(&probe, "whatsapp_connected", &[("gateway", "sales")]),
        Some(1.0)
    );
    let m = ex.metrics().await;
    assert!(
        !m.contains("whatsapp_webhook_events_total{gateway=\"sales\""),
        "{m}"
    );
    ex.stop().await;
}
