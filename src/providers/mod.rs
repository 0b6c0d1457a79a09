//! One folder per provider, each in the same shape: its response types and a pure `parse`, its
//! poll (and login, where it has one), the series it renders, and its demo simulator.
//!
//! [`Provider`] is the single list of providers; [`Source::new`] dispatches on the typed
//! configuration block, and [`families`] gives each provider's metric families in order.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::config::{GatewayConfig, ProviderConfig};
use crate::error::PollError;
use crate::exposition::{FamilyDef, FragmentWriter};
use crate::http::Clients;
pub use crate::provider::Provider;

pub mod cloudapi;
pub mod greenapi;
pub mod simulator;
pub mod waba;
pub mod zapi;

/// What one successful poll saw, ready to be written as metrics.
pub trait Observation: Send + Sync + fmt::Debug {
    /// Whether the WhatsApp number is connected, as `whatsapp_connected` tells it.
    fn connected(&self) -> bool;
    /// The provider's own series.
    fn write(&self, w: &mut FragmentWriter);
    /// A few words for the status page, with no private data.
    fn summary(&self) -> String;
}

/// The one shape of every provider's poller.
pub trait Poller: Send + Sync {
    /// Asks the gateway, within `timeout`, and reads what it said.
    fn poll(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Box<dyn Observation>, PollError>> + Send;

    /// Series the poller keeps between polls (a login token's expiry, queue counters), written
    /// whatever the outcome of the last poll.
    fn write_kept(&self, _w: &mut FragmentWriter) {}
}

/// The metric families of a provider, after the common ones.
pub fn families(p: Provider) -> &'static [FamilyDef] {
    match p {
        Provider::PlugzApi | Provider::ZApi => &zapi::FAMILIES,
        Provider::Waba => &waba::FAMILIES,
        Provider::GreenApi => &greenapi::FAMILIES,
        Provider::CloudApi => &cloudapi::FAMILIES,
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

/// A configured gateway's poller.
pub enum Source {
    Zapi(zapi::Source),
    Waba(waba::Source),
    GreenApi(greenapi::Source),
    CloudApi(cloudapi::Source),
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
        })
    }

    pub async fn poll(&self, timeout: Duration) -> Result<Box<dyn Observation>, PollError> {
        match self {
            Source::Zapi(s) => s.poll(timeout).await,
            Source::Waba(s) => s.poll(timeout).await,
            Source::GreenApi(s) => s.poll(timeout).await,
            Source::CloudApi(s) => s.poll(timeout).await,
        }
    }

    pub fn write_kept(&self, w: &mut FragmentWriter) {
        match self {
            Source::Zapi(s) => s.write_kept(w),
            Source::Waba(s) => s.write_kept(w),
            Source::GreenApi(s) => s.write_kept(w),
            Source::CloudApi(s) => s.write_kept(w),
        }
    }
}

/// A path segment of a URL: ids and tokens are plain alphanumerics in practice, and whatever is
/// not must not break out of its segment.
pub fn path_segment(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    /// RFC 3986 unreserved characters stay as they are.
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(s, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("3C7A1B"), "3C7A1B");
        assert_eq!(path_segment("a/../b c"), "a%2F..%2Fb%20c");
    }

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
}
