//! `--shard i/n` and `--no-background-polling`: who polls what.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{reply, Exporter, Mock};
use whatsapp_exporter::shard::Shard;
use whatsapp_exporter::Polling;

fn config(url: &str, n: usize) -> String {
    let mut yaml = String::from("global:\n  interval: 1s\n  timeout: 500ms\ngateways:\n");
    for i in 0..n {
        yaml.push_str(&format!("  - name: gw-{i}\n    provider: plugzapi\n    url: {url}\n    instance: I{i}\n    token: t\n"));
    }
    yaml
}

fn gateways(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("whatsapp_up{"))
        .filter_map(|l| {
            l.split("gateway=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test]
async fn replicas_split_the_gateways_between_them() {
    let mock = Mock::start(|_| async { reply(200, r#"{"connected":true}"#) }).await;
    let yaml = config(&mock.url(), 30);
    let mut seen = Vec::new();
    for index in 0..3 {
        let polling = Polling {
            shard: Some(Shard { index, count: 3 }),
            no_background: false,
        };
        let ex = Exporter::try_start_full(&yaml, None, polling)
            .await
            .unwrap();
        let expected = (0..30)
            .filter(|i| Shard { index, count: 3 }.owns(&format!("gw-{i}")))
            .count();
        let m = ex
            .wait_for(5, |m: &str| gateways(m).len() == expected)
            .await;
        assert_eq!(ex.get("/probe?target=no-such").await.0, 404);
        seen.push(gateways(&m));
        ex.stop().await;
    }
    let all: BTreeSet<String> = seen.iter().flatten().cloned().collect();
    assert_eq!(all.len(), 30, "every gateway is polled by some replica");
    assert_eq!(
        seen.iter().map(BTreeSet::len).sum::<usize>(),
        30,
        "and by one only"
    );
    assert!(seen.iter().all(|s| !s.is_empty()));
}

#[tokio::test]
async fn without_background_polling_only_probes_poll() {
    let mock = Mock::start(|_| async { reply(200, r#"{"connected":true}"#) }).await;
    let polling = Polling {
        shard: None,
        no_background: true,
    };
    let ex = Exporter::try_start_full(&config(&mock.url(), 3), None, polling)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(mock.hits(), 0, "no poll without a probe");
    let (code, body) = ex.get("/probe?target=gw-1").await;
    assert_eq!(code, 200);
    assert!(body.contains("whatsapp_up{gateway=\"gw-1\",provider=\"plugzapi\"} 1"));
    assert_eq!(mock.hits(), 1);
    // As with blackbox_exporter, /metrics is then the exporter's own: the probe job alone has
    // the gateway series, and a self-scrape job never repeats them.
    let own = ex.metrics().await;
    assert!(!own.contains("whatsapp_up{"), "{own}");
    assert!(own.contains("whatsapp_exporter_build_info{"), "{own}");
    ex.stop().await;
}

/// `--shard i/n` owns what Prometheus' `hashmod` (modulus n) sends to shard i. The expected shards
/// were computed independently with Python's hashlib, as Prometheus' model/relabel/relabel.go does:
/// `int.from_bytes(hashlib.md5(name.encode()).digest()[8:], "big") % n`.
#[test]
fn shards_agree_with_prometheus_hashmod() {
    let vectors: [(&str, [u32; 3]); 8] = [
        ("sales", [0, 0, 5]),
        ("support", [0, 0, 4]),
        ("brand", [1, 2, 6]),
        ("helpdesk", [0, 2, 5]),
        ("onprem", [0, 1, 6]),
        ("gateway-0", [1, 2, 5]),
        ("gw-1", [1, 2, 1]),
        ("a", [1, 1, 2]),
    ];
    for (name, shards) in vectors {
        for (count, want) in [2, 3, 7].into_iter().zip(shards) {
            let owners: Vec<u32> = (0..count)
                .filter(|&index| Shard { index, count }.owns(name))
                .collect();
            assert_eq!(owners, vec![want], "{name} with n={count}");
        }
    }
}
