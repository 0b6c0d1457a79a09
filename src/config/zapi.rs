//! The block of PlugzAPI and Z-API gateways.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Ctx, Env, IdString, TlsConfig};
use crate::provider::Provider;
use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq)]
pub struct ZapiConfig {
    pub instance: String,
    pub token: Secret,
    /// The `Client-Token` header some accounts require on every request.
    pub client_token: Option<Secret>,
    pub tls: TlsConfig,
    /// `webhooks.secret`: the secret Z-API must put in the webhook URL (`?secret=`).
    pub webhook_secret: Option<Secret>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHooks {
    secret: Option<String>,
    secret_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    instance: Option<IdString>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    client_token: Option<String>,
    client_token_file: Option<PathBuf>,
    tls: Option<TlsConfig>,
    webhooks: Option<RawHooks>,
}

impl Raw {
    pub(super) fn check(self, p: Provider, env: Env, ctx: &mut Ctx) -> Option<ZapiConfig> {
        let token = ctx.secret("token", self.token, self.token_file, env);
        let client_token = ctx.secret(
            "client_token",
            self.client_token,
            self.client_token_file,
            env,
        );
        let instance = ctx.required_id("instance", self.instance, p);
        let token = ctx.required_secret("token", token, p);
        let webhook_secret = match self.webhooks {
            Some(h) => Some(ctx.webhook_secret("webhooks.secret", h.secret, h.secret_file, env)?),
            None => None,
        };
        Some(ZapiConfig {
            instance: instance?,
            token: token?,
            client_token,
            tls: self.tls.unwrap_or_default(),
            webhook_secret,
        })
    }
}
