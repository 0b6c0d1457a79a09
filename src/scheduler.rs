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

use crate::gateway::Gateway;

/// Polls `gw` until `stop` is cancelled; an in-flight poll is dropped (cancelled) at once.
pub async fn run_gateway(gw: Arc<Gateway>, limit: Arc<Semaphore>, stop: CancellationToken) {
    let interval = gw.config.interval;
    let mut next = Instant::now() + start_offset(gw.name(), interval);
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
            r = gw.poll() => r,
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

/// Where in its first interval a gateway polls first: a hash of its name (FNV-1a, then the
/// splitmix64 finaliser, as FNV alone leaves the high bits clustered for names like `gw-1`,
/// `gw-2`), scaled to the interval.
pub fn start_offset(name: &str, interval: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let frac = (h >> 11) as f64 / (1u64 << 53) as f64;
    interval.mul_f64(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

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
