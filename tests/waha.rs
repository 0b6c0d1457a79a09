//! Black-box tests of WAHA against a mock server on 127.0.0.1 that answers as the fixtures of
//! `tests/fixtures/real/waha/` do: one session (`GET /api/sessions/{name}`), and a whole server
//! discovered from `GET /api/sessions?all=true`, whose elements carry the number (`me`) and the
//! webhook configuration like the real ones.

mod common;

use std::sync::{Arc, Mutex};

use common::{fixture, hourly, reply, sample, samples, Exporter, Mock};
use serde_json::Value;

const KEY: &str = "waha-KEY-0c4f9a7e21";
/// The fixtures' `me.id`: a number that must never show.
const PHONE: &str = "79111111";
const STATUSES: [&str; 6] = [
    "STOPPED",
    "STARTING",
    "SCAN_QR_CODE",
    "WORKING",
    "FAILED",
    "unknown",
];

struct Waha {
    sessions: Mutex<Vec<(String, String)>>,
    single: Mutex<(u16, String)>,
    fault: Mutex<Option<(u16, String)>>,
    /// Whether the server checks a key at all.
    keyed: bool,
}

impl Waha {
    fn new(sessions: &[(&str, &str)], keyed: bool) -> Arc<Self> {
        Arc::new(Waha {
            sessions: Mutex::new(
                sessions
                    .iter()
                    .map(|(n, s)| (n.to_string(), s.to_string()))
                    .collect(),
            ),
            single: Mutex::new(fixture(
                "waha/session_working.json",
                "/api/sessions/default",
            )),
            fault: Mutex::new(None),
            keyed,
        })
    }

    fn set(&self, sessions: &[(&str, &str)]) {
        *self.sessions.lock().unwrap() = sessions
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect();
    }

    /// The listing, each element in the shape of the fixture's first one (`me` included).
    fn listing(&self, all: bool) -> String {
        let (_, body) = fixture("waha/sessions_all.json", "/api/sessions?all=true");
        let template: Vec<Value> = serde_json::from_str(&body).unwrap();
        let list: Vec<Value> = self
            .sessions
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| all || s != "STOPPED")
            .map(|(name, status)| {
                let mut s = template[0].clone();
                s["name"] = Value::from(name.as_str());
                s["status"] = Value::from(status.as_str());
                s
            })
            .collect();
        Value::Array(list).to_string()
    }

    async fn mock(self: &Arc<Self>) -> Mock {
        let waha = self.clone();
        Mock::start(move |s| {
            let waha = waha.clone();
            async move {
                if let Some((code, body)) = waha.fault.lock().unwrap().clone() {
                    return reply(code, body);
                }
                let key = s.headers.get("x-api-key").and_then(|v| v.to_str().ok());
                if waha.keyed && key != Some(KEY) {
                    let (code, body) =
                        fixture("waha/session_unauthorized.json", "/api/sessions/default");
                    return reply(code, body);
                }
                if s.path == "/api/sessions" {
                    return reply(200, waha.listing(s.query.contains("all=true")));
                }
                let (code, body) = waha.single.lock().unwrap().clone();
                reply(code, body)
            }
        })
        .await
    }
}

fn server(url: &str, extra: &str) -> String {
    hourly(&format!(
        "  - name: waha1\n    provider: waha\n    url: {url}\n    token: {KEY}\n{extra}"
    ))
}

fn status_of(m: &str, gateway: &str) -> Option<&'static str> {
    STATUSES.iter().copied().find(|s| {
        sample(
            m,
            "whatsapp_waha_status",
            &[("gateway", gateway), ("status", s)],
        ) == Some(1.0)
    })
}

fn assert_private(text: &str) {
    for private in [KEY, PHONE, "webhook.site"] {
        assert!(!text.contains(private), "{private} shown:\n{text}");
    }
}

#[tokio::test]
async fn one_session_in_every_status_of_the_fixtures() {
    let waha = Waha::new(&[], true);
    let mock = waha.mock().await;
    let yaml = hourly(&format!(
        "  - name: waha-main\n    provider: waha\n    url: {}\n    token: {KEY}\n    instance: default\n",
        mock.url()
    ));
    let ex = Exporter::start(&yaml).await;
    let gw = [("gateway", "waha-main"), ("provider", "waha")];
    for (file, status) in [
        ("session_working.json", "WORKING"),
        ("session_stopped.json", "STOPPED"),
        ("session_starting.json", "STARTING"),
        ("session_scan_qr_code.json", "SCAN_QR_CODE"),
        ("session_failed.json", "FAILED"),
        ("session_working.json", "WORKING"),
    ] {
        *waha.single.lock().unwrap() = fixture(&format!("waha/{file}"), "/api/sessions/default");
        ex.poll("waha-main").await;
        let m = ex.metrics().await;
        assert_eq!(sample(&m, "whatsapp_up", &gw), Some(1.0), "{file}");
        assert_eq!(
            sample(&m, "whatsapp_connected", &gw),
            Some(if status == "WORKING" { 1.0 } else { 0.0 })
        );
        assert_eq!(status_of(&m, "waha-main"), Some(status), "{file}");
        assert_eq!(
            samples(&m, "whatsapp_waha_status", &gw).len(),
            STATUSES.len()
        );
        assert_private(&m);
    }
    let m = ex.metrics().await;
    assert_eq!(
        sample(&m, "whatsapp_connected_changes_total", &gw),
        Some(2.0)
    );
    let seen = mock.seen();
    assert_eq!(seen[0].path, "/api/sessions/default");
    assert_eq!(seen[0].headers["x-api-key"], KEY);
    ex.stop().await;
}

#[tokio::test]
async fn unknown_session_wrong_key_and_forbidden() {
    let waha = Waha::new(&[], true);
    let mock = waha.mock().await;
    let yaml = hourly(&format!(
        "  - name: waha-main\n    provider: waha\n    url: {url}\n    token: {KEY}\n    instance: nosuch\n  - name: waha-nokey\n    provider: waha\n    url: {url}\n    instance: default\n",
        url = mock.url()
    ));
    let ex = Exporter::start(&yaml).await;
    *waha.single.lock().unwrap() = fixture("waha/session_not_found.json", "/api/sessions/nosuch");
    ex.poll("waha-main").await;
    ex.poll("waha-nokey").await;
    let m = ex.metrics().await;
    let failures = |gw: &str, reason: &str| {
        sample(
            &m,
            "whatsapp_poll_failures_total",
            &[("gateway", gw), ("reason", reason)],
        )
    };
    assert_eq!(failures("waha-main", "http_status"), Some(1.0));
    assert_eq!(failures("waha-nokey", "unauthorized"), Some(1.0));
    assert!(
        !mock.seen()[1].headers.contains_key("x-api-key"),
        "no key configured, none sent"
    );
    *waha.fault.lock().unwrap() = Some((403, r#"{"message":"Forbidden","statusCode":403}"#.into()));
    ex.poll("waha-main").await;
    let m = ex.metrics().await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_poll_failures_total",
            &[("gateway", "waha-main"), ("reason", "unauthorized")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "whatsapp_connected", &[("gateway", "waha-main")]),
        None
    );
    assert_private(&common::logs());
    ex.stop().await;
}

#[tokio::test]
async fn the_fixture_listing_becomes_one_gateway_per_session() {
    let mock = Mock::start(|_| async move {
        let (code, body) = fixture("waha/sessions_all.json", "/api/sessions?all=true");
        reply(code, body)
    })
    .await;
    let ex = Exporter::start(&server(&mock.url(), "    instances: all\n")).await;
    ex.poll("waha1").await;
    let m = ex.metrics().await;
    assert_eq!(
        sample(&m, "whatsapp_up", &[("gateway", "waha1")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "whatsapp_discovered_instances", &[("gateway", "waha1")]),
        Some(3.0)
    );
    for (name, status, connected) in [
        ("default", "WORKING", 1.0),
        ("sales", "STOPPED", 0.0),
        ("support", "FAILED", 0.0),
    ] {
        let gw = format!("waha1/{name}");
        assert_eq!(status_of(&m, &gw), Some(status), "{name}");
        assert_eq!(
            sample(
                &m,
                "whatsapp_connected",
                &[("gateway", &gw), ("provider", "waha"), ("server", "waha1")]
            ),
            Some(connected)
        );
    }
    assert_eq!(mock.hits(), 1);
    assert_eq!(mock.seen()[0].path, "/api/sessions");
    assert_eq!(
        mock.seen()[0].query,
        "all=true",
        "STOPPED sessions are listed only with all=true"
    );
    assert_private(&m);
    ex.stop().await;
}

#[tokio::test]
async fn five_hundred_sessions_added_and_removed() {
    let names: Vec<String> = (0..500).map(|i| format!("s{i:03}")).collect();
    let all: Vec<(&str, &str)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), STATUSES[i % 5]))
        .collect();
    let waha = Waha::new(&all, true);
    let mock = waha.mock().await;
    let ex = Exporter::start(&server(&mock.url(), "    instances: all\n")).await;
    ex.poll("waha1").await;
    let m = ex.metrics().await;
    assert_eq!(
        samples(&m, "whatsapp_connected", &[("server", "waha1")]).len(),
        500
    );
    assert_eq!(
        samples(&m, "whatsapp_connected", &[("server", "waha1")])
            .iter()
            .sum::<f64>(),
        100.0,
        "every fifth session WORKING"
    );
    // The first hundred are deleted, one new session starts, s100 (STOPPED) starts working.
    let mut next: Vec<(&str, &str)> = all[100..].to_vec();
    next[0].1 = "WORKING";
    next.push(("new", "STARTING"));
    waha.set(&next);
    ex.poll("waha1").await;
    let m = ex.metrics().await;
    assert_eq!(
        sample(&m, "whatsapp_discovered_instances", &[("gateway", "waha1")]),
        Some(401.0)
    );
    assert!(
        !m.contains("waha1/s099\""),
        "removed sessions lose their series"
    );
    assert_eq!(status_of(&m, "waha1/new"), Some("STARTING"));
    assert_eq!(
        sample(
            &m,
            "whatsapp_connected_changes_total",
            &[("gateway", "waha1/s100")]
        ),
        Some(1.0)
    );
    assert_eq!(mock.hits(), 2, "one request per poll");
    ex.stop().await;
}

#[tokio::test]
async fn the_cap_and_broken_answers() {
    let waha = Waha::new(
        &[
            ("c", "WORKING"),
            ("b", "WORKING"),
            ("a", "WORKING"),
            ("d", "FAILED"),
        ],
        true,
    );
    let mock = waha.mock().await;
    let ex = Exporter::start(&server(
        &mock.url(),
        "    instances: {regex: \"^[a-c]$\"}\n    max_instances: 2\n",
    ))
    .await;
    ex.poll("waha1").await;
    let m = ex.metrics().await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_discovery_overflow_total",
            &[("gateway", "waha1")]
        ),
        Some(1.0),
        "c is over the cap; d is not selected"
    );
    assert!(m.contains("waha1/a\"") && m.contains("waha1/b\""));
    assert!(!m.contains("waha1/c\"") && !m.contains("waha1/d\""));
    for body in [r#"[{"name":"a","status":"WORK"#, r#"{"sessions":[]}"#, ""] {
        *waha.fault.lock().unwrap() = Some((200, body.into()));
        ex.poll("waha1").await;
        let m = ex.metrics().await;
        assert_eq!(
            sample(&m, "whatsapp_up", &[("gateway", "waha1")]),
            Some(0.0)
        );
        // An instance keeps its number state (unknown, in time) while its server does not
        // answer; every other series of it goes.
        let mut polled = m.lines().filter(|l| !l.starts_with("whatsapp_number_"));
        assert!(polled.all(|l| !l.contains("waha1/")), "{body:?}");
    }
    let m = ex.metrics().await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_poll_failures_total",
            &[("gateway", "waha1"), ("reason", "invalid_response")]
        ),
        Some(3.0)
    );
    *waha.fault.lock().unwrap() = Some((500, r#"{"statusCode":500}"#.into()));
    ex.poll("waha1").await;
    let m = ex.metrics().await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_poll_failures_total",
            &[("gateway", "waha1"), ("reason", "http_status")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_discovery_overflow_total",
            &[("gateway", "waha1")]
        ),
        Some(1.0),
        "the counter stays while the server is down"
    );
    assert_eq!(
        sample(&m, "whatsapp_discovered_instances", &[("gateway", "waha1")]),
        None
    );
    ex.stop().await;
}
