//! A configured gateway at run time: its source, what its polls found, and its rendered series.
//!
//! Every call to the gateway, whether the schedule or a `/probe` asks for it, goes through
//! [`Gateway::flight`] and the checks of [`Gateway::skip`]: one call at a time, none while the
//! gateway asked to be left alone (`Retry-After`), and none sooner than its interval after the
//! last one.
//! A server gateway (Evolution API or WAHA with `instances`) renders, beside its own series, the
//! series of every instance its last poll found, each under `gateway="<server>/<instance>"` and
//! `server="<server>"`; it counts each instance's flaps against the instance's state at the
//! previous poll that saw it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::clock::unix_seconds;
use crate::config::GatewayConfig;
use crate::error::{PollError, Reason};
use crate::exposition::{Family, Fragment, FragmentWriter, SERVER_LABEL};
use crate::flow_state::{Flow, Owner};
use crate::labels::LabelSet;
use crate::providers::{families, Observation, Source};
use crate::secret::Scrubber;
use crate::sync::lock;

mod number;
pub use number::{now as unix_now, CanaryEvidence, NumberView};

pub struct Gateway {
    pub config: GatewayConfig,
    pub source: Source,
    /// `scheme://host:port` of the gateway's API: gateways of one provider share it, and an
    /// outage of that provider is told by it.
    pub host: String,
    /// Held for the whole of a call to the gateway: concurrent askers wait for the one call and
    /// then answer from its outcome.
    pub flight: tokio::sync::Mutex<()>,
    /// Removes the gateway's secrets, whole or in pieces, from what its answers brought.
    pub scrubber: Arc<Scrubber>,
    state: Mutex<State>,
    /// The series as of the last change; a scrape takes a clone of the `Arc`.
    fragment: Mutex<Arc<Fragment>>,
    /// What its pushes (webhooks, the Green API queue) said, in the message-flow families.
    pub flow: Flow,
    /// A server's discovered instances' own message-flow series, one per instance of the last
    /// listing while the server receives webhooks; an instance that leaves the listing loses them.
    instance_flows: Mutex<BTreeMap<String, Arc<Flow>>>,
    /// Is its number (or each discovered instance) working, kept steady, and the series.
    numbers: Mutex<number::Numbers>,
}

/// What the polls of a gateway have found so far.
#[derive(Debug, Default)]
pub struct State {
    pub polls: u64,
    pub failures: [u64; Reason::COUNT],
    pub observation: Option<Box<dyn Observation>>,
    /// The last value of `whatsapp_connected`, kept across failed polls so that flaps are
    /// counted against the last value seen.
    pub last_connected: Option<bool>,
    /// What a push said of the connection since the last poll; the next poll confirms or
    /// corrects it.
    pub pushed_connected: Option<bool>,
    pub connected_changes: u64,
    pub last_duration: Option<Duration>,
    pub last_poll: Option<SystemTime>,
    pub last_success: Option<SystemTime>,
    pub last_error: Option<PollError>,
    /// When the last call to the gateway was due (its scheduled tick, or when a probe asked).
    pub last_call: Option<Instant>,
    /// The gateway asked with `Retry-After` not to be called before then.
    pub backoff_until: Option<(Instant, SystemTime)>,
    /// When the schedule polls next; `None` without background polling.
    pub next_poll: Option<SystemTime>,
    /// The last poll got no answer in time: its next one is not trusted with a shared slot.
    pub timed_out: bool,
    /// A server gateway's instances as of the last poll that listed them, kept across failed
    /// polls (flaps are counted against the last state seen); at most `max_instances`.
    pub instances: HashMap<String, Tracked>,
    /// Instances left out by `max_instances`, over every poll.
    pub discovery_overflow: u64,
}

/// Why a call to the gateway is not made now; the caller answers from the last state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The gateway asked with `Retry-After` to wait until later.
    BackingOff,
    /// The last call was due less than an interval before this one.
    Fresh,
}

/// Two calls due closer than the interval by no more than this still both happen: a scrape
/// every `interval` arrives a little early or late.
pub fn jitter_allowance(interval: Duration) -> Duration {
    (interval / 10).min(Duration::from_millis(250))
}

/// The wall-clock time of a runtime instant (the runtime clock may be paused in tests).
pub fn wall_time(t: Instant) -> SystemTime {
    let now = Instant::now();
    if t >= now {
        SystemTime::now() + (t - now)
    } else {
        SystemTime::now() - (now - t)
    }
}

/// What a server gateway remembers of one discovered instance between polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    pub connected: bool,
    pub connected_changes: u64,
    /// What a push said of the instance's connection since the last poll.
    pub pushed_connected: Option<bool>,
}

impl State {
    pub fn up(&self) -> bool {
        self.observation.is_some()
    }

    /// `whatsapp_connected`: a push since the last poll, else the last poll; `None` while down.
    pub fn connected(&self) -> Option<bool> {
        let polled = self.observation.as_ref()?.connected();
        Some(self.pushed_connected.unwrap_or(polled))
    }

    /// Counts a flap when `connected` differs from the last value seen.
    fn see(&mut self, connected: bool) {
        if self.last_connected.is_some_and(|c| c != connected) {
            self.connected_changes += 1;
        }
        self.last_connected = Some(connected);
    }

    /// Takes a new observation, counting a flap when `connected` differs from the last value seen.
    fn observe(&mut self, obs: Box<dyn Observation>) {
        self.pushed_connected = None;
        if let Some(found) = obs.discovered() {
            self.discovery_overflow += found.overflow;
            // Instances the listing no longer has are forgotten, so their series go.
            let mut seen = HashMap::with_capacity(found.instances.len());
            for (name, o) in &found.instances {
                let connected = o.connected();
                let mut t = self.instances.remove(name).map_or(
                    Tracked {
                        connected,
                        connected_changes: 0,
                        pushed_connected: None,
                    },
                    |mut t| {
                        if t.connected != connected {
                            t.connected_changes += 1;
                        }
                        t
                    },
                );
                t.connected = connected;
                t.pushed_connected = None;
                seen.insert(name.clone(), t);
            }
            self.instances = seen;
        } else {
            self.see(obs.connected());
        }
        self.observation = Some(obs);
    }
}

impl Gateway {
    pub fn new(config: GatewayConfig, source: Source) -> Arc<Self> {
        let host = host_of(&config.url);
        let scrubber = Arc::new(Scrubber::new(
            config.settings.secrets().into_iter().map(|s| s.expose()),
        ));
        let gw = Arc::new(Gateway {
            flow: Flow::new(&[
                ("gateway", &config.name),
                ("provider", config.provider.as_str()),
            ]),
            config,
            source,
            host,
            flight: tokio::sync::Mutex::new(()),
            scrubber,
            state: Mutex::new(State::default()),
            fragment: Mutex::new(Arc::new(Fragment::default())),
            instance_flows: Mutex::new(BTreeMap::new()),
            numbers: Mutex::new(number::Numbers::default()),
        });
        let state = gw.state();
        gw.render(&state);
        drop(state);
        gw
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The state, for reading; a poisoned lock still holds consistent counters.
    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn fragment(&self) -> Arc<Fragment> {
        lock(&self.fragment).clone()
    }

    /// Whether a call due at `due` is to be skipped; `now` is the present.
    pub fn skip(&self, due: Instant, now: Instant) -> Option<Skip> {
        let interval = self.config.interval;
        self.skip_within(
            due,
            now,
            interval.saturating_sub(jitter_allowance(interval)),
        )
    }

    /// Whether a call due at `due` is to be skipped, calls being at least `gap` apart.
    pub fn skip_within(&self, due: Instant, now: Instant, gap: Duration) -> Option<Skip> {
        let st = self.state();
        if st.backoff_until.is_some_and(|(until, _)| until > now) {
            return Some(Skip::BackingOff);
        }
        match st.last_call {
            Some(last) if due < last + gap => Some(Skip::Fresh),
            _ => None,
        }
    }

    /// A call due at `due` starts now; the schedule's next one will be at `next`. The series
    /// show the next poll when the call ends (its record renders them); only a call that may
    /// last longer than [`NEXT_POLL_SHOWN_AT_START`] renders them now as well, so that it does
    /// not read as overdue meanwhile. One render per poll instead of two.
    pub fn begin_call(&self, due: Instant, next: Option<Instant>) {
        let mut st = self.state();
        st.last_call = Some(due);
        if let Some(next) = next {
            st.next_poll = Some(wall_time(next));
            if self.config.timeout > NEXT_POLL_SHOWN_AT_START {
                self.render(&st);
            }
        }
    }

    /// When the schedule polls next (rendered as `whatsapp_next_poll_timestamp_seconds`).
    pub fn set_next_poll(&self, next: Instant) {
        let mut st = self.state();
        let t = wall_time(next);
        // Rendered in whole seconds: the same second is no change.
        let same = st
            .next_poll
            .is_some_and(|old| unix_seconds(old).round() == unix_seconds(t).round());
        if !same {
            st.next_poll = Some(t);
            self.render(&st);
        }
    }

    /// Polls the gateway once, within its timeout, and records the outcome.
    pub async fn poll(&self) -> Result<(), PollError> {
        self.poll_within(self.config.timeout).await
    }

    /// Polls once within `timeout` (a probe may have less time than the configured timeout).
    pub async fn poll_within(&self, timeout: Duration) -> Result<(), PollError> {
        let start = Instant::now();
        let result = match tokio::time::timeout(timeout, self.source.poll(timeout)).await {
            Ok(r) => r,
            Err(_) => Err(PollError::Timeout(timeout)),
        };
        self.record(result, start.elapsed())
    }

    /// Records the outcome of one poll: counters, flaps, last error, and the series again.
    pub fn record(
        &self,
        result: Result<Box<dyn Observation>, PollError>,
        took: Duration,
    ) -> Result<(), PollError> {
        let mut st = self.state();
        let was_up = st.up();
        st.polls += 1;
        st.timed_out = matches!(result, Err(PollError::Timeout(_)));
        st.backoff_until = match &result {
            Err(e) => e.retry_after().map(|wait| {
                let until = Instant::now() + wait;
                (until, wall_time(until))
            }),
            Ok(_) => None,
        };
        st.last_duration = Some(took);
        let now = SystemTime::now();
        st.last_poll = Some(now);
        let outcome = match result {
            Ok(obs) => {
                let (connected, found) = match obs.discovered() {
                    Some(d) => (
                        d.connected_count() > 0,
                        Some((d.instances.len(), d.skipped)),
                    ),
                    None => (obs.connected(), None),
                };
                let skipped_before = st
                    .observation
                    .as_ref()
                    .and_then(|o| o.discovered())
                    .map(|d| d.skipped);
                st.observe(obs);
                self.sync_instance_flows(&st);
                self.forget_numbers(&st);
                st.last_success = Some(now);
                st.last_error = None;
                match found {
                    None if !was_up => {
                        tracing::info!(gateway = %self.name(), provider = %self.config.provider, connected, "gateway answers");
                    }
                    Some((instances, skipped)) => {
                        if !was_up {
                            tracing::info!(gateway = %self.name(), provider = %self.config.provider, instances, "server answers");
                        }
                        // The names are not told: an operator may have named instances after
                        // their phone numbers.
                        if skipped > 0 && skipped_before != Some(skipped) {
                            tracing::warn!(gateway = %self.name(), skipped, "instances left out: no name, a name with control characters or over 128 characters, one that carries a secret of the gateway, or a row over 64 KiB");
                        }
                    }
                    None => {}
                }
                Ok(())
            }
            Err(e) => {
                let e = self.redact(e);
                st.failures[e.reason().index()] += 1;
                st.observation = None;
                if was_up || st.polls == 1 {
                    tracing::warn!(gateway = %self.name(), provider = %self.config.provider, reason = %e.reason(), error = %e, "poll failed");
                } else {
                    tracing::debug!(gateway = %self.name(), reason = %e.reason(), error = %e, "poll failed");
                }
                st.last_error = Some(e.clone());
                Err(e)
            }
        };
        self.render(&st);
        outcome
    }

    /// Replaces a new observation pushed by the gateway between polls (Green API's queue tells
    /// of state changes at once); ignored while the gateway is down, as polls own `up`.
    pub fn push_observation(&self, obs: Box<dyn Observation>) {
        let mut st = self.state();
        if !st.up() {
            return;
        }
        st.observe(obs);
        self.render(&st);
    }

    /// A push that tells the number's connection (a disconnection callback) sets
    /// `whatsapp_connected` at once, until the next poll; ignored while the gateway is down, and
    /// when the push is older than the last poll, which saw what came after it.
    pub fn push_connected(&self, connected: bool, at: Option<f64>) {
        let mut st = self.state();
        if !st.up() || !is_current(&st, at) {
            return;
        }
        st.see(connected);
        st.pushed_connected = Some(connected);
        self.render(&st);
    }

    /// A push that tells a discovered instance's connection: as [`Gateway::push_connected`] for
    /// the instance `<server>/<name>`; ignored for an instance the last listing did not select.
    pub fn push_instance_connected(&self, name: &str, connected: bool, at: Option<f64>) {
        let mut st = self.state();
        if !st.up() || !is_current(&st, at) {
            return;
        }
        let Some(t) = st.instances.get_mut(name) else {
            return;
        };
        if t.connected != connected {
            t.connected_changes += 1;
        }
        t.connected = connected;
        t.pushed_connected = Some(connected);
        self.render(&st);
    }

    /// The message-flow series of a discovered instance the last listing selected, while the
    /// server receives webhooks.
    pub fn instance_flow(&self, name: &str) -> Option<Arc<Flow>> {
        lock(&self.instance_flows).get(name).cloned()
    }

    /// Adds the gateway's message-flow series to `out`, then its discovered instances', in name
    /// order: nothing for a gateway that receives no pushes, so that a scrape of many such
    /// gateways visits each once.
    pub fn flow_fragments(&self, out: &mut Vec<Arc<Fragment>>) {
        if self.flow.is_active() {
            out.push(self.flow.fragment());
            out.extend(lock(&self.instance_flows).values().map(|f| f.fragment()));
        }
    }

    /// Gives each instance of the last listing its own message-flow series (with the server's
    /// spec) while the server receives webhooks; instances that left the listing lose theirs.
    fn sync_instance_flows(&self, st: &State) {
        let mut flows = lock(&self.instance_flows);
        let Some(spec) = self.flow.read(|f| f.spec()) else {
            flows.clear();
            return;
        };
        flows.retain(|name, _| st.instances.contains_key(name));
        let server = self.name();
        let provider = self.config.provider.as_str();
        for name in st.instances.keys() {
            if flows.contains_key(name) {
                continue;
            }
            let gateway = format!("{server}/{name}");
            let flow = Flow::new(&[
                ("gateway", &gateway),
                ("provider", provider),
                (SERVER_LABEL, server),
            ]);
            flow.activate(spec, || {
                Owner::new(crate::shard::stable_hash(gateway.bytes()))
            });
            flows.insert(name.clone(), Arc::new(flow));
        }
    }

    /// Whether a push told at `at` (Unix seconds) is newer than the last successful poll.
    pub fn is_current(&self, at: Option<f64>) -> bool {
        is_current(&self.state(), at)
    }

    /// Renders again after a change to series the source keeps itself.
    pub fn rerender(&self) {
        let st = self.state();
        self.render(&st);
    }

    /// Any text with this gateway's secrets masked (whole, percent-encoded as in a URL path, or
    /// in pieces of 8 characters or more), for what is shown of a poll.
    pub fn mask(&self, text: &str) -> String {
        let text = self.scrubber.scrub(text).into_owned();
        self.config
            .settings
            .secrets()
            .into_iter()
            .map(|s| crate::http::path_segment(s.expose()))
            .filter(|s| s.len() >= 4)
            .fold(text, |t, s| t.replace(&s, "<redacted>"))
    }

    /// Defence in depth: whatever built the error, no secret of this gateway leaves in it, whole
    /// or in pieces of 8 characters or more.
    fn redact(&self, e: PollError) -> PollError {
        let scrub = |m: String| self.scrubber.scrub(&m).into_owned();
        match e {
            PollError::Connect(m) => PollError::Connect(scrub(m)),
            PollError::InvalidResponse(m) => PollError::InvalidResponse(scrub(m)),
            other => other,
        }
    }

    /// The series of the gateway. Before its first poll it has them too (`whatsapp_up 0` with
    /// `whatsapp_last_poll_error_info{reason="not_polled_yet"}`), so that a gateway that is
    /// never polled is seen, and alerted on, instead of missing.
    fn render(&self, st: &State) {
        let mut w = FragmentWriter::new(
            &[
                ("gateway", self.name()),
                ("provider", self.config.provider.as_str()),
            ],
            families(self.config.provider),
        )
        .scrub_labels(self.scrubber.clone());
        w.gauge_bool(Family::Up, &[], st.up());
        let server = self.config.settings.discovers();
        if !server {
            if let Some(c) = st.connected() {
                w.gauge_bool(Family::Connected, &[], c);
            }
            w.sample(Family::ConnectedChanges, &[], st.connected_changes as f64);
        }
        if let Some(d) = st.last_duration {
            w.sample(Family::PollDuration, &[], d.as_secs_f64());
        }
        if let Some(t) = st.last_success {
            w.sample(Family::LastSuccess, &[], unix_seconds(t));
        }
        w.sample(Family::Polls, &[], st.polls as f64);
        for (reason, n) in Reason::LABELS.iter().zip(st.failures) {
            w.sample(Family::PollFailures, &[("reason", reason)], n as f64);
        }
        if !st.up() {
            let reason = match &st.last_error {
                Some(e) => e.reason().as_str(),
                None => NOT_POLLED_YET,
            };
            w.sample(Family::LastPollError, &[("reason", reason)], 1.0);
        }
        if let Some(t) = st.next_poll {
            w.sample(Family::NextPoll, &[], unix_seconds(t).round());
        }
        if let Some((_, t)) = st.backoff_until {
            w.sample(Family::RetryAfter, &[], unix_seconds(t).round());
        }
        if server {
            w.sample(Family::DiscoveryOverflow, &[], st.discovery_overflow as f64);
        }
        if let Some(obs) = &st.observation {
            obs.write(&mut w);
            if let Some(found) = obs.discovered() {
                self.render_instances(&mut w, st, found);
            }
        }
        self.source.write_kept(&mut w);
        *lock(&self.fragment) = Arc::new(w.finish());
    }

    /// A server's discovered instances, each as its own gateway `<server>/<instance>`: its
    /// `whatsapp_connected`, its flaps and its provider's series. Absent while the server does
    /// not answer, as `whatsapp_connected` is while `whatsapp_up` is 0.
    fn render_instances(
        &self,
        w: &mut FragmentWriter,
        st: &State,
        found: &crate::providers::Discovered,
    ) {
        w.sample(
            Family::DiscoveredInstances,
            &[],
            found.instances.len() as f64,
        );
        w.sample(Family::DiscoverySkipped, &[], found.skipped as f64);
        let server = self.name();
        let provider = self.config.provider.as_str();
        let mut gateway = String::with_capacity(server.len() + 32);
        for (name, obs) in &found.instances {
            gateway.clear();
            gateway.push_str(server);
            gateway.push('/');
            gateway.push_str(name);
            let tracked = st.instances.get(name);
            let changes = tracked.map_or(0, |t| t.connected_changes);
            let connected = tracked
                .and_then(|t| t.pushed_connected)
                .unwrap_or(obs.connected());
            let labels = [
                ("gateway", gateway.as_str()),
                ("provider", provider),
                (SERVER_LABEL, server),
            ];
            w.scoped(&labels, |w| {
                w.gauge_bool(Family::Connected, &[], connected);
                w.sample(Family::ConnectedChanges, &[], changes as f64);
                obs.write(w);
            });
        }
    }
}

/// The `reason` of `whatsapp_last_poll_error_info` before the first poll.
pub const NOT_POLLED_YET: &str = "not_polled_yet";

/// A call with a longer timeout shows the next poll time as soon as it starts (see
/// [`Gateway::begin_call`]); a shorter one shows its own due time until it ends, which the
/// overdue alert (over two minutes for five) never mistakes for a poll kept waiting.
pub const NEXT_POLL_SHOWN_AT_START: Duration = Duration::from_secs(30);

/// `scheme://host:port` of a URL; the URL itself when it does not parse (every gateway on such
/// a URL then shares one key, which only makes them share their reputation).
fn host_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}:{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => url.to_string(),
    }
}

/// A push older than the last successful poll is history: the poll already saw what came after
/// it. Provider timestamps are whole seconds, hence the second of slack.
fn is_current(st: &State, at: Option<f64>) -> bool {
    match (at, st.last_success.map(unix_seconds)) {
        (Some(ts), Some(polled)) => ts + 1.0 >= polled,
        _ => true,
    }
}
