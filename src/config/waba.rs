//! The block of WhatsApp Business API (on-premises) gateways.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Ctx, Env, TlsConfig};
use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq)]
pub struct WabaConfig {
    pub auth: WabaAuth,
    pub tls: TlsConfig,
}

/// How requests are authorised.
#[derive(Debug, Clone, PartialEq)]
pub enum WabaAuth {
    /// `Authorization: Bearer TOKEN`, a token made by hand.
    Bearer(Secret),
    /// `Authorization: Apikey KEY`.
    Apikey(Secret),
    /// `POST /v1/users/login` with basic auth gets a token, renewed before it expires.
    Login { username: String, password: Secret },
}

impl WabaAuth {
    pub fn secret(&self) -> &Secret {
        match self {
            WabaAuth::Bearer(s) | WabaAuth::Apikey(s) => s,
            WabaAuth::Login { password, .. } => password,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AuthKind {
    #[default]
    Bearer,
    Apikey,
    Login,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    auth: Option<AuthKind>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    tls: Option<TlsConfig>,
}

impl Raw {
    pub(super) fn check(self, env: Env, ctx: &mut Ctx) -> Option<WabaConfig> {
        let token = ctx.secret("token", self.token, self.token_file, env);
        let password = ctx.secret("password", self.password, self.password_file, env);
        let kind = self.auth.unwrap_or_default();
        let auth = match kind {
            AuthKind::Bearer | AuthKind::Apikey => {
                let name = if kind == AuthKind::Bearer {
                    "bearer"
                } else {
                    "apikey"
                };
                if token.is_none() && !ctx.failed.contains("token") {
                    ctx.err("auth", format!("{name} needs token or token_file"));
                }
                if self.username.is_some() || password.is_some() {
                    ctx.err(
                        "auth",
                        format!("{name} takes no username or password (use auth: login)"),
                    );
                }
                token.map(|t| match kind {
                    AuthKind::Apikey => WabaAuth::Apikey(t),
                    _ => WabaAuth::Bearer(t),
                })
            }
            AuthKind::Login => {
                let username = self.username.filter(|u| !u.is_empty());
                if username.is_none() {
                    ctx.err("auth", "login needs username");
                }
                if password.is_none() && !ctx.failed.contains("password") {
                    ctx.err("auth", "login needs password or password_file");
                }
                if token.is_some() {
                    ctx.err("auth", "login gets its own token: remove token");
                }
                username
                    .zip(password)
                    .map(|(username, password)| WabaAuth::Login { username, password })
            }
        };
        Some(WabaConfig {
            auth: auth?,
            tls: self.tls.unwrap_or_default(),
        })
        .filter(|_| ctx.errors.is_empty())
    }
}
