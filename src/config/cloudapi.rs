//! The block of WhatsApp Cloud API gateways.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Ctx, Env, IdString};
use crate::provider::Provider;
use crate::secret::Secret;

/// The current Graph API version: v26.0, released on 29 July 2026 (Meta's Graph API changelog).
/// Meta retires versions about two years after release; `api_version` pins another one.
pub const DEFAULT_GRAPH_API_VERSION: &str = "v26.0";

#[derive(Debug, Clone, PartialEq)]
pub struct CloudApiConfig {
    /// A Graph node id (digits only, checked), never the phone number itself.
    pub phone_number_id: String,
    pub token: Secret,
    /// `v26.0` and the like (checked).
    pub api_version: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    phone_number_id: Option<IdString>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    api_version: Option<String>,
}

impl Raw {
    pub(super) fn check(self, env: Env, ctx: &mut Ctx) -> Option<CloudApiConfig> {
        let token = ctx.secret("token", self.token, self.token_file, env);
        let api_version = self
            .api_version
            .unwrap_or_else(|| DEFAULT_GRAPH_API_VERSION.to_string());
        // Both go into the URL path: checking their shape keeps the path what it should be.
        let id = match self.phone_number_id.map(IdString::into_string).as_deref() {
            None | Some("") => {
                ctx.err("phone_number_id", "provider cloudapi needs phone_number_id");
                None
            }
            Some(id) => match check_phone_number_id(id) {
                Ok(()) => Some(id.to_string()),
                Err(e) => {
                    ctx.err("phone_number_id", e);
                    None
                }
            },
        };
        if let Err(e) = check_api_version(&api_version) {
            ctx.err("api_version", e);
        }
        let token = ctx.required_secret("token", token, Provider::CloudApi);
        Some(CloudApiConfig {
            phone_number_id: id?,
            token: token?,
            api_version,
        })
        .filter(|_| ctx.errors.is_empty())
    }
}

/// `phone_number_id`: a Graph node id, never the number itself.
pub fn check_phone_number_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(
            "must be the numeric Phone number ID shown in WhatsApp Manager, not the phone number",
        );
    }
    Ok(())
}

/// `api_version`: `v26.0` and the like.
pub fn check_api_version(v: &str) -> Result<(), String> {
    let digits = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    let ok = v
        .strip_prefix('v')
        .and_then(|r| r.split_once('.'))
        .is_some_and(|(major, minor)| digits(major) && digits(minor));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not a Graph API version such as {DEFAULT_GRAPH_API_VERSION}"
        ))
    }
}
