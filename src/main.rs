//! The binary: command line, logging and the shutdown signal. Everything else is in the library.

use std::process::ExitCode;

use clap::Parser;
use whatsapp_exporter::cli::{Cli, Command};
use whatsapp_exporter::server::Endpoints;
use whatsapp_exporter::{config, demo, logging, webhooks, ConfigSource, Polling, RunOptions};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        print!("{}", whatsapp_exporter::cli::version_text());
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Completions { shell }) = cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut cmd, "whatsapp_exporter", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = logging::init(cli.log_level, cli.log_format, std::io::stderr) {
        eprintln!("cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    if cli.config_check {
        return check_config(&cli.config_file, cli.config_no_secrets);
    }
    // A flood of connections must meet the server's own cap, not EMFILE at 1,024 files.
    let files = whatsapp_exporter::fdlimit::raise();
    tracing::debug!(limit = ?files, "open files");
    // One thread runs everything: polls are waits on I/O, and a single thread spares the
    // cross-thread wake-ups and allocator contention that measured as a third of the CPU per poll
    // with two (benches/compare.py). Rendering a large /metrics goes to the blocking pool.
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|runtime| runtime.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whatsapp_exporter: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--config.check`: every problem of the file, and an exit code for scripts; with
/// `--config.no-secrets` the secrets it names are not read (CI has none of them).
fn check_config(path: &std::path::Path, no_secrets: bool) -> ExitCode {
    let loaded = if no_secrets {
        config::load_without_secrets(path)
    } else {
        config::load(path)
    };
    match loaded {
        Ok(cfg) => {
            let (g, p) = (cfg.gateways.len(), cfg.plugchat.len());
            println!(
                "{}: valid, {g} gateway(s), {p} PlugChat account(s)",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: invalid configuration:\n{e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// The register command, or the exporter until SIGINT/SIGTERM.
async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Some(Command::PlugchatRegister(args)) => {
            return webhooks::register::run(&cli.config_file, args).await
        }
        Some(Command::WebhooksRegister(args)) => {
            return webhooks::gateways::run(&cli.config_file, args).await
        }
        Some(Command::WebhooksRoutes(args)) => {
            return webhooks::routes::run(&cli.config_file, args)
        }
        _ => {}
    }
    let config = if cli.demo {
        let demo = demo::start().await;
        demo.map_err(|e| format!("cannot start the demo gateways: {e}"))?
    } else {
        ConfigSource::File(cli.config_file.clone())
    };
    let opts = RunOptions {
        config,
        listen: cli.listen_address,
        endpoints: Endpoints::new(cli.telemetry_path, cli.max_requests),
        demo: cli.demo,
        web_config: cli.web_config_file,
        storage: cli.storage_path,
        polling: Polling {
            shard: cli.shard,
            no_background: cli.no_background_polling,
        },
    };
    whatsapp_exporter::run(opts, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
