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
