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

/// `n` PlugzAPI gateways on a closed port, polled hourly: a large file to parse.
fn many_gateways(n: usize) -> String {
    let mut y = String::from("global:\n  interval: 1h\n  timeout: 1s\ngateways:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  - name: gw-{i:05}\n    provider: plugzapi\n    url: http://127.0.0.1:9\n    instance: I{i}\n    token: tok-{i}\n"
        ));
    }
    y
}

fn reloads_logged() -> usize {
    common::logs()
        .lines()
        .filter(|l| l.contains("configuration reloaded"))
        .count()
}

#[tokio::test]
async fn a_reload_storm_is_coalesced_into_one_reload_running_and_one_pending() {
    let ex = Exporter::start(&many_gateways(2000)).await;
    let before = reloads_logged();
    let reloads: Vec<_> = (0..40)
        .map(|_| {
            let url = ex.url("/-/reload");
            tokio::spawn(async move { common::client().post(url).send().await.map(|r| r.status()) })
        })
        .collect();
    for r in reloads {
        assert_eq!(r.await.unwrap().unwrap().as_u16(), 200);
    }
    let done = reloads_logged() - before;
    assert!(
        (1..=4).contains(&done),
        "40 concurrent reloads made {done} reloads"
    );
    // A request after them reads the file again: a change is applied.
    ex.write_config(&many_gateways(10));
    let (code, _) = common::client()
        .post(ex.url("/-/reload"))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(ex.running.as_ref().unwrap().exporter.gateways().len(), 10);
    ex.stop().await;
}

#[tokio::test]
async fn a_flood_of_wrong_passwords_leaves_the_scraper_fast() {
    let hash = bcrypt::hash("scraper-pw", 6).unwrap();
    let web = format!("basic_auth_users:\n  prometheus: '{hash}'\n");
    let ex = Exporter::try_start_with_web("{}", Some(&web))
        .await
        .unwrap();
    let scrape = |client: reqwest::Client, url: String| async move {
        let start = Instant::now();
        let r = client
            .get(url)
            .basic_auth("prometheus", Some("scraper-pw"))
            .send()
            .await;
        (r.map(|r| r.status().as_u16()).ok(), start.elapsed())
    };
    let client = common::client();
    assert_eq!(
        scrape(client.clone(), ex.url("/metrics")).await.0,
        Some(200)
    );
    let until = Instant::now() + Duration::from_secs(3);
    // One client for the flood: building one per task would stall the test's own thread.
    let attacker = common::client();
    let flood: Vec<_> = (0..200)
        .map(|i| {
            let url = ex.url("/metrics");
            let client = attacker.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < until {
                    let _ = client
                        .get(&url)
                        .basic_auth("prometheus", Some(format!("wrong-{i}-{n}")))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut times = Vec::new();
    while Instant::now() < until {
        let (status, took) = scrape(client.clone(), ex.url("/metrics")).await;
        assert_eq!(status, Some(200));
        times.push(took);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut sent = 0;
    for f in flood {
        sent += f.await.unwrap();
    }
    times.sort();
    let median = times[times.len() / 2];
    assert!(
        median < Duration::from_millis(300),
        "authenticated scrape median {median:?} during {sent} wrong passwords"
    );
    ex.stop().await;
}

#[tokio::test]
async fn a_webhook_flood_writes_a_few_log_lines_and_counts_the_rest() {
    let secret = "flood-secret-0123456789abcdef";
    let ex = Exporter::start(&format!(
        "webhooks:\n  plugchat:\n    - account: noisy\n      secret: {secret}\n"
    ))
    .await;
    let url = ex.url(&format!(
        "/webhooks/plugchat/noisy/receiveMessage?secret={secret}"
    ));
    let client = common::client();
    for i in 0..500 {
        let r = client
            .post(&url)
            .header("content-type", "application/json")
            .body(format!("{{\"phone\": \"55{i}\", broken"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
    }
    let lines = common::logs()
        .lines()
        .filter(|l| l.contains("account=noisy") && l.contains("level=warn"))
        .count();
    assert!(lines <= 30, "{lines} warn lines for 500 bad webhooks");
    let m = ex.metrics().await;
    let dropped = common::sample(&m, "whatsapp_exporter_log_lines_dropped_total", &[]).unwrap();
    assert!(dropped >= 900.0, "{dropped} lines counted as dropped");
    // Every webhook is still counted where it belongs.
    assert_eq!(
        common::sample(
            &m,
            "whatsapp_webhook_rejected_total",
            &[
                ("gateway", "noisy"),
                ("provider", "plugchat"),
                ("reason", "invalid_json")
            ]
        ),
        Some(500.0)
    );
    ex.stop().await;
}
