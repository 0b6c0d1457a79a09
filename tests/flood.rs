//! A hostile client against the exporter's own server, black-box: connection floods keep no
//! scrape out. The same at scale and with TLS, against the release build, is
//! `benches/foul_weather.py connections`.

mod common;

use std::time::{Duration, Instant};

use common::Exporter;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Raises this process's limit on open files (the exporter does so at start too); `false` when
/// the limit stays too low for a test that holds `n` connections on both ends.
fn room_for(n: u64) -> bool {
    let have = whatsapp_exporter::fdlimit::raise().unwrap_or(u64::MAX);
    if have < 2 * n + 512 {
        eprintln!("skipped: {have} open files allowed, {n} connections need more");
        return false;
    }
    true
}

/// Opens `n` connections from 127.0.0.1, half silent and half sending a request head that never
/// ends.
async fn hold(ex: &Exporter, n: usize, held: &mut Vec<TcpStream>) {
    for i in 0..n {
        if let Ok(mut s) = TcpStream::connect(ex.addr()).await {
            if i % 2 == 1 {
                let _ = s
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaa")
                    .await;
            }
            held.push(s);
        }
    }
}

#[tokio::test]
async fn every_scrape_gets_through_1100_idle_and_slow_connections() {
    if !room_for(1600) {
        return;
    }
    let ex = Exporter::start("{}").await;
    let mut held = Vec::new();
    hold(&ex, 1100, &mut held).await;
    let mut worst = Duration::ZERO;
    for i in 0..25 {
        let start = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(5), ex.get_checked("/metrics")).await;
        worst = worst.max(start.elapsed());
        assert!(
            matches!(r, Ok(Some(200))),
            "scrape {i} failed ({r:?}) with {} attacking connections",
            held.len()
        );
        // The attacker keeps opening more.
        hold(&ex, 20, &mut held).await;
    }
    assert!(worst < Duration::from_secs(2), "slowest scrape {worst:?}");
    drop(held);
    ex.stop().await;
}

#[tokio::test]
async fn authenticated_scrapes_get_through_a_connection_flood_too() {
    if !room_for(1200) {
        return;
    }
    let hash = bcrypt::hash("flood-pw", 4).unwrap();
    let web = format!("basic_auth_users:\n  prometheus: '{hash}'\n");
    let ex = Exporter::try_start_with_web("{}", Some(&web))
        .await
        .unwrap();
    let mut held = Vec::new();
    hold(&ex, 1100, &mut held).await;
    for i in 0..25 {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            common::client()
                .get(ex.url("/metrics"))
                .basic_auth("prometheus", Some("flood-pw"))
                .send(),
        )
        .await;
        let status = r.ok().and_then(|r| r.ok()).map(|r| r.status().as_u16());
        assert_eq!(status, Some(200), "scrape {i}");
        hold(&ex, 20, &mut held).await;
    }
    ex.stop().await;
}
