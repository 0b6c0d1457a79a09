//! One task per gateway, each on its own interval.
//!
//! A gateway's first poll is put at a fixed offset inside its first interval, derived from its
//! name, so that thousands of gateways spread evenly and keep their phase across restarts. A global
//! semaphore caps the polls in flight; a task waits for a permit only for itself, so a slow gateway
//! never delays another beyond that cap.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::PollError;
use crate::gateway::Gateway;

/// Polls `gw` until `stop` is cancelled; an in-flight poll is dropped (cancelled) at once.
pub async fn run_gateway(gw: Arc<Gateway>, limit: Arc<Semaphore>, stop: CancellationToken) {
    let offset = start_offset(gw.name(), gw.config.interval);
    let interval = gw.config.interval;
    // Boxed: the poll's state (an HTTP request in flight) is large, and lives only while the
    // poll does, instead of in every idle task of 10,000.
    run_schedule(offset, interval, limit, stop, || Box::pin(gw.poll())).await;
}

/// The schedule itself, apart from what a poll does: first `poll` after `offset`, then one per
/// `interval`, each holding a permit of `limit`, later when the gateway asked with Retry-After.
pub async fn run_schedule<F, Fut>(
    offset: Duration,
    interval: Duration,
    limit: Arc<Semaphore>,
    stop: CancellationToken,
    mut poll: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), PollError>>,
{
    let mut next = Instant::now() + offset;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = poll() => r,
        };
        drop(permit);
        let now = Instant::now();
        next = next_tick(next, interval, now);
        if let Some(wait) = result.err().and_then(|e| e.retry_after()) {
            next = next.max(now + wait);
        }
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
    use std::sync::Mutex;

    /// Runs a schedule on the paused clock for `run_for`, polling with `outcome(n)`, and returns
    /// the times (since start) of the polls.
    async fn poll_times(
        offset: Duration,
        interval: Duration,
        run_for: Duration,
        limit: Arc<Semaphore>,
        outcome: impl Fn(usize) -> (Duration, Result<(), PollError>) + Send + Sync + 'static,
    ) -> Vec<Duration> {
        let start = Instant::now();
        let times = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let t = times.clone();
        let outcome = Arc::new(outcome);
        let task = tokio::spawn(run_schedule(
            offset,
            interval,
            limit,
            stop.clone(),
            move || {
                let (t, outcome) = (t.clone(), outcome.clone());
                async move {
                    let n = {
                        let mut t = t.lock().unwrap();
                        t.push(start.elapsed());
                        t.len() - 1
                    };
                    let (takes, result) = outcome(n);
                    tokio::time::sleep(takes).await;
                    result
                }
            },
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
        let limit = Arc::new(Semaphore::new(1));
        let t = poll_times(
            Duration::from_secs(7),
            Duration::from_secs(30),
            Duration::from_secs(100),
            limit,
            |_| (Duration::from_secs(2), Ok(())),
        )
        .await;
        assert_eq!(secs(&t), vec![7, 37, 67, 97]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pushes_the_next_poll_back() {
        let limit = Arc::new(Semaphore::new(1));
        let t = poll_times(
            Duration::ZERO,
            Duration::from_secs(10),
            Duration::from_secs(100),
            limit,
            |n| {
                let r = if n == 1 {
                    Err(PollError::RateLimited(Some(Duration::from_secs(45))))
                } else {
                    Ok(())
                };
                (Duration::ZERO, r)
            },
        )
        .await;
        // Asked at 10 s to wait 45 s: the next poll is at 55 s, and the grid goes on from there,
        // so the gateway never gets two polls closer than the interval after a 429.
        assert_eq!(secs(&t), vec![0, 10, 55, 65, 75, 85, 95]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_longer_than_the_interval_skips_ticks_instead_of_bunching() {
        let limit = Arc::new(Semaphore::new(1));
        let t = poll_times(
            Duration::ZERO,
            Duration::from_secs(10),
            // Not on a tick: a poll due at the very instant the test stops may or may not start.
            Duration::from_secs(55),
            limit,
            |n| (Duration::from_secs(if n == 0 { 25 } else { 1 }), Ok(())),
        )
        .await;
        assert_eq!(secs(&t), vec![0, 30, 40, 50]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_concurrency_cap_holds_polls_back_without_losing_them() {
        let limit = Arc::new(Semaphore::new(0));
        let l = limit.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(15)).await;
            l.add_permits(1);
        });
        let t = poll_times(
            Duration::ZERO,
            Duration::from_secs(10),
            Duration::from_secs(35),
            limit,
            |_| (Duration::ZERO, Ok(())),
        )
        .await;
        assert_eq!(secs(&t), vec![15, 20, 30]);
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
