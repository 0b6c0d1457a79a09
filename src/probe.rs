//! `/probe?target=NAME`: one gateway polled now, its series alone, as blackbox_exporter's probes
//! are; `&debug=true` tells instead how the poll went.
//!
//! The poll gets the time Prometheus gives the scrape (`X-Prometheus-Scrape-Timeout-Seconds`)
//! less a margin, when that is shorter than the gateway's own timeout: a slow gateway then reads
//! `whatsapp_up 0` with reason `timeout`, never a failed scrape.

use std::fmt::Write as _;
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

/// What a probe request asks.
struct Ask {
    target: String,
    debug: bool,
}

fn ask(query: Option<&str>) -> Option<Ask> {
    let mut target = None;
    let mut debug = false;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "target" => target = Some(v.into_owned()),
            "debug" => debug = matches!(&*v, "true" | "1"),
            _ => {}
        }
    }
    let target = target.filter(|t| !t.is_empty())?;
    Some(Ask { target, debug })
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

pub async fn handle(ex: &Exporter, query: Option<&str>, headers: &HeaderMap) -> Response<Body> {
    let Some(ask) = ask(query) else {
        return text(StatusCode::BAD_REQUEST, "target parameter is missing\n");
    };
    let Some(gw) = ex.gateway(&ask.target) else {
        return text(
            StatusCode::NOT_FOUND,
            "unknown target: name a configured gateway\n",
        );
    };
    let timeout = timeout(gw.config.timeout, headers);
    let start = Instant::now();
    let (outcome, exchanges) = traced(ex.probe(&gw, timeout)).await;
    let series = series(&gw);
    if !ask.debug {
        return crate::respond::metrics(series);
    }
    let report = debug_report(&gw, timeout, start.elapsed(), &outcome, &exchanges, &series);
    text(StatusCode::OK, &report)
}

/// The gateway's series: its poll's and its pushes' (message flow), so that a probe job holds
/// everything about the gateway under the same `job` and `instance`, as alerts join them.
fn series(gw: &Gateway) -> Vec<u8> {
    let mut frags = vec![gw.fragment()];
    gw.flow_fragments(&mut frags);
    let mut out = Vec::with_capacity(frags.iter().map(|f| f.text_len()).sum::<usize>() + 2048);
    let own = crate::providers::families(gw.config.provider);
    // Writing into a Vec cannot fail.
    let _ = exposition::render(&mut out, &[own], frags.iter().map(|f| &**f));
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
    fn the_query_names_target_and_debug() {
        let a = ask(Some("target=sales&debug=true")).unwrap();
        assert_eq!((a.target.as_str(), a.debug), ("sales", true));
        assert!(!ask(Some("target=a%2Fb")).unwrap().debug);
        assert!(ask(Some("debug=true")).is_none());
        assert!(ask(None).is_none());
    }
}
