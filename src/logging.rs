//! Logging with `tracing` to standard error, in the shape Prometheus exporters log: logfmt (the
//! default) or JSON, each line `ts`, `level`, `caller`, `msg`, then the event's own fields.
//!
//! ```text
//! ts=2026-12-01T12:00:00.123Z level=warn caller=gateway.rs:118 msg="poll failed" gateway=sales reason=timeout
//! ```

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Logfmt,
    Json,
}

/// Installs the global subscriber; `writer` is standard error in the binary and a buffer in tests.
pub fn init<W>(level: Level, format: Format, writer: W) -> Result<(), String>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::filter::LevelFilter::from_level(match level {
        Level::Debug => tracing::Level::DEBUG,
        Level::Info => tracing::Level::INFO,
        Level::Warn => tracing::Level::WARN,
        Level::Error => tracing::Level::ERROR,
    });
    // Our crate logs at the chosen level; the libraries below us only from warn up, as their
    // debug lines carry request URLs, and URLs carry tokens.
    let targets = tracing_subscriber::filter::Targets::new()
        .with_default(filter.min(tracing_subscriber::filter::LevelFilter::WARN))
        .with_target("whatsapp_exporter", filter);
    tracing_subscriber::registry()
        .with(targets)
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(Line(format))
                .with_writer(writer),
        )
        .try_init()
        .map_err(|e| e.to_string())
}

/// One event as one line.
struct Line(Format);

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut out: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let caller = match (meta.file(), meta.line()) {
            (Some(f), Some(l)) => format!("{}:{l}", f.strip_prefix("src/").unwrap_or(f)),
            _ => meta.target().to_string(),
        };
        let head = [
            ("ts", timestamp()),
            ("level", meta.level().as_str().to_ascii_lowercase()),
            ("caller", caller),
            ("msg", fields.message.unwrap_or_default()),
        ];
        let all = head
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(fields.others.iter().map(|(k, v)| (*k, v.as_str())));
        let mut line = String::with_capacity(160);
        match self.0 {
            Format::Logfmt => logfmt(&mut line, all),
            Format::Json => json(&mut line, all),
        }
        writeln!(out, "{line}")
    }
}

/// RFC 3339 in UTC with milliseconds, as Prometheus logs it.
fn timestamp() -> String {
    use time::macros::format_description;
    let f =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::now_utc()
        .format(&f)
        .unwrap_or_default()
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    others: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = Some(value),
            name => self.others.push((name, value)),
        }
    }
}

fn logfmt<'a>(out: &mut String, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(k);
        out.push('=');
        let plain = !v.is_empty()
            && v.chars()
                .all(|c| c > ' ' && c != '"' && c != '=' && c != '\\' && !c.is_control());
        if plain {
            out.push_str(v);
        } else {
            quote(out, v);
        }
    }
}

fn json<'a>(out: &mut String, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    out.push('{');
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        quote(out, k);
        out.push(':');
        quote(out, v);
    }
    out.push('}');
}

/// A double-quoted string, escaped so that a value can never start a new line or field.
fn quote(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quotes_what_would_break_a_line() {
        let mut s = String::new();
        logfmt(
            &mut s,
            [
                ("msg", "poll failed"),
                ("gateway", "sales"),
                ("error", "a=\"b\"\nlevel=error"),
                ("empty", ""),
            ]
            .into_iter(),
        );
        assert_eq!(
            s,
            r#"msg="poll failed" gateway=sales error="a=\"b\"\nlevel=error" empty="""#
        );
    }

    #[test]
    fn json_lines_are_json() {
        let mut s = String::new();
        json(&mut s, [("msg", "x\"y"), ("n", "1\u{7}")].into_iter());
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["msg"], "x\"y");
        assert_eq!(v["n"], "1\u{7}");
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let ts = timestamp();
        assert_eq!(ts.len(), "2026-12-01T12:00:00.123Z".len(), "{ts}");
        assert!(ts.ends_with('Z'));
    }
}

/// Lines dropped by [`Limiter`]s since the start (`whatsapp_exporter_log_lines_dropped_total`).
static DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn lines_dropped() -> u64 {
    DROPPED.load(std::sync::atomic::Ordering::Relaxed)
}

/// A token bucket for one log call site that a sender can make repeat at will (a refused
/// webhook, a failed accept): [`Limiter::BURST`] lines at once, then one a second; the rest are
/// dropped and counted, and the next line written says how many of its kind were dropped.
pub struct Limiter {
    state: std::sync::Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    last: Option<std::time::Instant>,
    dropped: u64,
}

impl Limiter {
    pub const BURST: f64 = 10.0;
    pub const PER_SECOND: f64 = 1.0;

    pub const fn new() -> Self {
        Limiter {
            state: std::sync::Mutex::new(Bucket {
                tokens: Self::BURST,
                last: None,
                dropped: 0,
            }),
        }
    }

    /// `Some(dropped)` when a line may be written (`dropped`: lines of this site dropped since
    /// the last one written), `None` when this one is dropped.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(std::time::Instant::now())
    }

    fn allow_at(&self, now: std::time::Instant) -> Option<u64> {
        let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = b.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * Self::PER_SECOND;
            b.tokens = (b.tokens + refill).min(Self::BURST);
        }
        b.last = Some(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Some(std::mem::take(&mut b.dropped))
        } else {
            b.dropped += 1;
            DROPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            None
        }
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new()
    }
}

/// `tracing::warn!` through a [`Limiter`] of its own call site; the line written carries
/// `suppressed`, the count of lines of this site dropped before it.
macro_rules! warn_limited {
    ($($arg:tt)+) => {{
        static LIMITER: $crate::logging::Limiter = $crate::logging::Limiter::new();
        if let Some(suppressed) = LIMITER.allow() {
            tracing::warn!(suppressed, $($arg)+);
        }
    }};
}

pub(crate) use warn_limited;

/// `tracing::debug!` through a [`Limiter`] of its own call site, as [`warn_limited!`]; while
/// debug lines are off, nothing is spent or counted as dropped.
macro_rules! debug_limited {
    ($($arg:tt)+) => {{
        static LIMITER: $crate::logging::Limiter = $crate::logging::Limiter::new();
        if tracing::enabled!(tracing::Level::DEBUG) {
            if let Some(suppressed) = LIMITER.allow() {
                tracing::debug!(suppressed, $($arg)+);
            }
        }
    }};
}

pub(crate) use debug_limited;

#[cfg(test)]
mod limiter_tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_call_site_writes_a_burst_then_one_a_second_and_counts_the_rest() {
        let l = Limiter::new();
        let t0 = Instant::now();
        let before = lines_dropped();
        let written = (0..100).filter(|_| l.allow_at(t0).is_some()).count();
        assert_eq!(written, Limiter::BURST as usize);
        assert!(lines_dropped() - before >= 90);
        // A second later, one more line, telling of the 90 dropped.
        assert_eq!(l.allow_at(t0 + Duration::from_secs(1)), Some(90));
        assert_eq!(l.allow_at(t0 + Duration::from_secs(1)), None);
        // Quiet for a while: the burst is back, with nothing dropped to tell but that one.
        assert_eq!(l.allow_at(t0 + Duration::from_secs(60)), Some(1));
        assert_eq!(l.allow_at(t0 + Duration::from_secs(60)), Some(0));
    }
}
