//! `whatsapp_exporter`: a Prometheus exporter for the health of WhatsApp gateway APIs.
//!
//! Layout:
//! - `main.rs`: the command line, logging, and the shutdown signal; everything else is here.
//! - [`cli`]: flags and subcommands.
//! - [`config`]: the YAML file, validated strictly; errors name the gateway and key.
//! - [`sources`]: one module per provider (PlugzAPI/Z-API, WhatsApp Business API, Green API,
//!   Cloud API), each a pure `parse` over its own response types plus one `poll`;
//!   [`sources::Provider`] is the single list of providers.
//! - [`gateway`]: a configured gateway at run time: state, counters and rendered series.
//! - [`scheduler`]: one task per gateway, on its own interval, with jitter and a concurrency cap.
//! - [`exposition`]: the text format for gateway series, rendered once per change.
//! - [`metrics`]: the exporter's own registry and the `/metrics` rendering.
//! - [`webhooks`]: the PlugChat webhook receiver and the command that registers it.
//! - [`server`] and [`status_page`]: the HTTP endpoints; [`web_config`]: their TLS and basic auth.
//! - [`shard`]: which replica polls which gateway (`--shard i/n`).
//! - [`demo`]: simulated gateways for `--demo`.
//! - [`http`]: the shared HTTP client and capped reads; [`secret`]: values that never print.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod cli;
pub mod config;
pub mod demo;
pub mod error;
pub mod exposition;
pub mod gateway;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod shard;
pub mod sources;
pub mod status_page;
pub mod web_config;
pub mod webhooks;

use config::Config;
use gateway::Gateway;

/// How long shutdown waits for tasks before it gives up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(800);

/// rustls needs one process-wide crypto provider; installing it twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    /// A configuration built in the process (`--demo`); reloading applies it again.
    Fixed(Box<Config>),
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, config::ConfigError> {
        match self {
            ConfigSource::File(p) => config::load(p),
            ConfigSource::Fixed(c) => Ok((**c).clone()),
        }
    }
}

/// A failure to start, told so that the user knows what to change.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid configuration:\n{0}")]
    Config(#[from] config::ConfigError),
    #[error("cannot listen on {addr}: {source} (pick another --web.listen-address)")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// The running exporter: gateways, their tasks, webhook receivers and metrics.
pub struct Exporter {
    source: ConfigSource,
    clients: http::Clients,
    pub metrics: metrics::Metrics,
    gateways: RwLock<Arc<Vec<Arc<Gateway>>>>,
    /// The stop token of each gateway's tasks, by name.
    running: Mutex<std::collections::HashMap<String, CancellationToken>>,
    limit: Arc<Semaphore>,
    limit_size: Mutex<usize>,
    tracker: TaskTracker,
    stop: CancellationToken,
    pub plugchat: webhooks::plugchat::Receiver,
    reloading: tokio::sync::Mutex<()>,
    polling: Polling,
}

/// Which gateways this process polls, and whether it polls them on its own schedule.
#[derive(Debug, Clone, Copy, Default)]
pub struct Polling {
    /// Only the gateways of this shard are polled and exported.
    pub shard: Option<shard::Shard>,
    /// Off when Prometheus schedules the polls through `/probe` alone.
    pub no_background: bool,
}

impl Exporter {
    /// Loads the configuration and starts polling; `stop` ends every task.
    pub fn start(
        source: ConfigSource,
        polling: Polling,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, StartupError> {
        let cfg = source.load()?;
        let metrics =
            metrics::Metrics::new().map_err(|e| StartupError::Other(format!("metrics: {e}")))?;
        let plugchat = webhooks::plugchat::Receiver::new(&metrics.registry)
            .map_err(|e| StartupError::Other(format!("metrics: {e}")))?;
        let exporter = Arc::new(Exporter {
            source,
            clients: http::Clients::new().map_err(StartupError::Other)?,
            metrics,
            gateways: RwLock::new(Arc::new(Vec::new())),
            running: Mutex::new(Default::default()),
            limit: Arc::new(Semaphore::new(cfg.global.max_concurrent_polls)),
            limit_size: Mutex::new(cfg.global.max_concurrent_polls),
            tracker: TaskTracker::new(),
            stop,
            plugchat,
            reloading: tokio::sync::Mutex::new(()),
            polling,
        });
        exporter
            .apply(cfg)
            .map_err(|e| StartupError::Config(config::ConfigError(vec![e])))?;
        Ok(exporter)
    }

    /// The gateways, sorted by name.
    pub fn gateways(&self) -> Arc<Vec<Arc<Gateway>>> {
        self.gateways
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn gateway(&self, name: &str) -> Option<Arc<Gateway>> {
        let all = self.gateways();
        all.binary_search_by(|g| g.name().cmp(name))
            .ok()
            .map(|i| all[i].clone())
    }

    /// Reads the configuration again and applies it; on error the running one stays.
    pub async fn reload(&self) -> Result<(), String> {
        let _one_at_a_time = self.reloading.lock().await;
        let result = self
            .source
            .load()
            .map_err(|e| e.to_string())
            .and_then(|cfg| self.apply(cfg));
        match &result {
            Ok(()) => tracing::info!(gateways = self.gateways().len(), "configuration reloaded"),
            Err(e) => {
                self.metrics.reload_successful.set(0);
                tracing::error!(error = %e, "configuration reload refused; the running configuration stays");
            }
        }
        result
    }

    /// Applies a configuration: unchanged gateways keep their state and task, changed ones start
    /// afresh, removed ones stop and their series go.
    fn apply(&self, cfg: Config) -> Result<(), String> {
        let Plan { next, started } = self.plan(cfg.gateways)?;
        self.plugchat.configure(&cfg.plugchat);
        self.resize_limit(cfg.global.max_concurrent_polls);
        self.restart_tasks(&next, started);
        *self.gateways.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        self.metrics.reload_successful.set(1);
        self.metrics
            .reload_success_timestamp
            .set(gateway::unix_seconds(SystemTime::now()));
        Ok(())
    }

    /// The gateways of a new configuration, sorted by name, and those among them that are new or
    /// changed; nothing is touched yet, so a gateway that cannot be built refuses the whole file.
    fn plan(&self, configs: Vec<config::GatewayConfig>) -> Result<Plan, String> {
        let old = self.gateways();
        let shard = self.polling.shard;
        let mut next = Vec::with_capacity(configs.len());
        let mut started = Vec::new();
        for gc in configs
            .into_iter()
            .filter(|g| shard.is_none_or(|s| s.owns(&g.name)))
        {
            // `old` is sorted by name: no quadratic search at 10,000 gateways.
            let same = old
                .binary_search_by(|g| g.name().cmp(&gc.name))
                .ok()
                .map(|i| &old[i])
                .filter(|g| g.config == gc);
            match same {
                Some(same) => next.push(same.clone()),
                None => {
                    let source = sources::Source::new(&gc, &self.clients)
                        .map_err(|e| format!("gateways ({}): {e}", gc.name))?;
                    let gw = Gateway::new(gc, source);
                    started.push(gw.clone());
                    next.push(gw);
                }
            }
        }
        next.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(Plan { next, started })
    }

    /// Stops the tasks of removed and changed gateways and starts those of `started`.
    fn restart_tasks(&self, next: &[Arc<Gateway>], started: Vec<Arc<Gateway>>) {
        let keep: std::collections::HashSet<&str> = next.iter().map(|g| g.name()).collect();
        let fresh: std::collections::HashSet<&str> = started.iter().map(|g| g.name()).collect();
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|name, stop| {
            let stays = keep.contains(name.as_str()) && !fresh.contains(name.as_str());
            if !stays {
                stop.cancel();
            }
            stays
        });
        for gw in &started {
            let stop = self.stop.child_token();
            running.insert(gw.name().to_string(), stop.clone());
            self.spawn_tasks(gw, stop);
        }
    }

    /// A gateway's poll schedule, and its Green API queue consumer when it has one.
    fn spawn_tasks(&self, gw: &Arc<Gateway>, stop: CancellationToken) {
        if !self.polling.no_background {
            let schedule = scheduler::run_gateway(gw.clone(), self.limit.clone(), stop.clone());
            self.tracker.spawn(schedule);
        }
        if let sources::Source::GreenApi(s) = &gw.source {
            if s.consumes_queue() {
                self.tracker
                    .spawn(sources::greenapi::consume(gw.clone(), stop));
            }
        }
    }

    fn resize_limit(&self, want: usize) {
        let mut have = self.limit_size.lock().unwrap_or_else(|p| p.into_inner());
        if want > *have {
            self.limit.add_permits(want - *have);
        } else if want < *have {
            // Permits held by polls in flight come back later; forget what is free now and the
            // rest shrinks on the next reload at the latest.
            let gone = self.limit.forget_permits(*have - want);
            *have -= gone;
            return;
        }
        *have = want;
    }

    /// Stops every task and waits for them, but no longer than [`SHUTDOWN_GRACE`].
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop in time");
        }
    }

    /// Renders `/metrics`, compressed when `gzip` is set.
    pub fn render_metrics(&self, gzip: bool) -> Vec<u8> {
        let fragments: Vec<_> = self.gateways().iter().map(|g| g.fragment()).collect();
        self.metrics.render(&fragments, gzip)
    }
}

/// The gateways a configuration asks for, and those of them that need new tasks.
struct Plan {
    next: Vec<Arc<Gateway>>,
    started: Vec<Arc<Gateway>>,
}

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
    install_crypto_provider();
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
