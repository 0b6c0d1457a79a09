//! Instruction counts of the two hot paths, for callgrind, which counts the same for the same
//! binary and input whatever else the machine does (wall-time figures on a busy 2-core machine
//! move by half):
//!
//! ```sh
//! cargo bench --bench instructions --no-run   # prints the binary's path
//! valgrind --tool=callgrind --toggle-collect='*Metrics*render*' BINARY 10000 render
//! valgrind --tool=callgrind --toggle-collect='*Gateway*record*' BINARY 10000 poll
//! ```
//!
//! `render` builds 10,000 polled gateways and renders `/metrics` once, gzip-compressed; `poll`
//! records 1,000 more polls of one gateway (with the 10,000 of the set-up, 11,000 records are
//! counted). Run alone (`cargo bench`), it does the work once and prints the page's size.

use std::sync::Arc;
use std::time::Duration;
use whatsapp_exporter::config;
use whatsapp_exporter::gateway::Gateway;
use whatsapp_exporter::http::Clients;
use whatsapp_exporter::metrics::Metrics;
use whatsapp_exporter::providers::{zapi as plugzapi, Source};
const STATUS: &[u8] = br#"{"connected":true,"session":true,"error":"You are already connected.","smartphoneConnected":true}"#;
fn main() {
    whatsapp_exporter::install_crypto_provider();
    // `cargo bench` passes `--bench`: anything that is not a number means the default.
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let mut yaml = String::from("gateways:\n");
    for i in 0..n {
        yaml.push_str(&format!("  - name: gateway-{i:05}\n    provider: plugzapi\n    url: http://127.0.0.1:9\n    instance: I{i}\n    token: t{i}\n"));
    }
    let cfg = config::parse(&yaml, &|_| None).unwrap();
    let clients = Clients::new().unwrap();
    let gws: Vec<Arc<Gateway>> = cfg
        .gateways
        .into_iter()
        .map(|gc| {
            let s = Source::new(&gc, &clients).unwrap();
            let g = Gateway::new(gc, s);
            let _ = g.record(
                Ok(Box::new(plugzapi::parse(STATUS).unwrap())),
                Duration::from_millis(12),
            );
            g
        })
        .collect();
    let metrics = Metrics::new().unwrap();
    let mode = std::env::args().nth(2).unwrap_or_default();
    if mode == "poll" {
        for _ in 0..1000 {
            let obs = plugzapi::parse(STATUS).unwrap();
            let _ = gws[0].record(Ok(Box::new(obs)), Duration::from_millis(12));
        }
        return;
    }
    let fragments: Vec<_> = gws.iter().map(|g| g.fragment()).collect();
    let out = metrics.render(&fragments, true);
    println!("{}", out.len());
}
