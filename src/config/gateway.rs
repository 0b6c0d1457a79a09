//! One gateway of the file: the keys every provider shares, then the provider's own typed block.
//!
//! A gateway's keys are split in two: the common ones ([`RawCommon`]) and the rest, which must be
//! exactly the keys of its provider's block (each block refuses unknown keys). A key that belongs
//! to another provider is told as such, so `notifications` on a PlugzAPI gateway reads "is not
//! used by provider plugzapi" rather than "unknown field".

use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use super::{
    cloudapi, evolution, expand_env, greenapi, parse_schedule_duration, waba, waha, zapi, Ctx, Env,
    Global,
};
use crate::provider::Provider;
use crate::secret::Secret;

pub use super::cloudapi::CloudApiConfig;
pub use super::evolution::EvolutionConfig;
pub use super::greenapi::{GreenApiConfig, Notifications};
pub use super::waba::{WabaAuth, WabaConfig};
pub use super::waha::{WahaConfig, WahaHooks};
pub use super::zapi::ZapiConfig;

/// One gateway, with every secret already read from the environment or its file.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    pub name: String,
    pub provider: Provider,
    /// The base URL, without a trailing slash.
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// What only this provider takes; valid by construction.
    pub settings: ProviderConfig,
    /// Served from inside the process by `--demo`, never read from a file: no provider's rate
    /// limits are at stake, so its short interval draws no warning.
    pub simulated: bool,
}

/// The typed block of each provider.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderConfig {
    /// PlugzAPI and Z-API: the same API.
    Zapi(ZapiConfig),
    Waba(WabaConfig),
    GreenApi(GreenApiConfig),
    CloudApi(CloudApiConfig),
    Evolution(EvolutionConfig),
    Waha(WahaConfig),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl ProviderConfig {
    /// The TLS settings of the client that polls this gateway.
    pub fn tls(&self) -> &TlsConfig {
        static DEFAULT: TlsConfig = TlsConfig {
            ca_file: None,
            insecure_skip_verify: false,
        };
        match self {
            ProviderConfig::Zapi(c) => &c.tls,
            ProviderConfig::Waba(c) => &c.tls,
            ProviderConfig::GreenApi(c) => &c.tls,
            ProviderConfig::CloudApi(_) => &DEFAULT,
            ProviderConfig::Evolution(c) => &c.tls,
            ProviderConfig::Waha(c) => &c.tls,
        }
    }

    /// Whether the gateway stands for a whole server whose instances it discovers.
    pub fn discovers(&self) -> bool {
        match self {
            ProviderConfig::Evolution(c) => c.target.discovers(),
            ProviderConfig::Waha(c) => c.target.discovers(),
            _ => false,
        }
    }

    /// Every secret of the gateway, for scrubbing them out of anything that is printed.
    pub fn secrets(&self) -> Vec<&Secret> {
        match self {
            ProviderConfig::Zapi(c) => [
                Some(&c.token),
                c.client_token.as_ref(),
                c.webhook_secret.as_ref(),
            ]
            .into_iter()
            .flatten()
            .collect(),
            ProviderConfig::Waba(c) => vec![c.auth.secret()],
            ProviderConfig::GreenApi(c) => [Some(&c.token), c.webhook_token.as_ref()]
                .into_iter()
                .flatten()
                .collect(),
            ProviderConfig::CloudApi(c) => vec![&c.token],
            ProviderConfig::Evolution(c) => [Some(&c.token), c.webhook_secret.as_ref()]
                .into_iter()
                .flatten()
                .collect(),
            ProviderConfig::Waha(c) => {
                let hook = match &c.webhooks {
                    Some(WahaHooks::Hmac(s) | WahaHooks::UrlSecret(s)) => Some(s),
                    None => None,
                };
                [c.token.as_ref(), hook].into_iter().flatten().collect()
            }
        }
    }
}

impl GatewayConfig {
    pub fn tls(&self) -> &TlsConfig {
        self.settings.tls()
    }

    /// How the gateway's webhooks authenticate, when it receives them at `/webhooks/<name>`.
    pub fn webhook_auth(&self) -> Option<WebhookAuth<'_>> {
        match &self.settings {
            ProviderConfig::Zapi(c) => c.webhook_secret.as_ref().map(WebhookAuth::UrlSecret),
            ProviderConfig::GreenApi(c) => c.webhook_token.as_ref().map(WebhookAuth::Bearer),
            ProviderConfig::Evolution(c) => c.webhook_secret.as_ref().map(WebhookAuth::UrlSecret),
            ProviderConfig::Waha(c) => match &c.webhooks {
                Some(WahaHooks::Hmac(k)) => Some(WebhookAuth::HmacSha512(k)),
                Some(WahaHooks::UrlSecret(s)) => Some(WebhookAuth::UrlSecret(s)),
                None => None,
            },
            ProviderConfig::Waba(_) | ProviderConfig::CloudApi(_) => None,
        }
    }
}

/// The authentication of a gateway's webhooks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WebhookAuth<'a> {
    /// `?secret=S` in the URL (Z-API signs nothing).
    UrlSecret(&'a Secret),
    /// `Authorization: Bearer <token>` (Green API's webhookUrlToken).
    Bearer(&'a Secret),
    /// `X-Webhook-Hmac`: the hex HMAC-SHA512 of the raw body under this key (WAHA's `hmac.key`),
    /// checked before the body is parsed.
    HmacSha512(&'a Secret),
}

/// The keys every gateway has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommon {
    name: String,
    provider: Provider,
    url: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
}

/// The keys of a provider's block, for telling a key of another provider apart from a typo.
fn block_keys(p: Provider) -> &'static [&'static str] {
    match p {
        Provider::PlugzApi | Provider::ZApi => super::struct_fields::<zapi::Raw>(),
        Provider::Waba => super::struct_fields::<waba::Raw>(),
        Provider::GreenApi => super::struct_fields::<greenapi::Raw>(),
        Provider::CloudApi => super::struct_fields::<cloudapi::Raw>(),
        Provider::Evolution => super::struct_fields::<evolution::Raw>(),
        Provider::Waha => super::struct_fields::<waha::Raw>(),
    }
}

pub(super) fn parse(
    value: Value,
    global: &Global,
    env: Env,
    ctx: &mut Ctx,
) -> Option<GatewayConfig> {
    let Value::Mapping(map) = value else {
        ctx.whole("invalid type: expected a map of gateway keys");
        return None;
    };
    let common_keys = super::struct_fields::<RawCommon>();
    let (common, block): (Mapping, Mapping) = map
        .into_iter()
        .partition(|(k, _)| k.as_str().is_some_and(|k| common_keys.contains(&k)));
    let raw: RawCommon = decode(Value::Mapping(common), ctx)?;
    if !super::is_label_safe_name(&raw.name) {
        ctx.err("name", "must match [A-Za-z0-9_.-]+");
    }
    let (interval, timeout) =
        schedule(raw.interval.as_deref(), raw.timeout.as_deref(), global, ctx);
    let url = base_url(raw.url.as_deref(), raw.provider, env, ctx);
    let settings = parse_block(raw.provider, block, env, ctx);
    let gw = GatewayConfig {
        name: raw.name,
        provider: raw.provider,
        url,
        interval,
        timeout,
        settings: settings?,
        simulated: false,
    };
    ctx.errors.is_empty().then_some(gw)
}

/// The provider's own keys, decoded into its typed block and checked.
fn parse_block(p: Provider, block: Mapping, env: Env, ctx: &mut Ctx) -> Option<ProviderConfig> {
    let own = block_keys(p);
    let mut foreign = false;
    for key in block.keys().filter_map(Value::as_str) {
        let elsewhere = Provider::ALL.iter().any(|o| block_keys(*o).contains(&key));
        if !own.contains(&key) && elsewhere {
            ctx.err(key, format!("is not used by provider {p}"));
            foreign = true;
        }
    }
    if foreign {
        return None;
    }
    let block = Value::Mapping(block);
    let decoded = match p {
        Provider::PlugzApi | Provider::ZApi => decode::<zapi::Raw>(block, ctx)
            .and_then(|r| r.check(p, env, ctx))
            .map(ProviderConfig::Zapi),
        Provider::Waba => decode::<waba::Raw>(block, ctx)
            .and_then(|r| r.check(env, ctx))
            .map(ProviderConfig::Waba),
        Provider::GreenApi => decode::<greenapi::Raw>(block, ctx)
            .and_then(|r| r.check(env, ctx))
            .map(ProviderConfig::GreenApi),
        Provider::CloudApi => decode::<cloudapi::Raw>(block, ctx)
            .and_then(|r| r.check(env, ctx))
            .map(ProviderConfig::CloudApi),
        Provider::Evolution => decode::<evolution::Raw>(block, ctx)
            .and_then(|r| r.check(env, ctx))
            .map(ProviderConfig::Evolution),
        Provider::Waha => decode::<waha::Raw>(block, ctx)
            .and_then(|r| r.check(env, ctx))
            .map(ProviderConfig::Waha),
    };
    if let Some(ca) = decoded.as_ref().and_then(|d| d.tls().ca_file.as_ref()) {
        if let Err(e) = std::fs::metadata(ca) {
            ctx.err("tls.ca_file", format!("cannot read {}: {e}", ca.display()));
        }
    }
    decoded
}

/// Decodes a block; a value of the wrong type is told with the key that holds it (found by
/// decoding the keys one at a time, as every key of a block is optional).
fn decode<T: serde::de::DeserializeOwned>(block: Value, ctx: &mut Ctx) -> Option<T> {
    let e = match serde_yaml_ng::from_value::<T>(block.clone()) {
        Ok(v) => return Some(v),
        Err(e) => e,
    };
    let culprit = block.as_mapping().and_then(|m| {
        m.iter().find_map(|(k, v)| {
            let one = Mapping::from_iter([(k.clone(), v.clone())]);
            let err = serde_yaml_ng::from_value::<T>(Value::Mapping(one)).err()?;
            // Alone, a key leaves the required ones missing: that is not its fault.
            let own_fault = !err.to_string().starts_with("missing field");
            own_fault.then(|| Some((k.as_str()?.to_string(), err)))?
        })
    });
    match culprit {
        Some((key, err)) => ctx.err(&key, super::describe_yaml_error(&err)),
        None => ctx.whole(super::describe_yaml_error(&e)),
    }
    None
}

/// A gateway's interval and timeout: its own, else the global ones; the timeout fits the interval.
fn schedule(
    interval: Option<&str>,
    timeout: Option<&str>,
    global: &Global,
    ctx: &mut Ctx,
) -> (Duration, Duration) {
    let mut duration = |key: &str, v: Option<&str>, default: Duration| match v {
        None => default,
        Some(v) => parse_schedule_duration(key, v).unwrap_or_else(|e| {
            ctx.err(key, e);
            default
        }),
    };
    let interval = duration("interval", interval, global.interval);
    let timeout = duration("timeout", timeout, global.timeout.min(interval));
    if timeout > interval {
        let (t, i) = (
            humantime::format_duration(timeout),
            humantime::format_duration(interval),
        );
        ctx.err("timeout", format!("{t} is longer than the interval {i}"));
    }
    (interval, timeout)
}

/// The base URL, without a trailing slash: the configured one, else the provider's default.
fn base_url(url: Option<&str>, provider: Provider, env: Env, ctx: &mut Ctx) -> String {
    let url = match url {
        Some(u) => expand_env(u, env).unwrap_or_else(|e| {
            ctx.err("url", e);
            String::new()
        }),
        None => provider.default_url().to_string(),
    };
    let url = url.trim_end_matches('/').to_string();
    if url.is_empty() {
        ctx.err(
            "url",
            format!("provider {provider} has no default URL: set url"),
        );
    } else if !(url.starts_with("http://") || url.starts_with("https://")) {
        ctx.err("url", "must start with http:// or https://");
    }
    url
}
