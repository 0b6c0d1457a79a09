//! The delivery canary: every `interval`, a text carrying a random nonce goes from one configured
//! gateway (`from`) to another (`to`), and is followed until it arrives.
//!
//! A run is timed from the send request: to the send answer that names the message's id
//! (`whatsapp_canary_accept_seconds`), to the first `delivered` (or `read`, `played`) status of
//! that id on `from` (`..._delivered_seconds`), and to the incoming event on `to` whose text
//! carries the nonce (`..._arrival_seconds`). Events may come in any order, statuses even before
//! the send answer: they are matched by [`MessageKey`] (the id's keyed hash; the id itself is never
//! kept) and by the nonce. A run ends when both came, when a `failed` status came, or at `timeout`:
//!
//! | came | result |
//! | --- | --- |
//! | the send was refused, or its answer named no id | `send_failed` |
//! | the arrival (with or without a status) | `delivered` |
//! | a delivered status, no arrival | `status_only` |
//! | neither (or a failed status) | `lost` |
//!
//! A run that is stopped (shutdown, a reload that changed the canary) counts nothing (but against
//! `daily_cap`: its send may have gone out); an event of its nonce that comes later finds no run
//! and is ignored, so nothing is counted twice.
//!
//! With `--storage.path` (or in the demo), the first run comes [`FIRST_RUN_MIN`] plus a spread of
//! up to [`FIRST_RUN_SPREAD`] (by the canary's name) after the start, so that the webhook
//! receivers listen and several canaries do not all send at once; without it, a full `interval`
//! after the start, since the process cannot know when the last run before it was. Then one every
//! `interval`. At most `daily_cap` runs start per UTC day, counted by the [`Ledger`] across
//! reloads and, with a state file, across restarts. Canaries are not polls:
//! `--no-background-polling` leaves them running.
//!
//! After a run, a canary with `cleanup` tidies both chats so that the humans who work those
//! numbers are not disturbed: when its message arrived, it marks it read through `to`'s API
//! ([`send::mark_read`], with the chat and id the arrival named), then, when the send was
//! accepted (whatever the result), it deletes the message for everyone through `from`'s API
//! where the provider has one ([`send::delete`]; WhatsApp leaves its "this message was deleted"
//! placeholder). The ids and the chat for that are held by the run only, never logged. A failed
//! call leaves the result as it is: it is logged (rate-limited, its reason only) and counted by
//! its step.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::unix_seconds;
use crate::config::{CanaryConfig, GatewayConfig};
use crate::error::PollError;
use crate::exposition::{families, Fragment, FragmentWriter, Histogram};
use crate::flow::{self, CanaryArrival, Event, MessageKey, MessageStatus};
use crate::labels::LabelSet;
use crate::number_state::{Problem, Problems};
use crate::providers::send;
use crate::secret::Scrubber;
use crate::shard::Shard;
use crate::sync::{lock, read, write};

mod ledger;

pub use ledger::{Admission, Ledger, FILE_NAME as STATE_FILE};

families! {
    /// The canary families, labelled `canary`, `from`, `to`.
    pub enum CanaryFamily in FAMILIES {
        Runs => "whatsapp_canary_runs_total", Counter, "Canary runs by result: delivered (arrived on to), status_only (a delivered status, no arrival), lost, send_failed.";
        Accept => "whatsapp_canary_accept_seconds", Histogram, "Canary: from the send request to the answer of from's API naming the message id.";
        Delivered => "whatsapp_canary_delivered_seconds", Histogram, "Canary: from the send request to the first delivered (or read) status on from.";
        Arrival => "whatsapp_canary_arrival_seconds", Histogram, "Canary: from the send request to the incoming message with the nonce on to.";
        LastSuccess => "whatsapp_canary_last_success_timestamp_seconds", Gauge, "Canary: Unix time of the end of the last run whose message arrived.";
        CleanupFailures => "whatsapp_canary_cleanup_failures_total", Counter, "Canary: cleanup calls that failed, by step: mark_read (the arrived message, through to's API), delete (for everyone, through from's API); the run's result stands.";
    }
}

crate::labels::closed_set! {
    /// How a run ended: the `result` label of `whatsapp_canary_runs_total`.
    pub enum RunResult {
        Delivered => "delivered",
        StatusOnly => "status_only",
        Lost => "lost",
        SendFailed => "send_failed",
    }
}

crate::labels::closed_set! {
    /// A cleanup call: the `step` label of `whatsapp_canary_cleanup_failures_total`.
    pub enum CleanupStep {
        MarkRead => "mark_read",
        Delete => "delete",
    }
}

pub const ACCEPT_BUCKETS: [f64; 8] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
pub const DELIVERY_BUCKETS: [f64; 11] = [
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];
pub const FIRST_RUN_MIN: Duration = Duration::from_secs(30);
pub const FIRST_RUN_SPREAD: Duration = Duration::from_secs(30);
/// Statuses that came before the send answer named its id, kept for that run.
const EARLY_STATUSES: usize = 64;

/// The UTC day of `t`, in days since the Unix epoch: the day `daily_cap` counts in.
pub fn utc_day(t: SystemTime) -> u64 {
    (unix_seconds(t) / 86_400.0) as u64
}

/// When a canary's first run comes after the start (or after a reload that changed it), when
/// the runs before this process are known.
pub fn first_run(name: &str, interval: Duration) -> Duration {
    let spread = FIRST_RUN_SPREAD.as_millis() as u64;
    let offset = crate::shard::stable_hash(name.bytes()) % spread.max(1);
    (FIRST_RUN_MIN + Duration::from_millis(offset)).min(interval)
}

/// Why a configuration's canaries cannot run on this replica.
pub fn check_shard(canaries: &[CanaryConfig], shard: Option<Shard>) -> Result<(), String> {
    let Some(s) = shard else {
        return Ok(());
    };
    for c in canaries.iter().filter(|c| s.owns(&c.from)) {
        if !s.owns(&c.to) {
            return Err(format!(
                "canaries ({}): to: gateway {:?} belongs to shard {}/{}, but the canary runs on the replica that owns from ({s}): route {:?}'s webhooks to this replica as well, or pick gateways of one shard",
                c.name,
                c.to,
                crate::shard::owner(&c.to, s.count),
                s.count,
                c.to
            ));
        }
    }
    Ok(())
}

/// Every canary of this replica: their schedules, their runs, and what the webhooks say of them.
pub struct Registry {
    canaries: RwLock<Arc<Vec<Arc<Canary>>>>,
    running: Mutex<HashMap<String, CancellationToken>>,
    tracker: TaskTracker,
    stop: CancellationToken,
    ledger: Arc<Ledger>,
}

/// One canary and its counts.
pub struct Canary {
    pub config: CanaryConfig,
    from: GatewayConfig,
    client: reqwest::Client,
    /// The receiving gateway, for marking the message read, and its client.
    to: GatewayConfig,
    to_client: reqwest::Client,
    scrubber: Scrubber,
    state: Mutex<State>,
    wake: Notify,
    /// One run at a time.
    one: tokio::sync::Mutex<()>,
    /// Cancelled when the canary stops (shutdown, or a reload that changed or removed it).
    stop: CancellationToken,
    /// The runs started today, by canary name.
    ledger: Arc<Ledger>,
    /// When its schedule's first run comes.
    first_run: Instant,
}

struct State {
    counts: [u64; RunResult::COUNT],
    cleanup_failures: [u64; CleanupStep::COUNT],
    accept: Histogram,
    delivered: Histogram,
    arrival: Histogram,
    last_success: Option<f64>,
    /// How the latest run ended, and when (Unix seconds).
    last: Option<(RunResult, f64)>,
    run: Option<Run>,
}

#[derive(Default)]
struct Run {
    nonce: u64,
    key: Option<MessageKey>,
    early: Vec<(MessageKey, MessageStatus, Instant)>,
    delivered: Option<Instant>,
    /// When the message arrived on `to`, and what `to`'s webhook named it by (to mark it read).
    arrived: Option<(Instant, Box<CanaryArrival>)>,
    failed: bool,
}

impl Run {
    fn status(&mut self, s: MessageStatus, at: Instant) {
        match s {
            MessageStatus::Delivered | MessageStatus::Read | MessageStatus::Played => {
                self.delivered.get_or_insert(at);
            }
            MessageStatus::Failed => self.failed = true,
            MessageStatus::Sent | MessageStatus::Other => {}
        }
    }

    fn done(&self) -> bool {
        (self.arrived.is_some() && self.delivered.is_some())
            || (self.failed && self.arrived.is_none())
    }
}

impl Registry {
    pub fn new(tracker: TaskTracker, stop: CancellationToken, ledger: Ledger) -> Self {
        Registry {
            canaries: RwLock::new(Arc::default()),
            running: Mutex::new(HashMap::new()),
            tracker,
            stop,
            ledger: Arc::new(ledger),
        }
    }

    pub fn list(&self) -> Arc<Vec<Arc<Canary>>> {
        read(&self.canaries).clone()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Canary>> {
        self.list().iter().find(|c| c.config.name == name).cloned()
    }

    /// Applies a configuration's canaries: those whose `from` is among `gateways` (this
    /// replica's) run; an unchanged canary keeps its counts and schedule, a changed one starts
    /// afresh (its run in flight is dropped uncounted), a removed one stops. The runs started
    /// today stay with the name whatever the change: the ledger counts them.
    pub fn configure(
        &self,
        canaries: &[CanaryConfig],
        gateways: &[&GatewayConfig],
        client: impl Fn(&GatewayConfig) -> Result<reqwest::Client, String>,
    ) -> Result<(), String> {
        let old = self.list();
        let mut next = Vec::new();
        let mut fresh = Vec::new();
        for c in canaries {
            let gateway = |name: &str| gateways.iter().find(|g| g.name == name).copied();
            // `to` is on this replica too: check_shard refuses a configuration where it is not.
            let (Some(from), Some(to)) = (gateway(&c.from), gateway(&c.to)) else {
                continue;
            };
            let same = old
                .iter()
                .find(|o| &o.config == c && &o.from == from && &o.to == to)
                .cloned();
            match same {
                Some(s) => next.push(s),
                None => {
                    let client = |g| client(g).map_err(|e| format!("canaries ({}): {e}", c.name));
                    let ends = Ends {
                        from: from.clone(),
                        client: client(from)?,
                        to: to.clone(),
                        to_client: client(to)?,
                    };
                    let canary = Arc::new(Canary::new(c.clone(), ends, self.plan(c)));
                    fresh.push(canary.clone());
                    next.push(canary);
                }
            }
        }
        let mut running = lock(&self.running);
        let keep: Vec<&str> = next
            .iter()
            .filter(|c| !fresh.iter().any(|f| Arc::ptr_eq(f, c)))
            .map(|c| c.config.name.as_str())
            .collect();
        running.retain(|name, stop| {
            let stays = keep.contains(&name.as_str());
            if !stays {
                stop.cancel();
            }
            stays
        });
        for c in fresh {
            let stop = c.stop.clone();
            running.insert(c.config.name.clone(), stop.clone());
            self.tracker.spawn(schedule(c, stop));
        }
        *write(&self.canaries) = Arc::new(next);
        Ok(())
    }

    /// A new canary's stop, day counts and first run: soon when the runs before this process
    /// are known, else a full interval away (a restart loop must not send on every start).
    fn plan(&self, c: &CanaryConfig) -> Plan {
        let first = if self.ledger.knows_the_past() {
            first_run(&c.name, c.interval)
        } else {
            c.interval
        };
        Plan {
            stop: self.stop.child_token(),
            ledger: self.ledger.clone(),
            first_run: Instant::now() + first,
        }
    }

    /// What pushed events of gateway `gateway` say of the canaries' runs: statuses of a run's
    /// message on its `from`, the arrival of its nonce on its `to`.
    pub fn observe<'a>(&self, gateway: &str, events: impl IntoIterator<Item = &'a Event> + Clone) {
        let list = self.list();
        if list.is_empty() {
            return;
        }
        for c in list.iter() {
            let (from, to) = (c.config.from == gateway, c.config.to == gateway);
            if from || to {
                c.observe(from, to, events.clone());
            }
        }
    }

    /// Runs the canary `name` now (after its run in flight, if any), as its schedule would;
    /// `None` when the daily cap leaves it out or the canary stops before the run ends.
    pub async fn run_now(&self, name: &str) -> Option<RunResult> {
        let c = self.get(name)?;
        tokio::select! {
            _ = c.stop.cancelled() => None,
            r = c.run() => r,
        }
    }

    pub fn fragments(&self) -> Vec<Arc<Fragment>> {
        self.list().iter().map(|c| Arc::new(c.fragment())).collect()
    }

    /// What the canaries tell of the number of `gateway` at `now`: a delivered run inside
    /// `window` is positive evidence for both ends; a lost or status-only latest run (inside the
    /// window) is a failing canary for both ends, as either end may be the one that does not
    /// work; a refused send, for the sender only.
    pub fn number_evidence(&self, gateway: &str, now: f64, window: f64) -> (Problems, bool) {
        let (mut problems, mut positive) = (Problems::default(), false);
        for c in self.list().iter() {
            let (from, to) = (c.config.from == gateway, c.config.to == gateway);
            if !from && !to {
                continue;
            }
            let Some((result, at)) = c.last_result() else {
                continue;
            };
            if now - at > window {
                continue;
            }
            match result {
                RunResult::Delivered => positive = true,
                RunResult::Lost | RunResult::StatusOnly => problems.add(Problem::CanaryFailing),
                RunResult::SendFailed if from => problems.add(Problem::CanaryFailing),
                RunResult::SendFailed => {}
            }
        }
        (problems, positive)
    }
}

async fn schedule(c: Arc<Canary>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval_at(c.first_run, c.config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = c.run() => {}
        }
    }
}

/// Clears the run when its future ends or is dropped: a stopped run leaves nothing behind.
struct Clear<'a>(&'a Canary);

impl Drop for Clear<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).run = None;
    }
}

/// What a canary's runs answer to: its stop, the day counts, its first run.
struct Plan {
    stop: CancellationToken,
    ledger: Arc<Ledger>,
    first_run: Instant,
}

/// A canary's two gateways and their clients.
struct Ends {
    from: GatewayConfig,
    client: reqwest::Client,
    to: GatewayConfig,
    to_client: reqwest::Client,
}

impl Canary {
    fn new(config: CanaryConfig, ends: Ends, plan: Plan) -> Self {
        let Ends {
            from,
            client,
            to,
            to_client,
        } = ends;
        let mut secrets: Vec<&str> = [&from, &to]
            .iter()
            .flat_map(|g| g.settings.secrets())
            .map(|s| s.expose())
            .collect();
        secrets.push(config.to_number.expose());
        let scrubber = Scrubber::new(secrets);
        Canary {
            config,
            from,
            client,
            to,
            to_client,
            scrubber,
            state: Mutex::new(State {
                counts: [0; RunResult::COUNT],
                cleanup_failures: [0; CleanupStep::COUNT],
                accept: Histogram::new(&ACCEPT_BUCKETS),
                delivered: Histogram::new(&DELIVERY_BUCKETS),
                arrival: Histogram::new(&DELIVERY_BUCKETS),
                last_success: None,
                last: None,
                run: None,
            }),
            wake: Notify::new(),
            one: tokio::sync::Mutex::new(()),
            stop: plan.stop,
            ledger: plan.ledger,
            first_run: plan.first_run,
        }
    }

    /// When its schedule's first run comes (after the start, or the reload that made it).
    pub fn first_run_at(&self) -> Instant {
        self.first_run
    }

    fn observe<'a>(&self, from: bool, to: bool, events: impl IntoIterator<Item = &'a Event>) {
        let now = Instant::now();
        let mut woke = false;
        {
            let mut st = lock(&self.state);
            let Some(run) = st.run.as_mut() else {
                return;
            };
            for e in events {
                if let Some(a) = e.canary.as_ref().filter(|a| to && a.nonce == run.nonce) {
                    run.arrived.get_or_insert_with(|| (now, a.clone()));
                    woke = true;
                }
                let Some(status) = e.status.filter(|_| from) else {
                    continue;
                };
                for k in &e.messages {
                    match run.key {
                        Some(key) if key == *k => {
                            run.status(status, now);
                            woke = true;
                        }
                        Some(_) => {}
                        None if run.early.len() < EARLY_STATUSES => {
                            run.early.push((*k, status, now))
                        }
                        None => {}
                    }
                }
            }
        }
        if woke {
            self.wake.notify_waiters();
        }
    }

    /// Whether a run may start: counted, and written down before the send goes out.
    async fn admitted(&self) -> bool {
        let (name, cap) = (&self.config.name, self.config.daily_cap);
        match self
            .ledger
            .start_run(name, cap, utc_day(SystemTime::now()))
            .await
        {
            Admission::Run => true,
            Admission::Capped { first } => {
                if first {
                    tracing::warn!(canary = %name, cap, "the canary's daily_cap is reached: no more runs until 00:00 UTC");
                }
                false
            }
            Admission::Unrecorded(reason) => {
                crate::logging::warn_limited!(canary = %name, reason = %reason, "the canary state file cannot be written: the run is skipped, so that none goes out uncounted");
                false
            }
        }
    }

    /// One run; `None` when the daily cap (or a state file that cannot be written) left it out.
    pub async fn run(&self) -> Option<RunResult> {
        let _one = self.one.lock().await;
        if !self.admitted().await {
            return None;
        }
        let nonce = random_nonce();
        lock(&self.state).run = Some(Run {
            nonce,
            ..Default::default()
        });
        let _clear = Clear(self);
        let started = Instant::now();
        let deadline = started + self.config.timeout;
        let text = flow::canary_text(nonce);
        let message = send::Message {
            number: self.config.to_number.expose(),
            text: &text,
            template: self.config.template.as_ref(),
        };
        let budget = self.from.timeout.min(self.config.timeout);
        let sent = send::send(&self.client, &self.from, &message, budget).await;
        let sent = match sent {
            Ok(s) => s,
            Err(e) => {
                let error = self.scrubber.scrub(&e.to_string()).into_owned();
                tracing::warn!(canary = %self.config.name, gateway = %self.from.name, reason = %e.reason(), error = %error, "canary send refused");
                return Some(self.finish(RunResult::SendFailed));
            }
        };
        let key = sent.key;
        {
            let mut st = lock(&self.state);
            st.accept.observe(started.elapsed().as_secs_f64());
            if let Some(run) = st.run.as_mut() {
                run.key = Some(key);
                for (k, s, at) in std::mem::take(&mut run.early) {
                    if k == key {
                        run.status(s, at);
                    }
                }
            }
        }
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if lock(&self.state).run.as_ref().is_none_or(Run::done) {
                break;
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let (result, arrival) = {
            let mut st = lock(&self.state);
            let run = st.run.take().unwrap_or_default();
            let since =
                |t: Option<Instant>| t.map(|t| t.saturating_duration_since(started).as_secs_f64());
            let (arrived_at, arrival) = run.arrived.unzip();
            let (delivered, arrived) = (since(run.delivered), since(arrived_at));
            if let Some(d) = delivered {
                st.delivered.observe(d);
            }
            if let Some(a) = arrived {
                st.arrival.observe(a);
            }
            let result = match (arrived, delivered) {
                (Some(_), _) => RunResult::Delivered,
                (None, Some(_)) if !run.failed => RunResult::StatusOnly,
                _ => RunResult::Lost,
            };
            (result, arrival)
        };
        match result {
            RunResult::Delivered => {
                tracing::debug!(canary = %self.config.name, "canary message arrived")
            }
            r => {
                tracing::warn!(canary = %self.config.name, result = r.as_str(), "canary message did not arrive")
            }
        }
        let result = self.finish(result);
        if self.config.cleanup {
            if let Some(a) = arrival {
                self.mark_read(&a).await;
            }
            self.delete(&sent.id).await;
        }
        Some(result)
    }

    /// Marks the arrived message read where `to`'s provider can, so that `to`'s chat shows
    /// nothing unread.
    async fn mark_read(&self, a: &CanaryArrival) {
        let read = send::mark_read(&self.to_client, &self.to, a, self.to.timeout).await;
        self.cleaned(CleanupStep::MarkRead, &self.to, read);
    }

    /// Deletes the run's message for everyone where `from`'s provider can.
    async fn delete(&self, id: &crate::secret::Secret) {
        let number = self.config.to_number.expose();
        let deleted = send::delete(
            &self.client,
            &self.from,
            number,
            id.expose(),
            self.from.timeout,
        )
        .await;
        self.cleaned(CleanupStep::Delete, &self.from, deleted);
    }

    /// A cleanup call's outcome: a failure is counted and logged (its reason only), and changes
    /// nothing else.
    fn cleaned(&self, step: CleanupStep, gw: &GatewayConfig, done: Result<bool, PollError>) {
        match done {
            Ok(true) => {
                tracing::debug!(canary = %self.config.name, step = step.as_str(), "canary cleanup done")
            }
            Ok(false) => {}
            Err(e) => {
                lock(&self.state).cleanup_failures[step.index()] += 1;
                crate::logging::warn_limited!(canary = %self.config.name, gateway = %gw.name, step = step.as_str(), reason = %e.reason(), "canary cleanup call failed");
            }
        }
    }

    /// How the latest run ended, and when (Unix seconds).
    pub fn last_result(&self) -> Option<(RunResult, f64)> {
        lock(&self.state).last
    }

    fn finish(&self, r: RunResult) -> RunResult {
        let mut st = lock(&self.state);
        st.counts[r.index()] += 1;
        let now = unix_seconds(SystemTime::now());
        if r == RunResult::Delivered {
            st.last_success = Some(now);
        }
        st.last = Some((r, now));
        r
    }

    fn fragment(&self) -> Fragment {
        let c = &self.config;
        let mut w = FragmentWriter::new(
            &[("canary", &c.name), ("from", &c.from), ("to", &c.to)],
            &FAMILIES,
        );
        let st = lock(&self.state);
        for r in RunResult::ALL {
            w.sample(
                CanaryFamily::Runs,
                &[("result", r.as_str())],
                st.counts[r.index()] as f64,
            );
        }
        w.histogram(CanaryFamily::Accept, &[], &st.accept);
        w.histogram(CanaryFamily::Delivered, &[], &st.delivered);
        w.histogram(CanaryFamily::Arrival, &[], &st.arrival);
        if let Some(t) = st.last_success {
            w.sample(CanaryFamily::LastSuccess, &[], t);
        }
        for s in CleanupStep::ALL {
            w.sample(
                CanaryFamily::CleanupFailures,
                &[("step", s.as_str())],
                st.cleanup_failures[s.index()] as f64,
            );
        }
        w.finish()
    }
}

fn random_nonce() -> u64 {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut b = [0u8; 8];
    if SystemRandom::new().fill(&mut b).is_err() {
        // Never seen; a clock-based nonce is still unique per run.
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64;
    }
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_runs_are_soon_spread_and_never_after_the_interval() {
        let i = Duration::from_secs(300);
        let a = first_run("sales-to-support", i);
        assert!(a >= FIRST_RUN_MIN && a < FIRST_RUN_MIN + FIRST_RUN_SPREAD);
        assert_eq!(
            a,
            first_run("sales-to-support", i),
            "the same on every start"
        );
        let spread: std::collections::HashSet<_> =
            (0..20).map(|n| first_run(&format!("c{n}"), i)).collect();
        assert!(spread.len() > 10);
        assert_eq!(
            first_run("x", Duration::from_secs(10)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn runs_end_when_both_came_or_a_failure_did() {
        let now = Instant::now();
        let mut r = Run::default();
        assert!(!r.done());
        r.status(MessageStatus::Sent, now);
        assert!(!r.done());
        let arrival = flow::CanaryArrival::of(Some(&flow::canary_text(1)), None, None).unwrap();
        r.arrived = Some((now, arrival));
        assert!(!r.done(), "the status is still awaited");
        r.status(MessageStatus::Read, now);
        assert!(r.done(), "read stands for delivered");
        let mut f = Run::default();
        f.status(MessageStatus::Failed, now);
        assert!(f.done());
    }

    #[test]
    fn a_canary_runs_only_where_both_ends_are() {
        let c = |from: &str, to: &str| CanaryConfig {
            name: "c".into(),
            from: from.into(),
            to: to.into(),
            to_number: crate::secret::Secret::new("5511999998888".into()),
            interval: Duration::from_secs(300),
            timeout: Duration::from_secs(60),
            daily_cap: 10,
            template: None,
            cleanup: true,
        };
        let names: Vec<String> = (0..40).map(|i| format!("gw-{i}")).collect();
        let s = Shard { index: 0, count: 2 };
        let mine: Vec<&String> = names.iter().filter(|n| s.owns(n)).collect();
        let theirs: Vec<&String> = names.iter().filter(|n| !s.owns(n)).collect();
        assert!(check_shard(&[c(mine[0], mine[1])], Some(s)).is_ok());
        assert!(
            check_shard(&[c(theirs[0], mine[1])], Some(s)).is_ok(),
            "runs elsewhere"
        );
        let e = check_shard(&[c(mine[0], theirs[0])], Some(s)).unwrap_err();
        assert!(e.starts_with("canaries (c): to: gateway"), "{e}");
        assert!(e.contains("route") && !e.contains("5511999998888"), "{e}");
        assert!(check_shard(&[c(mine[0], theirs[0])], None).is_ok());
    }
}
