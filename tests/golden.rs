//! The golden `/metrics`: every provider's series from fixed answers, compared with
//! `tests/golden/metrics.txt` (CI also runs `promtool check metrics` on that file).
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites it after an intended change.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{reply, Exporter, Mock};

const GOLDEN: &str = "tests/golden/metrics.txt";

const WABA_SUPPORT: &str = r#"{"support":{"context":"healthcheck","db_engine":"MYSQL","description":"build","expire_timestamp":"2027-01-15T12:00:00","free_space_data":9223372036853727000,"free_space_logs":14269902848,"free_space_media_incoming":52428800000,"free_space_media_outgoing":52428800000,"multi_connect":false,"os_name":"ubuntu-x86_64","os_version":"16.04","socket_conn":"UP receiving offline","version":"v2.41.3"}}"#;
const WABA_HEALTH: &str = r#"{"health":{"gateway_status":"connected"}}"#;
const CLOUD: &str = r#"{"status":"CONNECTED","quality_rating":"YELLOW","messaging_limit_tier":"TIER_10K","name_status":"APPROVED","code_verification_status":"VERIFIED","throughput":{"level":"STANDARD"},"health_status":{"can_send_message":"LIMITED","entities":[{"entity_type":"PHONE_NUMBER","id":"1","can_send_message":"AVAILABLE"},{"entity_type":"WABA","id":"2","can_send_message":"LIMITED","errors":[{"error_code":141006,"error_description":"x","possible_solution":"y"}]}]},"id":"106540352242922"}"#;
/// Timestamps in the future: the delay is clamped to 0, so the histogram is the same every run.
const GREEN_QUEUE: [&str; 2] = [
    r#"{"receiptId":1,"body":{"typeWebhook":"incomingMessageReceived","timestamp":4102444800}}"#,
    r#"{"receiptId":2,"body":{"typeWebhook":"outgoingMessageStatus","status":"read","timestamp":4102444800}}"#,
];
const PLUGCHAT_SECRET: &str = "golden-secret-0123456789";

#[tokio::test]
async fn metrics_match_the_golden_file() {
    let plugz = Mock::start(|_| async {
        reply(200, r#"{"connected":true,"session":true,"error":"You are already connected.","smartphoneConnected":false}"#)
    })
    .await;
    let waba = Mock::start(|s| async move {
        match s.path.as_str() {
            "/v1/support" => reply(200, WABA_SUPPORT),
            "/v1/health" => reply(200, WABA_HEALTH),
            _ => reply(404, "{}"),
        }
    })
    .await;
    let cloud = Mock::start(|_| async { reply(200, CLOUD) }).await;
    let delivered = Arc::new(AtomicUsize::new(0));
    let d = delivered.clone();
    let green = Mock::start(move |s| {
        let d = d.clone();
        async move {
            if s.path.contains("getStateInstance") {
                reply(200, r#"{"stateInstance":"authorized"}"#)
            } else if s.path.contains("receiveNotification") {
                match GREEN_QUEUE.get(d.load(Ordering::SeqCst)) {
                    Some(n) => reply(200, *n),
                    None => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        reply(200, "null")
                    }
                }
            } else {
                d.fetch_add(1, Ordering::SeqCst);
                reply(200, r#"{"result":true}"#)
            }
        }
    })
    .await;
    let evo = Mock::start(|_| async {
        let (code, body) =
            common::fixture("evolution/fetch_instances.json", "/instance/fetchInstances");
        reply(code, body)
    })
    .await;
    let waha = Mock::start(|_| async {
        let (code, body) = common::fixture("waha/sessions_all.json", "/api/sessions?all=true");
        reply(code, body)
    })
    .await;
    let yaml = format!(
        r#"global:
  interval: 1h
  timeout: 5s
gateways:
  - name: sales
    provider: plugzapi
    url: {plugz}
    instance: I
    token: golden-token
  - name: onprem
    provider: waba
    url: {waba}
    token: golden-token
  - name: brand
    provider: cloudapi
    url: {cloud}
    phone_number_id: "106540352242922"
    token: golden-token
  - name: helpdesk
    provider: greenapi
    url: {green}
    instance: "1101000001"
    token: golden-token
    notifications: consume
  - name: evo1
    provider: evolution
    url: {evo}
    token: golden-token
    instances: all
  - name: waha1
    provider: waha
    url: {waha}
    token: golden-token
    instances: all
webhooks:
  plugchat:
    - account: store
      secret: {PLUGCHAT_SECRET}
"#,
        plugz = plugz.url(),
        waba = waba.url(),
        cloud = cloud.url(),
        green = green.url(),
        evo = evo.url(),
        waha = waha.url(),
    );
    let ex = Exporter::start(&yaml).await;
    for gw in ex.running.as_ref().unwrap().exporter.gateways().iter() {
        let _ = gw.poll().await;
    }
    ex.wait_for(10, |m| {
        common::sample(m, "whatsapp_greenapi_notification_delay_seconds_count", &[]) == Some(2.0)
    })
    .await;
    // Every number judged on its first answer, then on the pushes: a background round may come
    // at any moment, and the file must not depend on when.
    let exporter = ex.running.as_ref().unwrap().exporter.clone();
    exporter.judge_numbers();
    post_webhooks(&ex).await;
    exporter.judge_numbers();
    let text = normalise(&ex.metrics().await);
    ex.stop().await;
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(GOLDEN).unwrap_or_default();
    if want != text {
        panic!("/metrics differs from {GOLDEN}; if intended, run UPDATE_GOLDEN=1 cargo test --test golden\n--- got ---\n{text}");
    }
}

async fn post_webhooks(ex: &Exporter) {
    let client = common::client();
    let events = [
        (
            "startAttendance",
            r#"{"attendance":{"attendanceNumber":7,"departament":"Sales","requestTime":1651065400000,"startTime":1651065471166,"status":"PROGRESS"}}"#,
        ),
        (
            "finishAttendance",
            r#"{"attendance":{"attendanceNumber":7,"attendanceCategory":{"name":"Billing"},"departament":"Sales","endTime":1651066071166,"requestTime":1651065400000,"startTime":1651065471166,"status":"FINISH"}}"#,
        ),
        (
            "messageStatus",
            r#"{"type":"MessageStatusCallback","status":"READ","ids":["A"],"momment":1651065478000}"#,
        ),
        (
            "messageDeliveryError",
            r#"{"type":"DeliveryCallback","error":"x"}"#,
        ),
        (
            "whenDisconnecting",
            r#"{"type":"DisconnectedCallback","connected":false,"momment":1651065478000}"#,
        ),
    ];
    for (event, body) in events {
        let r = client
            .post(ex.url(&format!(
                "/webhooks/plugchat/store/{event}?secret={PLUGCHAT_SECRET}"
            )))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{event}: {}", r.status());
    }
    let r = client
        .post(ex.url("/webhooks/plugchat/store/receiveMessage?secret=wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

/// Fixes what changes from run to run (durations, times, the build) and drops `process_*`.
fn normalise(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.contains("process_") {
            continue;
        }
        let timestamp = [
            "whatsapp_last_success_timestamp_seconds{",
            "whatsapp_next_poll_timestamp_seconds{",
            "whatsapp_exporter_config_last_reload_success_timestamp_seconds ",
            "whatsapp_webhook_last_event_timestamp_seconds{",
        ];
        let line = if line.starts_with("whatsapp_poll_duration_seconds{") {
            with_value(line, "0.042")
        } else if line.starts_with("whatsapp_webhook_lag_seconds_sum{") {
            // Events stamped in the past arrive later every run.
            with_value(line, "1000000")
        } else if timestamp.iter().any(|t| line.starts_with(t)) {
            with_value(line, "1795000000")
        } else if line.starts_with("whatsapp_exporter_build_info{") {
            "whatsapp_exporter_build_info{branch=\"BRANCH\",revision=\"REVISION\",rustversion=\"RUSTC\",version=\"VERSION\"} 1".to_string()
        } else {
            line.to_string()
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn with_value(line: &str, v: &str) -> String {
    let (series, _) = line.rsplit_once(' ').unwrap();
    format!("{series} {v}")
}
