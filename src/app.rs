//! The exporter with its HTTP server, started and stopped as one: what `main` runs and what the
//! black-box tests start on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::canary;
use crate::demo;
use crate::exporter::{ConfigSource, Exporter, Polling, StartupError, SHUTDOWN_GRACE};
use crate::server;
use crate::web_config;

/// What `run` needs besides the shutdown signal.
pub struct RunOptions {
    pub config: ConfigSource,
    /// Every address to listen on (`--web.listen-address`, repeatable); at least one.
    pub listen: Vec<String>,
    pub demo: bool,
    pub web_config: Option<PathBuf>,
    pub polling: Polling,
    pub endpoints: server::Endpoints,
    /// `--storage.path`: where the canaries' day counts outlive the process.
    pub storage: Option<PathBuf>,
}

/// A started exporter with its HTTP server, for `main` and for tests.
pub struct Running {
    /// The first listener's address (the one tests talk to).
    pub addr: SocketAddr,
    pub addrs: Vec<SocketAddr>,
    pub exporter: Arc<Exporter>,
    stop: CancellationToken,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops polls, consumers and the servers together, within [`SHUTDOWN_GRACE`].
    pub async fn shutdown(self) {
        self.stop.cancel();
        let servers = futures_join_all(self.servers);
        let both = async { tokio::join!(self.exporter.shutdown(), servers) };
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, both).await;
    }
}

async fn futures_join_all(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

/// Binds every address before anything starts, so that a taken port is told at once.
async fn bind_all(
    addrs: &[String],
) -> Result<Vec<(tokio::net::TcpListener, SocketAddr)>, StartupError> {
    if addrs.is_empty() {
        return Err(StartupError::Other(
            "no --web.listen-address given".to_string(),
        ));
    }
    let mut bound = Vec::with_capacity(addrs.len());
    for a in addrs {
        let listener = tokio::net::TcpListener::bind(listen_addr(a))
            .await
            .map_err(|source| StartupError::Listen {
                addr: a.clone(),
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|e| StartupError::Other(format!("listener: {e}")))?;
        bound.push((listener, local));
    }
    Ok(bound)
}

/// Loads the configuration, binds the listener and starts everything.
pub async fn start(opts: RunOptions) -> Result<Running, StartupError> {
    crate::tls::install_crypto_provider();
    let web = match &opts.web_config {
        Some(p) => web_config::load(p)
            .map_err(|e| StartupError::Other(format!("--web.config.file: {e}")))?,
        None => web_config::WebConfig::default(),
    };
    let stop = CancellationToken::new();
    let bound = bind_all(&opts.listen).await?;
    let addrs: Vec<SocketAddr> = bound.iter().map(|(_, a)| *a).collect();
    let exporter = Exporter::start(
        opts.config,
        opts.polling,
        canary_runs(opts.storage.as_deref(), opts.demo)?,
        stop.clone(),
    )?;
    let (web, endpoints) = (Arc::new(web), Arc::new(opts.endpoints));
    let servers = bound
        .into_iter()
        .map(|(listener, local)| {
            tracing::info!(address = %local, gateways = exporter.gateways().len(), "listening");
            tokio::spawn(server::serve(
                listener,
                exporter.clone(),
                web.clone(),
                endpoints.clone(),
                stop.clone(),
            ))
        })
        .collect();
    // `bind_all` refuses an empty list, so there is a first address.
    let addr = addrs[0];
    if opts.demo {
        demo::spawn_plugchat(addr, &exporter, stop.clone());
    }
    Ok(Running {
        addr,
        addrs,
        exporter,
        stop,
        servers,
    })
}

/// Where the canaries count their runs of the day: the state directory; else, in the demo, a
/// fresh count (its gateways are simulated and start with the process, so nothing ran before and
/// its canaries may run soon); else a count that does not know the runs before this process.
fn canary_runs(
    storage: Option<&std::path::Path>,
    demo: bool,
) -> Result<canary::Ledger, StartupError> {
    match storage {
        Some(dir) => canary::Ledger::open(dir, canary::utc_day(std::time::SystemTime::now()))
            .map_err(StartupError::Other),
        None if demo => Ok(canary::Ledger::fresh()),
        None => Ok(canary::Ledger::unknown()),
    }
}

/// Runs until `shutdown` completes; SIGHUP reloads the configuration.
pub async fn run(opts: RunOptions, shutdown: impl Future<Output = ()>) -> Result<(), StartupError> {
    let running = start(opts).await?;
    let hup = reload_on_sighup(running.exporter.clone());
    shutdown.await;
    tracing::info!("shutting down");
    hup.abort();
    running.shutdown().await;
    Ok(())
}

fn reload_on_sighup(exporter: Arc<Exporter>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; use POST /-/reload");
                return;
            };
            while hup.recv().await.is_some() {
                let _ = exporter.reload().await;
            }
        }
        #[cfg(not(unix))]
        drop(exporter);
    })
}

/// `:10070` (Go style) listens on every interface.
pub fn listen_addr(s: &str) -> String {
    match s.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => s.to_string(),
    }
}
