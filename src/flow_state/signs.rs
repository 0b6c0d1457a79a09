//! What a number's pushes tell of whether it works: the latest positive evidence, the signs of
//! a limited number, refused pushes, and the number's own usual rate of pushes, kept per hour, so
//! that a silence can be told from a quiet number.

use crate::config::NumberStateConfig;
use crate::flow::{CloudEvent, Event, MessageStatus};
use crate::number_state::{Problem, Problems};

/// Error codes that say a spam or pair rate limit was hit: Cloud API 131048 (spam rate limit) and
/// 131056 (pair rate limit), and Baileys' 463 where a provider passes it on.
const RATE_LIMITED: &[&str] = &["131048", "131056", "463"];
/// Error codes that say the provider restricts what the number sends: Z-API's shadow ban.
const SEND_LIMITED: &[&str] = &["SHADOW_BAN"];
/// Refusals more recent than this stand as a problem: a provider retries, and a fixed secret
/// shows at its next push.
const REJECTIONS_STAND_FOR: f64 = 600.0;
/// Hours of history before a number's usual rate is trusted.
const MIN_HOURS: u64 = 3;
/// Pushes a silence of `silent_after` must have missed, at the usual rate, to count as stopped:
/// a number that gets a push an hour is quiet, not broken, after half an hour without one.
const MIN_MISSED: f64 = 5.0;

/// The signs kept for one number; all times are Unix seconds of arrival.
#[derive(Debug, Default)]
pub(super) struct Signs {
    /// A delivered, read or played status, or a received message.
    last_positive: Option<f64>,
    /// A delivered, read or played status: the number usually gets acknowledgements.
    last_ack: Option<f64>,
    last_rate_limited: Option<f64>,
    last_send_limited: Option<f64>,
    /// A quality FLAGGED (or DOWNGRADE) not yet followed by UNFLAGGED (or UPGRADE).
    quality_low_since: Option<f64>,
    last_rejected: Option<f64>,
    hours: Hourly,
    /// Delivered (or read, or played) statuses by the minute of the last hour.
    delivered: Minutes,
}

impl Signs {
    pub(super) fn see(&mut self, ev: &Event, now: f64) {
        self.hours.count(now);
        if matches!(
            ev.status,
            Some(MessageStatus::Delivered | MessageStatus::Read | MessageStatus::Played)
        ) {
            self.last_ack = Some(now);
            self.last_positive = Some(now);
            self.delivered.count(now, ev.messages.len().max(1) as u32);
        }
        if ev.received > 0 {
            self.last_positive = Some(now);
        }
        for code in &ev.errors {
            if RATE_LIMITED.contains(code) {
                self.last_rate_limited = Some(now);
            }
            if SEND_LIMITED.contains(code) {
                self.last_send_limited = Some(now);
            }
        }
        match ev.cloud {
            Some(CloudEvent::Quality("FLAGGED" | "DOWNGRADE")) => {
                self.quality_low_since.get_or_insert(now);
            }
            Some(CloudEvent::Quality("UNFLAGGED" | "UPGRADE")) => self.quality_low_since = None,
            Some(CloudEvent::Account("ACCOUNT_RESTRICTION")) => self.last_send_limited = Some(now),
            _ => {}
        }
    }

    /// A pushed disconnection's code: Baileys closes a session with 463 when WhatsApp limits it.
    pub(super) fn disconnected(&mut self, code: &str, now: f64) {
        if RATE_LIMITED.contains(&code) {
            self.last_rate_limited = Some(now);
        }
    }

    pub(super) fn rejected(&mut self, now: f64) {
        self.last_rejected = Some(now);
    }

    /// The problems the pushes show at `now`, whether there is positive evidence, given the
    /// arrival of the latest event.
    pub(super) fn evidence(
        &self,
        now: f64,
        last_event: Option<f64>,
        cfg: &NumberStateConfig,
    ) -> (Problems, bool) {
        let window = cfg.evidence_window.as_secs_f64();
        let within = |t: Option<f64>, span: f64| t.is_some_and(|t| now - t <= span);
        let mut p = Problems::default();
        if within(self.last_rate_limited, window) {
            p.add(Problem::RateLimited);
        }
        if within(self.last_send_limited, window) {
            p.add(Problem::SendLimited);
        }
        if self.quality_low_since.is_some() {
            p.add(Problem::QualityLow);
        }
        if within(self.last_rejected, REJECTIONS_STAND_FOR) {
            p.add(Problem::WebhooksRejected);
        }
        let silent = cfg.silent_after.as_secs_f64();
        let quiet_for = last_event.map_or(f64::INFINITY, |t| now - t);
        if quiet_for >= silent && self.hours.usual_per_hour(now) * silent / 3600.0 >= MIN_MISSED {
            p.add(Problem::PushesStopped);
        }
        (p, within(self.last_positive, window))
    }

    /// Delivered, read or played statuses in the hour before `now`.
    pub(super) fn delivered_last_hour(&self, now: f64) -> u64 {
        self.delivered.last_hour(now)
    }

    /// Whether the number usually gets acknowledgements of what it sends.
    pub(super) fn gets_acks(&self) -> bool {
        self.last_ack.is_some()
    }
}

/// Counts by the minute over the last hour.
#[derive(Debug)]
struct Minutes {
    counts: [u32; 60],
    /// The minute (Unix seconds / 60) of the latest count.
    latest: u64,
}

impl Default for Minutes {
    fn default() -> Self {
        Minutes {
            counts: [0; 60],
            latest: 0,
        }
    }
}

impl Minutes {
    fn minute(t: f64) -> u64 {
        (t.max(0.0) / 60.0) as u64
    }

    fn count(&mut self, now: f64, n: u32) {
        let m = Self::minute(now);
        if m > self.latest {
            for past in (self.latest + 1)..=m.min(self.latest + 60) {
                self.counts[(past % 60) as usize] = 0;
            }
            self.latest = m;
        }
        if m + 60 > self.latest {
            let c = &mut self.counts[(m % 60) as usize];
            *c = c.saturating_add(n);
        }
    }

    fn last_hour(&self, now: f64) -> u64 {
        let m = Self::minute(now);
        (0..60)
            .map(|back| m.saturating_sub(back))
            .filter(|past| *past <= self.latest && *past + 60 > self.latest)
            .take_while(|_| m >= self.latest)
            .map(|past| u64::from(self.counts[(past % 60) as usize]))
            .sum()
    }
}

/// Pushes per hour over the last day, by the hour they arrived in.
#[derive(Debug, Default)]
struct Hourly {
    counts: [u32; 24],
    /// The hour (Unix seconds / 3600) of `counts[hour % 24]`'s latest push.
    latest: u64,
    /// The hour of the first push seen.
    first: Option<u64>,
}

impl Hourly {
    fn hour(t: f64) -> u64 {
        (t.max(0.0) / 3600.0) as u64
    }

    fn count(&mut self, now: f64) {
        let h = Self::hour(now);
        self.advance(h);
        self.first.get_or_insert(h);
        let c = &mut self.counts[(h % 24) as usize];
        *c = c.saturating_add(1);
    }

    /// Zeroes the hours between the latest push and `h`.
    fn advance(&mut self, h: u64) {
        if h <= self.latest {
            return;
        }
        for past in (self.latest + 1)..=h.min(self.latest + 24) {
            self.counts[(past % 24) as usize] = 0;
        }
        self.latest = h;
    }

    /// The mean of the complete hours of the last day since the first push; 0 before
    /// [`MIN_HOURS`] of them.
    fn usual_per_hour(&self, now: f64) -> f64 {
        let Some(first) = self.first else { return 0.0 };
        let h = Self::hour(now);
        let hours = h.saturating_sub(first).min(24);
        if hours < MIN_HOURS {
            return 0.0;
        }
        let total: u64 = (1..=hours)
            .map(|back| h - back)
            .filter(|past| *past + 24 > self.latest && *past <= self.latest)
            .map(|past| u64::from(self.counts[(past % 24) as usize]))
            .sum();
        total as f64 / hours as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::MessageKey;

    const T0: f64 = 1_765_000_000.0 - 1_765_000_000.0 % 3600.0;

    fn cfg() -> NumberStateConfig {
        NumberStateConfig::default()
    }

    fn ev(status: Option<MessageStatus>) -> Event {
        let mut e = Event::named("x");
        e.status = status;
        e.messages = vec![MessageKey(1)];
        e
    }

    #[test]
    fn a_usual_rate_makes_a_silence_a_stopped_feed() {
        let mut s = Signs::default();
        // Twenty pushes an hour for four hours, then nothing.
        for i in 0..80 {
            s.see(&ev(None), T0 + f64::from(i) * 180.0);
        }
        let last = T0 + 79.0 * 180.0;
        let (p, _) = s.evidence(last + 600.0, Some(last), &cfg());
        assert!(!p.has(Problem::PushesStopped), "ten minutes is not silence");
        let (p, _) = s.evidence(last + 1900.0, Some(last), &cfg());
        assert!(p.has(Problem::PushesStopped));
    }

    #[test]
    fn a_quiet_number_is_not_a_stopped_one() {
        let mut s = Signs::default();
        for i in 0..6 {
            s.see(&ev(None), T0 + f64::from(i) * 3600.0);
        }
        let last = T0 + 5.0 * 3600.0;
        let (p, _) = s.evidence(last + 3000.0, Some(last), &cfg());
        assert!(!p.has(Problem::PushesStopped), "one push an hour");
        // Nor is a number seen for less than three hours.
        let mut s = Signs::default();
        for i in 0..100 {
            s.see(&ev(None), T0 + f64::from(i) * 10.0);
        }
        let (p, _) = s.evidence(T0 + 4000.0, Some(T0 + 990.0), &cfg());
        assert!(!p.has(Problem::PushesStopped));
    }

    #[test]
    fn limits_and_positive_evidence_stand_within_the_window() {
        let mut s = Signs::default();
        s.see(&ev(Some(MessageStatus::Delivered)), T0);
        let mut failed = ev(Some(MessageStatus::Failed));
        failed.errors = vec!["131048"];
        s.see(&failed, T0 + 10.0);
        let (p, positive) = s.evidence(T0 + 60.0, Some(T0 + 10.0), &cfg());
        assert!(positive && s.gets_acks());
        assert!(p.has(Problem::RateLimited));
        let (p, positive) = s.evidence(T0 + 7200.0, Some(T0 + 10.0), &cfg());
        assert!(!positive && !p.has(Problem::RateLimited), "an hour later");
        let mut q = Event::named("phone_number_quality_update");
        q.cloud = Some(CloudEvent::Quality("FLAGGED"));
        s.see(&q, T0 + 100.0);
        assert!(s
            .evidence(T0 + 9e4, None, &cfg())
            .0
            .has(Problem::QualityLow));
        q.cloud = Some(CloudEvent::Quality("UNFLAGGED"));
        s.see(&q, T0 + 200.0);
        assert!(!s
            .evidence(T0 + 300.0, None, &cfg())
            .0
            .has(Problem::QualityLow));
    }

    #[test]
    fn deliveries_are_counted_over_the_last_hour() {
        let mut s = Signs::default();
        for i in 0..90 {
            s.see(
                &ev(Some(MessageStatus::Delivered)),
                T0 + f64::from(i) * 60.0,
            );
        }
        assert_eq!(s.delivered_last_hour(T0 + 89.0 * 60.0), 60);
        assert_eq!(s.delivered_last_hour(T0 + 89.0 * 60.0 + 1800.0), 30);
        assert_eq!(s.delivered_last_hour(T0 + 89.0 * 60.0 + 7200.0), 0);
    }

    #[test]
    fn hours_older_than_a_day_are_forgotten() {
        let mut h = Hourly::default();
        for i in 0..100 {
            h.count(T0 + f64::from(i));
        }
        h.count(T0 + 30.0 * 3600.0);
        let rate = h.usual_per_hour(T0 + 31.0 * 3600.0);
        assert!(rate < 1.0, "{rate}");
    }
}
