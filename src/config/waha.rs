//! The block of WAHA gateways: the API key (`X-Api-Key` header), and one session or the
//! sessions of the whole server.

use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::discovery::{self, Target};
use super::{Ctx, Env, IdString, TlsConfig};
use crate::provider::Provider;
use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq)]
pub struct WahaConfig {
    /// The server's API key (`WAHA_API_KEY`); a server that runs without one needs none.
    pub token: Option<Secret>,
    pub target: Target,
    pub tls: TlsConfig,
    /// How the sessions' webhooks authenticate, when they come to `/webhooks/<name>`.
    pub webhooks: Option<WahaHooks>,
}

/// `webhooks.hmac_key` (the session webhook's `hmac.key`: WAHA signs every body with it) or, for
/// a WAHA that signs nothing (before 2024.11.5, or a webhook without `hmac`), `webhooks.secret`
/// in the URL.
#[derive(Debug, Clone, PartialEq)]
pub enum WahaHooks {
    Hmac(Secret),
    UrlSecret(Secret),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHooks {
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    hmac_key: Option<String>,
    hmac_key_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    token: Option<String>,
    token_file: Option<PathBuf>,
    instance: Option<IdString>,
    instances: Option<Value>,
    max_instances: Option<Value>,
    tls: Option<TlsConfig>,
    webhooks: Option<RawHooks>,
}

impl Raw {
    pub(super) fn check(self, env: Env, ctx: &mut Ctx) -> Option<WahaConfig> {
        let token = ctx.secret("token", self.token, self.token_file, env);
        let target = discovery::target(
            Provider::Waha,
            self.instance,
            self.instances,
            self.max_instances,
            ctx,
        );
        let webhooks = match self.webhooks {
            None => None,
            Some(h) => {
                let hmac = h.hmac_key.is_some() || h.hmac_key_file.is_some();
                let url = h.secret.is_some() || h.secret_file.is_some();
                if hmac && url {
                    ctx.err(
                        "webhooks",
                        "set either hmac_key (WAHA signs the body) or secret (in the URL), not both",
                    );
                    return None;
                }
                Some(if url {
                    let s = ctx.webhook_secret("webhooks.secret", h.secret, h.secret_file, env)?;
                    WahaHooks::UrlSecret(s)
                } else {
                    let k =
                        ctx.webhook_secret("webhooks.hmac_key", h.hmac_key, h.hmac_key_file, env)?;
                    WahaHooks::Hmac(k)
                })
            }
        };
        Some(WahaConfig {
            token,
            target: target?,
            tls: self.tls.unwrap_or_default(),
            webhooks,
        })
    }
}
