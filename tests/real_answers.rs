//! Provider fidelity: every answer in `tests/fixtures/real/<provider>/*.json` is a real answer of a
//! gateway API (from its documentation, SDK or test suite, cited in the file). A mock gateway on
//! 127.0.0.1 plays it, the exporter polls the mock, and `/metrics` must show what an operator
//! should see: `whatsapp_up`, `whatsapp_connected`, the failure `reason` and the series listed.
//!
//! Every fixture is run and every mismatch collected, so one failing run lists them all.
//! `tests/fixtures/real/README.md` describes the file format.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{reply, sample, samples, Exporter, Mock, MockBody};
use hyper::Response;
use serde_json::Value;

/// The identifiers the exporter is configured with; fixture paths are written with them.
const ZAPI_INSTANCE: &str = "YOUR_INSTANCE";
const ZAPI_TOKEN: &str = "YOUR_TOKEN";
const GREEN_INSTANCE: &str = "1101000001";
const GREEN_TOKEN: &str = "YOUR_API_TOKEN";
const CLOUD_PHONE_ID: &str = "106540352242922";
const CLOUD_TOKEN: &str = "EAAG-cloud-test-token-7f3a";
const WABA_TOKEN: &str = "waba-test-token-2c9e";
const WABA_USER: &str = "monitor";
const WABA_PASSWORD: &str = "waba-test-Passw0rd!";

const GATEWAY: &str = "real";
/// The reasons the exporter knows; a fixture may name another (a proposed one).
const KNOWN_REASONS: [&str; 7] = [
    "timeout",
    "connect",
    "http_status",
    "unauthorized",
    "rate_limited",
    "invalid_response",
    "not_found",
];
/// How long one fixture may take to show its first poll.
const FIRST_POLL_WITHIN: Duration = Duration::from_secs(10);
/// Fixtures run this many at a time.
const PARALLEL: usize = 6;

/// One canned answer of the mock.
#[derive(Debug, Clone)]
struct Canned {
    when_query_contains: Option<String>,
    status: u16,
    body: String,
    headers: Vec<(String, String)>,
}

#[derive(Debug)]
struct Fixture {
    provider: String,
    config: BTreeMap<String, String>,
    answers: BTreeMap<String, Vec<Canned>>,
    expect: Value,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real")
}

fn fixture_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in std::fs::read_dir(fixtures_dir()).expect("tests/fixtures/real") {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            // Files without `expect` are answers that a provider's own black-box test replays
            // with its expectations in code (tests/evolution.rs, tests/waha.rs).
            let replayed_here = std::fs::read_to_string(&f)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v.get("expect").is_some());
            if f.extension().is_some_and(|e| e == "json") && replayed_here {
                files.push(f);
            }
        }
    }
    files.sort();
    files
}

fn canned(v: &Value) -> Result<Canned, String> {
    let status = v
        .get("status")
        .and_then(Value::as_u64)
        .ok_or("answer without a numeric `status`")? as u16;
    let body = match v.get("body") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => serde_json::to_string(other).unwrap(),
    };
    let headers = v
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Canned {
        when_query_contains: v
            .get("when_query_contains")
            .and_then(Value::as_str)
            .map(str::to_string),
        status,
        body,
        headers,
    })
}

fn load(file: &Path) -> Result<Fixture, String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    for key in ["source", "note"] {
        if v.get(key)
            .and_then(Value::as_str)
            .is_none_or(|s| s.trim().is_empty())
        {
            return Err(format!(
                "no `{key}`: every real answer carries its source and a note"
            ));
        }
    }
    let provider = v
        .get("provider")
        .and_then(Value::as_str)
        .ok_or("no `provider`")?
        .to_string();
    let mut answers = BTreeMap::new();
    for (path, a) in v
        .get("answers")
        .and_then(Value::as_object)
        .ok_or("no `answers` object")?
    {
        let list = match a {
            Value::Array(items) => items.iter().map(canned).collect::<Result<Vec<_>, _>>()?,
            one => vec![canned(one)?],
        };
        answers.insert(path.clone(), list);
    }
    let config = v
        .get("config")
        .and_then(Value::as_object)
        .map(|c| {
            c.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let expect = v.get("expect").cloned().ok_or("no `expect`")?;
    Ok(Fixture {
        provider,
        config,
        answers,
        expect,
    })
}

/// The configuration of the one gateway, polled every second in the background.
fn config_yaml(fx: &Fixture, url: &str) -> Result<String, String> {
    let mut lines = vec![
        format!("  - name: {GATEWAY}"),
        format!("    provider: {}", fx.provider),
        format!("    url: {url}"),
        "    interval: 1s".to_string(),
        "    timeout: 800ms".to_string(),
    ];
    let mut set = |k: &str, v: &str| lines.push(format!("    {k}: \"{v}\""));
    match fx.provider.as_str() {
        "plugzapi" | "zapi" => {
            set("instance", ZAPI_INSTANCE);
            set("token", ZAPI_TOKEN);
        }
        "greenapi" => {
            set("instance", GREEN_INSTANCE);
            set("token", GREEN_TOKEN);
        }
        "cloudapi" => {
            set("phone_number_id", CLOUD_PHONE_ID);
            set("token", CLOUD_TOKEN);
        }
        "waba" => {
            if fx.config.get("auth").map(String::as_str) == Some("login") {
                set("username", WABA_USER);
                set("password", WABA_PASSWORD);
            } else {
                set("token", WABA_TOKEN);
            }
        }
        other => return Err(format!("unknown provider {other:?}")),
    }
    for (k, v) in &fx.config {
        set(k, v);
    }
    Ok(format!("gateways:\n{}\n", lines.join("\n")))
}

/// The secrets this fixture's configuration holds: none may reach `/metrics`.
fn secrets(fx: &Fixture) -> Vec<String> {
    let mut s: Vec<String> = match fx.provider.as_str() {
        "plugzapi" | "zapi" => vec![ZAPI_TOKEN.into()],
        "greenapi" => vec![GREEN_TOKEN.into()],
        "cloudapi" => vec![CLOUD_TOKEN.into()],
        _ => vec![WABA_TOKEN.into(), WABA_PASSWORD.into()],
    };
    s.extend(fx.config.get("client_token").cloned());
    s
}

fn respond(c: &Canned) -> Response<MockBody> {
    let mut r = reply(c.status, c.body.clone());
    for (k, v) in &c.headers {
        r.headers_mut().insert(
            hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    r
}

/// A sample of the gateway under test: its name and labels must all be present.
fn value_of(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut l = vec![("gateway", GATEWAY)];
    l.extend_from_slice(labels);
    if labels.is_empty() {
        // `sample` matches label subsets: with no labels asked, take the series whose only
        // labels are the gateway's own, so that a family with more labels is not mistaken.
        return metrics
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.rsplit_once(' '))
            .find(|(series, _)| {
                series.split_once('{').is_some_and(|(n, rest)| {
                    n == name
                        && rest.contains(&format!("gateway=\"{GATEWAY}\""))
                        && rest
                            .trim_end_matches('}')
                            .split(',')
                            .all(|kv| kv.starts_with("gateway=") || kv.starts_with("provider="))
                })
            })
            .map(|(_, v)| parse_value(v));
    }
    sample(metrics, name, &l)
}

fn parse_value(v: &str) -> f64 {
    match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or(f64::NAN),
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("absent".to_string(), |v| v.to_string())
}

fn expected_value(v: &Value) -> Result<Option<f64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => Ok(n.as_f64()),
        Value::String(s) if s == "+Inf" => Ok(Some(f64::INFINITY)),
        other => Err(format!("value {other} is not a number, \"+Inf\" or null")),
    }
}

/// Compares `/metrics` with the fixture's `expect`; one line per mismatch.
fn compare(fx: &Fixture, metrics: &str, unexpected_paths: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let e = &fx.expect;
    let check = |out: &mut Vec<String>, what: String, want: Option<f64>, got: Option<f64>| {
        let same = match (want, got) {
            (Some(a), Some(b)) => a == b,
            (None, None) => true,
            _ => false,
        };
        if !same {
            out.push(format!("{what}: expected {}, got {}", fmt(want), fmt(got)));
        }
    };

    let up = e.get("up").and_then(Value::as_f64);
    check(
        &mut out,
        "whatsapp_up".into(),
        up,
        value_of(metrics, "whatsapp_up", &[]),
    );
    match e.get("connected") {
        Some(v) => match expected_value(v) {
            Ok(want) => check(
                &mut out,
                "whatsapp_connected".into(),
                want,
                value_of(metrics, "whatsapp_connected", &[]),
            ),
            Err(err) => out.push(format!("expect.connected: {err}")),
        },
        None => out.push("expect.connected missing (use null for absent)".into()),
    }

    let reason = e.get("reason").and_then(Value::as_str);
    let failures: Vec<(String, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with("whatsapp_poll_failures_total{"))
        .filter(|l| l.contains(&format!("gateway=\"{GATEWAY}\"")))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let r = series.split("reason=\"").nth(1)?.split('"').next()?;
            Some((r.to_string(), parse_value(v)))
        })
        .collect();
    match reason {
        Some(r) => {
            match failures.iter().find(|(name, _)| name == r) {
                Some((_, n)) if *n >= 1.0 => {}
                Some((_, n)) => out.push(format!(
                    "whatsapp_poll_failures_total{{reason=\"{r}\"}}: expected >= 1, got {n}"
                )),
                None => out.push(format!(
                    "whatsapp_poll_failures_total{{reason=\"{r}\"}}: expected >= 1, got absent{}",
                    if KNOWN_REASONS.contains(&r) {
                        ""
                    } else {
                        " (a reason the exporter does not have yet)"
                    }
                )),
            }
            for (other, n) in &failures {
                if other != r && *n > 0.0 {
                    out.push(format!(
                        "whatsapp_poll_failures_total{{reason=\"{other}\"}}: expected 0, got {n}"
                    ));
                }
            }
        }
        None => {
            for (other, n) in &failures {
                if *n > 0.0 {
                    out.push(format!(
                        "whatsapp_poll_failures_total{{reason=\"{other}\"}}: expected 0 (the poll should succeed), got {n}"
                    ));
                }
            }
        }
    }

    for s in e
        .get("series")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = s.get("name").and_then(Value::as_str) else {
            out.push(format!("series without a name: {s}"));
            continue;
        };
        let labels: Vec<(String, String)> = s
            .get("labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let l: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let shown = format!(
            "{name}{{{}}}",
            l.iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        match s.get("value").map(expected_value) {
            Some(Ok(want)) => {
                let got = if l.is_empty() {
                    value_of(metrics, name, &[])
                } else {
                    let mut all = vec![("gateway", GATEWAY)];
                    all.extend_from_slice(&l);
                    let found = samples(metrics, name, &all);
                    if found.len() > 1 {
                        out.push(format!(
                            "{shown}: {} series match, expected one",
                            found.len()
                        ));
                    }
                    found.into_iter().next()
                };
                check(&mut out, shown, want, got);
            }
            Some(Err(err)) => out.push(format!("{shown}: {err}")),
            None => out.push(format!("{shown}: no `value`")),
        }
    }

    let mut private: Vec<String> = secrets(fx);
    private.extend(
        e.get("private")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string),
    );
    for p in private {
        if metrics.contains(&p) {
            out.push(format!("/metrics shows private text {p:?}"));
        }
    }
    for p in unexpected_paths {
        out.push(format!(
            "the exporter asked for {p}, which the fixture does not answer"
        ));
    }
    out
}

/// Runs one fixture; `Err` holds its mismatches.
async fn run(file: PathBuf) -> Result<(), Vec<String>> {
    let fx = load(&file).map_err(|e| vec![format!("cannot load: {e}")])?;
    let answers = Arc::new(fx.answers.clone());
    let unexpected: Arc<Mutex<Vec<String>>> = Arc::default();
    let (a, u) = (answers.clone(), unexpected.clone());
    let mock = Mock::start(move |seen| {
        let (a, u) = (a.clone(), u.clone());
        async move {
            let choice = a.get(&seen.path).and_then(|list| {
                list.iter().find(|c| {
                    c.when_query_contains
                        .as_deref()
                        .is_none_or(|q| seen.query.contains(q))
                })
            });
            match choice {
                Some(c) => respond(c),
                None => {
                    let p = format!("{} {}", seen.method, seen.path);
                    let mut u = u.lock().unwrap();
                    if !u.contains(&p) {
                        u.push(p);
                    }
                    reply(404, "no fixture answer for this path")
                }
            }
        }
    })
    .await;
    let yaml = config_yaml(&fx, &mock.url()).map_err(|e| vec![e])?;
    let ex = Exporter::try_start(&yaml)
        .await
        .map_err(|e| vec![format!("the exporter did not start: {e}")])?;

    let deadline = tokio::time::Instant::now() + FIRST_POLL_WITHIN;
    let metrics = loop {
        let m = ex.metrics().await;
        if value_of(&m, "whatsapp_polls_total", &[]).is_some_and(|n| n >= 1.0) {
            break m;
        }
        if tokio::time::Instant::now() > deadline {
            ex.stop().await;
            return Err(vec![format!(
                "no poll within {FIRST_POLL_WITHIN:?}; /metrics:\n{m}"
            )]);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    ex.stop().await;
    let unexpected = unexpected.lock().unwrap().clone();
    let problems = compare(&fx, &metrics, &unexpected);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_are_read_as_an_operator_expects() {
    let files = fixture_files();
    assert!(
        files.len() >= 40,
        "expected the corpus of real answers in tests/fixtures/real, found {} files",
        files.len()
    );
    let root = fixtures_dir();
    let mut failed: Vec<(String, Vec<String>)> = Vec::new();
    for chunk in files.chunks(PARALLEL) {
        let mut set = tokio::task::JoinSet::new();
        for f in chunk {
            let name = f.strip_prefix(&root).unwrap_or(f).display().to_string();
            let f = f.clone();
            set.spawn(async move { (name, run(f).await) });
        }
        while let Some(done) = set.join_next().await {
            let (name, result) = done.expect("fixture task panicked");
            if let Err(problems) = result {
                failed.push((name, problems));
            }
        }
    }
    failed.sort();
    if !failed.is_empty() {
        let mut report = format!(
            "{} of {} real answers are not read as expected:\n",
            failed.len(),
            files.len()
        );
        for (name, problems) in &failed {
            report.push_str(&format!("\n{name}\n"));
            for p in problems {
                report.push_str(&format!("    - {p}\n"));
            }
        }
        panic!("{report}");
    }
}
