//! Black-box tests of Evolution API against a mock server on 127.0.0.1 that answers as the
//! fixtures of `tests/fixtures/real/evolution/` do: one instance (`connectionState`), and a whole
//! server discovered from `fetchInstances`, whose rows carry each instance's token and phone
//! number like the real ones.

mod common;

use std::sync::{Arc, Mutex};

use common::{fixture, hourly, reply, sample, samples, Exporter, Mock};
use hyper::Response;
use serde_json::Value;

/// The global key of the mock server.
const KEY: &str = "evo-GLOBAL-KEY-4b7e1d93";
/// What the fixture's rows carry that must never show: an instance token and a phone number.
const ROW_TOKEN: &str = "B3844804-481D-47A4-B69C-F14B4206EB56";
const PHONE: &str = "5511999999999";
const STATES: [&str; 5] = ["open", "close", "connecting", "refused", "unknown"];

struct Evo {
    /// The instances of the listing: name and `connectionStatus`.
    rows: Mutex<Vec<(String, String)>>,
    /// The answer of `connectionState`.
    single: Mutex<(u16, String)>,
    /// An answer given to every request instead, while set.
    fault: Mutex<Option<(u16, String)>>,
}

impl Evo {
    fn new(rows: &[(&str, &str)]) -> Arc<Self> {
        Arc::new(Evo {
            rows: Mutex::new(
                rows.iter()
                    .map(|(n, s)| (n.to_string(), s.to_string()))
                    .collect(),
            ),
            single: Mutex::new(fixture(
                "evolution/connection_state_open.json",
                "/instance/connectionState/my-instance",
            )),
            fault: Mutex::new(None),
        })
    }

    fn set_rows(&self, rows: Vec<(String, String)>) {
        *self.rows.lock().unwrap() = rows;
    }

    /// The listing, each row in the shape of the fixture's first row (Prisma's Instance row with
    /// its settings and counts), token and phone number included.
    fn listing(&self) -> String {
        let (_, body) = fixture("evolution/fetch_instances.json", "/instance/fetchInstances");
        let template: Vec<Value> = serde_json::from_str(&body).unwrap();
        let rows: Vec<Value> = self
            .rows
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, (name, state))| {
                let mut row = template[0].clone();
                row["id"] = Value::from(format!("cm2inst{i:018}"));
                row["name"] = Value::from(name.as_str());
                row["connectionStatus"] = Value::from(state.as_str());
                row
            })
            .collect();
        Value::Array(rows).to_string()
    }

    async fn mock(self: &Arc<Self>) -> Mock {
        let evo = self.clone();
        Mock::start(move |s| {
            let evo = evo.clone();
            async move { evo.answer(&s) }
        })
        .await
    }

    fn answer(&self, s: &common::Seen) -> Response<common::MockBody> {
        if let Some((code, body)) = self.fault.lock().unwrap().clone() {
            return reply(code, body);
        }
        let key = s.headers.get("apikey").and_then(|v| v.to_str().ok());
        match s.path.as_str() {
            "/instance/fetchInstances" if key == Some(KEY) => reply(200, self.listing()),
            "/instance/fetchInstances" => {
                let (code, body) = fixture(
                    "evolution/connection_state_bad_apikey.json",
                    "/instance/connectionState/my-instance",
                );
                reply(code, body)
            }
            p if p.starts_with("/instance/connectionState/") => {
                let (code, body) = self.single.lock().unwrap().clone();
                reply(code, body)
            }
            _ => reply(404, r#"{"status":404,"error":"Not Found"}"#),
        }
    }
}

fn server(url: &str, extra: &str) -> String {
    hourly(&format!(
        "  - name: evo\n    provider: evolution\n    url: {url}\n    token: {KEY}\n{extra}"
    ))
}

fn one(url: &str) -> String {
    hourly(&format!(
        "  - name: evo-sales\n    provider: evolution\n    url: {url}\n    token: {KEY}\n    instance: my-instance\n"
    ))
}

fn instance(name: &str) -> [(&'static str, String); 3] {
    [
        ("gateway", format!("evo/{name}")),
        ("provider", "evolution".into()),
        ("server", "evo".into()),
    ]
}

fn value(m: &str, metric: &str, labels: &[(&str, String)]) -> Option<f64> {
    let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    sample(m, metric, &l)
}

fn state_of(m: &str, name: &str) -> Option<String> {
    STATES
        .iter()
        .find(|s| {
            let mut l = instance(name).to_vec();
            l.push(("state", s.to_string()));
            value(m, "whatsapp_evolution_state", &l) == Some(1.0)
        })
        .map(|s| s.to_string())
}

fn assert_private(ex_text: &str) {
    for private in [KEY, ROW_TOKEN, PHONE] {
        assert!(!ex_text.contains(private), "{private} shown:\n{ex_text}");
    }
}

#[tokio::test]
async fn one_instance_in_every_state_of_the_fixtures() {
    let evo = Evo::new(&[]);
    let mock = evo.mock().await;
    let ex = Exporter::start(&one(&mock.url())).await;
    let gw = [("gateway", "evo-sales"), ("provider", "evolution")];
    for (file, state) in [
        ("connection_state_open.json", "open"),
        ("connection_state_close.json", "close"),
        ("connection_state_connecting.json", "connecting"),
        ("connection_state_not_loaded.json", "unknown"),
        ("connection_state_open.json", "open"),
    ] {
        *evo.single.lock().unwrap() = fixture(
            &format!("evolution/{file}"),
            "/instance/connectionState/my-instance",
        );
        ex.poll("evo-sales").await;
        let m = ex.metrics().await;
        assert_eq!(sample(&m, "whatsapp_up", &gw), Some(1.0), "{file}");
        assert_eq!(
            sample(&m, "whatsapp_connected", &gw),
            Some(if state == "open" { 1.0 } else { 0.0 }),
            "{file}"
        );
        let states = samples(&m, "whatsapp_evolution_state", &gw);
        assert_eq!(states.len(), STATES.len(), "{file}: a state set");
        assert_eq!(states.iter().sum::<f64>(), 1.0);
        assert_eq!(
            sample(
                &m,
                "whatsapp_evolution_state",
                &[("gateway", "evo-sales"), ("state", state)]
            ),
            Some(1.0),
            "{file}"
        );
        assert!(!m.contains("server=\""), "one instance is no server");
    }
    let m = ex.metrics().await;
    assert_eq!(
        sample(&m, "whatsapp_connected_changes_total", &gw),
        Some(2.0),
        "open -> close, and back to open"
    );
    let seen = mock.seen();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0].path, "/instance/connectionState/my-instance");
    assert_eq!(seen[0].headers["apikey"], KEY);
    assert_private(&m);
    ex.stop().await;
}

#[tokio::test]
async fn unknown_instance_wrong_key_and_forbidden() {
    let evo = Evo::new(&[]);
    let mock = evo.mock().await;
    let ex = Exporter::start(&one(&mock.url())).await;
    for (answer, reason) in [
        (
            fixture(
                "evolution/connection_state_unknown.json",
                "/instance/connectionState/no-such-instance",
            ),
            "http_status",
        ),
        (
            fixture(
                "evolution/connection_state_bad_apikey.json",
                "/instance/connectionState/my-instance",
            ),
            "unauthorized",
        ),
        (
            (
                403,
                r#"{"status":403,"error":"Forbidden","response":{"message":["Missing global api key"]}}"#.into(),
            ),
            "unauthorized",
        ),
    ] {
        let code = answer.0;
        *evo.single.lock().unwrap() = answer;
        ex.poll("evo-sales").await;
        let m = ex.metrics().await;
        assert_eq!(sample(&m, "whatsapp_up", &[("gateway", "evo-sales")]), Some(0.0));
        assert_eq!(
            sample(&m, "whatsapp_connected", &[("gateway", "evo-sales")]),
            None,
            "{code}: no state while the API refuses"
        );
        assert!(
            sample(
                &m,
                "whatsapp_poll_failures_total",
                &[("gateway", "evo-sales"), ("reason", reason)]
            )
            .unwrap()
                >= 1.0,
            "{code}: {reason}"
        );
    }
    let m = ex.metrics().await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_poll_failures_total",
            &[("gateway", "evo-sales"), ("reason", "unauthorized")]
        ),
        Some(2.0)
    );
    let (_, page) = ex.get("/").await;
    assert!(page.contains("HTTP 403"), "{page}");
    assert_private(&page);
    assert_private(&common::logs());
    ex.stop().await;
}

#[tokio::test]
async fn the_fixture_listing_becomes_one_gateway_per_instance() {
    let mock = Mock::start(|s| async move {
        let (code, body) = fixture("evolution/fetch_instances.json", "/instance/fetchInstances");
        match s.headers.get("apikey").and_then(|v| v.to_str().ok()) {
            Some(KEY) => reply(code, body),
            _ => reply(401, "{}"),
        }
    })
    .await;
    let ex = Exporter::start(&server(&mock.url(), "    instances: all\n")).await;
    ex.poll("evo").await;
    let m = ex.metrics().await;
    let srv = [("gateway", "evo"), ("provider", "evolution")];
    assert_eq!(sample(&m, "whatsapp_up", &srv), Some(1.0));
    assert_eq!(
        sample(&m, "whatsapp_connected", &srv),
        None,
        "a server is no number"
    );
    assert_eq!(sample(&m, "whatsapp_discovered_instances", &srv), Some(3.0));
    assert_eq!(
        sample(&m, "whatsapp_discovery_overflow_total", &srv),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "whatsapp_discovery_skipped_instances", &srv),
        Some(0.0)
    );
    for (name, state, connected) in [
        ("sales", "open", 1.0),
        ("support", "connecting", 0.0),
        ("ops", "close", 0.0),
    ] {
        assert_eq!(
            value(&m, "whatsapp_connected", &instance(name)),
            Some(connected),
            "{name}"
        );
        assert_eq!(
            value(&m, "whatsapp_connected_changes_total", &instance(name)),
            Some(0.0)
        );
        assert_eq!(state_of(&m, name).as_deref(), Some(state), "{name}");
        assert_eq!(
            value(&m, "whatsapp_up", &instance(name)),
            None,
            "whatsapp_up is the server's"
        );
    }
    assert_eq!(mock.hits(), 1, "one request for the whole server");
    assert_eq!(mock.seen()[0].path, "/instance/fetchInstances");
    assert_private(&m);
    let (_, page) = ex.get("/").await;
    assert!(page.contains("3 instances, 1 connected"), "{page}");
    assert_private(&page);
    let (code, probe) = ex.get("/probe?target=evo").await;
    assert_eq!(code, 200);
    assert!(
        probe.contains(
            r#"whatsapp_connected{gateway="evo/sales",provider="evolution",server="evo"} 1"#
        ),
        "{probe}"
    );
    let (_, debug) = ex.get("/probe?target=evo&debug=true").await;
    assert!(debug.contains("3 instances, 1 connected"), "{debug}");
    assert_private(&debug);
    assert_private(&common::logs());
    ex.stop().await;
}

#[tokio::test]
async fn every_state_of_a_listing() {
    let rows: Vec<(&str, &str)> = vec![
        ("a-open", "open"),
        ("b-close", "close"),
        ("c-connecting", "connecting"),
        ("d-refused", "refused"),
        ("e-other", "qrcode"),
        ("f-upper", "OPEN"),
    ];
    let evo = Evo::new(&rows);
    let mock = evo.mock().await;
    let ex = Exporter::start(&server(&mock.url(), "    instances: all\n")).await;
    ex.poll("evo").await;
    let m = ex.metrics().await;
    for (name, want, connected) in [
        ("a-open", "open", 1.0),
        ("b-close", "close", 0.0),
        ("c-connecting", "connecting", 0.0),
        ("d-refused", "refused", 0.0),
        ("e-other", "unknown", 0.0),
        ("f-upper", "open", 1.0),
    ] {
        assert_eq!(state_of(&m, name).as_deref(), Some(want), "{name}");
        assert_eq!(
            value(&m, "whatsapp_connected", &instance(name)),
            Some(connected)
        );
        assert_eq!(
            samples(
                &m,
                "whatsapp_evolution_state",
                &[("gateway", &format!("evo/{name}"))]
            )
            .len(),
            STATES.len()
        );
    }
    ex.stop().await;
}

#[tokio::test]
async fn five_hundred_instances_one_request_per_poll() {
    let rows: Vec<(String, String)> = (0..500)
        .map(|i| {
            let state = if i % 10 == 0 { "close" } else { "open" };
            (format!("inst-{i:03}"), state.to_string())
        })
        .collect();
    let evo = Evo::new(&[]);
    evo.set_rows(rows);
    let mock = evo.mock().await;
    let ex = Exporter::start(&server(&mock.url(), "    instances: all\n")).await;
    for _ in 0..3 {
        ex.poll("evo").await;
    }
    assert_eq!(
        mock.hits(),
        3,
        "three polls, three requests, for 500 instances"
    );
    let m = ex.metrics().await;
    assert_eq!(
        sample(&m, "whatsapp_discovered_instances", &[("gateway", "evo")]),
        Some(500.0)
    );
    let connected = samples(&m, "whatsapp_connected", &[("server", "evo")]);
    assert_eq!(connected.len(), 500);
    assert_eq!(connected.iter().sum::<f64>(), 450.0);
    assert_eq!(
        samples(&m, "whatsapp_evolution_state", &[("server", "evo")]).len(),
        500 * STATES.len()
    );
    assert_eq!(
        sample(&m, "whatsapp_polls_total", &[("gateway", "evo")]),
        Some(3.0)
    );
    assert_eq!(
        samples(&m, "whatsapp_polls_total", &[]).len(),
        1,
        "poll counters are the server's alone"
    );
    ex.stop().await;
}

#[tokio::test]
async fn instances_added_removed_and_flapping_between_polls() {
    let evo = Evo::new(&[("sales", "open"), ("support", "open"), ("ops", "open")]);
    let mock = evo.mock().await;
    let ex = Exporter::start(&server(&mock.url(), "    instances: all\n")).await;
    ex.poll("evo").await;
    let rows = |r: &[(&str, &str)]| {
        r.iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect()
    };
    // ops is deleted, billing is created, sales drops.
    evo.set_rows(rows(&[
        ("sales", "close"),
        ("support", "open"),
        ("billing", "connecting"),
    ]));
    ex.poll("evo").await;
    let m = ex.metrics().await;
    assert!(
        !m.contains("evo/ops"),
        "a removed instance loses every series:\n{m}"
    );
    assert_eq!(state_of(&m, "billing").as_deref(), Some("connecting"));
    assert_eq!(
        value(&m, "whatsapp_connected_changes_total", &instance("billing")),
        Some(0.0),
        "a new instance has not flapped"
    );
    assert_eq!(
        value(&m, "whatsapp_connected_changes_total", &instance("sales")),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "whatsapp_discovered_instances", &[("gateway", "evo")]),
        Some(3.0)
    );
    // sales comes back; ops is recreated and starts afresh.
    evo.set_rows(rows(&[
        ("sales", "open"),
        ("support", "open"),
        ("billing", "open"),
        ("ops", "close"),
    ]));
    ex.poll("evo").await;
    let m = ex.metrics().await;
    for (name, changes) in [
        ("sales", 2.0),
        ("support", 0.0),
        ("billing", 1.0),
        ("ops", 0.0),
    ] {
        assert_eq!(
            value(&m, "whatsapp_connected_changes_total", &instance(name)),
            Some(changes),
            "{name}"
        );
    }
    assert_eq!(
        sample(&m, "whatsapp_discovered_instances", &[("gateway", "evo")]),
        Some(4.0)
    );
    ex.stop().await;
}

#[tokio::test]
async fn the_cap_keeps_the_first_names_and_counts_the_rest() {
    let evo = Evo::new(&[]);
    evo.set_rows(
        (0..25)
            .rev()
            .map(|i| (format!("n{i:02}"), "open".to_string()))
            .collect(),
    );
    let mock = evo.mock().await;
    let ex = Exporter::start(&server(
        &mock.url(),
        "    instances: all\n    max_instances: 10\n",
    ))
    .await;
    ex.poll("evo").await;
    let m = ex.metrics().await;
    assert_eq!(
        sample(&m, "whatsapp_discovered_instances", &[("gateway", "evo")]),
        Some(10.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_discovery_overflow_total",
            &[("gateway", "evo")]
        ),
        Some(15.0)
    );
    for i in 0..25 {
        let present = value(&m, "whatsapp_connected", &instance(&format!("n{i:02}"))).is_some();
        assert_eq!(present, i < 10, "n{i:02}: the first ten names stay");
    }
    ex.poll("evo").await;
    let m = ex.metrics().await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_discovery_overflow_total",
            &[("gateway", "evo")]
        ),
        Some(30.0),
        "counted at every poll"
    );
    ex.stop().await;
}

#[tokio::test]
async fn lists_and_regular_expressions_select_instances() {
    let evo = Evo::new(&[
        ("sales-1", "open"),
        ("sales-2", "close"),
        ("presales-1", "open"),
        ("ops", "open"),
    ]);
    let mock = evo.mock().await;
    let yaml = hourly(&format!(
        "  - name: evo\n    provider: evolution\n    url: {url}\n    token: {KEY}\n    instances: {{regex: \"^sales-\"}}\n  - name: evolist\n    provider: evolution\n    url: {url}\n    token: {KEY}\n    instances: [ops, gone]\n",
        url = mock.url()
    ));
    let ex = Exporter::start(&yaml).await;
    ex.poll("evo").await;
    ex.poll("evolist").await;
    let m = ex.metrics().await;
    let of = |server: &str| -> Vec<String> {
        m.lines()
            .filter(|l| l.starts_with("whatsapp_connected{"))
            .filter(|l| l.contains(&format!("server=\"{server}\"")))
            .map(|l| l.split('"').nth(1).unwrap().to_string())
            .collect()
    };
    assert_eq!(of("evo"), ["evo/sales-1", "evo/sales-2"]);
    assert_eq!(
        of("evolist"),
        ["evolist/ops"],
        "a listed name the server lacks has no series"
    );
    assert_eq!(mock.hits(), 2);
    ex.stop().await;
}

#[tokio::test]
async fn broken_answers_are_invalid_and_drop_the_instances() {
    let evo = Evo::new(&[("sales", "open")]);
    let mock = evo.mock().await;
    let ex = Exporter::start(&server(&mock.url(), "    instances: all\n")).await;
    ex.poll("evo").await;
    for (n, body) in [
        r#"[{"name":"sales","connectionStatus":"open","token":"B3844804-481D-47A4-B69C-F14B4206EB56","ownerJid":"5511999999999@s.wha"#,
        r#"{"status":500,"error":"Internal Server Error"}"#,
        "<html><body>Bad gateway</body></html>",
        "null",
    ]
    .iter()
    .enumerate()
    {
        *evo.fault.lock().unwrap() = Some((200, body.to_string()));
        ex.poll("evo").await;
        let m = ex.metrics().await;
        assert_eq!(sample(&m, "whatsapp_up", &[("gateway", "evo")]), Some(0.0));
        assert_eq!(
            sample(
                &m,
                "whatsapp_poll_failures_total",
                &[("gateway", "evo"), ("reason", "invalid_response")]
            ),
            Some(n as f64 + 1.0),
            "{body}"
        );
        assert!(
            polled_series(&m).all(|l| !l.contains("evo/sales")),
            "{body}: instances are unknown"
        );

        assert_private(&m);
    }
    let (_, page) = ex.get("/").await;
    assert_private(&page);
    assert_private(&common::logs());
    ex.stop().await;
}

#[tokio::test]
async fn a_server_down_hides_its_instances_and_keeps_their_flap_counts() {
    let evo = Evo::new(&[("sales", "open"), ("support", "open")]);
    let mock = evo.mock().await;
    let yaml = hourly(&format!(
        "  - name: evo\n    provider: evolution\n    url: {}\n    token: {KEY}\n    instances: all\n  - name: evodown\n    provider: evolution\n    url: http://127.0.0.1:1\n    token: {KEY}\n    instances: all\n",
        mock.url()
    ));
    let ex = Exporter::start(&yaml).await;
    ex.poll("evo").await;
    evo.set_rows(vec![
        ("sales".into(), "close".into()),
        ("support".into(), "open".into()),
    ]);
    ex.poll("evo").await;
    *evo.fault.lock().unwrap() = Some((503, "<html>503 Service Unavailable</html>".into()));
    ex.poll("evo").await;
    ex.poll("evodown").await;
    let m = ex.metrics().await;
    let srv = [("gateway", "evo")];
    assert_eq!(sample(&m, "whatsapp_up", &srv), Some(0.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_poll_failures_total",
            &[("gateway", "evo"), ("reason", "http_status")]
        ),
        Some(1.0)
    );
    assert!(
        polled_series(&m).all(|l| !l.contains("evo/")),
        "no polled instance series while the server is down:\n{m}"
    );
    assert_eq!(sample(&m, "whatsapp_discovered_instances", &srv), None);
    assert_eq!(
        sample(&m, "whatsapp_discovery_overflow_total", &srv),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "whatsapp_up", &[("gateway", "evodown")]),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_poll_failures_total",
            &[("gateway", "evodown"), ("reason", "connect")]
        ),
        Some(1.0)
    );
    // Back, with sales connected again: one more flap, counted against the state before.
    *evo.fault.lock().unwrap() = None;
    evo.set_rows(vec![
        ("sales".into(), "open".into()),
        ("support".into(), "open".into()),
    ]);
    ex.poll("evo").await;
    let m = ex.metrics().await;
    assert_eq!(sample(&m, "whatsapp_up", &srv), Some(1.0));
    assert_eq!(
        value(&m, "whatsapp_connected_changes_total", &instance("sales")),
        Some(2.0)
    );
    assert_eq!(
        value(&m, "whatsapp_connected_changes_total", &instance("support")),
        Some(0.0)
    );
    ex.stop().await;
}

#[tokio::test]
async fn discovery_needs_the_global_key() {
    let evo = Evo::new(&[("sales", "open")]);
    let mock = evo.mock().await;
    let yaml = hourly(&format!(
        "  - name: evo\n    provider: evolution\n    url: {}\n    token: wrong-key-123\n    instances: all\n",
        mock.url()
    ));
    let ex = Exporter::start(&yaml).await;
    ex.poll("evo").await;
    let m = ex.metrics().await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_poll_failures_total",
            &[("gateway", "evo"), ("reason", "unauthorized")]
        ),
        Some(1.0)
    );
    assert!(!m.contains("wrong-key-123"));
    assert!(!common::logs().contains("wrong-key-123"));
    ex.stop().await;
}

/// The lines of `/metrics` but the number state's, which a discovered instance keeps (as
/// `unknown`) while its server does not answer.
fn polled_series(m: &str) -> impl Iterator<Item = &str> {
    m.lines().filter(|l| {
        !l.starts_with("whatsapp_number_") && !l.starts_with("whatsapp_messages_unacknowledged")
    })
}
