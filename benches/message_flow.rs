//! Cloud API status webhooks through the receiver: signature check (HMAC-SHA256 of the raw body),
//! parse, routing by phone_number_id, counting and sent→delivered tracking, for batches of 1, 10
//! and 100 statuses; and the memory a tracked message id costs.
//!
//! `cargo bench --bench message_flow`; figures are medians (criterion's estimate) on one thread.
//! The HTTP server around it is measured by `benches/webhooks_http.py`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use whatsapp_exporter::config;
use whatsapp_exporter::flow_state::{Limits, Owner, Tracker};
use whatsapp_exporter::gateway::Gateway;
use whatsapp_exporter::http::Clients;
use whatsapp_exporter::providers::{cloudapi, Source};
use whatsapp_exporter::receiver::Receiver;

/// Counts the bytes held on the heap, to tell what the tracking table costs.
struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        HELD.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HELD.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        HELD.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const APP_SECRET: &str = "bench_app_secret_0123456789abcdef";
const NUMBER: &str = "106540352242922";

fn sign(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, APP_SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A `messages` change with `n` statuses, shaped as Meta's documented status example (with
/// conversation and pricing), ids `first..first+n`.
fn batch(first: u64, n: u64, status: &str) -> Vec<u8> {
    let statuses: Vec<String> = (first..first + n)
        .map(|i| {
            format!(
                r#"{{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMx{i:012}","status":"{status}","timestamp":"1750030073","recipient_id":"16505551234","conversation":{{"id":"72b14d6bd5407799e66f64d1b338e567","expiration_timestamp":"1750116480","origin":{{"type":"marketing"}}}},"pricing":{{"billable":true,"pricing_model":"PMP","type":"regular","category":"marketing"}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"{NUMBER}"}},"statuses":[{}]}},"field":"messages"}}]}}]}}"#,
        statuses.join(",")
    )
    .into_bytes()
}

fn receiver() -> (Receiver, Arc<Gateway>) {
    let yaml = format!(
        "gateways:\n  - name: brand\n    provider: cloudapi\n    url: http://127.0.0.1:9\n    phone_number_id: \"{NUMBER}\"\n    token: t\nwebhooks:\n  cloudapi:\n    - {{app: main, app_secret: {APP_SECRET}, verify_token: v}}\n"
    );
    let cfg = config::parse(&yaml, &|_| None).unwrap();
    let clients = Clients::new().unwrap();
    let gc = cfg.gateways[0].clone();
    let gw = Gateway::new(gc.clone(), Source::new(&gc, &clients).unwrap());
    gw.flow.activate(&cloudapi::webhook::SPEC, || Owner::new(1));
    let (rx, _repolls) = Receiver::new(Arc::new(Tracker::default()));
    rx.configure(std::slice::from_ref(&gw), &cfg.cloudapi_apps);
    (rx, gw)
}

fn status_webhooks(c: &mut Criterion) {
    let (rx, gw) = receiver();
    let mut group = c.benchmark_group("cloudapi status webhooks");
    group.measurement_time(Duration::from_secs(5));
    for n in [1u64, 10, 100] {
        // Sent and delivered of distinct ids, alternating, signed once beforehand; more bodies
        // than a gateway's replay window holds (4,096 events), so that every one counts again
        // when the cycle comes round.
        let bodies: Vec<(Vec<u8>, String)> = (0..(10_000 / n).max(2000))
            .map(|i| {
                let status = if i % 2 == 0 { "sent" } else { "delivered" };
                let b = batch((i / 2) * n, n, status);
                let s = sign(&b);
                (b, s)
            })
            .collect();
        group.throughput(Throughput::Elements(n));
        let mut i = 0;
        group.bench_function(format!("batch of {n}: verify, parse, route, count"), |b| {
            b.iter(|| {
                let (body, sig) = &bodies[i % bodies.len()];
                i += 1;
                rx.accept_cloud("main", black_box(body), sig.as_bytes())
                    .unwrap()
            })
        });
        group.bench_function(format!("batch of {n}: signature only"), |b| {
            let (body, sig) = &bodies[0];
            b.iter(|| {
                cloudapi::webhook::signature_matches(
                    APP_SECRET.as_bytes(),
                    black_box(body),
                    Some(sig.as_bytes()),
                )
            })
        });
    }
    group.finish();
    let delivered = gw.flow.read(|f| f.events_total()).unwrap_or(0);
    assert!(delivered > 0);
}

/// Not timed: what the tracking table holds on the heap per id, at 100,000 ids.
fn tracked_id_memory(_c: &mut Criterion) {
    let n = 100_000u64;
    let before = HELD.load(Ordering::Relaxed);
    let tracker = Tracker::new(Limits {
        max_tracked: n as usize,
        max_age: Duration::from_secs(86_400),
    });
    let owner = Owner::new(7);
    for i in 0..n {
        let key = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        tracker.sent(&owner, key, 1.75e9, 1.75e9);
    }
    let held = HELD.load(Ordering::Relaxed) - before;
    println!(
        "tracking table: {} ids, {} bytes on the heap, {:.1} bytes per tracked id",
        tracker.len(),
        held,
        held as f64 / tracker.len() as f64
    );
    assert!(held as f64 / (n as f64) <= 128.0);
    drop(tracker);
}

/// One sent and one delivered status of a distinct id, straight into a gateway's counters: the
/// cost per message of counting, replay detection, time checks and the id table, without
/// signature or parsing. Ids never repeat, so nothing is dropped as a replay.
fn sent_to_delivered(c: &mut Criterion) {
    use whatsapp_exporter::flow::{Event, MessageKey, MessageStatus, ReplayKey};
    use whatsapp_exporter::flow_state::FlowState;
    let tracker = Tracker::default();
    let mut flow = FlowState::new(&cloudapi::webhook::SPEC, Owner::new(3));
    let mut group = c.benchmark_group("message flow");
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    let now = 1.75e9;
    group.bench_function("one id: sent then delivered", |b| {
        b.iter(|| {
            i += 1;
            let id = format!("wamid.{i:016}");
            let key = MessageKey::of(&id);
            for (status, name) in [
                (MessageStatus::Sent, "sent"),
                (MessageStatus::Delivered, "delivered"),
            ] {
                let ev = Event {
                    name: "status",
                    timestamp: Some(now - 1.0),
                    status: Some(status),
                    messages: key.into_iter().collect(),
                    replay: ReplayKey::of(&id, &[name]),
                    ..Default::default()
                };
                black_box(flow.apply(&ev, now, &tracker));
            }
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    tracked_id_memory,
    sent_to_delivered,
    status_webhooks
);
criterion_main!(benches);
