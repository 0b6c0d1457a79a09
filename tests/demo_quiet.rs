//! `--demo` does not warn about itself (issue 25): its simulated gateways poll every 5 seconds, less
//! than real providers answer freshly, but they are served from inside the process, so the
//! warning that protects real rate limits has nothing to protect. Its first polls write no
//! warning at all.

mod common;

use std::time::Duration;

use common::{client, sample, start_demo};

const GATEWAYS: [&str; 7] = [
    "sales", "support", "onprem", "helpdesk", "brand", "evo", "waha",
];

#[tokio::test]
async fn the_demo_starts_without_a_warning() {
    let before = common::logs().len();
    let running = start_demo().await;
    let url = format!("http://{}/metrics", running.addr);
    let mut polled = Vec::new();
    // Every gateway polls within its first interval (5 s); 15 s at most.
    for _ in 0..150 {
        let m = client()
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        polled = GATEWAYS
            .iter()
            .filter(|g| sample(&m, "whatsapp_polls_total", &[("gateway", g)]).unwrap_or(0.0) >= 1.0)
            .collect();
        if polled.len() == GATEWAYS.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(polled.len(), GATEWAYS.len(), "polled: {polled:?}");
    let logs = common::logs()[before..].to_string();
    assert!(logs.contains("msg=listening"), "{logs}");
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("level=warn") || l.contains("level=error"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    running.shutdown().await;
}
