//! Cloud API webhooks, black-box: Meta's verification handshake and signed POSTs to
//! `/webhooks/cloudapi/<app>`, routed to gateways by `metadata.phone_number_id`. The fixtures carry
//! signatures computed with their stated test secret.

mod common;

use std::time::Duration;

use common::{fixture_body, reply, sample, samples, unix_now, webhook_fixture, Exporter, Mock};

/// The secret the fixtures were signed with.
const APP_SECRET: &str = "test_app_secret_do_not_use";
const VERIFY: &str = "meta-verify-token-0123456789";

const NUMBER: &str = r#"{"status":"CONNECTED","quality_rating":"GREEN","id":"106540352242922"}"#;

fn config(url: &str) -> String {
    format!(
        r#"global:
  interval: 1h
  timeout: 5s
gateways:
  - name: brand
    provider: cloudapi
    url: {url}
    phone_number_id: "106540352242922"
    token: meta-token-for-tests
  - name: other
    provider: cloudapi
    url: {url}
    phone_number_id: "1122334455667"
    token: meta-token-for-tests
webhooks:
  cloudapi:
    - app: main
      app_secret: {APP_SECRET}
      verify_token: {VERIFY}
"#
    )
}

async fn start() -> (Mock, Exporter) {
    let mock = Mock::start(|_| async { reply(200, NUMBER) }).await;
    // Background polling, once an hour at a point of the hour far from now (see
    // `common::hourly`): the message-flow series are in /metrics, and no scheduled poll disturbs
    // the count of calls a pushed event makes.
    let polling = whatsapp_exporter::Polling {
        shard: None,
        no_background: false,
    };
    let ex = Exporter::try_start_full(&config(&mock.url()), None, polling)
        .await
        .unwrap();
    (mock, ex)
}

fn sign(body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, APP_SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, body.as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

async fn post_signed(ex: &Exporter, body: &str, signature: Option<&str>) -> u16 {
    let mut req = common::client()
        .post(ex.url("/webhooks/cloudapi/main"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(s) = signature {
        req = req.header("x-hub-signature-256", s);
    }
    req.send().await.unwrap().status().as_u16()
}

/// A fixture as Meta sends it: its raw bytes with the signature it carries.
async fn post_fixture(ex: &Exporter, name: &str) -> u16 {
    let f = webhook_fixture("cloudapi", name);
    let sig = f["headers"]["X-Hub-Signature-256"].as_str().unwrap();
    post_signed(ex, &fixture_body("cloudapi", name), Some(sig)).await
}

async fn post(ex: &Exporter, body: &str) -> u16 {
    post_signed(ex, body, Some(&sign(body))).await
}

fn statuses(number: &str, items: &[(&str, &str, f64)]) -> String {
    let list: Vec<String> = items
        .iter()
        .map(|(id, status, t)| {
            format!(r#"{{"id":"{id}","status":"{status}","timestamp":"{}","recipient_id":"16505551234"}}"#, *t as u64)
        })
        .collect();
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"{number}"}},"statuses":[{}]}},"field":"messages"}}]}}]}}"#,
        list.join(",")
    )
}

fn of(
    gw: &'static str,
    labels: &[(&'static str, &'static str)],
) -> Vec<(&'static str, &'static str)> {
    let mut l = vec![("gateway", gw)];
    l.extend_from_slice(labels);
    l
}

#[tokio::test]
async fn the_verification_handshake_and_its_replays() {
    let (_mock, ex) = start().await;
    let q = |mode: &str, token: &str, challenge: &str| {
        format!("/webhooks/cloudapi/main?hub.mode={mode}&hub.challenge={challenge}&hub.verify_token={token}")
    };
    // The documented request, with our token.
    let f = webhook_fixture("cloudapi", "verify_get");
    let challenge = f["request"]["query"]["hub.challenge"].as_str().unwrap();
    let (code, body) = ex.get(&q("subscribe", VERIFY, challenge)).await;
    assert_eq!(
        (code, body.as_str()),
        (200, f["expected"]["body"].as_str().unwrap())
    );
    // A replay is answered again and changes nothing.
    assert_eq!(
        ex.get(&q("subscribe", VERIFY, challenge)).await,
        (200, challenge.to_string())
    );
    // The documented token is not ours; nor is an empty one, or another mode.
    let theirs = f["request"]["query"]["hub.verify_token"].as_str().unwrap();
    for path in [
        q("subscribe", theirs, challenge),
        q("subscribe", "", challenge),
        q("unsubscribe", VERIFY, challenge),
        "/webhooks/cloudapi/main".to_string(),
    ] {
        let (code, body) = ex.get(&path).await;
        assert_eq!(code, 403, "{path}");
        assert!(!body.contains(challenge) && !body.contains(VERIFY));
    }
    // A challenge that is not a plain token is not echoed.
    assert_eq!(ex.get(&q("subscribe", VERIFY, "%3Cscript%3E")).await.0, 400);
    assert_eq!(
        ex.get("/webhooks/cloudapi/nosuch?hub.mode=subscribe")
            .await
            .0,
        404
    );
    let m = ex.metrics().await;
    let app = [("app", "main"), ("reason", "unauthorized")];
    assert_eq!(
        sample(&m, "whatsapp_webhook_rejected_total", &app),
        Some(4.0)
    );
    let accepted: f64 = samples(
        &m,
        "whatsapp_webhook_events_total",
        &[("provider", "cloudapi")],
    )
    .iter()
    .sum();
    assert_eq!(accepted, 0.0);
    ex.stop().await;
}

#[tokio::test]
async fn signatures_are_checked_before_anything_else() {
    let (_mock, ex) = start().await;
    let body = fixture_body("cloudapi", "status_sent");
    let good = webhook_fixture("cloudapi", "status_sent")["headers"]["X-Hub-Signature-256"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(post_signed(&ex, &body, None).await, 401);
    assert_eq!(
        post_signed(&ex, &body, Some(&good[7..])).await,
        401,
        "no sha256= prefix"
    );
    let other_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"another app's secret");
    let tag = ring::hmac::sign(&other_key, body.as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        post_signed(&ex, &body, Some(&format!("sha256={hex}"))).await,
        401
    );
    // The same body re-serialised (spaces) no longer matches the signature of the raw bytes.
    let reserialised =
        serde_json::to_string_pretty(&webhook_fixture("cloudapi", "status_sent")["body"]).unwrap();
    assert_eq!(post_signed(&ex, &reserialised, Some(&good)).await, 401);
    let tampered = body.replace("\"sent\"", "\"read\"");
    assert_eq!(post_signed(&ex, &tampered, Some(&good)).await, 401);
    // Not JSON, but signed: the signature passes, the body does not.
    assert_eq!(post(&ex, "{\"object\":").await, 400);
    assert_eq!(post(&ex, "{\"object\":\"page\",\"entry\":[]}").await, 422);
    let r = common::client()
        .put(ex.url("/webhooks/cloudapi/main"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "GET, POST");
    let m = ex.metrics().await;
    let app = |reason: &'static str| {
        sample(
            &m,
            "whatsapp_webhook_rejected_total",
            &[("app", "main"), ("reason", reason)],
        )
    };
    assert_eq!(app("bad_signature"), Some(5.0));
    assert_eq!(app("invalid_json"), Some(1.0));
    assert_eq!(app("unknown_event"), Some(1.0));
    assert_eq!(app("method_not_allowed"), Some(1.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_message_status_total",
            &of("brand", &[("status", "sent")])
        ),
        Some(0.0),
        "a refused webhook changes nothing"
    );
    // The real signature, at last.
    assert_eq!(post_signed(&ex, &body, Some(&good)).await, 200);
    let m = ex.metrics().await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_message_status_total",
            &of("brand", &[("status", "sent")])
        ),
        Some(1.0)
    );
    ex.stop().await;
}

#[tokio::test]
async fn documented_updates_reach_their_number() {
    let (_mock, ex) = start().await;
    for f in [
        "status_sent",
        "status_failed_131026",
        "status_failed_131047",
        "status_failed_131048",
        "status_failed_131049",
        "status_failed_131056",
        "status_failed_130472",
        "status_delivered",
        "status_read",
        "incoming_text",
        "incoming_image",
        "template_status_approved",
        "template_status_rejected",
    ] {
        assert_eq!(post_fixture(&ex, f).await, 200, "{f}");
    }
    let m = ex.metrics().await;
    let st = |gw: &'static str, s: &'static str| {
        sample(
            &m,
            "whatsapp_message_status_total",
            &of(gw, &[("status", s)]),
        )
    };
    assert_eq!(st("brand", "sent"), Some(1.0));
    assert_eq!(st("brand", "failed"), Some(5.0));
    assert_eq!(
        st("other", "failed"),
        Some(1.0),
        "the 130472 example is the other number's"
    );
    assert_eq!(
        st("other", "delivered"),
        Some(1.0),
        "routed by phone_number_id"
    );
    assert_eq!(st("other", "read"), Some(1.0));
    assert_eq!(st("brand", "delivered"), Some(0.0));
    for (gw, code) in [
        ("brand", "131026"),
        ("brand", "131047"),
        ("brand", "131048"),
        ("brand", "131049"),
        ("brand", "131056"),
        ("other", "130472"),
    ] {
        assert_eq!(
            sample(
                &m,
                "whatsapp_message_errors_total",
                &of(gw, &[("code", code)])
            ),
            Some(1.0),
            "{code}"
        );
    }
    assert_eq!(
        sample(&m, "whatsapp_messages_received_total", &of("other", &[])),
        Some(2.0)
    );
    // Templates name no number: the app counts them.
    let t = |e: &'static str| {
        sample(
            &m,
            "whatsapp_cloudapi_template_events_total",
            &[("app", "main"), ("event", e)],
        )
    };
    assert_eq!((t("APPROVED"), t("REJECTED")), (Some(1.0), Some(1.0)));
    for private in [
        "16505551234",
        "15550783881",
        "wamid",
        "972987654321",
        "Test Name",
    ] {
        assert!(!m.contains(private), "{private}");
    }
    ex.stop().await;
}

#[tokio::test]
async fn mixed_batches_out_of_order_and_late() {
    let (_mock, ex) = start().await;
    let now = unix_now();
    let body = statuses(
        "106540352242922",
        &[
            ("wamid.A", "sent", now - 30.0),
            ("wamid.B", "sent", now - 660.0),
            ("wamid.C", "delivered", now - 5.0),
        ],
    );
    // A batch with a broken status, an unknown field and a number nobody configured.
    let body = body
        .replacen("\"statuses\":[", "\"statuses\":[42,", 1)
        .replacen(
            "\"field\":\"messages\"}]",
            "\"field\":\"messages\"},{\"field\":\"security\",\"value\":{}},{\"value\":{}}]",
            1,
        );
    assert_eq!(post(&ex, &body).await, 200);
    // Read before delivered; then the late delivered.
    assert_eq!(
        post(
            &ex,
            &statuses("106540352242922", &[("wamid.A", "read", now - 20.0)])
        )
        .await,
        200
    );
    assert_eq!(
        post(
            &ex,
            &statuses("106540352242922", &[("wamid.A", "delivered", now - 25.0)])
        )
        .await,
        200
    );
    // Delivered ten minutes late.
    assert_eq!(
        post(
            &ex,
            &statuses("106540352242922", &[("wamid.B", "delivered", now - 600.0)])
        )
        .await,
        200
    );
    assert_eq!(
        post(&ex, &statuses("999", &[("wamid.Z", "sent", now)])).await,
        200
    );
    let m = ex.metrics().await;
    let b = |l: &[(&'static str, &'static str)]| of("brand", l);
    assert_eq!(
        sample(
            &m,
            "whatsapp_message_status_total",
            &b(&[("status", "sent")])
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_message_status_total",
            &b(&[("status", "delivered")])
        ),
        Some(3.0)
    );
    // A at its read (10 s), B at its late delivered (60 s); C was never sent.
    assert_eq!(
        sample(&m, "whatsapp_message_delivery_seconds_count", &b(&[])),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, "whatsapp_message_delivery_seconds_sum", &b(&[])),
        Some(70.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_webhook_lag_seconds_bucket",
            &b(&[("le", "300")])
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_webhook_lag_seconds_bucket",
            &b(&[("le", "600")])
        ),
        Some(4.0),
        "the late ones are later than 600 s by the time they are read"
    );
    assert_eq!(
        sample(&m, "whatsapp_webhook_lag_seconds_count", &b(&[])),
        Some(6.0)
    );
    let app = |e: &'static str| {
        sample(
            &m,
            "whatsapp_webhook_events_total",
            &[("app", "main"), ("event", e)],
        )
    };
    assert_eq!(
        app("unparsed"),
        Some(2.0),
        "the status 42 and the change without field"
    );
    assert_eq!(app("other"), Some(1.0), "the security field");
    assert_eq!(app("statuses"), Some(1.0), "the number nobody configured");
    ex.stop().await;
}

#[tokio::test]
async fn quality_and_account_events_poll_their_number_at_once() {
    let (mock, ex) = start().await;
    // Before any message webhook, the display number is not known: the app counts the event,
    // and every Cloud API number is polled.
    let restricted = fixture_body("cloudapi", "account_restriction");
    assert_eq!(post_fixture(&ex, "account_restriction").await, 200);
    let m = ex.wait_for(5, |_| mock.hits() >= 2).await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_cloudapi_account_events_total",
            &[("app", "main"), ("event", "ACCOUNT_RESTRICTION")]
        ),
        Some(1.0)
    );
    assert!(!restricted.is_empty());
    // A message webhook teaches the exporter the number's display phone number and WABA.
    assert_eq!(post_fixture(&ex, "status_sent").await, 200);
    let flagged = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","time":TIME,"changes":[{"field":"phone_number_quality_update","value":{"display_phone_number":"15550783881","event":"FLAGGED","current_limit":"TIER_1K"}}]}]}"#
        .replace("TIME", &(unix_now() as u64).to_string());
    // Within 30 s of the last re-poll, the event is counted but the number is not polled again.
    let before = mock.hits();
    assert_eq!(post(&ex, &flagged).await, 200);
    let m = ex.metrics().await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_cloudapi_quality_events_total",
            &of("brand", &[("event", "FLAGGED")])
        ),
        Some(1.0),
        "routed by the learned display number"
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_cloudapi_quality_events_total",
            &of("other", &[("event", "FLAGGED")])
        ),
        Some(0.0)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mock.hits(), before, "at most one re-poll every 30 s");
    // An account event of the WABA reaches its known number.
    let disabled = fixture_body("cloudapi", "account_disabled_update_disable");
    assert!(disabled.contains("102290129340398"));
    assert_eq!(
        post_fixture(&ex, "account_disabled_update_disable").await,
        200
    );
    let m = ex.metrics().await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_cloudapi_account_events_total",
            &of("brand", &[("event", "DISABLED_UPDATE_DISABLE")])
        ),
        Some(1.0)
    );
    assert!(!m.contains("15550783881"));
    ex.stop().await;
}

#[tokio::test]
async fn a_cloudapi_app_needs_both_secrets() {
    let yaml = config("http://127.0.0.1:9").replace(&format!("      verify_token: {VERIFY}\n"), "");
    let err = Exporter::try_start(&yaml).await.err().expect("refused");
    assert!(
        err.contains("webhooks.cloudapi[0] (main): verify_token: is required"),
        "{err}"
    );
    assert!(!err.contains(APP_SECRET), "{err}");
}
