//! One task per gateway, each on its own interval, and the slots their calls share.
//!
//! A gateway's first poll is put at a fixed offset inside its first interval, derived from its
//! name, so that thousands of gateways spread evenly and keep their phase across restarts.
//!
//! [`Slots`] caps the calls in flight at `max_concurrent_polls`, probes included. A call that is
//! not trusted to answer (its gateway's last poll timed out, or it was never polled and its
//! provider's host keeps timing out) may hold only a quarter of the slots: when a provider hangs,
//! its gateways wait among themselves and the gateways that answer keep the rest. Whether a call
//! is trusted is decided again when it gets its slot, so the calls queued before an outage showed
//! move aside as soon as it shows.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::PollError;
use crate::gateway::{Gateway, Skip};
use crate::sync::lock;

/// Timeouts in a row, across the gateways of one host, after which a gateway of that host that
/// was never polled is not trusted with a shared slot.
pub const HOST_SUSPECT_AFTER: u32 = 2;

/// What is known of a gateway when its call asks for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Its last poll got an answer (of whatever kind) in time.
    Answered,
    /// Its last poll timed out.
    TimedOut,
    /// Never polled: its host tells.
    Unknown,
}

/// The poll slots (see the module documentation).
pub struct Slots {
    all: Arc<Semaphore>,
    untrusted: Arc<Semaphore>,
    sizes: Mutex<(usize, usize)>,
    /// Timeouts in a row per host.
    hosts: Mutex<HashMap<String, u32>>,
}

/// A slot, held for the call.
pub struct Permit {
    _all: OwnedSemaphorePermit,
    _untrusted: Option<OwnedSemaphorePermit>,
}

/// The share of `cap` that calls not trusted to answer may hold.
pub fn untrusted_share(cap: usize) -> usize {
    (cap / 4).max(1)
}

impl Slots {
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Slots {
            all: Arc::new(Semaphore::new(cap)),
            untrusted: Arc::new(Semaphore::new(untrusted_share(cap))),
            sizes: Mutex::new((cap, untrusted_share(cap))),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// A new `max_concurrent_polls`: more slots at once; fewer as the calls holding them end.
    pub fn resize(&self, cap: usize) {
        let cap = cap.max(1);
        let mut sizes = lock(&self.sizes);
        sizes.0 = resize(&self.all, sizes.0, cap);
        sizes.1 = resize(&self.untrusted, sizes.1, untrusted_share(cap));
    }

    fn host_suspect(&self, host: &str) -> bool {
        lock(&self.hosts)
            .get(host)
            .is_some_and(|n| *n >= HOST_SUSPECT_AFTER)
    }

    fn trusted(&self, host: &str, trust: Trust) -> bool {
        match trust {
            Trust::Answered => true,
            Trust::TimedOut => false,
            Trust::Unknown => !self.host_suspect(host),
        }
    }

    /// Waits for a slot for a call to `host`; `None` once the slots are closed.
    pub async fn acquire(&self, host: &str, trust: Trust) -> Option<Permit> {
        loop {
            let untrusted = if self.trusted(host, trust) {
                None
            } else {
                Some(self.untrusted.clone().acquire_owned().await.ok()?)
            };
            let all = self.all.clone().acquire_owned().await.ok()?;
            if untrusted.is_none() && !self.trusted(host, trust) {
                // The host's outage showed while this call waited: to the untrusted line,
                // and the slot to the next in line.
                drop(all);
                continue;
            }
            return Some(Permit {
                _all: all,
                _untrusted: untrusted,
            });
        }
    }

    /// What a call to `host` came to: timeouts in a row make the host suspect, an answer clears it.
    pub fn record(&self, host: &str, timed_out: bool) {
        let mut hosts = lock(&self.hosts);
        if timed_out {
            if hosts.len() >= 100_000 && !hosts.contains_key(host) {
                hosts.clear();
            }
            *hosts.entry(host.to_string()).or_insert(0) += 1;
        } else if let Some(n) = hosts.get_mut(host) {
            *n = 0;
        }
    }
}

fn resize(sem: &Semaphore, have: usize, want: usize) -> usize {
    if want > have {
        sem.add_permits(want - have);
        want
    } else {
        // Permits held by calls in flight come back later; forget what is free now and the
        // rest on the next resize at the latest.
        have - sem.forget_permits(have - want)
    }
}

/// Who asks for a call.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    /// The background schedule, for its tick `due`; the tick after is expected at `next`.
    Schedule { due: Instant, next: Instant },
    /// `/probe`, now.
    Probe,
    /// A pushed event (a quality or account change) asks for a poll now: it waits no interval,
    /// only [`PUSH_REPOLL_GAP`] since the last call, so replayed or repeated pushes cannot turn
    /// into a stream of calls.
    Push,
}

/// The least time between a call and a re-poll asked by a push.
pub const PUSH_REPOLL_GAP: Duration = Duration::from_secs(10);

/// What came of asking for a call.
#[derive(Debug)]
pub enum Outcome {
    /// The gateway was called.
    Polled(Result<(), PollError>),
    /// No call: the last state stands.
    Skipped(Skip),
    /// No slot (or no turn) within the wait allowed: the last state stands.
    Busy,
}

/// Calls `gw` once if it is its time, through its single flight and a slot; `wait` bounds the
/// wait for both (a probe must answer within the scrape timeout; the schedule waits its turn).
pub async fn call(
    gw: &Gateway,
    slots: &Slots,
    trigger: Trigger,
    wait: Option<Duration>,
) -> Outcome {
    let deadline = wait.map(|w| Instant::now() + w);
    let Some(_flight) = within(deadline, gw.flight.lock()).await else {
        return Outcome::Busy;
    };
    let now = Instant::now();
    let (due, next) = match trigger {
        Trigger::Schedule { due, next } => (due, Some(next)),
        Trigger::Probe | Trigger::Push => (now, None),
    };
    let skip = match trigger {
        Trigger::Push => gw.skip_within(due, now, PUSH_REPOLL_GAP),
        _ => gw.skip(due, now),
    };
    if let Some(skip) = skip {
        if matches!(trigger, Trigger::Push) {
            tracing::debug!(gateway = %gw.name(), ?skip, "a pushed quality or account event: not polled, the last call is too recent");
        }
        return Outcome::Skipped(skip);
    }
    let trust = {
        let st = gw.state();
        match (st.polls, st.timed_out) {
            (0, _) => Trust::Unknown,
            (_, true) => Trust::TimedOut,
            (_, false) => Trust::Answered,
        }
    };
    let Some(Some(permit)) = within(deadline, slots.acquire(&gw.host, trust)).await else {
        return Outcome::Busy;
    };
    if matches!(trigger, Trigger::Push) {
        // Told here, once the poll is sure to start: a push that the gap above turned away
        // polls nothing.
        tracing::info!(gateway = %gw.name(), "a pushed quality or account event: polling now");
    }
    gw.begin_call(due, next);
    // A probe's poll ends by the deadline of its scrape, the wait for the slot included.
    let timeout = deadline.map_or(gw.config.timeout, |d| {
        d.saturating_duration_since(Instant::now())
            .min(gw.config.timeout)
    });
    let result = gw.poll_within(timeout).await;
    slots.record(&gw.host, matches!(result, Err(PollError::Timeout(_))));
    drop(permit);
    Outcome::Polled(result)
}

async fn within<F: Future>(deadline: Option<Instant>, f: F) -> Option<F::Output> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, f).await.ok(),
        None => Some(f.await),
    }
}

/// Polls `gw` on its schedule until `stop` is cancelled; an in-flight poll is dropped
/// (cancelled) at once.
pub async fn run_gateway(gw: Arc<Gateway>, slots: Arc<Slots>, stop: CancellationToken) {
    let offset = start_offset(gw.name(), gw.config.interval);
    let interval = gw.config.interval;
    run_schedule(
        offset,
        interval,
        stop,
        |due, next| {
            let (gw, slots) = (gw.clone(), slots.clone());
            // Boxed: the call's state (an HTTP request in flight) is large, and lives only while
            // the call does, instead of in every idle task of 10,000.
            Box::pin(async move {
                call(&gw, &slots, Trigger::Schedule { due, next }, None).await;
                gw.state().backoff_until.map(|(until, _)| until)
            })
        },
        |next| gw.set_next_poll(next),
    )
    .await;
}

/// The schedule itself, apart from what a call does: the first `tick(due, next)` after
/// `offset`, then one per `interval`; a tick returns until when the gateway asked not to be
/// called (`Retry-After`), and the schedule waits for that. `planned` is told every next tick.
pub async fn run_schedule<F, Fut>(
    offset: Duration,
    interval: Duration,
    stop: CancellationToken,
    mut tick: F,
    mut planned: impl FnMut(Instant),
) where
    F: FnMut(Instant, Instant) -> Fut,
    Fut: Future<Output = Option<Instant>>,
{
    let mut next = Instant::now() + offset;
    planned(next);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let due = next;
        let backoff = tokio::select! {
            _ = stop.cancelled() => return,
            b = tick(due, due + interval) => b,
        };
        next = next_tick(due, interval, Instant::now());
        if let Some(until) = backoff {
            next = next.max(until);
        }
        planned(next);
    }
}

/// The next tick after `prev` on the grid `prev + k * interval` that is still ahead of `now`:
/// a poll that overran its interval skips the ticks it missed instead of bunching up.
pub fn next_tick(prev: Instant, interval: Duration, now: Instant) -> Instant {
    let mut next = prev + interval;
    if next <= now {
        let behind = now.duration_since(next).as_nanos();
        let skip = behind / interval.as_nanos().max(1) + 1;
        next += interval * u32::try_from(skip).unwrap_or(u32::MAX);
    }
    next
}

/// Where in its first interval a gateway polls first: a stable hash of its name, scaled to the
/// interval.
pub fn start_offset(name: &str, interval: Duration) -> Duration {
    let h = crate::shard::stable_hash(name.bytes());
    let frac = (h >> 11) as f64 / (1u64 << 53) as f64;
    let offset = interval.mul_f64(frac);
    // Polls that fall in the same slot wake the process together: one wake-up for a batch of
    // polls costs far less CPU than one per poll, and the spread is still even over the interval.
    let slots = (interval.as_nanos() / SLOT.as_nanos()).max(1);
    let slot = (offset.as_nanos() / SLOT.as_nanos()).min(slots - 1);
    SLOT * u32::try_from(slot).unwrap_or(0)
}

/// The granularity of first polls inside their interval.
pub const SLOT: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a schedule on the paused clock for `run_for`; each call first takes a slot of
    /// `slots` (for `host`, trusted as `trust`), then takes and returns what `outcome(n)` says
    /// (how long, and for how long the gateway asks to be left alone). Returns the times (since
    /// start) the calls got their slot.
    async fn poll_times(
        offset: Duration,
        interval: Duration,
        run_for: Duration,
        slots: Arc<Slots>,
        outcome: impl Fn(usize) -> (Duration, Option<Duration>) + Send + Sync + 'static,
    ) -> Vec<Duration> {
        let start = Instant::now();
        let times = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let t = times.clone();
        let outcome = Arc::new(outcome);
        let task = tokio::spawn(run_schedule(
            offset,
            interval,
            stop.clone(),
            move |_due, _next| {
                let (t, outcome, slots) = (t.clone(), outcome.clone(), slots.clone());
                async move {
                    let _slot = slots.acquire("h", Trust::Answered).await;
                    let n = {
                        let mut t = t.lock().unwrap();
                        t.push(start.elapsed());
                        t.len() - 1
                    };
                    let (takes, backoff) = outcome(n);
                    tokio::time::sleep(takes).await;
                    backoff.map(|b| Instant::now() + b)
                }
            },
            |_| {},
        ));
        tokio::time::sleep(run_for).await;
        stop.cancel();
        task.await.unwrap();
        let v = times.lock().unwrap().clone();
        v
    }

    fn secs(v: &[Duration]) -> Vec<u64> {
        v.iter().map(|d| d.as_secs()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn polls_keep_their_phase_on_the_interval() {
        let t = poll_times(
            Duration::from_secs(7),
            Duration::from_secs(30),
            Duration::from_secs(100),
            Arc::new(Slots::new(1)),
            |_| (Duration::from_secs(2), None),
        )
        .await;
        assert_eq!(secs(&t), vec![7, 37, 67, 97]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pushes_the_next_poll_back() {
        let t = poll_times(
            Duration::ZERO,
            Duration::from_secs(10),
            Duration::from_secs(100),
            Arc::new(Slots::new(1)),
            |n| {
                let b = (n == 1).then_some(Duration::from_secs(45));
                (Duration::ZERO, b)
            },
        )
        .await;
        // Asked at 10 s to wait 45 s: the next poll is at 55 s, and the grid goes on from there,
        // so the gateway never gets two polls closer than the interval after a 429.
        assert_eq!(secs(&t), vec![0, 10, 55, 65, 75, 85, 95]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_longer_than_the_interval_skips_ticks_instead_of_bunching() {
        let t = poll_times(
            Duration::ZERO,
            Duration::from_secs(10),
            // Not on a tick: a poll due at the very instant the test stops may or may not start.
            Duration::from_secs(55),
            Arc::new(Slots::new(1)),
            |n| (Duration::from_secs(if n == 0 { 25 } else { 1 }), None),
        )
        .await;
        assert_eq!(secs(&t), vec![0, 30, 40, 50]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_concurrency_cap_holds_polls_back_without_losing_them() {
        let slots = Arc::new(Slots::new(1));
        let held = slots.acquire("other", Trust::Answered).await;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(15)).await;
            drop(held);
        });
        let t = poll_times(
            Duration::ZERO,
            Duration::from_secs(10),
            Duration::from_secs(35),
            slots,
            |_| (Duration::ZERO, None),
        )
        .await;
        assert_eq!(secs(&t), vec![15, 20, 30]);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_not_trusted_to_answer_hold_a_quarter_of_the_slots_at_most() {
        let slots = Arc::new(Slots::new(8));
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(slots.acquire("dead", Trust::TimedOut).await.unwrap());
        }
        // A third untrusted call waits, while trusted ones take the six slots left.
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire("dead", Trust::TimedOut).await.is_some() }
        });
        for _ in 0..6 {
            held.push(slots.acquire("alive", Trust::Answered).await.unwrap());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        drop(held.remove(0));
        assert!(waiting.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_that_keeps_timing_out_loses_its_trust_for_calls_already_queued() {
        let slots = Arc::new(Slots::new(4));
        // The four slots go to never-polled gateways of a host that hangs; more are queued.
        let mut hung = Vec::new();
        for _ in 0..4 {
            hung.push(slots.acquire("dead", Trust::Unknown).await.unwrap());
        }
        let queued: Vec<_> = (0..20)
            .map(|_| {
                let slots = slots.clone();
                tokio::spawn(async move {
                    let p = slots.acquire("dead", Trust::Unknown).await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    drop(p);
                })
            })
            .collect();
        let alive = {
            let slots = slots.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                for _ in 0..50 {
                    let _p = slots.acquire("alive", Trust::Unknown).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                start.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        // They time out: the host is suspect, and the queued calls step aside for the one
        // untrusted slot.
        for p in hung.drain(..) {
            slots.record("dead", true);
            drop(p);
        }
        let took = alive.await.unwrap();
        assert!(
            took < Duration::from_secs(7),
            "the answering host waited behind the hanging one: {took:?}"
        );
        for q in queued {
            q.abort();
        }
    }

    /// The outage at scale on the paused clock: 2,000 gateways at 10 s, half on a host that
    /// never answers within the 5 s timeout. Every answering gateway is polled within its first
    /// two intervals, and on every interval after.
    #[tokio::test(start_paused = true)]
    async fn a_hanging_provider_does_not_starve_the_gateways_that_answer() {
        let slots = Arc::new(Slots::new(64));
        let interval = Duration::from_secs(10);
        let stop = CancellationToken::new();
        let polls: Arc<Mutex<Vec<Vec<Duration>>>> = Arc::new(Mutex::new(vec![Vec::new(); 1000]));
        let start = Instant::now();
        for i in 0..2000usize {
            let dead = i % 2 == 1;
            let host = if dead { "dead" } else { "alive" };
            let trust = Arc::new(Mutex::new(Trust::Unknown));
            let (slots, polls) = (slots.clone(), polls.clone());
            let offset = start_offset(&format!("gw-{i:05}"), interval);
            tokio::spawn(run_schedule(
                offset,
                interval,
                stop.clone(),
                move |_, _| {
                    let (slots, polls, trust) = (slots.clone(), polls.clone(), trust.clone());
                    async move {
                        let t = *trust.lock().unwrap();
                        let _p = slots.acquire(host, t).await;
                        if dead {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                        } else {
                            polls.lock().unwrap()[i / 2].push(start.elapsed());
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        slots.record(host, dead);
                        *trust.lock().unwrap() = if dead {
                            Trust::TimedOut
                        } else {
                            Trust::Answered
                        };
                        None
                    }
                },
                |_| {},
            ));
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        stop.cancel();
        let polls = polls.lock().unwrap();
        for (g, times) in polls.iter().enumerate() {
            assert!(
                times.first().is_some_and(|t| *t < 2 * interval),
                "answering gateway {g} first polled at {:?}",
                times.first()
            );
            for w in times.windows(2) {
                assert!(
                    w[1] - w[0] < 2 * interval,
                    "answering gateway {g} went {:?} between polls",
                    w[1] - w[0]
                );
            }
            assert!(
                times.len() >= 5,
                "gateway {g}: {} polls in 60 s",
                times.len()
            );
        }
    }

    #[test]
    fn offsets_spread_evenly_over_the_interval() {
        let interval = Duration::from_secs(60);
        let mut buckets = [0u32; 10];
        for i in 0..10_000 {
            let off = start_offset(&format!("gateway-{i}"), interval);
            assert!(off < interval);
            buckets[(off.as_secs_f64() / 6.0) as usize] += 1;
        }
        for b in buckets {
            assert!((850..1150).contains(&b), "uneven spread: {buckets:?}");
        }
        assert_eq!(
            start_offset("a", interval),
            start_offset("a", interval),
            "stable across restarts"
        );
    }

    #[test]
    fn overrun_skips_missed_ticks() {
        let t0 = Instant::now();
        let i = Duration::from_secs(10);
        assert_eq!(next_tick(t0, i, t0 + Duration::from_secs(1)), t0 + i);
        assert_eq!(
            next_tick(t0, i, t0 + Duration::from_secs(25)),
            t0 + Duration::from_secs(30)
        );
        assert_eq!(
            next_tick(t0, i, t0 + Duration::from_secs(10)),
            t0 + Duration::from_secs(20)
        );
    }
}
