//! The block of Evolution API gateways: the API key (`apikey` header), and one instance or the
//! instances of the whole server.

use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::discovery::{self, Target};
use super::{Ctx, Env, IdString, TlsConfig};
use crate::provider::Provider;
use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq)]
pub struct EvolutionConfig {
    /// The global `AUTHENTICATION_API_KEY` (needed to list every instance) or an instance token.
    pub token: Secret,
    pub target: Target,
    pub tls: TlsConfig,
    /// `webhooks.secret`: the secret Evolution must put in the webhook URL (`?secret=`); it signs
    /// nothing.
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
    token: Option<String>,
    token_file: Option<PathBuf>,
    instance: Option<IdString>,
    instances: Option<Value>,
    max_instances: Option<Value>,
    tls: Option<TlsConfig>,
    webhooks: Option<RawHooks>,
}

impl Raw {
    pub(super) fn check(self, env: Env, ctx: &mut Ctx) -> Option<EvolutionConfig> {
        let token = ctx.secret("token", self.token, self.token_file, env);
        let target = discovery::target(
            Provider::Evolution,
            self.instance,
            self.instances,
            self.max_instances,
            ctx,
        );
        let token = ctx.required_secret("token", token, Provider::Evolution);
        let webhook_secret = match self.webhooks {
            Some(h) => Some(ctx.webhook_secret("webhooks.secret", h.secret, h.secret_file, env)?),
            None => None,
        };
        Some(EvolutionConfig {
            token: token?,
            target: target?,
            tls: self.tls.unwrap_or_default(),
            webhook_secret,
        })
    }
}
