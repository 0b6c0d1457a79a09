//! The exporter with its HTTP server, started and stopped as one: what `main` runs and what the
//! black-box tests start on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::demo;
use crate::exporter::{ConfigSource, Exporter, Polling, StartupError, SHUTDOWN_GRACE};
use crate::server;
use crate::web_config;

/// What `run` needs besides the shutdown signal.
pub struct RunOptions {
    pub config: ConfigSource,
    pub listen: String,
    pub demo: bool,
    pub web_config: Option<PathBuf>,
    pub polling: Polling,
}

/// A started exporter with its HTTP server, for `main` and for tests.
pub struct Running {
    pub addr: SocketAddr,
    pub exporter: Arc<Exporter>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops polls, consumers and the server together, within [`SHUTDOWN_GRACE`].
    pub async fn shutdown(self) {
        self.stop.cancel();
        let both = async { tokio::join!(self.exporter.shutdown(), self.server) };
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, both).await;
    }
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
    let addr = listen_addr(&opts.listen);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| StartupError::Listen {
            addr: opts.listen.clone(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| StartupError::Other(format!("listener: {e}")))?;
    let exporter = Exporter::start(opts.config, opts.polling, stop.clone())?;
    let server = tokio::spawn(server::serve(
        listener,
        exporter.clone(),
        Arc::new(web),
        stop.clone(),
    ));
    if opts.demo {
        demo::spawn_plugchat(local, &exporter, stop.clone());
    }
    tracing::info!(address = %local, gateways = exporter.gateways().len(), "listening");
    Ok(Running {
        addr: local,
        exporter,
        stop,
        server,
    })
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
