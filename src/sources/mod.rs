//! One module per provider, each with its own response types, a pure `parse` and one `poll`.
//!
//! [`Provider`] is the single list of providers: the configuration names them with it and
//! [`Source::new`] dispatches on it.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::config::GatewayConfig;
use crate::error::PollError;
use crate::exposition::FragmentWriter;
use crate::http::Clients;

pub mod cloudapi;
pub mod greenapi;
pub mod plugzapi;
pub mod waba;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    #[serde(rename = "plugzapi")]
    PlugzApi,
    #[serde(rename = "zapi")]
    ZApi,
    Waba,
    #[serde(rename = "greenapi")]
    GreenApi,
    #[serde(rename = "cloudapi")]
    CloudApi,
}

impl Provider {
    pub const ALL: [Provider; 5] = [
        Provider::PlugzApi,
        Provider::ZApi,
        Provider::Waba,
        Provider::GreenApi,
        Provider::CloudApi,
    ];

    /// The `provider` label and the name in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::PlugzApi => "plugzapi",
            Provider::ZApi => "zapi",
            Provider::Waba => "waba",
            Provider::GreenApi => "greenapi",
            Provider::CloudApi => "cloudapi",
        }
    }

    /// The base URL used when the configuration gives none; empty for on-premises deployments.
    pub fn default_url(self) -> &'static str {
        match self {
            Provider::PlugzApi => "https://api.plugzapi.com.br",
            Provider::ZApi => "https://api.z-api.io",
            Provider::Waba => "",
            Provider::GreenApi => "https://api.green-api.com",
            Provider::CloudApi => "https://graph.facebook.com",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one successful poll saw, ready to be written as metrics.
pub trait Observation: Send + Sync + fmt::Debug {
    /// Whether the WhatsApp number is connected, as `whatsapp_connected` tells it.
    fn connected(&self) -> bool;
    /// The provider's own series.
    fn write(&self, w: &mut FragmentWriter);
    /// A few words for the status page, with no private data.
    fn summary(&self) -> String;
}

/// A configured gateway's way of being polled.
pub enum Source {
    PlugzApi(plugzapi::Source),
    Waba(waba::Source),
    GreenApi(greenapi::Source),
    CloudApi(cloudapi::Source),
}

impl Source {
    pub fn new(cfg: &GatewayConfig, clients: &Clients) -> Result<Self, String> {
        if cfg.tls.insecure_skip_verify {
            tracing::warn!(
                gateway = %cfg.name,
                "tls.insecure_skip_verify is set: the gateway's certificate is not checked, so the credentials can be intercepted"
            );
        }
        let client = clients.get(&cfg.tls)?;
        Ok(match cfg.provider {
            Provider::PlugzApi | Provider::ZApi => {
                Source::PlugzApi(plugzapi::Source::new(cfg, client)?)
            }
            Provider::Waba => Source::Waba(waba::Source::new(cfg, client)?),
            Provider::GreenApi => Source::GreenApi(greenapi::Source::new(cfg, client)?),
            Provider::CloudApi => Source::CloudApi(cloudapi::Source::new(cfg, client)?),
        })
    }

    pub async fn poll(&self, timeout: Duration) -> Result<Box<dyn Observation>, PollError> {
        match self {
            Source::PlugzApi(s) => s.poll(timeout).await,
            Source::Waba(s) => s.poll(timeout).await,
            Source::GreenApi(s) => s.poll(timeout).await,
            Source::CloudApi(s) => s.poll(timeout).await,
        }
    }

    /// Series the source keeps between polls (a login token's expiry), written whatever the
    /// outcome of the last poll.
    pub fn write_kept(&self, w: &mut FragmentWriter) {
        if let Source::Waba(s) = self {
            s.write_kept(w);
        }
        if let Source::GreenApi(s) = self {
            s.write_kept(w);
        }
    }
}

/// Reads a JSON boolean that some gateways send as a string or a number.
pub(crate) fn lenient_bool<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Num(i64),
        Str(String),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Option::<B>::deserialize(d)? {
        Some(B::Bool(b)) => Some(b),
        Some(B::Num(n)) => Some(n != 0),
        Some(B::Str(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        Some(B::Other(_)) | None => None,
    })
}
