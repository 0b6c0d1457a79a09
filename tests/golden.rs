//! The golden `/metrics`: every provider's series from fixed answers, compared with
//! `tests/golden/metrics.txt` (CI also runs `promtool check metrics` on that file).
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites it after an intended change.

mod common;

use common::{reply, Exporter, Mock};

const GOLDEN: &str = "tests/golden/metrics.txt";

#[tokio::test]
async fn metrics_match_the_golden_file() {
    let plugz = Mock::start(|_| async {
        reply(200, r#"{"connected":true,"session":true,"error":"You are already connected.","smartphoneConnected":false}"#)
    })
    .await;
    let yaml = format!(
        "global:\n  interval: 1h\n  timeout: 5s\ngateways:\n  - name: sales\n    provider: plugzapi\n    url: {}\n    instance: I\n    token: golden-token\n",
        plugz.url()
    );
    let ex = Exporter::start(&yaml).await;
    for gw in ex.running.as_ref().unwrap().exporter.gateways().iter() {
        let _ = gw.poll().await;
    }
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

/// Fixes what changes from run to run (durations, times, the build) and drops `process_*`.
fn normalise(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.contains("process_") {
            continue;
        }
        let timestamp = [
            "whatsapp_last_success_timestamp_seconds{",
            "whatsapp_exporter_config_last_reload_success_timestamp_seconds ",
        ];
        let line = if line.starts_with("whatsapp_poll_duration_seconds{") {
            with_value(line, "0.042")
        } else if timestamp.iter().any(|t| line.starts_with(t)) {
            with_value(line, "1795000000")
        } else if line.starts_with("whatsapp_exporter_build_info{") {
            "whatsapp_exporter_build_info{revision=\"REVISION\",rustc_version=\"RUSTC\",version=\"VERSION\"} 1".to_string()
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
