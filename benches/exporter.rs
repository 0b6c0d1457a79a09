//! Parse and render costs: the work done per poll and per scrape.
//! `cargo bench --bench exporter`; figures are medians (criterion's estimate).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use whatsapp_exporter::config;
use whatsapp_exporter::config::Instances;
use whatsapp_exporter::gateway::Gateway;
use whatsapp_exporter::http::Clients;
use whatsapp_exporter::metrics::Metrics;
use whatsapp_exporter::providers::discovery::Selector;
use whatsapp_exporter::providers::{evolution, zapi as plugzapi, Observation, Source};

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

/// A `fetchInstances` answer of `n` instances, each row in the shape Evolution API 2 lists (its
/// settings and counts included, about 1 KiB a row); every tenth instance is closed.
fn evolution_listing(n: usize) -> Vec<u8> {
    let rows: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "id": format!("cm2inst{i:018}"),
                "name": format!("instance-{i:05}"),
                "connectionStatus": if i % 10 == 0 { "close" } else { "open" },
                "ownerJid": format!("55119{i:08}@s.whatsapp.net"),
                "profileName": "Loja", "profilePicUrl": null, "integration": "WHATSAPP-BAILEYS",
                "number": null, "businessId": null,
                "token": "B3844804-481D-47A4-B69C-F14B4206EB56",
                "clientName": "evolution_exchange", "disconnectionReasonCode": null,
                "disconnectionObject": null, "disconnectionAt": null,
                "createdAt": "2025-10-01T12:00:00.000Z", "updatedAt": "2025-10-21T14:40:39.123Z",
                "Chatwoot": null, "Proxy": null, "Rabbitmq": null, "Nats": null, "Sqs": null,
                "Websocket": null,
                "Setting": {"id": "cm2setsales1", "rejectCall": false, "msgCall": "",
                    "groupsIgnore": false, "alwaysOnline": false, "readMessages": false,
                    "readStatus": false, "syncFullHistory": false, "wavoipToken": "",
                    "createdAt": "2025-10-01T12:00:00.000Z", "updatedAt": "2025-10-01T12:00:00.000Z",
                    "instanceId": format!("cm2inst{i:018}")},
                "_count": {"Message": 120, "Contact": 30, "Chat": 12},
            })
        })
        .collect();
    serde_json::to_vec(&rows).unwrap()
}

/// One server poll as the provider makes it: the listing parsed and the instances selected.
fn server_observation(body: &[u8]) -> Box<dyn Observation> {
    let rows = evolution::parse_listing(body).unwrap();
    Box::new(
        Selector::new(Instances::All, 1000).select(
            rows.into_iter()
                .map(|(n, s)| (n, Box::new(s) as Box<dyn Observation>)),
        ),
    )
}

/// `servers` Evolution API gateways with `instances: all`, each having seen `body` once.
fn servers(servers: usize, body: &[u8]) -> Vec<Arc<Gateway>> {
    let mut yaml = String::from("gateways:\n");
    for i in 0..servers {
        yaml.push_str(&format!(
            "  - name: server-{i:02}\n    provider: evolution\n    url: http://127.0.0.1:9\n    token: t{i}\n    instances: all\n"
        ));
    }
    let cfg = config::parse(&yaml, &|_| None).unwrap();
    let clients = Clients::new().unwrap();
    cfg.gateways
        .into_iter()
        .map(|gc| {
            let source = Source::new(&gc, &clients).unwrap();
            let gw = Gateway::new(gc, source);
            let _ = gw.record(Ok(server_observation(body)), Duration::from_millis(40));
            gw
        })
        .collect()
}

/// Discovery: 10,000 instances over 20 Evolution API servers of 500 instances each.
fn discovery(c: &mut Criterion) {
    let body = evolution_listing(500);
    let mut group = c.benchmark_group("discovery");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("evolution fetchInstances parse, 500 instances", |b| {
        b.iter(|| evolution::parse_listing(black_box(&body)).unwrap())
    });
    group.throughput(Throughput::Elements(500));
    let gw = servers(1, &body).pop().unwrap();
    group.bench_function(
        "record a server poll (parse, select, render 500 instances)",
        |b| {
            b.iter(|| {
                gw.record(
                    Ok(server_observation(black_box(&body))),
                    Duration::from_millis(40),
                )
            })
        },
    );
    let metrics = Metrics::new().unwrap();
    let gws = servers(20, &body);
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("render /metrics, 20 servers of 500 instances", |b| {
        b.iter(|| {
            let fragments: Vec<_> = gws.iter().map(|g| g.fragment()).collect();
            metrics.render(&fragments, false)
        })
    });
    group.bench_function("render /metrics + gzip, 20 servers of 500 instances", |b| {
        b.iter(|| {
            let fragments: Vec<_> = gws.iter().map(|g| g.fragment()).collect();
            metrics.render(&fragments, true)
        })
    });
    group.finish();
}

criterion_group!(benches, per_poll, per_scrape, discovery);
criterion_main!(benches);
