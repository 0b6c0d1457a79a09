//! A provider outage and a probe flood, black-box: every gateway has series from the start, an
//! overdue poll shows, concurrent probes share one call, a gateway that asked for a back-off is
//! not called, and probes wait for a slot like every poll. The same at scale, against the release
//! build, is `benches/foul_weather.py half-dead` and `probe-flood`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{reply, sample, Exporter, Mock, Seen};
use whatsapp_exporter::Polling;

const STATUS: &str = r#"{"connected":true,"session":true,"smartphoneConnected":true}"#;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn plugzapi(name: &str, url: &str, extra: &str) -> String {
    format!("  - name: {name}\n    provider: plugzapi\n    url: {url}\n    instance: I-{name}\n    token: tok-outage-{name}\n{extra}")
}

/// A name whose first poll, at an interval of `interval`, falls after `after`.
fn late_name(prefix: &str, interval: Duration, after: Duration) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|n| whatsapp_exporter::scheduler::start_offset(n, interval) > after)
        .unwrap()
}

/// A name whose first poll, at an interval of `interval`, falls within `within` of the start.
fn early_name(prefix: &str, interval: Duration, within: Duration) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|n| whatsapp_exporter::scheduler::start_offset(n, interval) < within)
        .unwrap()
}

async fn probe_only(yaml: &str) -> Exporter {
    let polling = Polling {
        no_background: true,
        ..Default::default()
    };
    Exporter::try_start_full(yaml, None, polling).await.unwrap()
}

/// A mock that answers `STATUS` after `delay`, counting calls.
async fn slow_status(delay: Duration) -> Mock {
    Mock::start(move |_s: Seen| async move {
        tokio::time::sleep(delay).await;
        reply(200, STATUS)
    })
    .await
}

#[tokio::test]
async fn a_gateway_not_polled_yet_is_down_with_its_reason_and_next_poll() {
    let mock = slow_status(Duration::ZERO).await;
    let hour = Duration::from_secs(3600);
    let name = late_name("later", hour, Duration::from_secs(120));
    let yaml = format!(
        "global:\n  interval: 1h\n  timeout: 2s\ngateways:\n{}",
        plugzapi(&name, &mock.url(), "")
    );
    let ex = Exporter::start(&yaml).await;
    let gw = [("gateway", name.as_str())];
    let m = ex.metrics().await;
    assert_eq!(mock.hits(), 0, "not polled yet");
    assert_eq!(sample(&m, "whatsapp_up", &gw), Some(0.0), "{m}");
    assert_eq!(sample(&m, "whatsapp_polls_total", &gw), Some(0.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_last_poll_error_info",
            &[("gateway", &name), ("reason", "not_polled_yet")]
        ),
        Some(1.0),
        "{m}"
    );
    let offset = whatsapp_exporter::scheduler::start_offset(&name, hour).as_secs_f64();
    let next = sample(&m, "whatsapp_next_poll_timestamp_seconds", &gw).unwrap();
    assert!(
        (next - (now() + offset)).abs() < 5.0,
        "next poll {next}, expected in {offset:.0} s"
    );
    // The status page says so too.
    let (_, page) = ex.get("/").await;
    assert!(page.contains("waiting"), "{page}");

    // A probe polls it: up, and the reason goes.
    let (_, probe) = ex.get(&format!("/probe?target={name}")).await;
    assert_eq!(sample(&probe, "whatsapp_up", &[]), Some(1.0), "{probe}");
    assert!(!probe.contains("whatsapp_last_poll_error_info"), "{probe}");
    ex.stop().await;
}

#[tokio::test]
async fn a_failed_poll_tells_its_reason_until_the_gateway_answers() {
    let ex = Exporter::start(&format!(
        "global:\n  interval: 1s\n  timeout: 500ms\ngateways:\n{}",
        plugzapi("closed", "http://127.0.0.1:9", "")
    ))
    .await;
    let m = ex
        .wait_for(5, |m| {
            sample(m, "whatsapp_polls_total", &[("gateway", "closed")]).unwrap_or(0.0) >= 1.0
        })
        .await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_last_poll_error_info",
            &[("gateway", "closed"), ("reason", "connect")]
        ),
        Some(1.0),
        "{m}"
    );
    assert!(!m.contains("reason=\"not_polled_yet\""), "{m}");
    ex.stop().await;
}

#[tokio::test]
async fn a_poll_kept_from_its_slot_shows_overdue() {
    // One slot; a probe of a gateway that never answers holds it for 3 s, while another gateway
    // is due every second.
    let hang = Mock::start(|_s: Seen| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        reply(200, STATUS)
    })
    .await;
    let ok = slow_status(Duration::ZERO).await;
    let hour = Duration::from_secs(3600);
    let hanging = late_name("hang", hour, Duration::from_secs(120));
    let yaml = format!(
        "global:\n  max_concurrent_polls: 1\ngateways:\n{}{}",
        plugzapi(&hanging, &hang.url(), "    interval: 1h\n    timeout: 3s\n"),
        plugzapi("due", &ok.url(), "    interval: 1s\n    timeout: 1s\n")
    );
    let ex = Exporter::start(&yaml).await;
    let due = [("gateway", "due")];
    ex.wait_for(5, |m| sample(m, "whatsapp_up", &due) == Some(1.0))
        .await;
    let url = ex.url(&format!("/probe?target={hanging}"));
    let held = tokio::spawn(async move { common::client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let m = ex.metrics().await;
    let next = sample(&m, "whatsapp_next_poll_timestamp_seconds", &due).unwrap();
    assert!(
        now() - next >= 1.0,
        "the poll waits for the slot, and shows it: due {:.1} s ago",
        now() - next
    );
    let _ = held.await;
    // The slot is free again: polled, and on time.
    let m = ex
        .wait_for(5, |m| {
            sample(m, "whatsapp_next_poll_timestamp_seconds", &due).is_some_and(|n| n >= now())
        })
        .await;
    assert_eq!(sample(&m, "whatsapp_up", &due), Some(1.0));
    ex.stop().await;
}

#[tokio::test]
async fn a_call_that_may_last_long_shows_the_next_poll_while_it_runs() {
    // A gateway that takes 20 s to answer, with a timeout of 45 s: while the call runs, the
    // series already show the poll after it, not this one's due time (which would read as
    // overdue); a call with a short timeout shows it when it ends.
    let mock = slow_status(Duration::from_secs(20)).await;
    let hour = Duration::from_secs(3600);
    let name = early_name("long", hour, Duration::from_millis(500));
    let yaml = format!(
        "gateways:\n{}",
        plugzapi(&name, &mock.url(), "    interval: 1h\n    timeout: 45s\n")
    );
    let ex = Exporter::start(&yaml).await;
    let gw = [("gateway", name.as_str())];
    for _ in 0..50 {
        if mock.hits() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(mock.hits(), 1, "the first poll started");
    let m = ex.metrics().await;
    assert_eq!(
        sample(&m, "whatsapp_polls_total", &gw),
        Some(0.0),
        "in flight"
    );
    let next = sample(&m, "whatsapp_next_poll_timestamp_seconds", &gw).unwrap();
    assert!(
        next > now() + 3000.0,
        "the next poll is in {:.0} s, not the hour after this one",
        next - now()
    );
    ex.stop().await;
}

#[tokio::test]
async fn concurrent_probes_share_one_call_and_later_ones_wait_for_the_interval() {
    let mock = slow_status(Duration::from_millis(300)).await;
    let ex = probe_only(&format!(
        "global:\n  interval: 2s\n  timeout: 1s\ngateways:\n{}",
        plugzapi("shared", &mock.url(), "")
    ))
    .await;
    let url = ex.url("/probe?target=shared");
    let probes: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let r = common::client().get(url).send().await.unwrap();
                r.text().await.unwrap()
            })
        })
        .collect();
    for p in probes {
        let body = p.await.unwrap();
        assert_eq!(sample(&body, "whatsapp_up", &[]), Some(1.0), "{body}");
    }
    assert_eq!(mock.hits(), 1, "20 concurrent probes, one call");
    // Within the interval: the last state, no call.
    for _ in 0..10 {
        let (code, body) = ex.get("/probe?target=shared").await;
        assert_eq!(code, 200);
        assert_eq!(sample(&body, "whatsapp_polls_total", &[]), Some(1.0));
    }
    assert_eq!(mock.hits(), 1, "no call within the interval");
    // After it: a call again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, body) = ex.get("/probe?target=shared").await;
    assert_eq!(sample(&body, "whatsapp_polls_total", &[]), Some(2.0));
    assert_eq!(mock.hits(), 2);
    ex.stop().await;
}

#[tokio::test]
async fn a_gateway_that_asked_to_wait_is_not_called_and_shows_until_when() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mock = Mock::start(move |_s: Seen| {
        c.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut r = reply(429, r#"{"error":"too many requests"}"#);
            r.headers_mut()
                .insert("retry-after", "3600".parse().unwrap());
            r
        }
    })
    .await;
    let ex = probe_only(&format!(
        "global:\n  interval: 1s\n  timeout: 1s\ngateways:\n{}",
        plugzapi("limited", &mock.url(), "")
    ))
    .await;
    let (_, first) = ex.get("/probe?target=limited").await;
    assert_eq!(
        sample(
            &first,
            "whatsapp_poll_failures_total",
            &[("reason", "rate_limited")]
        ),
        Some(1.0)
    );
    let until = sample(&first, "whatsapp_retry_after_timestamp_seconds", &[]).unwrap();
    assert!((until - (now() + 3600.0)).abs() < 5.0, "{first}");
    // Well past the interval, probes answer from the last state and make no call.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..20 {
        let (code, body) = ex.get("/probe?target=limited").await;
        assert_eq!(code, 200);
        assert_eq!(sample(&body, "whatsapp_polls_total", &[]), Some(1.0));
        assert_eq!(
            sample(&body, "whatsapp_retry_after_timestamp_seconds", &[]),
            Some(until)
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one call in the back-off");
    ex.stop().await;
}

#[tokio::test]
async fn a_probe_waits_for_a_slot_and_answers_from_the_last_state_when_none_comes() {
    let hang = Mock::start(|_s: Seen| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        reply(200, STATUS)
    })
    .await;
    let other = slow_status(Duration::ZERO).await;
    let ex = probe_only(&format!(
        "global:\n  max_concurrent_polls: 1\n  interval: 10s\ngateways:\n{}{}",
        plugzapi("hang", &hang.url(), "    timeout: 4s\n"),
        plugzapi("other", &other.url(), "    timeout: 1s\n")
    ))
    .await;
    let url = ex.url("/probe?target=hang");
    let held = tokio::spawn(async move { common::client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = std::time::Instant::now();
    let (code, body) = ex.get("/probe?target=other").await;
    let took = start.elapsed();
    assert_eq!(code, 200);
    assert_eq!(other.hits(), 0, "no slot: no call");
    assert_eq!(sample(&body, "whatsapp_up", &[]), Some(0.0), "{body}");
    assert!(
        body.contains("reason=\"not_polled_yet\""),
        "the last state, told as such: {body}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "waited its timeout for a slot: {took:?}"
    );
    let _ = held.await;
    ex.stop().await;
}

/// A gateway on 127.0.0.1 that answers every request with a PlugzAPI status padded to
/// `size` bytes, declared in `Content-Length`, sent 64 KiB every `every`.
async fn trickle(size: usize, every: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = s.read(&mut head).await;
                let start =
                    br#"{"connected":true,"session":true,"smartphoneConnected":true,"pad":""#;
                let mut body = start.to_vec();
                body.resize(size - 2, b'x');
                body.extend_from_slice(b"\"}");
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
                );
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for chunk in body.chunks(64 * 1024) {
                    if s.write_all(chunk).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(every).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn large_answers_share_one_memory_budget_and_all_get_read() {
    use whatsapp_exporter::http::{budget_available, BODY_BUDGET, MAX_BODY};
    // Eight gateways answer 4 MiB at once, over about 2 s each: six fit in the budget, the
    // other two wait for room, and all are read within the timeout.
    let url = trickle(MAX_BODY, Duration::from_millis(30)).await;
    let mut yaml = String::from("global:\n  interval: 1h\n  timeout: 20s\ngateways:\n");
    for i in 0..8 {
        yaml.push_str(&plugzapi(&format!("huge-{i}"), &url, ""));
    }
    let ex = probe_only(&yaml).await;
    let probes: Vec<_> = (0..8)
        .map(|i| {
            let url = ex.url(&format!("/probe?target=huge-{i}"));
            tokio::spawn(async move {
                common::client()
                    .get(url)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut lowest = usize::MAX;
    while !probes.iter().all(|p| p.is_finished()) {
        lowest = lowest.min(budget_available());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for p in probes {
        let body = p.await.unwrap();
        assert_eq!(sample(&body, "whatsapp_up", &[]), Some(1.0), "{body}");
    }
    assert!(
        lowest < MAX_BODY,
        "the budget was full: at most {} answers at once",
        BODY_BUDGET / MAX_BODY
    );
    assert_eq!(budget_available(), BODY_BUDGET, "every share given back");
    ex.stop().await;
}
