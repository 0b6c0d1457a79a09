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
        Some(WahaConfig {
            token,
            target: target?,
            tls: self.tls.unwrap_or_default(),
        })
    }
}
