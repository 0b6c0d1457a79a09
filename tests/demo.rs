//! Black-box tests of `--demo`'s pushes: the simulated Evolution API and WAHA servers post their
//! instances' webhooks to the exporter, which shows them as the instances' message-flow series.

mod common;

use std::time::Duration;

use common::{client, samples, start_demo};
use whatsapp_exporter::canary::RunResult;
use whatsapp_exporter::Running;

async fn metrics(running: &Running) -> String {
    let url = format!("http://{}/metrics", running.addr);
    let resp = client().get(&url).send().await.unwrap();
    resp.text().await.unwrap()
}

/// The sum of `name` over the instances `<server>/...` of a server (not the server's own series).
fn of_instances(m: &str, name: &str, server: &str, extra: &[(&str, &str)]) -> f64 {
    let mut labels = vec![("server", server)];
    labels.extend_from_slice(extra);
    samples(m, name, &labels).iter().sum()
}

/// The instances of `server` that have a non-zero `name`.
fn instances_with(m: &str, name: &str, server: &str) -> Vec<String> {
    m.lines()
        .filter(|l| l.starts_with(&format!("{name}{{gateway=\"{server}/")))
        .filter(|l| !l.ends_with(" 0"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_string))
        .collect()
}

#[tokio::test]
async fn the_demo_servers_push_for_their_instances() {
    let running = start_demo().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let m = loop {
        let m = metrics(&running).await;
        let ready = ["evo", "waha"].iter().all(|s| {
            of_instances(&m, "whatsapp_webhook_events_total", s, &[]) > 0.0
                && of_instances(
                    &m,
                    "whatsapp_message_status_total",
                    s,
                    &[("status", "delivered")],
                ) > 0.0
                && of_instances(&m, "whatsapp_message_delivery_seconds_count", s, &[]) > 0.0
        });
        if ready {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no pushes of the demo servers' instances within 40 s:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Several instances of each server, each under its own gateway label.
    let evo = instances_with(&m, "whatsapp_webhook_events_total", "evo");
    let waha = instances_with(&m, "whatsapp_webhook_events_total", "waha");
    assert!(
        evo.iter().collect::<std::collections::HashSet<_>>().len() >= 3,
        "{evo:?}"
    );
    assert!(waha.iter().any(|g| g == "waha/default"), "{waha:?}");
    // Every push was authenticated: the secret in the URL, WAHA's HMAC-SHA512.
    for gw in ["evo", "waha"] {
        let rejected: f64 = samples(&m, "whatsapp_webhook_rejected_total", &[("gateway", gw)])
            .iter()
            .sum();
        assert_eq!(rejected, 0.0, "{gw}'s pushes were refused:\n{m}");
    }
    // The disconnection series exist per instance (the logged-out instance counts at 60 s).
    assert!(m.contains("whatsapp_disconnects_total{gateway=\"evo/ops\""));
    assert!(m.contains("whatsapp_disconnects_total{gateway=\"waha/support\""));
    // Nothing private: no token, key, fake number, message id or text of the pushes.
    for private in [
        "demo-instance-token",
        "demo-waha-hmac-key",
        "demo-webhook-secret",
        "55000000001",
        "55000000002",
        "BAE5",
        "3EB0",
        "evt_",
        "demonstração",
    ] {
        assert!(!m.contains(private), "{private} in /metrics");
    }
    running.shutdown().await;
}

/// The demo's canary `sales-to-support` (Z-API to Z-API): its send is answered, its statuses
/// and its arrival are relayed, and the run ends `delivered`, with its times on `/metrics`.
#[tokio::test]
async fn a_demo_canary_run_is_delivered() {
    let running = start_demo().await;
    let canaries = running.exporter.canaries.clone();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        canaries.run_now("sales-to-support"),
    )
    .await
    .expect("the run ends within 30 s");
    assert_eq!(result, Some(RunResult::Delivered));
    let m = metrics(&running).await;
    let labels = [
        ("canary", "sales-to-support"),
        ("from", "sales"),
        ("to", "support"),
    ];
    let with_result = |r| {
        let mut l = labels.to_vec();
        l.push(("result", r));
        samples(&m, "whatsapp_canary_runs_total", &l)
            .iter()
            .sum::<f64>()
    };
    assert_eq!(with_result("delivered"), 1.0, "{m}");
    for family in [
        "whatsapp_canary_accept_seconds_count",
        "whatsapp_canary_delivered_seconds_count",
        "whatsapp_canary_arrival_seconds_count",
    ] {
        assert_eq!(samples(&m, family, &labels), vec![1.0], "{family}");
    }
    // The run ends with the mark-read on `to` and the delete on `from`, which the simulated
    // Z-API answers.
    for step in ["mark_read", "delete"] {
        let mut l = labels.to_vec();
        l.push(("step", step));
        assert_eq!(
            samples(&m, "whatsapp_canary_cleanup_failures_total", &l),
            vec![0.0],
            "{step}"
        );
    }
    let accept = samples(&m, "whatsapp_canary_accept_seconds_sum", &labels)[0];
    assert!((0.1..2.0).contains(&accept), "accepted in {accept} s");
    let arrival = samples(&m, "whatsapp_canary_arrival_seconds_sum", &labels)[0];
    assert!((0.5..10.0).contains(&arrival), "arrived in {arrival} s");
    for private in [
        "5500000000001",
        "5500000000002",
        "3EB0DEMO",
        "whatsapp_exporter canary ",
    ] {
        assert!(!m.contains(private), "{private} in /metrics");
    }
    running.shutdown().await;
}
