//! One folder per provider, each in the same shape: its response types and a pure `parse`, its
//! poll (and login, where it has one), the series it renders, and its demo simulator.
//!
//! [`Provider`] is the single list of providers; [`Source::new`] dispatches on the typed
//! configuration block, and [`families`] gives each provider's metric families in order.

use std::time::Duration;

use crate::config::{GatewayConfig, ProviderConfig};
use crate::error::PollError;
use crate::exposition::{FamilyDef, FragmentWriter};
use crate::http::Clients;
pub use crate::provider::Provider;
pub use shape::{Discovered, Observation, Poller};
use simulator::Simulator;

pub mod cloudapi;
pub mod discovery;
pub mod evolution;
pub mod greenapi;
pub mod outbound;
pub mod send;
pub mod shape;
pub mod simulator;
pub mod waba;
pub mod waha;
pub mod zapi;

/// The metric families of a provider, after the common ones.
pub fn families(p: Provider) -> &'static [FamilyDef] {
    match p {
        Provider::PlugzApi | Provider::ZApi => &zapi::FAMILIES,
        Provider::Waba => &waba::FAMILIES,
        Provider::GreenApi => &greenapi::FAMILIES,
        Provider::CloudApi => &cloudapi::FAMILIES,
        Provider::Evolution => &evolution::FAMILIES,
        Provider::Waha => &waha::FAMILIES,
    }
}

/// What a provider's pushes can say, for its message-flow series; `None` for a provider whose
/// pushes the exporter does not receive.
pub fn webhook_spec(p: Provider) -> Option<&'static crate::flow::FlowSpec> {
    match p {
        Provider::PlugzApi | Provider::ZApi => Some(&zapi::webhook::SPEC),
        Provider::GreenApi => Some(&greenapi::webhook::SPEC),
        Provider::CloudApi => Some(&cloudapi::webhook::SPEC),
        Provider::Evolution => Some(&evolution::webhook::SPEC),
        Provider::Waha => Some(&waha::webhook::SPEC),
        Provider::Waba => None,
    }
}

/// A pushed event that tells the provider's own state, as the observation a poll would make
/// (Green API's stateInstanceChanged); `None` when only `connected` is told.
pub fn pushed_observation(p: Provider, ev: &crate::flow::Event) -> Option<Box<dyn Observation>> {
    match (p, ev.state) {
        (Provider::GreenApi, Some(state)) => Some(Box::new(greenapi::Status {
            state: greenapi::InstanceState::from_text(state),
        })),
        (Provider::Evolution, Some(state)) => Some(Box::new(evolution::Status {
            state: evolution::State::from_text(Some(state)),
        })),
        (Provider::Waha, Some(status)) => Some(Box::new(waha::Status {
            status: waha::SessionStatus::from_text(Some(status)),
        })),
        _ => None,
    }
}

/// Every provider's families, in provider order, each set once (PlugzAPI and Z-API share one).
pub fn family_sets() -> Vec<&'static [FamilyDef]> {
    let mut sets: Vec<&'static [FamilyDef]> = Vec::new();
    for set in Provider::ALL.iter().map(|p| families(*p)) {
        if !sets.iter().any(|s| std::ptr::eq(*s, set)) {
            sets.push(set);
        }
    }
    sets
}

/// Every metric family a gateway can have: the metric reference is checked against this.
pub fn all_families() -> impl Iterator<Item = &'static FamilyDef> {
    crate::exposition::COMMON
        .iter()
        .chain(family_sets().into_iter().flatten())
}

/// The shortest interval that gets fresh answers from a provider without spending its rate
/// limits for nothing, and why; each provider's folder holds its own.
pub fn min_interval(p: Provider) -> (Duration, &'static str) {
    match p {
        Provider::PlugzApi | Provider::ZApi => (zapi::MIN_INTERVAL, zapi::MIN_INTERVAL_WHY),
        Provider::Waba => (waba::MIN_INTERVAL, waba::MIN_INTERVAL_WHY),
        Provider::GreenApi => (greenapi::MIN_INTERVAL, greenapi::MIN_INTERVAL_WHY),
        Provider::CloudApi => (cloudapi::MIN_INTERVAL, cloudapi::MIN_INTERVAL_WHY),
        Provider::Evolution => (evolution::MIN_INTERVAL, evolution::MIN_INTERVAL_WHY),
        Provider::Waha => (waha::MIN_INTERVAL, waha::MIN_INTERVAL_WHY),
    }
}

/// Whether a gateway's interval is well below what its provider answers freshly: one warning
/// when the gateway is built, at start or reload. It is not refused: a short interval may be
/// wanted for a test or a mock.
pub fn interval_too_short(cfg: &GatewayConfig) -> bool {
    let (min, why) = min_interval(cfg.provider);
    if cfg.interval >= min || cfg.simulated {
        return false;
    }
    tracing::warn!(
        gateway = %cfg.name,
        provider = %cfg.provider,
        interval = %humantime::format_duration(cfg.interval),
        suggested_min = %humantime::format_duration(min),
        why,
        "the interval is shorter than the provider answers freshly: polls repeat the same answer and spend its rate limits"
    );
    true
}

/// A configured gateway's poller.
pub enum Source {
    Zapi(zapi::Source),
    Waba(waba::Source),
    GreenApi(greenapi::Source),
    CloudApi(cloudapi::Source),
    Evolution(evolution::Source),
    Waha(waha::Source),
}

impl Source {
    pub fn new(cfg: &GatewayConfig, clients: &Clients) -> Result<Self, String> {
        if cfg.tls().insecure_skip_verify {
            tracing::warn!(
                gateway = %cfg.name,
                "tls.insecure_skip_verify is set: the gateway's certificate is not checked, so the credentials can be intercepted"
            );
        }
        let client = clients.get(cfg.tls())?;
        Ok(match &cfg.settings {
            ProviderConfig::Zapi(c) => Source::Zapi(zapi::Source::new(cfg, c, client)),
            ProviderConfig::Waba(c) => Source::Waba(waba::Source::new(cfg, c, client)),
            ProviderConfig::GreenApi(c) => Source::GreenApi(greenapi::Source::new(cfg, c, client)),
            ProviderConfig::CloudApi(c) => Source::CloudApi(cloudapi::Source::new(cfg, c, client)),
            ProviderConfig::Evolution(c) => {
                Source::Evolution(evolution::Source::new(cfg, c, client))
            }
            ProviderConfig::Waha(c) => Source::Waha(waha::Source::new(cfg, c, client)),
        })
    }

    pub async fn poll(&self, timeout: Duration) -> Result<Box<dyn Observation>, PollError> {
        match self {
            Source::Zapi(s) => s.poll(timeout).await,
            Source::Waba(s) => s.poll(timeout).await,
            Source::GreenApi(s) => s.poll(timeout).await,
            Source::CloudApi(s) => s.poll(timeout).await,
            Source::Evolution(s) => s.poll(timeout).await,
            Source::Waha(s) => s.poll(timeout).await,
        }
    }

    pub fn write_kept(&self, w: &mut FragmentWriter) {
        match self {
            Source::Zapi(s) => s.write_kept(w),
            Source::Waba(s) => s.write_kept(w),
            Source::GreenApi(s) => s.write_kept(w),
            Source::CloudApi(s) => s.write_kept(w),
            Source::Evolution(s) => s.write_kept(w),
            Source::Waha(s) => s.write_kept(w),
        }
    }
}

/// The simulator of a provider for `--demo`; PlugzAPI and Z-API share one.
pub fn simulator(p: Provider) -> &'static Simulator {
    match p {
        Provider::PlugzApi | Provider::ZApi => &zapi::demo::SIMULATOR,
        Provider::Waba => &waba::demo::SIMULATOR,
        Provider::GreenApi => &greenapi::demo::SIMULATOR,
        Provider::CloudApi => &cloudapi::demo::SIMULATOR,
        Provider::Evolution => &evolution::demo::SIMULATOR,
        Provider::Waha => &waha::demo::SIMULATOR,
    }
}

/// Every provider's simulator, each once, in provider order.
pub fn simulators() -> Vec<&'static Simulator> {
    let mut all: Vec<&'static Simulator> = Vec::new();
    for s in Provider::ALL.iter().map(|p| simulator(*p)) {
        if !all.iter().any(|o| std::ptr::eq(*o, s)) {
            all.push(s);
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_has_its_families_and_names_are_unique() {
        let mut names: Vec<_> = all_families().map(|f| f.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a family declared twice");
        for p in Provider::ALL {
            assert!(!families(*p).is_empty(), "{p} has no families");
        }
    }

    #[test]
    fn intervals_far_below_what_a_provider_answers_freshly_are_told() {
        let yaml = "gateways:\n  - name: fast\n    provider: waba\n    url: http://127.0.0.1:9\n    token: t0k3n-x\n    interval: 5s\n    timeout: 1s\n  - name: fine\n    provider: cloudapi\n    phone_number_id: \"1\"\n    token: t0k3n-y\n    interval: 1m\n";
        let cfg = crate::config::parse(yaml, &|_| None).unwrap();
        assert!(interval_too_short(&cfg.gateways[0]));
        assert!(!interval_too_short(&cfg.gateways[1]));
        for p in Provider::ALL {
            let (min, why) = min_interval(*p);
            assert!(min >= Duration::from_secs(10) && !why.is_empty(), "{p}");
        }
        assert!(min_interval(Provider::Waba).0 >= Duration::from_secs(60));
    }
}
