//! `/probe?target=NAME`: one gateway polled now, its series alone, as blackbox_exporter's probes
//! are; `&debug=true` tells instead how the poll went.
//!
//! A discovered instance is a target too, `<server>/<instance>` as [`sd`] lists it: the probe
//! polls its server (once per interval however many of its instances are probed, through the
//! server's single flight) and answers the instance's series alone. `&instances=false` on a
//! server leaves its instances' series out, so that a probe job of every target [`sd`] lists
//! holds each series once.
//!
//! The poll gets the time Prometheus gives the scrape (`X-Prometheus-Scrape-Timeout-Seconds`)
//! less a margin, when that is shorter than the gateway's own timeout: a slow gateway then reads
//! `whatsapp_up 0` with reason `timeout`, never a failed scrape.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};

use crate::exporter::Exporter;
use crate::exposition;
use crate::gateway::Gateway;
use crate::http::{traced, Exchange};
use crate::respond::{text, Body};
use crate::scheduler::Outcome;

/// Kept from the scrape's timeout for the answer to reach Prometheus.
pub const TIMEOUT_MARGIN: Duration = Duration::from_millis(500);
/// No poll is given less than this, whatever the header says.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);

pub mod sd;

/// What a probe request asks.
struct Ask {
    target: String,
    debug: bool,
    /// A server's discovered instances' series ride along (the default).
    instances: bool,
}

fn ask(query: Option<&str>) -> Option<Ask> {
    let mut target = None;
    let mut debug = false;
    let mut instances = true;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "target" => target = Some(v.into_owned()),
            "debug" => debug = matches!(&*v, "true" | "1"),
            "instances" => instances = !matches!(&*v, "false" | "0"),
            _ => {}
        }
    }
    let target = target.filter(|t| !t.is_empty())?;
    Some(Ask {
        target,
        debug,
        instances,
    })
}

/// The poll's timeout: the gateway's, or less when the scrape has less.
pub fn timeout(configured: Duration, headers: &HeaderMap) -> Duration {
    let scrape = headers
        .get("x-prometheus-scrape-timeout-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.min(86_400.0)));
    match scrape {
        Some(s) => configured.min(s.saturating_sub(TIMEOUT_MARGIN).max(MIN_TIMEOUT)),
        None => configured,
    }
}

/// What a probe's target names: a configured gateway, or one instance a server discovered.
enum Probed {
    Gateway(Arc<Gateway>),
    /// `<server>/<instance>`: the server is polled, and the instance's series alone answer.
    Instance(Arc<Gateway>, String),
}

/// Resolves `<server>/<instance>` at its first `/`: a configured name has none, while an
/// instance's name may (as it may have spaces or accents: its label is the name as it is).
fn resolve(ex: &Exporter, target: &str) -> Option<Probed> {
    if let Some(gw) = ex.gateway(target) {
        return Some(Probed::Gateway(gw));
    }
    let (server, instance) = target.split_once('/')?;
    let gw = ex.gateway(server)?;
    if !gw.config.settings.discovers() || instance.is_empty() {
        return None;
    }
    Some(Probed::Instance(gw, instance.to_string()))
}

fn unknown() -> Response<Body> {
    text(
        StatusCode::NOT_FOUND,
        "unknown target: name a configured gateway or a discovered <server>/<instance>\n",
    )
}

pub async fn handle(ex: &Exporter, query: Option<&str>, headers: &HeaderMap) -> Response<Body> {
    let Some(ask) = ask(query) else {
        return text(StatusCode::BAD_REQUEST, "target parameter is missing\n");
    };
    let Some(probed) = resolve(ex, &ask.target) else {
        return unknown();
    };
    let (gw, instance) = match probed {
        Probed::Gateway(gw) => (gw, None),
        Probed::Instance(gw, name) => (gw, Some(name)),
    };
    let timeout = timeout(gw.config.timeout, headers);
    let start = Instant::now();
    let (outcome, exchanges) = traced(ex.probe(&gw, timeout)).await;
    let series = match &instance {
        // A server's own target leaves its instances to their own targets (`/sd` says so with
        // `instances=false`), so that Prometheus stores each series once.
        None if !ask.instances && gw.config.settings.discovers() => {
            only_labelled(&series(&gw), &gateway_label(gw.name()))
        }
        None => series(&gw),
        // Known only once the server has listed it: a probe may be the first poll.
        Some(name) if gw.state().instances.contains_key(name) => instance_series(&gw, name),
        Some(_) => return unknown(),
    };
    if !ask.debug {
        return crate::respond::metrics(series);
    }
    let mut report = debug_report(&gw, timeout, start.elapsed(), &outcome, &exchanges, &series);
    if let Some(name) = &instance {
        let about = format!(
            "Discovered instance {}/{name}: its server's poll, and the instance's series alone.\n",
            gw.name()
        );
        report.insert_str(0, &about);
    }
    text(StatusCode::OK, &report)
}

/// The gateway's series: its poll's and its pushes' (message flow), so that a probe job holds
/// everything about the gateway under the same `job` and `instance`, as alerts join them.
fn series(gw: &Gateway) -> Vec<u8> {
    let mut frags = vec![gw.fragment()];
    gw.flow_fragments(&mut frags);
    frags.push(gw.number_fragment());
    render(gw, &frags)
}

fn render(gw: &Gateway, frags: &[Arc<exposition::Fragment>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frags.iter().map(|f| f.text_len()).sum::<usize>() + 2048);
    let own = crate::providers::families(gw.config.provider);
    // Writing into a Vec cannot fail.
    let _ = exposition::render(&mut out, &[own], frags.iter().map(|f| &**f));
    out
}

/// One discovered instance's series, as the server's poll and the instance's pushes wrote them
/// under `gateway="<server>/<instance>"`.
fn instance_series(gw: &Gateway, name: &str) -> Vec<u8> {
    let mut frags = vec![gw.fragment()];
    frags.extend(gw.instance_flow(name).map(|f| f.fragment()));
    frags.push(gw.number_fragment());
    let all = render(gw, &frags);
    only_labelled(&all, &gateway_label(&format!("{}/{name}", gw.name())))
}

/// `{gateway="<name>"`, escaped as the text format writes it.
fn gateway_label(name: &str) -> String {
    let mut label = String::from("{gateway=\"");
    exposition::escape_label_value(&mut label, name);
    label.push('"');
    label
}

/// The samples of `text` whose labels start with `label` (the writer puts `gateway` first), each
/// family under its header, and no header without a sample.
fn only_labelled(text: &[u8], label: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4);
    let mut header: Vec<&[u8]> = Vec::new();
    for line in text.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"#") {
            if line.starts_with(b"# HELP") {
                header.clear();
            }
            header.push(line);
            continue;
        }
        let Some(open) = line.iter().position(|&b| b == b'{') else {
            continue;
        };
        let rest = &line[open..];
        let ours = rest.starts_with(label.as_bytes())
            && matches!(rest.get(label.len()), Some(b',' | b'}'));
        if ours {
            header.drain(..).for_each(|h| out.extend_from_slice(h));
            out.extend_from_slice(line);
        }
    }
    out
}

/// A plain-text account of one poll, every line passed through the gateway's secret mask.
fn debug_report(
    gw: &Gateway,
    timeout: Duration,
    took: Duration,
    outcome: &Outcome,
    exchanges: &[Exchange],
    series: &[u8],
) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "Probe of gateway {} (provider {}), timeout {:.3}s\n",
        gw.name(),
        gw.config.provider,
        timeout.as_secs_f64()
    );
    let _ = writeln!(r, "Requests:");
    if exchanges.is_empty() {
        let _ = writeln!(r, "  none (answered from state kept between polls)");
    }
    for x in exchanges {
        let outcome = match (x.status, &x.error) {
            (Some(s), _) => format!("HTTP {s}, {} bytes", x.bytes),
            (None, Some(e)) => format!("no answer: {e}"),
            (None, None) => "no answer".to_string(),
        };
        let _ = writeln!(
            r,
            "  {} {} -> {outcome} in {:.3}s",
            x.method,
            gw.mask(&x.url),
            x.took.as_secs_f64()
        );
    }
    let st = gw.state();
    let _ = writeln!(r, "\nResult:");
    let result = match outcome {
        Outcome::Polled(result) => result,
        Outcome::Skipped(skip) => {
            let _ = writeln!(
                r,
                "  not polled now ({skip:?}): the series are the last poll's"
            );
            &Ok(())
        }
        Outcome::Busy => {
            let _ = writeln!(
                r,
                "  not polled: no slot within the time allowed; the series are the last poll's"
            );
            &Ok(())
        }
    };
    match (result, &st.observation) {
        (Ok(()), Some(obs)) if obs.discovered().is_some() => {
            let _ = writeln!(
                r,
                "  succeeded in {:.3}s: {}",
                took.as_secs_f64(),
                obs.summary()
            );
        }
        (Ok(()), Some(obs)) => {
            let _ = writeln!(
                r,
                "  succeeded in {:.3}s: connected {}, {}",
                took.as_secs_f64(),
                obs.connected(),
                obs.summary()
            );
        }
        (Err(e), _) => {
            let _ = writeln!(
                r,
                "  failed in {:.3}s, reason {}: {}",
                took.as_secs_f64(),
                e.reason(),
                gw.mask(&e.to_string())
            );
        }
        (Ok(()), None) => {
            let _ = writeln!(r, "  succeeded in {:.3}s", took.as_secs_f64());
        }
    }
    drop(st);
    let _ = writeln!(r, "\nMetrics that would have been returned:");
    r.push_str(&gw.mask(&String::from_utf8_lossy(series)));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("X-Prometheus-Scrape-Timeout-Seconds", v.parse().unwrap());
        h
    }

    #[test]
    fn the_scrape_timeout_shortens_the_poll() {
        let ten = Duration::from_secs(10);
        assert_eq!(timeout(ten, &HeaderMap::new()), ten);
        assert_eq!(timeout(ten, &headers("3")), Duration::from_millis(2500));
        assert_eq!(
            timeout(ten, &headers("30")),
            ten,
            "never longer than configured"
        );
        assert_eq!(timeout(ten, &headers("0.2")), MIN_TIMEOUT);
        for junk in ["-1", "abc", "NaN", "inf", "0"] {
            assert_eq!(timeout(ten, &headers(junk)), ten, "{junk}");
        }
    }

    #[test]
    fn one_gateway_label_keeps_its_lines_and_their_headers() {
        let text = "# HELP whatsapp_up Up.\n# TYPE whatsapp_up gauge\nwhatsapp_up{gateway=\"evo\",provider=\"evolution\"} 1\n\
# HELP whatsapp_connected C.\n# TYPE whatsapp_connected gauge\n\
whatsapp_connected{gateway=\"evo/a\",provider=\"evolution\",server=\"evo\"} 1\n\
whatsapp_connected{gateway=\"evo/ab\",provider=\"evolution\",server=\"evo\"} 0\n";
        let a = String::from_utf8(only_labelled(text.as_bytes(), &gateway_label("evo/a"))).unwrap();
        assert_eq!(
            a,
            "# HELP whatsapp_connected C.\n# TYPE whatsapp_connected gauge\n\
whatsapp_connected{gateway=\"evo/a\",provider=\"evolution\",server=\"evo\"} 1\n"
        );
        let server =
            String::from_utf8(only_labelled(text.as_bytes(), &gateway_label("evo"))).unwrap();
        assert_eq!(
            server,
            "# HELP whatsapp_up Up.\n# TYPE whatsapp_up gauge\nwhatsapp_up{gateway=\"evo\",provider=\"evolution\"} 1\n"
        );
    }

    #[test]
    fn the_query_names_target_and_debug() {
        let a = ask(Some("target=sales&debug=true")).unwrap();
        assert_eq!((a.target.as_str(), a.debug), ("sales", true));
        assert!(!ask(Some("target=a%2Fb")).unwrap().debug);
        assert!(ask(Some("target=a")).unwrap().instances);
        assert!(!ask(Some("target=a&instances=false")).unwrap().instances);
        assert!(ask(Some("debug=true")).is_none());
        assert!(ask(None).is_none());
        for (query, name) in [
            ("target=evo/Loja%20Centro", "evo/Loja Centro"),
            ("target=evo%2FLoja+Centro", "evo/Loja Centro"),
            (
                "target=evo/Atendimento%20S%C3%A3o%20Paulo",
                "evo/Atendimento São Paulo",
            ),
            ("target=evo/a%22b%5Cc%26d", "evo/a\"b\\c&d"),
        ] {
            assert_eq!(ask(Some(query)).unwrap().target, name, "{query}");
        }
    }

    #[test]
    fn an_instance_keeps_its_own_samples_under_their_headers() {
        let text = "# HELP a A.\n# TYPE a gauge\na{gateway=\"evo\"} 1\na{gateway=\"evo/x \\\"y\\\"\",server=\"evo\"} 2\na{gateway=\"evo/x \\\"y\\\" z\"} 3\n# HELP b B.\n# TYPE b gauge\nb{gateway=\"evo/x\"} 4\n";
        let mut label = String::from("{gateway=\"");
        exposition::escape_label_value(&mut label, "evo/x \"y\"");
        label.push('"');
        let got = String::from_utf8(only_labelled(text.as_bytes(), &label)).unwrap();
        assert_eq!(
            got,
            "# HELP a A.\n# TYPE a gauge\na{gateway=\"evo/x \\\"y\\\"\",server=\"evo\"} 2\n"
        );
    }
}
