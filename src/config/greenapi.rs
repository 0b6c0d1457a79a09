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
}

impl Raw {
    pub(super) fn check(self, env: Env, ctx: &mut Ctx) -> Option<GreenApiConfig> {
        let token = ctx.secret("token", self.token, self.token_file, env);
        let instance = ctx.required_id("instance", self.instance, Provider::GreenApi);
        let token = ctx.required_secret("token", token, Provider::GreenApi);
        Some(GreenApiConfig {
            instance: instance?,
            token: token?,
            notifications: self.notifications.unwrap_or_default(),
            tls: self.tls.unwrap_or_default(),
        })
    }
}
