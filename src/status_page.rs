//! The HTML status page at `/`. It leads with the one question operators ask, is each number
//! working: its state and problems in words, discovered instances under their server, the worst
//! first, with its message flow at a glance; then the canaries, then every gateway's polls. No
//! external assets, readable on a phone and at a thousand numbers, refreshes itself.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::exporter::Exporter;
use crate::gateway::NumberView;
use crate::labels::LabelSet;
use crate::number_state::NumberState;

pub fn render(ex: &Exporter) -> String {
    let now = SystemTime::now();
    let gateways = ex.gateways();
    let mut rows = String::new();
    for gw in gateways.iter() {
        let st = gw.state();
        let (class, up) = match (st.polls, st.up()) {
            (0, _) => ("wait", "waiting"),
            (_, true) => ("ok", "up"),
            (_, false) => ("bad", "down"),
        };
        let server = st
            .observation
            .as_ref()
            .is_some_and(|o| o.discovered().is_some());
        let connected = match st.connected() {
            // A server is no number: its summary counts its connected instances.
            Some(_) if server => "",
            Some(true) => "connected",
            Some(false) => "disconnected",
            None => "",
        };
        let summary = st
            .observation
            .as_ref()
            .map(|o| gw.scrubber.scrub(&o.summary()).into_owned())
            .unwrap_or_default();
        let error = st
            .last_error
            .as_ref()
            .map(|e| format!("{}: {e}", e.reason()))
            .unwrap_or_default();
        let _ = writeln!(
            rows,
            "<tr class=\"{class}\"><td data-label=\"Gateway\">{name}</td><td data-label=\"Provider\">{provider}</td>\
             <td data-label=\"Up\">{up}</td><td data-label=\"Connected\">{connected}</td><td data-label=\"State\">{summary}</td>\
             <td data-label=\"Last poll\">{last_poll}</td><td data-label=\"Last success\">{last_success}</td>\
             <td data-label=\"Polls\">{polls}</td><td data-label=\"Last error\">{error}</td>\
             <td><a href=\"{link}\">probe</a></td></tr>",
            name = escape(gw.name()),
            provider = gw.config.provider,
            summary = escape(&summary),
            last_poll = ago(st.last_poll, now),
            last_success = ago(st.last_success, now),
            polls = st.polls,
            error = escape(&error),
            link = probe_link(gw.name()),
        );
    }
    let accounts = ex.plugchat.summary();
    let pushes = pushes_html(ex, now);
    let numbers = numbers_html(ex, now);
    let canaries = canaries_html(ex, now);
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="10">
<title>whatsapp_exporter</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1rem;color:#222}}
table{{border-collapse:collapse;width:100%}}
th,td{{padding:.35rem .5rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}}
tr.ok td:nth-child(3){{color:#1a7f37;font-weight:600}}
tr.bad td:nth-child(3){{color:#cf222e;font-weight:600}}
tr.wait td:nth-child(3){{color:#9a6700}}
.st{{font-weight:600;white-space:nowrap}}
.working{{color:#1a7f37}}.connected{{color:#0969da}}.unknown{{color:#6e7781}}
.restricted{{color:#9a6700}}.zombie{{color:#8250df}}.disconnected{{color:#cf222e}}
tr.server td{{background:#f6f8fa;font-weight:600}}
.counts span{{margin-right:.8rem}}
@media (max-width:700px){{thead{{display:none}}tr{{display:block;border:1px solid #ddd;margin-bottom:.6rem}}
td{{display:block;border:none}}td[data-label]::before{{content:attr(data-label)": ";font-weight:600}}
#numbers td{{display:inline-block;padding:.15rem .4rem}}#numbers td:empty{{display:none}}
#numbers td[data-label="Number"]::before,#numbers td[data-label="State"]::before{{content:none}}
#numbers td[data-label="Number"]{{font-weight:600}}.st{{white-space:normal}}
.counts span{{display:inline-block}}}}
</style></head><body>
<h1>whatsapp_exporter</h1>
<p>{count} gateway(s) &middot; version {version} &middot; <a href="metrics">metrics</a> &middot; <a href="-/healthy">health</a></p>
{numbers}
{canaries}
<h2>Gateways</h2>
<table id="gateways"><thead><tr><th>Gateway</th><th>Provider</th><th>Up</th><th>Connected</th><th>State</th>
<th>Last poll</th><th>Last success</th><th>Polls</th><th>Last error</th><th></th></tr></thead>
<tbody>
{rows}</tbody></table>
{pushes}
{accounts}
</body></html>
"#,
        count = gateways.len(),
        version = env!("CARGO_PKG_VERSION"),
        accounts = accounts_html(&accounts),
    )
}

/// The gateways that receive pushes and the Meta apps: events accepted and refused, and the age
/// of the latest, with nothing of the events themselves.
fn pushes_html(ex: &Exporter, now: SystemTime) -> String {
    let mut rows = String::new();
    for gw in ex.gateways().iter() {
        let Some((events, rejected, last)) = gw
            .flow
            .read(|f| (f.events_total(), f.rejected_total(), f.last_event()))
        else {
            continue;
        };
        let last = last.map(|t| std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t));
        let _ = writeln!(
            rows,
            "<tr><td data-label=\"Gateway\">{}</td><td data-label=\"Events\">{events}</td><td data-label=\"Rejected\">{rejected}</td><td data-label=\"Last event\">{}</td></tr>",
            escape(gw.name()),
            ago(last, now)
        );
    }
    for (app, events, rejected) in ex.receiver.summary() {
        let _ = writeln!(
            rows,
            "<tr><td data-label=\"Gateway\">Meta app {} (not routed to a gateway)</td><td data-label=\"Events\">{events}</td><td data-label=\"Rejected\">{rejected}</td><td data-label=\"Last event\"></td></tr>",
            escape(&app)
        );
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "<h2>Pushes</h2>\n<table id=\"pushes\"><thead><tr><th>Gateway</th><th>Events</th><th>Rejected</th><th>Last event</th></tr></thead><tbody>\n{rows}</tbody></table>"
    )
}

/// Every number, the worst first: the configured ones, then each server's instances under it.
fn numbers_html(ex: &Exporter, now: SystemTime) -> String {
    let mut rows = String::new();
    let mut counts = [0usize; NumberState::COUNT];
    let mut own: Vec<NumberView> = Vec::new();
    let mut servers: Vec<(String, Vec<NumberView>)> = Vec::new();
    for gw in ex.gateways().iter() {
        let views = gw.number_views();
        for v in &views {
            counts[v.state.index()] += 1;
        }
        if gw.config.settings.discovers() {
            servers.push((gw.name().to_string(), views));
        } else {
            own.extend(views);
        }
    }
    let worst_first = |a: &NumberView, b: &NumberView| {
        b.state
            .severity()
            .cmp(&a.state.severity())
            .then_with(|| a.gateway.cmp(&b.gateway))
    };
    own.sort_by(worst_first);
    for v in &own {
        number_row(&mut rows, v, now);
    }
    for (server, mut views) in servers {
        views.sort_by(worst_first);
        let working = views
            .iter()
            .filter(|v| v.state == NumberState::Working)
            .count();
        let _ = writeln!(
            rows,
            "<tr class=\"server\"><td colspan=\"6\">server {} &middot; {} instance(s), {working} working</td></tr>",
            escape(&server),
            views.len()
        );
        for v in &views {
            number_row(&mut rows, v, now);
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    let mut summary = String::new();
    for s in NumberState::ALL.iter().rev() {
        let n = counts[s.index()];
        if n > 0 {
            let _ = write!(
                summary,
                "<span class=\"st {}\">{n} {}</span>",
                s.as_str(),
                s.words()
            );
        }
    }
    format!(
        "<h2>Numbers: is each one working?</h2>\n<p class=\"counts\">{summary}</p>\n<table id=\"numbers\"><thead><tr><th>Number</th><th>State</th><th>Problems</th><th>Last event</th><th>Delivered (1 h)</th><th>Unacknowledged</th></tr></thead><tbody>\n{rows}</tbody></table>"
    )
}

fn number_row(rows: &mut String, v: &NumberView, now: SystemTime) {
    let problems: Vec<&str> = v.problems.iter().map(|p| p.words()).collect();
    let (last, delivered, unacked) = match &v.pushes {
        Some(p) => (
            ago(p.last_event.map(unix_time), now),
            p.delivered_last_hour.to_string(),
            p.unacknowledged.to_string(),
        ),
        None => ("no pushes".into(), String::new(), String::new()),
    };
    let _ = writeln!(
        rows,
        "<tr><td data-label=\"Number\">{}</td><td data-label=\"State\" class=\"st {}\">{}</td>\
         <td data-label=\"Problems\">{}</td><td data-label=\"Last event\">{last}</td>\
         <td data-label=\"Delivered (1 h)\">{delivered}</td><td data-label=\"Unacknowledged\">{unacked}</td></tr>",
        escape(&v.gateway),
        v.state.as_str(),
        v.state.words(),
        escape(&problems.join("; ")),
    );
}

/// Each canary's latest run: how it ended and when.
fn canaries_html(ex: &Exporter, now: SystemTime) -> String {
    let list = ex.canaries.list();
    if list.is_empty() {
        return String::new();
    }
    let mut rows = String::new();
    for c in list.iter() {
        let (result, when) = match c.last_result() {
            Some((r, at)) => (r.as_str(), ago(Some(unix_time(at)), now)),
            None => ("no run yet", String::new()),
        };
        let class = match result {
            "delivered" => "working",
            "no run yet" => "unknown",
            _ => "disconnected",
        };
        let _ = writeln!(
            rows,
            "<tr><td data-label=\"Canary\">{}</td><td data-label=\"From → to\">{} → {}</td><td data-label=\"Last run\" class=\"st {class}\">{result}</td><td data-label=\"When\">{when}</td></tr>",
            escape(&c.config.name),
            escape(&c.config.from),
            escape(&c.config.to),
        );
    }
    format!(
        "<h2>Canaries</h2>\n<table id=\"canaries\"><thead><tr><th>Canary</th><th>From → to</th><th>Last run</th><th>When</th></tr></thead><tbody>\n{rows}</tbody></table>"
    )
}

fn unix_time(t: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(t.max(0.0))
}

fn accounts_html(accounts: &[(String, u64, u64)]) -> String {
    if accounts.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "<h2>PlugChat webhooks</h2>\n<table id=\"webhooks\"><thead><tr><th>Account</th><th>Accepted</th><th>Rejected</th></tr></thead><tbody>\n",
    );
    for (name, ok, bad) in accounts {
        let _ = writeln!(
            s,
            "<tr><td data-label=\"Account\">{}</td><td data-label=\"Accepted\">{ok}</td><td data-label=\"Rejected\">{bad}</td></tr>",
            escape(name)
        );
    }
    s.push_str("</tbody></table>");
    s
}

fn ago(t: Option<SystemTime>, now: SystemTime) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let secs = now.duration_since(t).map(|d| d.as_secs()).unwrap_or(0);
            format!("{}s ago", secs)
        }
    }
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The `href` of a gateway's or a discovered instance's probe: the name percent-encoded (spaces,
/// accents, `&`, `/`), then HTML-escaped for the attribute.
pub(crate) fn probe_link(name: &str) -> String {
    let target: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
    escape(&format!("probe?target={target}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_they_are_make_links_that_probe_them() {
        let name = "evo/Loja \"Sul\" & São <1>";
        let link = probe_link(name);
        assert_eq!(
            link,
            "probe?target=evo%2FLoja+%22Sul%22+%26+S%C3%A3o+%3C1%3E"
        );
        let query = link.trim_start_matches("probe?");
        let target = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "target")
            .map(|(_, v)| v.into_owned());
        assert_eq!(target.as_deref(), Some(name));
        assert_eq!(escape(name), "evo/Loja &quot;Sul&quot; &amp; São &lt;1&gt;");
    }
}
