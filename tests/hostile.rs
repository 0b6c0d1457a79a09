//! Hostile input to the exporter's own server: it answers 4xx or closes, never panics, and keeps
//! serving `/metrics`.

mod common;

use std::time::Duration;

use common::Exporter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn raw(ex: &Exporter, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(ex.addr()).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

async fn still_serving(ex: &Exporter) {
    let (code, body) = ex.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(body.contains("whatsapp_exporter_build_info"));
}

#[tokio::test]
async fn garbage_and_odd_requests_get_4xx_or_close() {
    let ex = Exporter::start("{}").await;
    // Deterministic pseudo-random bytes (xorshift), so a failure can be replayed.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20 {
        let junk: Vec<u8> = (0..512)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let answer = raw(&ex, &junk).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "{answer}"
        );
    }
    for req in [
        "GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET //metrics/../../x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /probe?target=../../etc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /webhooks/plugchat/../../-/reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "BREW /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /metrics HTTP/9.9\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    ] {
        let answer = raw(&ex, req.as_bytes()).await;
        assert!(
            answer.is_empty()
                || answer.starts_with("HTTP/1.1 4")
                || answer.starts_with("HTTP/1.0 4"),
            "{req:?} -> {answer}"
        );
        assert!(!answer.contains("root:"), "path traversal");
    }
    still_serving(&ex).await;
    ex.stop().await;
}

#[tokio::test]
async fn huge_headers_are_refused() {
    let ex = Exporter::start("{}").await;
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(256 * 1024)
    );
    let answer = raw(&ex, big.as_bytes()).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431") || answer.starts_with("HTTP/1.1 4"),
        "{answer}"
    );
    still_serving(&ex).await;
    ex.stop().await;
}

/// A client that never finishes its headers is dropped after the header read timeout.
#[tokio::test]
async fn slow_clients_are_cut_off() {
    let ex = Exporter::start("{}").await;
    let mut s = TcpStream::connect(ex.addr()).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    // Liveness bound: the server's timeout is 10 s; the connection must end by 20 s.
    let r = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(r.is_ok(), "a slow client kept its connection");
    still_serving(&ex).await;
    ex.stop().await;
}

/// More idle connections than the cap: the exporter neither dies nor runs out of descriptors,
/// and serves `/metrics` again once the idle ones time out.
#[tokio::test]
async fn thousands_of_idle_connections_do_not_take_it_down() {
    let ex = Exporter::start("{}").await;
    let mut idle = Vec::new();
    for _ in 0..1500 {
        if let Ok(s) = TcpStream::connect(ex.addr()).await {
            idle.push(s);
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    loop {
        let ok = tokio::time::timeout(Duration::from_secs(2), ex.get_checked("/metrics")).await;
        if matches!(ok, Ok(Some(200))) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/metrics never came back"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(idle);
    still_serving(&ex).await;
    ex.stop().await;
}
