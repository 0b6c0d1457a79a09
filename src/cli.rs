//! The command line, in the style of the Prometheus exporters (`--config.file`, `--web.listen-address`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::logging::{Format, Level};

#[derive(Debug, Parser)]
#[command(
    name = "whatsapp_exporter",
    disable_version_flag = true,
    about = "Prometheus exporter for WhatsApp gateway APIs: PlugzAPI, Z-API, WhatsApp Business API, Green API, Cloud API, and PlugChat webhooks.",
    after_help = "Exit codes: 0 success; 1 invalid configuration or failed command; 2 bad command line.\nTry it with no account: whatsapp_exporter --demo, then open http://localhost:10070/"
)]
pub struct Cli {
    /// The configuration file (YAML).
    #[arg(
        long = "config.file",
        value_name = "PATH",
        default_value = "whatsapp_exporter.yml",
        global = true
    )]
    pub config_file: PathBuf,

    /// Validate the configuration, print what is wrong, and exit 0 (valid) or 1.
    #[arg(long = "config.check")]
    pub config_check: bool,

    /// Where HTTP is served (":10070" listens on every interface); repeat it to listen on several.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        default_value = ":10070",
        action = clap::ArgAction::Append
    )]
    pub listen_address: Vec<String>,

    /// The path under which the metrics are served.
    #[arg(
        long = "web.telemetry-path",
        value_name = "PATH",
        default_value = "/metrics",
        value_parser = telemetry_path
    )]
    pub telemetry_path: String,

    /// Scrapes of the telemetry path (and probes) served at once; more are answered 503 at once,
    /// so a scrape storm cannot pile up renders. 0 means no limit.
    #[arg(long = "web.max-requests", value_name = "N", default_value_t = 40)]
    pub max_requests: usize,

    /// A directory for state that outlives the process: the canaries' runs of the current UTC day,
    /// so that daily_cap holds across restarts. Without it, a canary's first run waits a full
    /// interval after the start.
    #[arg(long = "storage.path", value_name = "DIR")]
    pub storage_path: Option<PathBuf>,

    /// With --config.check: check the file alone, without reading the secret files and
    /// environment variables it names (for linting a configuration in CI).
    #[arg(long = "config.no-secrets", requires = "config_check")]
    pub config_no_secrets: bool,

    /// Print the version and build information, and exit.
    #[arg(long = "version")]
    pub version: bool,

    /// TLS and basic auth for every endpoint, in the exporter-toolkit web-config.yml format.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,

    /// Poll only this replica's share of the gateways, i/n with 0 <= i < n: exactly the gateways
    /// that Prometheus's hashmod relabelling with modulus n over the gateway name sends to shard i.
    #[arg(long = "shard", value_name = "I/N")]
    pub shard: Option<crate::shard::Shard>,

    /// Do not poll in the background: gateways are polled only through /probe, when Prometheus
    /// scrapes it (the multi-target pattern).
    #[arg(long = "no-background-polling")]
    pub no_background_polling: bool,

    /// Run against built-in simulated gateways; needs no configuration and no network.
    #[arg(long)]
    pub demo: bool,

    /// Log level.
    #[arg(long = "log.level", value_enum, default_value = "info", global = true)]
    pub log_level: Level,

    /// Log format.
    #[arg(
        long = "log.format",
        value_enum,
        default_value = "logfmt",
        global = true
    )]
    pub log_format: Format,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The version and build as Prometheus binaries print them.
pub fn version_text() -> String {
    format!(
        "whatsapp_exporter, version {} (branch: {}, revision: {})\n  build user:       {}\n  build date:       {}\n  rust version:     {}\n  platform:         {}/{}\n",
        env!("CARGO_PKG_VERSION"),
        env!("WHATSAPP_EXPORTER_BRANCH"),
        env!("WHATSAPP_EXPORTER_REVISION"),
        env!("WHATSAPP_EXPORTER_BUILD_USER"),
        env!("WHATSAPP_EXPORTER_BUILD_DATE"),
        env!("WHATSAPP_EXPORTER_RUSTC"),
        std::env::consts::OS,
        std::env::consts::ARCH,
    )
}

/// A telemetry path is an absolute path that other endpoints do not use.
fn telemetry_path(s: &str) -> Result<String, String> {
    let taken = ["/", "/probe", "/sd", "/-/healthy", "/-/ready", "/-/reload"];
    if !s.starts_with('/') || s.contains(['?', '#']) {
        return Err("must be an absolute path such as /metrics".into());
    }
    if taken.contains(&s) || s.starts_with("/webhooks/") {
        return Err(format!("{s} is another endpoint of the exporter"));
    }
    Ok(s.to_string())
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Point all seven PlugChat webhooks of an account at this exporter.
    PlugchatRegister(crate::webhooks::register::Args),
    /// Point a gateway's webhooks (Z-API, PlugzAPI, Green API) at this exporter, or print what
    /// to set in a Meta app (Cloud API).
    WebhooksRegister(crate::webhooks::gateways::Args),
    /// Print the routing (nginx, or Kubernetes Services and Ingress) that sends each gateway's
    /// webhooks to the replica that --shard i/N makes its owner.
    WebhooksRoutes(crate::webhooks::routes::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to standard output.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}
