//! Logging with `tracing`, as logfmt (the Prometheus default) or JSON, to standard error.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
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
    let registry = tracing_subscriber::registry().with(targets);
    let result = match format {
        Format::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .with_span_name(false)
                    .with_span_path(false)
                    .layer()
                    .with_writer(writer),
            )
            .try_init(),
        Format::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(writer))
            .try_init(),
    };
    result.map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
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
