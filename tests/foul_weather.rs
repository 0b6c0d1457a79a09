//! Foul weather, the cheap and exact cases: secrets that must not be echoed even in pieces or as
//! numbers, hostile configuration files, and the documented cap on request heads. The load and
//! outage scenarios are in `benches/foul_weather.py`.

mod common;

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{logs, reply, Exporter, Mock, Seen, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_whatsapp_exporter");

/// Every piece of `secret` of `len` characters (a leaked piece is as bad as the whole in a log
/// shipped to a third party: it narrows the search or gives away a prefix).
fn pieces(secret: &str, len: usize) -> Vec<&str> {
    (0..=secret.len().saturating_sub(len))
        .map(|i| &secret[i..i + len])
        .collect()
}

/// Fails with the first piece of `secret` (8 characters or more) that `text` contains.
fn assert_no_piece(text: &str, secret: &str, what: &str) {
    for p in pieces(secret, 8) {
        assert!(
            !text.contains(p),
            "{what} contains {p:?}, a piece of a secret:\n{}",
            excerpt(text, p)
        );
    }
}

fn excerpt(text: &str, needle: &str) -> String {
    let i = text.find(needle).unwrap_or(0);
    let (a, b) = (
        i.saturating_sub(200),
        (i + needle.len() + 200).min(text.len()),
    );
    let (a, b) = (floor(text, a), floor(text, b));
    text[a..b].to_string()
}

fn floor(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn write(dir: &TempDir, name: &str, text: &[u8]) -> std::path::PathBuf {
    let p = dir.0.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `--config.check` on `text`: (exit code, stdout + stderr).
fn config_check(text: &[u8]) -> (Option<i32>, String) {
    let dir = TempDir::new();
    let path = write(&dir, "check.yml", text);
    let out = Command::new(BIN)
        .args(["--config.check", "--config.file"])
        .arg(&path)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), all)
}

// ---- (i) a numeric inline secret is not echoed by configuration errors ----

/// YAML reads these unquoted secrets as numbers; the decoder's "invalid type" error quotes them.
const NUMERIC_TOKEN: &str = "123456789012";
const NUMERIC_SECRET: &str = "9876543210987654";

fn numeric_secrets_config() -> String {
    format!(
        "gateways:\n  - name: sales\n    provider: plugzapi\n    url: http://127.0.0.1:9\n    instance: I1\n    token: {NUMERIC_TOKEN}\nwebhooks:\n  plugchat:\n    - account: store\n      secret: {NUMERIC_SECRET}\n"
    )
}

#[test]
fn config_check_does_not_echo_a_numeric_inline_secret() {
    let (code, out) = config_check(numeric_secrets_config().as_bytes());
    assert_eq!(code, Some(1), "a number is no token: {out}");
    assert!(!out.contains(NUMERIC_TOKEN), "the token is echoed: {out}");
    assert!(!out.contains(NUMERIC_SECRET), "the secret is echoed: {out}");
    assert!(
        out.contains("gateways[0] (sales): token"),
        "name the gateway and key: {out}"
    );

    // Past u64 the whole file fails to decode, with the number quoted.
    let wide = "webhooks:\n  plugchat:\n    - account: store\n      secret: 98765432109876543210\n";
    let (code, out) = config_check(wide.as_bytes());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        !out.contains("98765432109876543210"),
        "the secret is echoed: {out}"
    );
}

#[tokio::test]
async fn reload_answer_and_log_do_not_echo_a_numeric_inline_secret() {
    let ex = Exporter::start("{}").await;
    ex.write_config(&numeric_secrets_config());
    let r = common::client()
        .post(ex.url("/-/reload"))
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let answer = r.text().await.unwrap();
    assert_eq!(code, 500, "refused: {answer}");
    assert!(
        !answer.contains(NUMERIC_TOKEN) && !answer.contains(NUMERIC_SECRET),
        "the /-/reload answer echoes a secret: {answer}"
    );
    assert!(
        answer.contains("gateways[0] (sales): token"),
        "name the gateway and key: {answer}"
    );
    let log = logs();
    assert!(log.contains("configuration reload refused"), "{log}");
    assert!(
        !log.contains(NUMERIC_TOKEN) && !log.contains(NUMERIC_SECRET),
        "the log echoes a secret:\n{}",
        excerpt(&log, NUMERIC_TOKEN)
    );
    ex.stop().await;
}

// ---- (ii) a Graph error body that echoes pieces of the token ----

/// Looks like a system-user token; every 8-character piece of it is distinctive.
const CLOUD_TOKEN: &str = "EAAGz9Qk2VwXr7TmPb4NcL8sYhJ3dFu6";

/// Graph's error object (https://developers.facebook.com/docs/graph-api/guides/error-handling:
/// `message`, `type`, `code`, `error_subcode`, `fbtrace_id`), made hostile: something in front of
/// Graph, or Graph itself, echoes pieces of the bearer token in `type`, `fbtrace_id` and `message`.
/// Not a recorded answer; the shape is the documented one.
fn echoing_graph_error() -> String {
    let (a, b, c) = (
        &CLOUD_TOKEN[0..12],
        &CLOUD_TOKEN[10..22],
        &CLOUD_TOKEN[20..32],
    );
    format!(
        r#"{{"error":{{"message":"Invalid OAuth access token - Cannot parse access token {c}","type":"OAuthException{a}","code":190,"error_subcode":463,"fbtrace_id":"A{b}"}}}}"#
    )
}

#[tokio::test]
async fn graph_error_pieces_of_the_token_stay_out_of_logs_status_page_and_metrics() {
    let body = echoing_graph_error();
    let graph = Mock::start(move |_s: Seen| {
        let body = body.clone();
        async move { reply(400, body) }
    })
    .await;
    let ex = Exporter::start(&format!(
        "global:\n  interval: 1s\n  timeout: 500ms\ngateways:\n  - name: brand\n    provider: cloudapi\n    url: {}\n    phone_number_id: \"106540352242922\"\n    token: {CLOUD_TOKEN}\n",
        graph.url()
    ))
    .await;
    let (_, probe) = ex.get("/probe?target=brand").await;
    assert!(
        probe.contains("whatsapp_up{gateway=\"brand\",provider=\"cloudapi\"} 0"),
        "{probe}"
    );
    assert!(graph.hits() >= 1);
    let (_, page) = ex.get("/").await;
    let metrics = ex.metrics().await;
    assert_no_piece(&probe, CLOUD_TOKEN, "/probe");
    assert_no_piece(&metrics, CLOUD_TOKEN, "/metrics");
    assert_no_piece(&page, CLOUD_TOKEN, "the status page");
    assert_no_piece(&logs(), CLOUD_TOKEN, "the log");
    ex.stop().await;
}

// ---- (iii) a WABA /v1/support answer whose label-bound strings carry the token ----

/// Within `[A-Za-z0-9._:+-]`, so that the label sanitiser keeps it whole.
const WABA_TOKEN: &str = "wabaTok9Xq2Lm7Rz4Kp8Vn3";

/// The multi-connect shape of Meta's `GET /v1/support` (nodes keyed by `hostname:container-id`,
/// each with `role`, `version`, `db_engine`, `os_name`...; On-Premises API reference,
/// https://developers.facebook.com/docs/whatsapp/on-premises/reference, node `support`; the same
/// shape as in tests/waba.rs), made hostile: the node key and the strings that become labels
/// carry the bearer token, as a misconfigured deployment (a hostname or build tag set from the
/// token's variable) would report them. Not a recorded answer.
fn leaking_support() -> String {
    let t = WABA_TOKEN;
    format!(
        r#"{{"support":{{"waba-{t}:3f2a9c1b7d4e":{{"multi_connect":true,"role":"primary_master{t}","shards":[[-1,-1],[0,0]],"db_engine":"PGSQL{t}","os_name":"ubuntu-{t}","os_version":"16.04-{t}","socket_conn":"UP","version":"v2.41.3+{t}","expire_timestamp":"2030-09-27T14:26:07","free_space_data":1073741824}}}}}}"#
    )
}

fn leaking_health() -> String {
    let t = WABA_TOKEN;
    format!(
        r#"{{"health":{{"waba-{t}:3f2a9c1b7d4e":{{"gateway_status":"connected","role":"primary_master"}}}}}}"#
    )
}

#[tokio::test]
async fn waba_support_strings_holding_the_token_never_become_labels() {
    let waba = Mock::start(|s: Seen| async move {
        match s.path.as_str() {
            "/v1/support" => reply(200, leaking_support()),
            "/v1/health" => reply(200, leaking_health()),
            _ => reply(404, r#"{"errors":[{"code":404,"title":"Not found"}]}"#),
        }
    })
    .await;
    let ex = Exporter::start(&format!(
        "global:\n  interval: 1s\n  timeout: 500ms\ngateways:\n  - name: onprem\n    provider: waba\n    url: {}\n    token: {WABA_TOKEN}\n",
        waba.url()
    ))
    .await;
    let (_, probe) = ex.get("/probe?target=onprem").await;
    assert!(
        probe.contains("whatsapp_up{gateway=\"onprem\",provider=\"waba\"} 1"),
        "{probe}"
    );
    let (_, page) = ex.get("/").await;
    let metrics = ex.metrics().await;
    assert_no_piece(&probe, WABA_TOKEN, "/probe");
    assert_no_piece(&metrics, WABA_TOKEN, "/metrics");
    assert_no_piece(&page, WABA_TOKEN, "the status page");
    assert_no_piece(&logs(), WABA_TOKEN, "the log");
    ex.stop().await;
}

// ---- (iv) hostile configuration files ----

/// Parses `text` on its own thread and gives up after `deadline`: `None` if it did not finish.
fn parse_within(text: String, deadline: Duration) -> Option<Result<(), String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("hostile-config".into())
        .spawn(move || {
            let r = whatsapp_exporter::config::parse(&text, &|_: &str| None)
                .map(|_| ())
                .map_err(|e| e.to_string());
            let _ = tx.send(r);
        })
        .unwrap();
    rx.recv_timeout(deadline).ok()
}

#[test]
fn deeply_nested_config_is_refused_quickly() {
    let text = format!("gateways: {}", "[".repeat(200 * 1024));
    let start = Instant::now();
    let r = parse_within(text, Duration::from_secs(5));
    let took = start.elapsed();
    match r {
        None => panic!("parsing 200 KB of nested '[' did not finish within 5 s"),
        Some(Ok(())) => panic!("200 KB of nested '[' was accepted"),
        Some(Err(e)) => assert!(
            took < Duration::from_secs(2),
            "refused, but took {took:?}: {e}"
        ),
    }
}

#[test]
fn config_file_over_10_mib_is_refused_with_a_clear_error() {
    // A valid configuration, padded with comments past 10 MiB.
    let mut text = b"gateways: []\n".to_vec();
    let line = format!("#{}\n", "x".repeat(1023));
    while text.len() <= 10 * 1024 * 1024 + 1024 {
        text.extend_from_slice(line.as_bytes());
    }
    let dir = TempDir::new();
    let path = write(&dir, "huge.yml", &text);
    let e = whatsapp_exporter::config::load(&path)
        .map(|_| ())
        .expect_err("a configuration file over 10 MiB was accepted");
    let e = e.to_string();
    assert!(
        e.contains("MiB") && (e.contains("large") || e.contains("size")),
        "the error should say the file is too large and what the limit is: {e}"
    );
    let (code, out) = config_check(&text);
    assert_eq!(code, Some(1), "{out}");
}

#[test]
fn absurd_interval_is_refused_by_the_config_check() {
    // 300,000,000,000 years is a valid humantime duration; the scheduler overflows on it
    // (`overflow when adding duration to instant`) instead of polling.
    for text in [
        "global:\n  interval: 300000000000y\n  timeout: 10s\n".to_string(),
        "gateways:\n  - name: a\n    provider: plugzapi\n    url: http://127.0.0.1:9\n    instance: I\n    token: tok-interval-1\n    interval: 300000000000y\n    timeout: 1s\n".to_string(),
    ] {
        let (code, out) = config_check(text.as_bytes());
        assert_eq!(code, Some(1), "accepted:\n{text}\n{out}");
        assert!(out.contains("interval"), "the error should name the key: {out}");
    }
}

// ---- (v) the request head cap ----

async fn raw(ex: &Exporter, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(ex.addr()).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

fn request_with_header_of(len: usize) -> Vec<u8> {
    format!(
        "GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(len)
    )
    .into_bytes()
}

#[tokio::test]
async fn request_heads_over_64_kib_get_431() {
    let ex = Exporter::start("{}").await;
    let answer = raw(&ex, &request_with_header_of(100 * 1024)).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "100 KiB of headers: {}",
        answer
            .lines()
            .next()
            .unwrap_or("(closed without an answer)")
    );
    // Under the cap is served.
    let answer = raw(&ex, &request_with_header_of(32 * 1024)).await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "32 KiB of headers: {answer}"
    );
    ex.stop().await;
}
