//! The block of Green API gateways.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Ctx, Env, IdString, TlsConfig};
use crate::provider::Provider;
use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq)]
pub struct GreenApiConfig {
    pub instance: String,
    pub token: Secret,
    pub notifications: Notifications,
    pub tls: TlsConfig,
    /// `webhooks.token`: the `webhookUrlToken` Green API sends as `Authorization: Bearer`.
    pub webhook_token: Option<Secret>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHooks {
    token: Option<String>,
    token_file: Option<PathBuf>,
}

/// Whether the exporter reads (and deletes) the instance's notification queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Notifications {
    #[default]
    Off,
    Consume,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    instance: Option<IdString>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    notifications: Option<Notifications>,
    tls: Option<TlsConfig>,
    webhooks: Option<RawHooks>,
}

impl Raw {
    pub(super) fn check(self, env: Env, ctx: &mut Ctx) -> Option<GreenApiConfig> {
        let token = ctx.secret("token", self.token, self.token_file, env);
        let instance = ctx.required_id("instance", self.instance, Provider::GreenApi);
        let token = ctx.required_secret("token", token, Provider::GreenApi);
        let notifications = self.notifications.unwrap_or_default();
        let webhook_token = match self.webhooks {
            Some(_) if notifications == Notifications::Consume => {
                ctx.err(
                    "webhooks",
                    "cannot be set with notifications: consume: Green API stops the notification queue while a webhook URL is set; keep one of them",
                );
                return None;
            }
            Some(h) => Some(ctx.webhook_secret("webhooks.token", h.token, h.token_file, env)?),
            None => None,
        };
        Some(GreenApiConfig {
            instance: instance?,
            token: token?,
            notifications,
            tls: self.tls.unwrap_or_default(),
            webhook_token,
        })
    }
}
