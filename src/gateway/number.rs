//! Is this number working: the evidence a gateway holds of its number (for a server, of each
//! discovered instance) judged into one steady state, and its series.
//!
//! The evidence of a number: what its last poll said (connected, and the problems its provider
//! names), a pushed connection since, whether that poll is fresh (a poll older than twice the
//! interval, or none, leaves the API unreadable), what its pushes show (see
//! `flow_state::FlowState::number_evidence`), and what the canaries that start or end on it show.
//! A server is not a number: its instances are, each under `gateway="<server>/<instance>"`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Gateway, State};
use crate::clock::unix_seconds;
use crate::config::NumberStateConfig;
use crate::exposition::{Family, Fragment, FragmentWriter, SERVER_LABEL};
use crate::flow_state::{Flow, PushEvidence, Tracker};
use crate::number_state::{Evidence, NumberState, Problems, Steady};
use crate::providers::Observation;
use crate::sync::lock;

/// What the canaries tell of a number, by its gateway name: problems, and positive evidence.
pub type CanaryEvidence<'a> = &'a dyn Fn(&str) -> (Problems, bool);

/// The shown state of one number, for the status page.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberView {
    /// The gateway name (`<server>/<instance>` for a discovered instance).
    pub gateway: String,
    /// The instance's name, for a discovered instance.
    pub instance: Option<String>,
    pub state: NumberState,
    pub problems: Problems,
    pub changes: u64,
    /// What its pushes tell, where it has message flow.
    pub pushes: Option<PushEvidence>,
}

/// The number states of a gateway, and their rendered series.
#[derive(Default)]
pub(super) struct Numbers {
    own: Steady,
    instances: HashMap<String, Steady>,
    views: Vec<NumberView>,
    fragment: Arc<Fragment>,
}

impl Gateway {
    /// Judges the number (or each discovered instance) at `now` (Unix seconds), keeps the shown
    /// state steady for `cfg.hold`, and renders its series.
    pub fn judge_numbers(
        &self,
        now: f64,
        cfg: &NumberStateConfig,
        tracker: &Tracker,
        canaries: CanaryEvidence<'_>,
    ) {
        let st = self.state();
        let fresh = is_fresh(&st, now, self.config.interval);
        let mut numbers = lock(&self.numbers);
        let mut judged = Vec::new();
        if self.config.settings.discovers() {
            // Instances are listed in name order: each finds its observation by a search.
            let found = st.observation.as_ref().and_then(|o| o.discovered());
            let mut names: Vec<&String> = st.instances.keys().collect();
            names.sort_unstable();
            numbers
                .instances
                .retain(|n, _| st.instances.contains_key(n));
            for name in names {
                let gateway = format!("{}/{name}", self.name());
                let polled = found
                    .filter(|_| fresh)
                    .and_then(|d| {
                        let i = d
                            .instances
                            .binary_search_by(|(n, _)| n.as_str().cmp(name))
                            .ok()?;
                        d.instances.get(i)
                    })
                    .map(|(_, o)| {
                        let pushed = st.instances.get(name).and_then(|t| t.pushed_connected);
                        polled_evidence(o.as_ref(), pushed)
                    });
                let flow = self.instance_flow(name);
                let steady = numbers.instances.entry(name.clone()).or_default();
                let evidence = (polled, flow.as_deref());
                let unacked = record(steady, now, cfg, evidence, tracker, canaries, &gateway);
                judged.push(view(gateway, Some(name.clone()), steady, unacked));
            }
        } else {
            let polled = st
                .observation
                .as_ref()
                .filter(|_| fresh)
                .map(|o| polled_evidence(o.as_ref(), st.pushed_connected));
            let gateway = self.name().to_string();
            let evidence = (polled, Some(&self.flow));
            let unacked = record(
                &mut numbers.own,
                now,
                cfg,
                evidence,
                tracker,
                canaries,
                &gateway,
            );
            judged.push(view(gateway, None, &numbers.own, unacked));
        }
        drop(st);
        // Most rounds change nothing: the series are rendered again only when a view did.
        if numbers.views != judged {
            numbers.fragment = Arc::new(self.render_numbers(&judged));
            numbers.views = judged;
        }
    }

    /// Drops the number states of instances the last listing no longer has, at once: an instance
    /// that leaves loses every series with the poll that saw it go.
    pub(super) fn forget_numbers(&self, st: &State) {
        let mut numbers = lock(&self.numbers);
        let before = numbers.views.len();
        numbers.views.retain(|v| {
            v.instance
                .as_ref()
                .is_none_or(|i| st.instances.contains_key(i))
        });
        numbers
            .instances
            .retain(|n, _| st.instances.contains_key(n));
        if numbers.views.len() != before {
            numbers.fragment = Arc::new(self.render_numbers(&numbers.views));
        }
    }

    /// The number-state series as last judged.
    pub fn number_fragment(&self) -> Arc<Fragment> {
        lock(&self.numbers).fragment.clone()
    }

    /// The number states as last judged: the gateway's, or each discovered instance's.
    pub fn number_views(&self) -> Vec<NumberView> {
        lock(&self.numbers).views.clone()
    }

    fn render_numbers(&self, views: &[NumberView]) -> Fragment {
        let provider = self.config.provider.as_str();
        let mut w = FragmentWriter::new(&[], &[]).scrub_labels(self.scrubber.clone());
        for v in views {
            let mut labels = vec![("gateway", v.gateway.as_str()), ("provider", provider)];
            if v.instance.is_some() {
                labels.push((SERVER_LABEL, self.name()));
            }
            w.scoped(&labels, |w| {
                w.states(Family::NumberState, &[], "state", v.state);
                for p in v.problems.iter() {
                    w.sample(Family::NumberProblem, &[("problem", p.as_str())], 1.0);
                }
                w.sample(Family::NumberStateChanges, &[], v.changes as f64);
                if let Some(p) = &v.pushes {
                    w.sample(Family::MessagesUnacknowledged, &[], p.unacknowledged as f64);
                }
            });
        }
        w.finish()
    }
}

fn view(
    gateway: String,
    instance: Option<String>,
    s: &Steady,
    pushes: Option<PushEvidence>,
) -> NumberView {
    NumberView {
        gateway,
        instance,
        state: s.state(),
        problems: s.problems(),
        changes: s.changes(),
        pushes,
    }
}

/// Whether the last successful poll is recent enough to be believed: within twice the interval.
fn is_fresh(st: &State, now: f64, interval: Duration) -> bool {
    st.last_success
        .is_some_and(|t| now - unix_seconds(t) <= 2.0 * interval.as_secs_f64())
}

/// What the poll said, with a pushed connection since: a pushed connection clears the causes of
/// a disconnection the poll named, a pushed disconnection keeps them.
fn polled_evidence(obs: &dyn Observation, pushed: Option<bool>) -> (bool, Problems) {
    let (connected, problems) = obs.number_evidence();
    match pushed {
        Some(true) => (true, problems.without_disconnection()),
        Some(false) => (false, problems),
        None => (connected, problems),
    }
}

/// Records one number's evidence (its poll's, and its pushes' where it has message flow) into
/// its steady state; what the pushes told, where the number has message flow.
fn record(
    steady: &mut Steady,
    now: f64,
    cfg: &NumberStateConfig,
    (polled, flow): (Option<(bool, Problems)>, Option<&Flow>),
    tracker: &Tracker,
    canaries: CanaryEvidence<'_>,
    gateway: &str,
) -> Option<PushEvidence> {
    let pushed = flow.and_then(|f| f.read(|s| s.number_evidence(now, cfg, tracker)));
    let (canary_problems, canary_positive) = canaries(gateway);
    let mut e = Evidence {
        problems: canary_problems,
        connected: polled.map(|(c, _)| c),
        positive: canary_positive,
    };
    if let Some((_, p)) = polled {
        e.problems = e.problems.union(p);
    }
    if let Some(p) = &pushed {
        e.problems = e.problems.union(p.problems);
        e.positive |= p.positive;
    }
    steady.record(now, &e, cfg.hold);
    pushed
}

/// Unix seconds now, for callers that judge every gateway at one moment.
pub fn now() -> f64 {
    unix_seconds(SystemTime::now())
}
