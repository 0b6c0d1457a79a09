//! Parse and render costs: the work done per poll and per scrape.
//! `cargo bench --bench exporter`; figures are medians (criterion's estimate).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use whatsapp_exporter::config;
use whatsapp_exporter::gateway::Gateway;
use whatsapp_exporter::http::Clients;
use whatsapp_exporter::metrics::Metrics;
use whatsapp_exporter::providers::{zapi as plugzapi, Source};

const STATUS: &[u8] = br#"{"connected":true,"session":true,"error":"You are already connected.","smartphoneConnected":true}"#;

fn gateways(n: usize) -> Vec<Arc<Gateway>> {
    let mut yaml = String::from("gateways:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - name: gateway-{i:05}\n    provider: plugzapi\n    url: http://127.0.0.1:9\n    instance: I{i}\n    token: t{i}\n"
        ));
    }
    let cfg = config::parse(&yaml, &|_| None).unwrap();
    let clients = Clients::new().unwrap();
    cfg.gateways
        .into_iter()
        .map(|gc| {
            let source = Source::new(&gc, &clients).unwrap();
            let gw = Gateway::new(gc, source);
            let _ = gw.record(
                Ok(Box::new(plugzapi::parse(STATUS).unwrap())),
                Duration::from_millis(12),
            );
            gw
        })
        .collect()
}

fn per_poll(c: &mut Criterion) {
    c.bench_function("plugzapi parse", |b| {
        b.iter(|| plugzapi::parse(black_box(STATUS)).unwrap())
    });
    let gw = gateways(1).pop().unwrap();
    c.bench_function("record a poll (parse + render one gateway)", |b| {
        b.iter(|| {
            let obs = plugzapi::parse(black_box(STATUS)).unwrap();
            gw.record(Ok(Box::new(obs)), Duration::from_millis(12))
        })
    });
}

fn per_scrape(c: &mut Criterion) {
    let metrics = Metrics::new().unwrap();
    let mut group = c.benchmark_group("scrape");
    group.sample_size(20);
    for n in [100, 10_000] {
        let gws = gateways(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("render /metrics, {n} gateways"), |b| {
            b.iter(|| {
                let fragments: Vec<_> = gws.iter().map(|g| g.fragment()).collect();
                metrics.render(&fragments, false)
            })
        });
        group.bench_function(format!("render /metrics + gzip, {n} gateways"), |b| {
            b.iter(|| {
                let fragments: Vec<_> = gws.iter().map(|g| g.fragment()).collect();
                metrics.render(&fragments, true)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, per_poll, per_scrape);
criterion_main!(benches);
