//! Is this number working? The evidence the exporter holds about one number (a configured gateway
//! or a discovered instance) folded into one state with its problems, and kept steady.
//!
//! [`judge`] is the raw verdict of one moment: the worst that the evidence shows, in this order:
//! the API cannot be read (`unknown`), the provider says the number is not connected
//! (`disconnected`), it says connected yet messages do not move (`zombie`), sending is limited
//! (`restricted`), positive evidence inside the window (`working`), else `connected`.
//!
//! [`Steady`] is what is shown. A raw verdict changes what is shown only once it has held for
//! `for`: a worse state once every verdict of the last `for` was at least that bad, a better one
//! once every verdict of the last `for` was at least that good. So a session that flaps between
//! connected and disconnected at every poll shows one story (the one it had), and a number that
//! goes from zombie to disconnected and back, bad all along, shows the milder of the two once
//! `for` has passed. The first verdict after the start is shown at once: there is no story yet to
//! keep steady.

use std::time::Duration;

use crate::labels::LabelSet;

crate::labels::closed_set! {
    /// The state of a number, from best to worst but `unknown`, which says the evidence is
    /// missing (`whatsapp_number_state{state}`).
    pub enum NumberState {
        Working => "working",
        Connected => "connected",
        Unknown => "unknown",
        Restricted => "restricted",
        Zombie => "zombie",
        Disconnected => "disconnected",
    }
}

crate::labels::closed_set! {
    /// A problem that stands (`whatsapp_number_problem{problem}`).
    pub enum Problem {
        /// Logged out, or waiting for its QR code: a person must scan it again.
        LoggedOut => "logged_out",
        /// The phone (or the session's device) is offline.
        PhoneOffline => "phone_offline",
        /// The provider's socket to WhatsApp is down, or the provider says not connected.
        SocketDown => "socket_down",
        /// The provider limits or blocks sending (Cloud API `can_send_message`, health errors,
        /// Green API `yellowCard`/`blocked`/`suspended`, Z-API `SHADOW_*`).
        SendLimited => "send_limited",
        /// Quality rated RED or FLAGGED.
        QualityLow => "quality_low",
        /// Spam or pair rate limits hit (Cloud API 131048, 131056; Baileys 463).
        RateLimited => "rate_limited",
        /// Sent messages stay unacknowledged past `acks_stuck_after`.
        AcksStuck => "acks_stuck",
        /// The last canary run was lost or got only statuses.
        CanaryFailing => "canary_failing",
        /// Pushes stopped for `silent_after` while the number's usual rate says they should come.
        PushesStopped => "pushes_stopped",
        /// The provider's pushes are being refused (wrong secret or signature, bad bodies).
        WebhooksRejected => "webhooks_rejected",
        /// The API gave no valid answer yet, or the last one is older than twice the interval.
        ApiUnreadable => "api_unreadable",
    }
}

impl Problem {
    /// The problem in words, for the status page.
    pub fn words(self) -> &'static str {
        match self {
            Problem::LoggedOut => "logged out: read the QR code again",
            Problem::PhoneOffline => "the phone is offline",
            Problem::SocketDown => "not connected to WhatsApp",
            Problem::SendLimited => "sending limited by the provider",
            Problem::QualityLow => "quality rated low",
            Problem::RateLimited => "hit a spam or pair rate limit",
            Problem::AcksStuck => "sent messages are not acknowledged",
            Problem::CanaryFailing => "the canary message did not arrive",
            Problem::PushesStopped => "its pushes stopped",
            Problem::WebhooksRejected => "its pushes are refused (secret or signature)",
            Problem::ApiUnreadable => "the gateway API does not answer",
        }
    }
}

impl NumberState {
    /// Whether the number works, in a few words, for the status page.
    pub fn words(self) -> &'static str {
        match self {
            NumberState::Working => "working",
            NumberState::Connected => "connected, no traffic to judge by",
            NumberState::Unknown => "unknown",
            NumberState::Restricted => "restricted",
            NumberState::Zombie => "connected but not working",
            NumberState::Disconnected => "disconnected",
        }
    }

    /// How bad a state is; `unknown` sits between the states that work and those that do not.
    pub fn severity(self) -> u8 {
        match self {
            NumberState::Working => 0,
            NumberState::Connected => 1,
            NumberState::Unknown => 2,
            NumberState::Restricted => 3,
            NumberState::Zombie => 4,
            NumberState::Disconnected => 5,
        }
    }
}

/// Problems as a set of bits in the order of [`Problem::ALL`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Problems(u16);

impl Problems {
    pub fn with(mut self, p: Problem) -> Self {
        self.0 |= 1 << p.index();
        self
    }

    pub fn add(&mut self, p: Problem) {
        *self = self.with(p);
    }

    pub fn has(self, p: Problem) -> bool {
        self.0 & (1 << p.index()) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Problem> {
        Problem::ALL.iter().copied().filter(move |p| self.has(*p))
    }

    pub fn union(self, other: Problems) -> Problems {
        Problems(self.0 | other.0)
    }

    /// Without the causes of a disconnection (a push said the number is connected again).
    pub fn without_disconnection(self) -> Problems {
        let mask = DISCONNECTED.iter().fold(0u16, |m, p| m | 1 << p.index());
        Problems(self.0 & !mask)
    }

    fn any(self, of: &[Problem]) -> bool {
        of.iter().any(|p| self.has(*p))
    }
}

const DISCONNECTED: &[Problem] = &[
    Problem::LoggedOut,
    Problem::PhoneOffline,
    Problem::SocketDown,
];
const ZOMBIE: &[Problem] = &[
    Problem::AcksStuck,
    Problem::CanaryFailing,
    Problem::PushesStopped,
];
const RESTRICTED: &[Problem] = &[
    Problem::SendLimited,
    Problem::QualityLow,
    Problem::RateLimited,
];

/// What is known of a number at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Evidence {
    /// The problems each source of evidence reports (the poll's connection, restrictions, the
    /// message flow, the canary).
    pub problems: Problems,
    /// Whether the provider says the number is connected; `None` while the API cannot be read.
    pub connected: Option<bool>,
    /// A delivered or read status, a received message or a delivered canary inside
    /// `evidence_window`.
    pub positive: bool,
}

/// The raw verdict of one moment, and the problems that stand.
pub fn judge(e: &Evidence) -> (NumberState, Problems) {
    let mut problems = e.problems;
    let state = match e.connected {
        None => {
            problems.add(Problem::ApiUnreadable);
            NumberState::Unknown
        }
        Some(false) => {
            if !problems.any(DISCONNECTED) {
                problems.add(Problem::SocketDown);
            }
            NumberState::Disconnected
        }
        Some(true) if problems.any(DISCONNECTED) => NumberState::Disconnected,
        Some(true) if problems.any(ZOMBIE) => NumberState::Zombie,
        Some(true) if problems.any(RESTRICTED) => NumberState::Restricted,
        Some(true) if e.positive => NumberState::Working,
        Some(true) => NumberState::Connected,
    };
    (state, problems)
}

/// Verdicts of one number kept for `for`, and the state shown. `now` is seconds on any
/// monotonic clock.
#[derive(Debug, Clone, Default)]
pub struct Steady {
    shown: Option<NumberState>,
    problems: Problems,
    /// Verdicts by the time they were made, oldest first, none older than needed.
    history: Vec<(f64, NumberState)>,
    changes: u64,
    /// A verdict other than `unknown` has been made: before it, there is no story to keep steady.
    told: bool,
}

/// Verdicts kept per number at most: polls and pushes come far less often than this many per
/// `for`, and when they do not, older ones are merged (the window only grows more cautious).
const MAX_HISTORY: usize = 64;

impl Steady {
    /// The state shown, `unknown` before any verdict.
    pub fn state(&self) -> NumberState {
        self.shown.unwrap_or(NumberState::Unknown)
    }

    /// The problems that stand now (of the latest verdict: a problem is news at once).
    pub fn problems(&self) -> Problems {
        self.problems
    }

    /// Times the shown state changed, since the first answer told the story.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Records a verdict at `now` and moves the shown state when a verdict has held for `hold`.
    pub fn record(&mut self, now: f64, evidence: &Evidence, hold: Duration) {
        let (raw, problems) = judge(evidence);
        self.problems = problems;
        if self.history.last().is_none_or(|(_, s)| *s != raw) {
            self.history.push((now, raw));
        }
        let Some(shown) = self
            .shown
            .filter(|_| self.told || raw == NumberState::Unknown)
        else {
            // The first verdict, or the first that is not `unknown` (the start, before the first
            // poll), is shown at once.
            self.shown = Some(raw);
            self.told = raw != NumberState::Unknown;
            self.history = vec![(now, raw)];
            return;
        };
        let since = now - hold.as_secs_f64();
        // The verdict in force at `since` is the last one made at or before it; older ones no
        // longer matter.
        let first = self
            .history
            .iter()
            .rposition(|(t, _)| *t <= since)
            .unwrap_or(0);
        self.history.drain(..first);
        if self.history.len() > MAX_HISTORY {
            self.merge_oldest();
        }
        let covered = self.history.first().is_some_and(|(t, _)| *t <= since);
        if !covered {
            return;
        }
        let held = self.history.iter().map(|(_, s)| *s);
        let mildest = held.clone().min_by_key(|s| s.severity()).unwrap_or(raw);
        let worst = held.max_by_key(|s| s.severity()).unwrap_or(raw);
        let next = if mildest.severity() > shown.severity() {
            mildest
        } else if worst.severity() < shown.severity() {
            worst
        } else {
            shown
        };
        if next != shown {
            self.shown = Some(next);
            self.changes += 1;
        }
    }

    /// Folds the two oldest verdicts into the worse of them.
    fn merge_oldest(&mut self) {
        if let [(t, a), (_, b), ..] = self.history[..] {
            let worse = if a.severity() >= b.severity() { a } else { b };
            self.history.splice(0..2, [(t, worse)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(120);

    fn seen(connected: Option<bool>, problems: &[Problem], positive: bool) -> Evidence {
        Evidence {
            problems: problems
                .iter()
                .fold(Problems::default(), |acc, p| acc.with(*p)),
            connected,
            positive,
        }
    }

    #[test]
    fn the_worst_evidence_decides() {
        let s = |c, p: &[Problem], pos| judge(&seen(c, p, pos)).0;
        assert_eq!(s(None, &[], true), NumberState::Unknown);
        assert_eq!(s(Some(false), &[], true), NumberState::Disconnected);
        assert_eq!(
            s(Some(true), &[Problem::LoggedOut], true),
            NumberState::Disconnected
        );
        assert_eq!(
            s(
                Some(true),
                &[Problem::AcksStuck, Problem::QualityLow],
                false
            ),
            NumberState::Zombie
        );
        assert_eq!(
            s(Some(true), &[Problem::RateLimited], true),
            NumberState::Restricted
        );
        assert_eq!(s(Some(true), &[], true), NumberState::Working);
        assert_eq!(s(Some(true), &[], false), NumberState::Connected);
        // Rejected webhooks are a problem to name, not a state of the number.
        assert_eq!(
            s(Some(true), &[Problem::WebhooksRejected], false),
            NumberState::Connected
        );
    }

    #[test]
    fn every_problem_is_named_and_a_disconnection_has_one() {
        let (_, p) = judge(&seen(Some(false), &[], false));
        assert_eq!(p.iter().collect::<Vec<_>>(), vec![Problem::SocketDown]);
        let (_, p) = judge(&seen(None, &[Problem::CanaryFailing], false));
        assert_eq!(
            p.iter().collect::<Vec<_>>(),
            vec![Problem::CanaryFailing, Problem::ApiUnreadable]
        );
    }

    #[test]
    fn a_worse_state_shows_only_once_it_has_held() {
        let mut s = Steady::default();
        s.record(0.0, &seen(Some(true), &[], true), HOLD);
        assert_eq!(s.state(), NumberState::Working, "the first verdict at once");
        for t in (30..=110).step_by(30) {
            s.record(
                t as f64,
                &seen(Some(false), &[Problem::LoggedOut], false),
                HOLD,
            );
        }
        assert_eq!(s.state(), NumberState::Working, "not yet for 2 minutes");
        assert!(
            s.problems().has(Problem::LoggedOut),
            "the problem is news at once"
        );
        s.record(
            150.0,
            &seen(Some(false), &[Problem::LoggedOut], false),
            HOLD,
        );
        assert_eq!(s.state(), NumberState::Disconnected);
        assert_eq!(s.changes(), 1);
    }

    #[test]
    fn a_better_state_shows_only_once_it_has_held_too() {
        let mut s = Steady::default();
        s.record(0.0, &seen(Some(false), &[], false), HOLD);
        s.record(60.0, &seen(Some(true), &[], true), HOLD);
        s.record(170.0, &seen(Some(true), &[], true), HOLD);
        assert_eq!(s.state(), NumberState::Disconnected);
        s.record(181.0, &seen(Some(true), &[], true), HOLD);
        assert_eq!(s.state(), NumberState::Working);
    }

    #[test]
    fn the_first_answer_after_the_start_shows_at_once() {
        let mut s = Steady::default();
        s.record(0.0, &seen(None, &[], false), HOLD);
        s.record(5.0, &seen(None, &[], false), HOLD);
        assert_eq!(s.state(), NumberState::Unknown);
        s.record(10.0, &seen(Some(false), &[Problem::LoggedOut], false), HOLD);
        assert_eq!(s.state(), NumberState::Disconnected);
        // From then on, the story is kept.
        s.record(20.0, &seen(Some(true), &[], true), HOLD);
        assert_eq!(s.state(), NumberState::Disconnected);
    }

    #[test]
    fn a_flapping_session_shows_one_story() {
        let mut s = Steady::default();
        s.record(0.0, &seen(Some(true), &[], true), HOLD);
        for i in 1..200 {
            let up = i % 2 == 0;
            s.record(f64::from(i) * 15.0, &seen(Some(up), &[], up), HOLD);
            assert_eq!(s.state(), NumberState::Working, "poll {i}");
        }
        assert_eq!(s.changes(), 0);
        assert!(s.history.len() <= MAX_HISTORY);
    }

    #[test]
    fn bad_all_along_shows_the_milder_bad_state() {
        let mut s = Steady::default();
        s.record(0.0, &seen(Some(true), &[], true), HOLD);
        for i in 1..=10 {
            let e = if i % 2 == 0 {
                seen(Some(false), &[], false)
            } else {
                seen(Some(true), &[Problem::AcksStuck], false)
            };
            s.record(f64::from(i) * 20.0, &e, HOLD);
        }
        assert_eq!(s.state(), NumberState::Zombie);
    }

    #[test]
    fn an_api_that_cannot_be_read_turns_unknown_after_the_hold() {
        let mut s = Steady::default();
        s.record(0.0, &seen(Some(true), &[], false), HOLD);
        s.record(60.0, &seen(None, &[], false), HOLD);
        s.record(121.0, &seen(None, &[], false), HOLD);
        assert_eq!(s.state(), NumberState::Connected);
        s.record(181.0, &seen(None, &[], false), HOLD);
        assert_eq!(s.state(), NumberState::Unknown);
    }
}
