//! The running exporter: the configured gateways, their poll schedules and queue consumers,
//! the webhook receivers, and the exporter's own metrics; reload applies a new configuration
//! without losing the state of gateways that did not change.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::canary;
use crate::clock::unix_seconds;
use crate::config::{self, Config};
use crate::consumer;
use crate::flow_state::{self, Owner, Tracker};
use crate::gateway::Gateway;
use crate::http;
use crate::metrics;
use crate::providers;
use crate::receiver;
use crate::scheduler;
use crate::shard::Shard;
use crate::sync::{lock, read, write};
use crate::webhooks;

/// How long shutdown waits for tasks before it gives up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(800);

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
    running: Mutex<HashMap<String, CancellationToken>>,
    /// The poll slots (`max_concurrent_polls`), shared by the schedules and `/probe`.
    slots: Arc<scheduler::Slots>,
    tracker: TaskTracker,
    stop: CancellationToken,
    pub plugchat: webhooks::plugchat::Receiver,
    /// Message ids followed from sent to delivered, for every gateway.
    pub messages: Arc<Tracker>,
    /// The webhooks of Z-API, Green API and Cloud API gateways.
    pub receiver: receiver::Receiver,
    /// The delivery canaries whose `from` this replica owns.
    pub canaries: Arc<canary::Registry>,
    reloading: tokio::sync::Mutex<()>,
    /// Reload requests so far, numbered from 1.
    reload_requests: std::sync::atomic::AtomicU64,
    /// The last reload: the highest request number it answers for, and its outcome.
    last_reload: Mutex<(u64, Result<(), String>)>,
    polling: Polling,
    /// `global.number_state` of the configuration in force.
    number_state: Mutex<config::NumberStateConfig>,
}

/// Which gateways this process polls, and whether it polls them on its own schedule.
#[derive(Debug, Clone, Copy, Default)]
pub struct Polling {
    /// Only the gateways of this shard are polled and exported.
    pub shard: Option<Shard>,
    /// Off when Prometheus schedules the polls through `/probe` alone.
    pub no_background: bool,
}

impl Exporter {
    /// Loads the configuration and starts polling; `canary_runs` holds the canaries' day counts,
    /// `stop` ends every task.
    pub fn start(
        source: ConfigSource,
        polling: Polling,
        canary_runs: canary::Ledger,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, StartupError> {
        let cfg = source.load()?;
        let metrics =
            metrics::Metrics::new().map_err(|e| StartupError::Other(format!("metrics: {e}")))?;
        let messages = Arc::new(Tracker::new(limits(&cfg.message_tracking)));
        let (receiver, repolls) = receiver::Receiver::new(messages.clone());
        let plugchat = webhooks::plugchat::Receiver::new(&metrics.registry, messages.clone())
            .map_err(|e| StartupError::Other(format!("metrics: {e}")))?;
        let tracker = TaskTracker::new();
        let canaries = Arc::new(canary::Registry::new(
            tracker.clone(),
            stop.clone(),
            canary_runs,
        ));
        receiver.watch_canaries(canaries.clone());
        let exporter = Arc::new(Exporter {
            source,
            clients: http::Clients::new().map_err(StartupError::Other)?,
            metrics,
            gateways: RwLock::new(Arc::new(Vec::new())),
            running: Mutex::new(Default::default()),
            slots: Arc::new(scheduler::Slots::new(cfg.global.max_concurrent_polls)),
            tracker,
            stop,
            plugchat,
            messages: messages.clone(),
            receiver,
            canaries,
            reloading: tokio::sync::Mutex::new(()),
            reload_requests: std::sync::atomic::AtomicU64::new(0),
            last_reload: Mutex::new((0, Ok(()))),
            polling,
            number_state: Mutex::new(cfg.global.number_state),
        });
        exporter
            .apply(cfg)
            .map_err(|e| StartupError::Config(config::ConfigError(vec![e])))?;
        exporter.tracker.spawn(repoll(
            repolls,
            exporter.slots.clone(),
            exporter.stop.clone(),
            exporter.tracker.clone(),
        ));
        exporter.tracker.spawn(judge_numbers_every(
            Arc::downgrade(&exporter),
            exporter.stop.clone(),
        ));
        Ok(exporter)
    }

    /// The gateways, sorted by name.
    pub fn gateways(&self) -> Arc<Vec<Arc<Gateway>>> {
        read(&self.gateways).clone()
    }

    pub fn gateway(&self, name: &str) -> Option<Arc<Gateway>> {
        let all = self.gateways();
        all.binary_search_by(|g| g.name().cmp(name))
            .ok()
            .map(|i| all[i].clone())
    }

    /// `/probe`: calls the gateway if it is its time (once for any number of concurrent
    /// probes, within a slot, not while it asked to be left alone), all within `budget` (the
    /// gateway's timeout, or less when the scrape has less); its series answer either way.
    pub async fn probe(&self, gw: &Gateway, budget: Duration) -> scheduler::Outcome {
        scheduler::call(gw, &self.slots, scheduler::Trigger::Probe, Some(budget)).await
    }

    /// Reads the configuration again and applies it; on error the running one stays.
    ///
    /// Reloads are coalesced: one runs at a time, and every request that arrived while it ran
    /// is answered by the single next one (which reads the file after they asked), so a storm of
    /// requests costs at most one reload running and one pending. The file is read and parsed
    /// on the blocking pool, never on the runtime thread that runs the polls.
    pub async fn reload(&self) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        let ticket = self.reload_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let _one_at_a_time = self.reloading.lock().await;
        {
            let last = lock(&self.last_reload);
            if last.0 >= ticket {
                return last.1.clone();
            }
        }
        let covers = self.reload_requests.load(Ordering::SeqCst);
        let source = self.source.clone();
        let loaded = tokio::task::spawn_blocking(move || source.load().map_err(|e| e.to_string()))
            .await
            .unwrap_or_else(|e| Err(format!("reading the configuration failed: {e}")));
        let result = loaded.and_then(|cfg| self.apply(cfg));
        match &result {
            Ok(()) => tracing::info!(gateways = self.gateways().len(), "configuration reloaded"),
            Err(e) => {
                self.metrics.reload_successful.set(0);
                tracing::error!(error = %e, "configuration reload refused; the running configuration stays");
            }
        }
        *lock(&self.last_reload) = (covers, result.clone());
        result
    }

    /// Applies a configuration: unchanged gateways keep their state and task, changed ones start
    /// afresh, removed ones stop and their series go.
    fn apply(&self, cfg: Config) -> Result<(), String> {
        canary::check_shard(&cfg.canaries, self.polling.shard)?;
        let Plan { next, started } = self.plan(cfg.gateways)?;
        let own: Vec<&config::GatewayConfig> = next.iter().map(|g| &g.config).collect();
        self.canaries
            .configure(&cfg.canaries, &own, |g| self.clients.get(g.tls()))?;
        self.plugchat.configure(&cfg.plugchat);
        self.messages.set_limits(limits(&cfg.message_tracking));
        let cloud_apps = !cfg.cloudapi_apps.is_empty();
        for gw in &next {
            activate_flow(gw, cloud_apps);
        }
        self.receiver.configure(&next, &cfg.cloudapi_apps);
        self.slots.resize(cfg.global.max_concurrent_polls);
        *lock(&self.number_state) = cfg.global.number_state;
        self.restart_tasks(&next, started);
        *write(&self.gateways) = Arc::new(next);
        self.metrics.reload_successful.set(1);
        self.metrics
            .reload_success_timestamp
            .set(unix_seconds(SystemTime::now()));
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
                    if !self.polling.no_background {
                        providers::interval_too_short(&gc);
                    }
                    let source = providers::Source::new(&gc, &self.clients)
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
        let keep: HashSet<&str> = next.iter().map(|g| g.name()).collect();
        let fresh: HashSet<&str> = started.iter().map(|g| g.name()).collect();
        let mut running = lock(&self.running);
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
            let schedule = scheduler::run_gateway(gw.clone(), self.slots.clone(), stop.clone());
            self.tracker.spawn(schedule);
        }
        if let providers::Source::GreenApi(s) = &gw.source {
            if s.consumes_queue() {
                let messages = self.messages.clone();
                let canaries = self.canaries.clone();
                self.tracker
                    .spawn(consumer::consume(gw.clone(), messages, canaries, stop));
            }
        }
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

    /// Renders `/metrics`, compressed when `gzip` is set. Without background polling, gateway
    /// series come from `/probe` alone, as with blackbox_exporter: `/metrics` is then the
    /// exporter's own, so a self-scrape job never repeats what the probe job collects.
    pub fn render_metrics(&self, gzip: bool) -> Vec<u8> {
        let gateways = self.gateways();
        let mut fragments = Vec::with_capacity(gateways.len() * 2);
        if !self.polling.no_background {
            for g in gateways.iter() {
                fragments.push(g.fragment());
                g.flow_fragments(&mut fragments);
                fragments.push(g.number_fragment());
            }
        }
        fragments.extend(self.plugchat.fragments());
        fragments.extend(self.receiver.fragments());
        fragments.extend(self.canaries.fragments());
        self.metrics.render(&fragments, gzip)
    }
}

impl Exporter {
    /// Judges every number's state now (each gateway, each discovered instance).
    pub fn judge_numbers(&self) {
        let cfg = *lock(&self.number_state);
        let now = crate::gateway::unix_now();
        let window = cfg.evidence_window.as_secs_f64();
        let canaries = |g: &str| self.canaries.number_evidence(g, now, window);
        for gw in self.gateways().iter() {
            gw.judge_numbers(now, &cfg, &self.messages, &canaries);
        }
    }

    /// How often every number is judged: the evidence moves with time (a silence grows, a sent
    /// message ages) as well as with polls and pushes; a quarter of `for`, so that a state that
    /// has held is shown soon after, and at most every 5 s.
    fn judge_every(&self) -> Duration {
        (lock(&self.number_state).hold / 4).clamp(Duration::from_millis(50), JUDGE_AT_MOST_EVERY)
    }
}

/// The longest wait between two judgements of the numbers' states.
pub const JUDGE_AT_MOST_EVERY: Duration = Duration::from_secs(5);

/// Judges the numbers' states until `stop`, on the blocking pool: at 10,000 gateways a round
/// takes milliseconds that the runtime thread spends on polls and webhooks instead.
async fn judge_numbers_every(ex: std::sync::Weak<Exporter>, stop: CancellationToken) {
    loop {
        let Some(every) = ex.upgrade().map(|e| e.judge_every()) else {
            return;
        };
        let weak = ex.clone();
        let round = tokio::task::spawn_blocking(move || {
            if let Some(e) = weak.upgrade() {
                e.judge_numbers();
            }
        });
        let _ = round.await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Polls the gateways that pushed events asked to be polled now, through the same single
/// flight and poll slots as any call.
async fn repoll(
    mut rx: tokio::sync::mpsc::Receiver<Arc<Gateway>>,
    slots: Arc<scheduler::Slots>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let gw = tokio::select! {
            _ = stop.cancelled() => return,
            g = rx.recv() => match g {
                Some(g) => g,
                None => return,
            },
        };
        let (slots, stop) = (slots.clone(), stop.clone());
        tasks.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = scheduler::call(&gw, &slots, scheduler::Trigger::Push, None) => {}
            }
        });
    }
}

fn limits(t: &config::MessageTracking) -> flow_state::Limits {
    flow_state::Limits {
        max_tracked: t.max_tracked,
        max_age: t.max_age,
    }
}

/// A gateway counts its pushes when it receives webhooks, consumes the Green API queue, or is a
/// Cloud API number while a Meta app's webhooks are configured.
fn activate_flow(gw: &Gateway, cloud_apps: bool) {
    let receives = match &gw.config.settings {
        config::ProviderConfig::GreenApi(g) => {
            g.notifications == config::Notifications::Consume || g.webhook_token.is_some()
        }
        config::ProviderConfig::CloudApi(_) => cloud_apps,
        _ => gw.config.webhook_auth().is_some(),
    };
    match providers::webhook_spec(gw.config.provider).filter(|_| receives) {
        Some(spec) => gw.flow.activate(spec, || {
            Owner::new(crate::shard::stable_hash(gw.name().bytes()))
        }),
        None => gw.flow.deactivate(),
    }
}

/// The gateways a configuration asks for, and those of them that need new tasks.
struct Plan {
    next: Vec<Arc<Gateway>>,
    started: Vec<Arc<Gateway>>,
}
