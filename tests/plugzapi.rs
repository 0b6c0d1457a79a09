//! Black-box tests of PlugzAPI / Z-API polling against mock gateways on 127.0.0.1.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{reply, sample, Exporter, Mock};

const TOKEN: &str = "tok-PLUGZ-7f3a9c1e";

fn config(url: &str, extra: &str) -> String {
    format!(
        "global:\n  interval: 1s\n  timeout: 500ms\ngateways:\n  - name: sales\n    provider: plugzapi\n    url: {url}\n    instance: INST1\n    token: {TOKEN}\n{extra}"
    )
}

#[tokio::test]
async fn seed_answer_becomes_metrics() {
    let mock = Mock::start(|_| async {
        reply(200, r#"{"connected":true,"session":true,"error":"You are already connected.","smartphoneConnected":true}"#)
    })
    .await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    let m = ex
        .wait_for(5, |m| m.contains("whatsapp_poll_duration_seconds{"))
        .await;
    let gw = [("gateway", "sales"), ("provider", "plugzapi")];
    assert_eq!(sample(&m, "whatsapp_up", &gw), Some(1.0));
    assert_eq!(sample(&m, "whatsapp_connected", &gw), Some(1.0));
    assert_eq!(sample(&m, "whatsapp_session_active", &gw), Some(1.0));
    assert_eq!(sample(&m, "whatsapp_phone_connected", &gw), Some(1.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_status_error",
            &[("gateway", "sales"), ("error", "already_connected")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_status_error",
            &[("gateway", "sales"), ("error", "none")]
        ),
        Some(0.0)
    );
    assert_eq!(sample(&m, "whatsapp_polls_total", &gw), Some(1.0));
    assert!(sample(&m, "whatsapp_last_success_timestamp_seconds", &gw).unwrap() > 1.7e9);
    let seen = mock.seen();
    assert_eq!(
        seen[0].path,
        format!("/instances/INST1/token/{TOKEN}/status")
    );
    ex.stop().await;
}

#[tokio::test]
async fn state_changes_are_picked_up_within_an_interval() {
    let connected = Arc::new(AtomicUsize::new(1));
    let c = connected.clone();
    let mock = Mock::start(move |_| {
        let on = c.load(Ordering::SeqCst) == 1;
        async move {
            reply(200, format!(r#"{{"connected":{on},"session":{on},"error":"{}","smartphoneConnected":{on}}}"#,
                if on { "" } else { "You are not connected" }))
        }
    })
    .await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    ex.wait_for(5, |m| {
        sample(m, "whatsapp_connected", &[("gateway", "sales")]) == Some(1.0)
    })
    .await;
    connected.store(0, Ordering::SeqCst);
    let m = ex
        .wait_for(3, |m| {
            sample(m, "whatsapp_connected", &[("gateway", "sales")]) == Some(0.0)
        })
        .await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_status_error",
            &[("gateway", "sales"), ("error", "not_connected")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_connected_changes_total",
            &[("gateway", "sales")]
        ),
        Some(1.0)
    );
    connected.store(1, Ordering::SeqCst);
    let m = ex
        .wait_for(3, |m| {
            sample(m, "whatsapp_connected", &[("gateway", "sales")]) == Some(1.0)
        })
        .await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_connected_changes_total",
            &[("gateway", "sales")]
        ),
        Some(2.0)
    );
    ex.stop().await;
}

#[tokio::test]
async fn zapi_sends_client_token_and_uses_its_own_provider_label() {
    let mock = Mock::start(|s| async move {
        match s.headers.get("client-token").and_then(|v| v.to_str().ok()) {
            Some("ct-SECRET-55") => reply(200, r#"{"connected":false,"session":false,"error":"You need to restore the session.","smartphoneConnected":false}"#),
            _ => reply(400, r#"{"error":"your client-token is not configured"}"#),
        }
    })
    .await;
    let yaml = format!(
        "gateways:\n  - name: z\n    provider: zapi\n    url: {}\n    instance: I\n    token: {TOKEN}\n    client_token: ct-SECRET-55\n    interval: 1s\n    timeout: 500ms\n",
        mock.url()
    );
    let ex = Exporter::start(&yaml).await;
    let m = ex
        .wait_for(5, |m| m.contains("whatsapp_poll_duration_seconds{"))
        .await;
    let gw = [("gateway", "z"), ("provider", "zapi")];
    assert_eq!(sample(&m, "whatsapp_up", &gw), Some(1.0));
    assert_eq!(sample(&m, "whatsapp_connected", &gw), Some(0.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_status_error",
            &[("gateway", "z"), ("error", "restore_session")]
        ),
        Some(1.0)
    );
    assert!(!m.contains("ct-SECRET-55"));
    ex.stop().await;
}

/// Z-API tells a refused Client-Token, an address outside the IP allow-list or an unknown instance
/// in the body, with 200 as with 400: the reason follows what the body says, and the body (which
/// can echo the Client-Token) never shows.
#[tokio::test]
async fn zapi_refusals_in_the_body_are_classified_by_what_they_say() {
    let mode = Arc::new(AtomicUsize::new(0));
    let m2 = mode.clone();
    let mock = Mock::start(move |_| {
        let mode = m2.load(Ordering::SeqCst);
        async move {
            match mode {
                0 => reply(
                    200,
                    r#"{"connected":true,"session":true,"smartphoneConnected":true}"#,
                ),
                1 => reply(200, r#"{"error":"null not allowed"}"#),
                2 => reply(400, r#"{"error":"your client-token is not configured"}"#),
                3 => reply(403, r#"{"error":"Client-Token ct-WRONG-0042 not allowed"}"#),
                4 => reply(200, r#"{"error":"198.51.100.23 not allowed"}"#),
                _ => reply(400, r#"{"error":"Instance not found"}"#),
            }
        }
    })
    .await;
    let yaml = format!(
        "gateways:\n  - name: z\n    provider: zapi\n    url: {}\n    instance: I\n    token: {TOKEN}\n    client_token: ct-WRONG-0042\n    interval: 1s\n    timeout: 500ms\n",
        mock.url()
    );
    let ex = Exporter::start(&yaml).await;
    let gw = [("gateway", "z")];
    ex.wait_for(5, |m| sample(m, "whatsapp_up", &gw) == Some(1.0))
        .await;
    for (mode_n, reason, told) in [
        (1, "unauthorized", "requires a Client-Token"),
        (2, "unauthorized", "requires a Client-Token"),
        (3, "unauthorized", "not the account"),
        (4, "unauthorized", "IP allow-list"),
        (5, "not_found", "no instance with this id"),
    ] {
        let count = |m: &str| {
            sample(
                m,
                "whatsapp_poll_failures_total",
                &[("gateway", "z"), ("reason", reason)],
            )
            .unwrap_or(0.0)
        };
        let before = count(&ex.metrics().await);
        mode.store(mode_n, Ordering::SeqCst);
        let m = ex.wait_for(8, |m| count(m) > before).await;
        assert_eq!(sample(&m, "whatsapp_up", &gw), Some(0.0), "{reason}");
        for other in ["http_status", "invalid_response"] {
            assert_eq!(
                sample(
                    &m,
                    "whatsapp_poll_failures_total",
                    &[("gateway", "z"), ("reason", other)]
                ),
                Some(0.0),
                "mode {mode_n} must not count as {other}"
            );
        }
        let (_, page) = ex.get("/").await;
        assert!(
            page.contains(reason) && page.contains(told),
            "mode {mode_n}: {page}"
        );
        mode.store(0, Ordering::SeqCst);
        ex.wait_for(8, |m| sample(m, "whatsapp_up", &gw) == Some(1.0))
            .await;
    }
    let (_, page) = ex.get("/").await;
    let all = format!("{}{}{}", ex.metrics().await, page, common::logs());
    for private in ["ct-WRONG-0042", "198.51.100.23", TOKEN] {
        assert!(!all.contains(private), "{private} leaked");
    }
    ex.stop().await;
}

/// Each broken answer is a failed poll with its reason, the state series go, and nothing leaks.
#[tokio::test]
async fn failures_are_counted_by_reason_and_state_series_disappear() {
    let mode = Arc::new(AtomicUsize::new(0));
    let m2 = mode.clone();
    let mock = Mock::start(move |_| {
        let mode = m2.load(Ordering::SeqCst);
        async move {
            match mode {
                0 => reply(
                    200,
                    r#"{"connected":true,"session":true,"error":"","smartphoneConnected":true}"#,
                ),
                1 => reply(401, r#"{"error":"Unauthorized"}"#),
                2 => reply(200, "null"),
                3 => reply(200, "<html><body>Bad gateway</body></html>"),
                4 => reply(500, r#"{"error":"Internal error"}"#),
                5 => {
                    let mut r = reply(429, r#"{"error":"Too many requests"}"#);
                    r.headers_mut().insert("retry-after", "1".parse().unwrap());
                    r
                }
                6 => common::endless(200),
                _ => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    reply(200, r#"{"connected":true}"#)
                }
            }
        }
    })
    .await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    let gw = [("gateway", "sales")];
    ex.wait_for(5, |m| sample(m, "whatsapp_up", &gw) == Some(1.0))
        .await;
    for (mode_n, reason) in [
        (1, "unauthorized"),
        (2, "invalid_response"),
        (3, "invalid_response"),
        (4, "http_status"),
        (5, "rate_limited"),
        (6, "invalid_response"),
        (7, "timeout"),
    ] {
        let before = sample(
            &ex.metrics().await,
            "whatsapp_poll_failures_total",
            &[("gateway", "sales"), ("reason", reason)],
        )
        .unwrap();
        mode.store(mode_n, Ordering::SeqCst);
        let m = ex
            .wait_for(8, |m| {
                sample(
                    m,
                    "whatsapp_poll_failures_total",
                    &[("gateway", "sales"), ("reason", reason)],
                )
                .unwrap()
                    > before
            })
            .await;
        assert_eq!(sample(&m, "whatsapp_up", &gw), Some(0.0), "{reason}");
        for gone in [
            "whatsapp_connected",
            "whatsapp_session_active",
            "whatsapp_phone_connected",
            "whatsapp_status_error",
        ] {
            assert_eq!(
                sample(&m, gone, &gw),
                None,
                "{gone} must disappear while polls fail ({reason})"
            );
        }
        assert!(
            sample(&m, "whatsapp_last_success_timestamp_seconds", &gw).is_some(),
            "last success stays"
        );
        let (_, page) = ex.get("/").await;
        assert!(
            page.contains(reason),
            "status page shows the reason {reason}"
        );
        mode.store(0, Ordering::SeqCst);
        ex.wait_for(8, |m| sample(m, "whatsapp_up", &gw) == Some(1.0))
            .await;
    }
    let (_, probe) = ex.get("/probe?target=sales").await;
    let (_, page) = ex.get("/").await;
    let all = format!("{}{}{}{}", ex.metrics().await, probe, page, common::logs());
    assert!(!all.contains(TOKEN), "the token leaked");
    ex.stop().await;
}

#[tokio::test]
async fn connection_refused_is_connect_and_token_stays_out_of_logs() {
    // Bind and drop a listener to get a port where nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let token = "tok-REFUSED-91bd";
    let yaml = format!(
        "gateways:\n  - name: dead\n    provider: plugzapi\n    url: http://127.0.0.1:{port}\n    instance: I\n    token: {token}\n    interval: 1s\n    timeout: 500ms\n"
    );
    let ex = Exporter::start(&yaml).await;
    let m = ex
        .wait_for(5, |m| {
            sample(
                m,
                "whatsapp_poll_failures_total",
                &[("gateway", "dead"), ("reason", "connect")],
            ) >= Some(1.0)
        })
        .await;
    assert_eq!(sample(&m, "whatsapp_up", &[("gateway", "dead")]), Some(0.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_last_success_timestamp_seconds",
            &[("gateway", "dead")]
        ),
        None
    );
    let (_, page) = ex.get("/").await;
    let (_, probe) = ex.get("/probe?target=dead").await;
    assert!(page.contains("connect"));
    let logs = common::logs();
    assert!(logs.contains("gateway=dead"), "the failure is logged");
    for out in [&m, &page, &probe, &logs] {
        assert!(!out.contains(token), "token leaked into {out}");
    }
    ex.stop().await;
}

#[tokio::test]
async fn a_slow_gateway_never_delays_another() {
    let slow = Mock::start(|_| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        reply(200, "{}")
    })
    .await;
    let fast = Mock::start(|_| async { reply(200, r#"{"connected":true}"#) }).await;
    let mut yaml = String::from(
        "global:\n  interval: 1s\n  timeout: 900ms\n  max_concurrent_polls: 2\ngateways:\n",
    );
    for i in 0..4 {
        yaml.push_str(&format!("  - name: slow{i}\n    provider: plugzapi\n    url: {}\n    instance: I\n    token: t\n", slow.url()));
    }
    yaml.push_str(&format!(
        "  - name: fast\n    provider: plugzapi\n    url: {}\n    instance: I\n    token: t\n",
        fast.url()
    ));
    let ex = Exporter::start(&yaml).await;
    // The fast gateway keeps being polled while slow ones time out: several successful polls.
    ex.wait_for(10, |m| {
        sample(m, "whatsapp_polls_total", &[("gateway", "fast")]) >= Some(3.0)
    })
    .await;
    let m = ex.metrics().await;
    assert_eq!(sample(&m, "whatsapp_up", &[("gateway", "fast")]), Some(1.0));
    assert_eq!(
        sample(&m, "whatsapp_up", &[("gateway", "slow0")]),
        Some(0.0)
    );
    ex.stop().await;
}

#[tokio::test]
async fn probe_polls_now_and_returns_only_its_target() {
    let mock = Mock::start(|_| async { reply(200, r#"{"connected":true,"session":false}"#) }).await;
    let yaml = format!(
        "global:\n  interval: 1h\n  timeout: 2s\ngateways:\n  - name: a\n    provider: plugzapi\n    url: {u}\n    instance: I\n    token: t\n  - name: b\n    provider: plugzapi\n    url: {u}\n    instance: J\n    token: t\n",
        u = mock.url()
    );
    let ex = Exporter::start(&yaml).await;
    let (code, body) = ex.get("/probe?target=b").await;
    assert_eq!(code, 200);
    assert_eq!(sample(&body, "whatsapp_up", &[("gateway", "b")]), Some(1.0));
    assert_eq!(
        sample(&body, "whatsapp_session_active", &[("gateway", "b")]),
        Some(0.0)
    );
    assert!(!body.contains("gateway=\"a\""), "only the target");
    assert!(!body.contains("process_"), "no exporter metrics in a probe");
    assert!(mock.seen().iter().any(|s| s.path.contains("/instances/J/")));
    assert_eq!(ex.get("/probe?target=nosuch").await.0, 404);
    assert_eq!(ex.get("/probe").await.0, 400);
    ex.stop().await;
}

#[tokio::test]
async fn metrics_are_gzipped_when_asked_and_endpoints_answer() {
    let mock = Mock::start(|_| async { reply(200, r#"{"connected":true}"#) }).await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    ex.wait_for(5, |m| m.contains("whatsapp_poll_duration_seconds{"))
        .await;
    let raw = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = raw
        .get(ex.url("/metrics"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("content-encoding").unwrap(), "gzip");
    assert!(r
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let gz = r.bytes().await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    assert!(text.contains("whatsapp_up{gateway=\"sales\",provider=\"plugzapi\"} 1"));
    assert!(text.contains("whatsapp_exporter_build_info{"));
    assert!(text.contains("process_resident_memory_bytes"));
    assert_eq!(ex.get("/-/healthy").await.0, 200);
    assert_eq!(ex.get("/-/ready").await.0, 200);
    assert_eq!(ex.get("/nope").await.0, 404);
    let r = raw.post(ex.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    ex.stop().await;
}

#[tokio::test]
async fn reload_keeps_unchanged_gateways_and_refuses_a_bad_file() {
    let mock = Mock::start(|_| async { reply(200, r#"{"connected":true}"#) }).await;
    let two = format!(
        "global:\n  interval: 1s\n  timeout: 500ms\ngateways:\n  - name: keep\n    provider: plugzapi\n    url: {u}\n    instance: I\n    token: t\n  - name: drop\n    provider: plugzapi\n    url: {u}\n    instance: J\n    token: t\n",
        u = mock.url()
    );
    let ex = Exporter::start(&two).await;
    ex.wait_for(5, |m| {
        sample(m, "whatsapp_polls_total", &[("gateway", "keep")]) >= Some(2.0)
    })
    .await;
    let m = ex.metrics().await;
    assert_eq!(
        sample(&m, "whatsapp_exporter_config_last_reload_successful", &[]),
        Some(1.0)
    );

    ex.write_config(&format!(
        "{}  - name: new\n    provider: plugzapi\n    url: {}\n    instance: K\n    token: t\n",
        two.split("  - name: drop").next().unwrap(),
        mock.url()
    ));
    let client = common::client();
    let r = client.post(ex.url("/-/reload")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let m = ex.wait_for(5, |m| m.contains("gateway=\"new\"")).await;
    assert!(
        !m.contains("gateway=\"drop\""),
        "removed gateway's series are gone"
    );
    assert!(
        sample(&m, "whatsapp_polls_total", &[("gateway", "keep")]) >= Some(2.0),
        "counters kept"
    );

    ex.write_config("gateways:\n  - name: broken\n    provider: plugzapi\n    token: t\n");
    let r = client.post(ex.url("/-/reload")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 500);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("gateways[0] (broken): instance: provider plugzapi needs instance"),
        "{text}"
    );
    let m = ex.metrics().await;
    assert_eq!(
        sample(&m, "whatsapp_exporter_config_last_reload_successful", &[]),
        Some(0.0)
    );
    assert!(
        m.contains("gateway=\"keep\"") && m.contains("gateway=\"new\""),
        "old config keeps running"
    );
    ex.stop().await;
}

#[tokio::test]
async fn shutdown_cancels_polls_in_flight() {
    let mock = Mock::start(|_| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        reply(200, "{}")
    })
    .await;
    let yaml = format!(
        "gateways:\n  - name: hang\n    provider: plugzapi\n    url: {}\n    instance: I\n    token: t\n    interval: 1m\n    timeout: 50s\n",
        mock.url()
    );
    let ex = Exporter::start(&yaml).await;
    let gw = ex
        .running
        .as_ref()
        .unwrap()
        .exporter
        .gateway("hang")
        .unwrap();
    let probe = tokio::spawn({
        let url = ex.url("/probe?target=hang");
        async move { common::client().get(url).send().await }
    });
    while mock.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Liveness bound, not a performance figure: shutdown must not wait for the 50 s poll.
    tokio::time::timeout(Duration::from_secs(5), ex.stop())
        .await
        .expect("shutdown hung on a poll in flight");
    drop((gw, probe));
}
