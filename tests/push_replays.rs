//! Foul weather on the push side, black-box: signed pushes replayed, a noisy gateway flooding the
//! shared sent→delivered id table, and timestamps no provider's clock gives, against an exporter
//! on 127.0.0.1 and a mock gateway API.

mod common;

use common::{fixture_body, hourly, reply, sample, unix_now, Exporter, Mock};
use serde_json::Value;

const HMAC_KEY: &str = "replay-hmac-key-0123456789";
const APP_SECRET: &str = "replay_app_secret_0123456789";
/// The number of the Cloud API fixtures: gateway `brand`.
const QUIET: &str = "106540352242922";
/// The number of gateway `other`.
const NOISY: &str = "1122334455667";
/// Pushes replayed: enough to show a count moving once, bounded for a debug build.
const REPLAYS: usize = 1000;
const MAX_TRACKED: usize = 1000;

fn config(url: &str) -> String {
    let gateways = format!(
        "  - name: waha-one\n    provider: waha\n    url: {url}\n    instance: default\n    webhooks:\n      hmac_key: {HMAC_KEY}\n  - name: wahasrv\n    provider: waha\n    url: {url}\n    instances: all\n    webhooks:\n      hmac_key: {HMAC_KEY}\n  - name: brand\n    provider: cloudapi\n    url: {url}\n    phone_number_id: \"{QUIET}\"\n    token: meta-token-for-tests\n  - name: other\n    provider: cloudapi\n    url: {url}\n    phone_number_id: \"{NOISY}\"\n    token: meta-token-for-tests\n"
    );
    format!(
        "{}webhooks:\n  cloudapi:\n    - app: main\n      app_secret: {APP_SECRET}\n      verify_token: replay-verify-token\n  message_tracking:\n    max_tracked: {MAX_TRACKED}\n",
        hourly(&gateways)
    )
}

async fn start() -> (Mock, Exporter) {
    let mock = Mock::start(|s| async move {
        if s.path == "/api/sessions" {
            return reply(200, r#"[{"name":"default","status":"WORKING"}]"#);
        }
        if s.path.starts_with("/api/sessions/") {
            return reply(
                200,
                r#"{"name":"default","status":"WORKING","config":{},"me":null}"#,
            );
        }
        reply(
            200,
            format!(r#"{{"status":"CONNECTED","quality_rating":"GREEN","id":"{QUIET}"}}"#),
        )
    })
    .await;
    let ex = Exporter::start(&config(&mock.url())).await;
    (mock, ex)
}

fn hex(tag: &[u8]) -> String {
    tag.iter().map(|b| format!("{b:02x}")).collect()
}

async fn post_waha(ex: &Exporter, body: &str) -> u16 {
    post_waha_to(ex, "waha-one", body).await
}

async fn post_waha_to(ex: &Exporter, gateway: &str, body: &str) -> u16 {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA512, HMAC_KEY.as_bytes());
    let sig = hex(ring::hmac::sign(&key, body.as_bytes()).as_ref());
    common::client()
        .post(ex.url(&format!("/webhooks/{gateway}")))
        .header("content-type", "application/json")
        .header("x-webhook-hmac", sig)
        .header("x-webhook-hmac-algorithm", "sha512")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn post_cloud(ex: &Exporter, body: &str) -> u16 {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, APP_SECRET.as_bytes());
    let sig = format!(
        "sha256={}",
        hex(ring::hmac::sign(&key, body.as_bytes()).as_ref())
    );
    common::client()
        .post(ex.url("/webhooks/cloudapi/main"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sig)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A Cloud API `messages` change of `number` with statuses `(id, status, timestamp)`.
fn statuses(number: &str, items: &[(String, &str, u64)]) -> String {
    let list: Vec<String> = items
        .iter()
        .map(|(id, status, t)| {
            format!(r#"{{"id":"{id}","status":"{status}","timestamp":"{t}","recipient_id":"16505551234"}}"#)
        })
        .collect();
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"{number}"}},"statuses":[{}]}},"field":"messages"}}]}}]}}"#,
        list.join(",")
    )
}

fn of<'a>(m: &str, name: &str, gw: &'a str, extra: &[(&'a str, &'a str)]) -> Option<f64> {
    let mut labels = vec![("gateway", gw)];
    labels.extend_from_slice(extra);
    sample(m, name, &labels)
}

#[tokio::test]
async fn a_replayed_push_counts_once_and_its_replays_as_duplicates() {
    let (_mock, ex) = start().await;
    // WAHA's documented FAILED push, stamped now: one disconnection, whatever the replays.
    let mut waha: Value =
        serde_json::from_str(&fixture_body("waha", "session_status_failed")).unwrap();
    waha["timestamp"] = Value::from((unix_now() * 1000.0).floor());
    let waha = waha.to_string();
    // Meta's 131048 status as the fixture has it, signed with this app's secret (its stamp is
    // far in the past).
    let cloud = fixture_body("cloudapi", "status_failed_131048");
    for _ in 0..REPLAYS {
        assert_eq!(post_waha(&ex, &waha).await, 200);
        assert_eq!(post_cloud(&ex, &cloud).await, 200);
    }
    let m = ex.metrics().await;
    let dups = "whatsapp_webhook_duplicates_total";
    let replays = Some((REPLAYS - 1) as f64);
    assert_eq!(
        of(
            &m,
            "whatsapp_disconnects_total",
            "waha-one",
            &[("code", "FAILED")]
        ),
        Some(1.0)
    );
    assert_eq!(
        of(
            &m,
            "whatsapp_webhook_events_total",
            "waha-one",
            &[("event", "session.status")]
        ),
        Some(1.0)
    );
    assert_eq!(of(&m, dups, "waha-one", &[]), replays);
    assert_eq!(
        of(
            &m,
            "whatsapp_message_errors_total",
            "brand",
            &[("code", "131048")]
        ),
        Some(1.0)
    );
    assert_eq!(
        of(
            &m,
            "whatsapp_message_status_total",
            "brand",
            &[("status", "failed")]
        ),
        Some(1.0)
    );
    assert_eq!(of(&m, dups, "brand", &[]), replays);
    assert_eq!(
        of(
            &m,
            "whatsapp_webhook_timestamp_rejected_total",
            "brand",
            &[]
        ),
        Some(1.0),
        "the 2025 stamp, counted once"
    );
    assert_eq!(of(&m, dups, "other", &[]), Some(0.0));
    // The same message's next status is a new event.
    let read = cloud.replace(r#""status":"failed""#, r#""status":"read""#);
    assert_eq!(post_cloud(&ex, &read).await, 200);
    let m = ex.metrics().await;
    assert_eq!(
        of(
            &m,
            "whatsapp_message_status_total",
            "brand",
            &[("status", "read")]
        ),
        Some(1.0)
    );
    assert_eq!(of(&m, dups, "brand", &[]), replays);
    ex.stop().await;
}

#[tokio::test]
async fn a_server_counts_a_replayed_push_of_its_instance_once() {
    let (_mock, ex) = start().await;
    ex.poll("wahasrv").await;
    let mut push: Value =
        serde_json::from_str(&fixture_body("waha", "session_status_failed")).unwrap();
    push["timestamp"] = Value::from((unix_now() * 1000.0).floor());
    let push = push.to_string();
    let replays = 100;
    for _ in 0..replays {
        assert_eq!(post_waha_to(&ex, "wahasrv", &push).await, 200);
    }
    let m = ex.metrics().await;
    let instance = "wahasrv/default";
    assert_eq!(
        of(
            &m,
            "whatsapp_disconnects_total",
            instance,
            &[("code", "FAILED")]
        ),
        Some(1.0)
    );
    assert_eq!(
        of(&m, "whatsapp_webhook_duplicates_total", instance, &[]),
        Some((replays - 1) as f64)
    );
    ex.stop().await;
}

#[tokio::test]
async fn a_noisy_gateway_does_not_evict_a_quiet_ones_message() {
    let (_mock, ex) = start().await;
    let now = unix_now().floor() as u64;
    let quiet = "wamid.quiet-in-flight".to_string();
    let sent = statuses(QUIET, &[(quiet.clone(), "sent", now - 10)]);
    assert_eq!(post_cloud(&ex, &sent).await, 200);
    // Three times the table in distinct ids, from the other gateway.
    let batch = 100;
    for b in 0..(3 * MAX_TRACKED / batch) {
        let items: Vec<(String, &str, u64)> = (0..batch)
            .map(|i| (format!("wamid.noisy-{b}-{i}"), "sent", now))
            .collect();
        assert_eq!(post_cloud(&ex, &statuses(NOISY, &items)).await, 200);
    }
    let delivered = statuses(QUIET, &[(quiet, "delivered", now)]);
    assert_eq!(post_cloud(&ex, &delivered).await, 200);
    let m = ex.metrics().await;
    let evictions = "whatsapp_message_tracking_evictions_total";
    assert_eq!(
        of(&m, "whatsapp_message_delivery_seconds_count", "brand", &[]),
        Some(1.0),
        "the quiet gateway's delivery time is measured"
    );
    assert_eq!(
        of(&m, "whatsapp_message_delivery_seconds_sum", "brand", &[]),
        Some(10.0)
    );
    assert_eq!(of(&m, evictions, "brand", &[]), Some(0.0));
    let noisy = of(&m, evictions, "other", &[]).unwrap_or(0.0);
    assert!(
        noisy >= (2 * MAX_TRACKED) as f64,
        "the noisy gateway evicts its own ids, counted on it: {noisy}"
    );
    ex.stop().await;
}

#[tokio::test]
async fn timestamps_of_2001_and_2286_are_counted_not_observed() {
    let (_mock, ex) = start().await;
    let (y2001, y2286) = (1_000_000_001, 9_999_999_999);
    let body = statuses(
        QUIET,
        &[
            ("wamid.old".to_string(), "sent", y2001),
            ("wamid.never-sent".to_string(), "delivered", y2286),
        ],
    );
    assert_eq!(post_cloud(&ex, &body).await, 200);
    let m = ex.metrics().await;
    let lag = "whatsapp_webhook_lag_seconds";
    assert_eq!(
        of(
            &m,
            "whatsapp_webhook_timestamp_rejected_total",
            "brand",
            &[]
        ),
        Some(2.0)
    );
    assert_eq!(of(&m, &format!("{lag}_count"), "brand", &[]), Some(0.0));
    assert_eq!(of(&m, &format!("{lag}_sum"), "brand", &[]), Some(0.0));
    for s in ["sent", "delivered"] {
        assert_eq!(
            of(
                &m,
                "whatsapp_message_status_total",
                "brand",
                &[("status", s)]
            ),
            Some(1.0),
            "the event itself counts: {s}"
        );
    }
    assert_eq!(
        of(
            &m,
            "whatsapp_webhook_last_event_timestamp_seconds",
            "brand",
            &[]
        ),
        None,
        "no time to trust: the last event's time does not move"
    );
    // Sent now, delivered "in 2286": the delivery is timed by arrival, not 8.2e9 s.
    let now = unix_now().floor() as u64;
    let id = "wamid.timed".to_string();
    let sent = statuses(QUIET, &[(id.clone(), "sent", now - 5)]);
    assert_eq!(post_cloud(&ex, &sent).await, 200);
    let delivered = statuses(QUIET, &[(id, "delivered", y2286)]);
    assert_eq!(post_cloud(&ex, &delivered).await, 200);
    let m = ex.metrics().await;
    let delivery = "whatsapp_message_delivery_seconds";
    assert_eq!(
        of(&m, &format!("{delivery}_count"), "brand", &[]),
        Some(1.0)
    );
    let sum = of(&m, &format!("{delivery}_sum"), "brand", &[]).unwrap_or(f64::NAN);
    assert!((0.0..86_400.0).contains(&sum), "delivery sum {sum}");
    assert_eq!(
        of(
            &m,
            "whatsapp_webhook_timestamp_rejected_total",
            "brand",
            &[]
        ),
        Some(3.0)
    );
    assert_eq!(of(&m, &format!("{lag}_count"), "brand", &[]), Some(1.0));
    ex.stop().await;
}

#[tokio::test]
async fn a_meta_app_counts_a_replayed_push_for_no_gateway_once() {
    let (_mock, ex) = start().await;
    let now = unix_now() as u64;
    // A number of the app that no gateway monitors: its events are the app's own.
    let body = statuses(
        "999000111222",
        &[("wamid.unrouted".into(), "delivered", now)],
    );
    for _ in 0..50 {
        assert_eq!(post_cloud(&ex, &body).await, 200);
    }
    let m = ex.metrics().await;
    let app = |name: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("app", "main")];
        labels.extend_from_slice(extra);
        sample(&m, name, &labels)
    };
    let events: f64 = common::samples(&m, "whatsapp_webhook_events_total", &[("app", "main")])
        .iter()
        .sum();
    assert_eq!(events, 1.0, "the first push counts, its replays do not");
    assert_eq!(app("whatsapp_webhook_duplicates_total", &[]), Some(49.0));
    ex.stop().await;
}
