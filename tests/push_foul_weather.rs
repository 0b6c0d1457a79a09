//! Foul weather on the push side, against a running exporter on 127.0.0.1: unsigned bodies share
//! one budget, a signature that cannot be a digest is refused before the body, and refusals that
//! a sender repeats at will write a few log lines and count the rest. The scenarios at scale
//! (hundreds of connections, RSS, scrapes under attack) are `benches/push_weather.py`.

mod common;

use std::time::Duration;

use common::{sample, Exporter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use whatsapp_exporter::receiver::PUSH_BODY_BUDGET;

const APP_SECRET: &str = "push-weather-app-secret-0123456789";
const HMAC_KEY: &str = "push-weather-hmac-key-0123456789";

fn config() -> String {
    format!(
        "gateways:\n  - name: waha\n    provider: waha\n    url: http://127.0.0.1:9\n    instance: default\n    interval: 1h\n    webhooks:\n      hmac_key: {HMAC_KEY}\nwebhooks:\n  cloudapi:\n    - app: main\n      app_secret: {APP_SECRET}\n      verify_token: push-weather-verify-token\n"
    )
}

fn sign(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, APP_SECRET.as_bytes());
    let hex: String = ring::hmac::sign(&key, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Sends a head declaring `length` bytes of body, and `send` of them.
async fn start_post(
    ex: &Exporter,
    path: &str,
    signature: &str,
    length: usize,
    send: usize,
) -> TcpStream {
    let mut s = TcpStream::connect(ex.addr()).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Hub-Signature-256: {signature}\r\nContent-Length: {length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![b' '; send]).await.unwrap();
    s
}

/// The status of the answer on `s`, if one comes within two seconds.
async fn status(s: &mut TcpStream) -> Option<u16> {
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    std::str::from_utf8(&buf[..n])
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

fn rejected(m: &str, reason: &str) -> f64 {
    sample(
        m,
        "whatsapp_webhook_rejected_total",
        &[("app", "main"), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn unsigned_bodies_share_one_budget_and_get_it_back() {
    let ex = Exporter::start(&config()).await;
    let exporter = ex.running.as_ref().unwrap().exporter.clone();
    let wrong = format!("sha256={}", "0".repeat(64));
    let max = 4 << 20;
    // Bodies of the largest allowed size, stalled before their end, fill the budget...
    let mut stalled = Vec::new();
    for _ in 0..PUSH_BODY_BUDGET / max {
        stalled.push(start_post(&ex, "/webhooks/cloudapi/main", &wrong, max, 1 << 20).await);
    }
    let full = async {
        while exporter.receiver.body_budget_available() >= max {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), full)
        .await
        .expect("the stalled bodies hold the budget");
    // ...so the next is refused on its head alone, before a byte of its body is sent.
    let mut next = start_post(&ex, "/webhooks/cloudapi/main", &wrong, max, 0).await;
    assert_eq!(status(&mut next).await, Some(503));
    assert_eq!(rejected(&ex.metrics().await, "overloaded"), 1.0);
    // The stalled connections go: all of the budget comes back, and a signed push is taken.
    drop(stalled);
    let whole = async {
        while exporter.receiver.body_budget_available() != PUSH_BODY_BUDGET {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), whole)
        .await
        .expect("the budget comes back whole");
    let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
    let mut ok = start_post(&ex, "/webhooks/cloudapi/main", &sign(body), body.len(), 0).await;
    ok.write_all(body).await.unwrap();
    assert!(matches!(status(&mut ok).await, Some(200 | 422)));
    assert_eq!(rejected(&ex.metrics().await, "bad_signature"), 0.0);
    ex.stop().await;
}

#[tokio::test]
async fn a_signature_that_cannot_be_a_digest_is_refused_before_the_body() {
    let ex = Exporter::start(&config()).await;
    let exporter = ex.running.as_ref().unwrap().exporter.clone();
    for signature in [
        "sha256=zz",
        "sha1=0000",
        "",
        &format!("sha256={}", "0".repeat(63)),
    ] {
        // The body is declared and never sent: the answer comes all the same.
        let mut s = start_post(&ex, "/webhooks/cloudapi/main", signature, 4 << 20, 0).await;
        assert_eq!(status(&mut s).await, Some(401), "{signature:?}");
    }
    // WAHA with `hmac_key`: the same for a header that is not 128 hex digits.
    let mut s = TcpStream::connect(ex.addr()).await.unwrap();
    s.write_all(b"POST /webhooks/waha HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Webhook-Hmac: abc\r\nContent-Length: 1000000\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status(&mut s).await, Some(401));
    assert_eq!(exporter.receiver.body_budget_available(), PUSH_BODY_BUDGET);
    let m = ex.metrics().await;
    assert_eq!(rejected(&m, "bad_signature"), 4.0);
    ex.stop().await;
}

#[tokio::test]
async fn refusals_repeated_at_will_write_a_few_lines_and_count_the_rest() {
    let ex = Exporter::start(&config()).await;
    let client = common::client();
    let before = sample(
        &ex.metrics().await,
        "whatsapp_exporter_log_lines_dropped_total",
        &[],
    )
    .unwrap();
    for _ in 0..300 {
        // A method WAHA never uses, a media type it never sends, and a path nobody configured.
        let r = client.get(ex.url("/webhooks/waha")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 405);
        let r = client
            .put(ex.url("/webhooks/cloudapi/main"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 405);
        let r = client
            .post(ex.url("/webhooks/nobody"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404);
    }
    let lines = common::logs()
        .lines()
        .filter(|l| l.contains("webhook refused"))
        .count();
    assert!(lines <= 60, "{lines} log lines for 900 refusals");
    let dropped = sample(
        &ex.metrics().await,
        "whatsapp_exporter_log_lines_dropped_total",
        &[],
    )
    .unwrap();
    assert!(dropped - before >= 800.0, "{} dropped", dropped - before);
    ex.stop().await;
}
