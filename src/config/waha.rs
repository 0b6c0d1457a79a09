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

#[cfg(test)]
mod tests {
    use crate::config::{parse, ProviderConfig, WahaHooks, WebhookAuth};

    fn errors(yaml: &str) -> Vec<String> {
        parse(yaml, &|_| None)
            .err()
            .map(|e| e.0)
            .unwrap_or_default()
    }

    const G: &str = "gateways:\n  - name: w\n    provider: waha\n    url: http://127.0.0.1:3000\n    instance: default\n";
    const E: &str = "gateways:\n  - name: e\n    provider: evolution\n    url: http://127.0.0.1:8080\n    token: k\n    instances: all\n";

    #[test]
    fn webhook_keys_of_waha_and_evolution() {
        let env = |k: &str| (k == "HOOK_KEY").then(|| "hmac-key-from-the-environment".to_string());
        let cfg = parse(
            &format!("{G}    webhooks:\n      hmac_key: ${{HOOK_KEY}}\n"),
            &env,
        )
        .unwrap();
        let gw = &cfg.gateways[0];
        assert!(matches!(
            gw.webhook_auth(),
            Some(WebhookAuth::HmacSha512(_))
        ));
        let ProviderConfig::Waha(w) = &gw.settings else {
            panic!()
        };
        assert!(
            matches!(&w.webhooks, Some(WahaHooks::Hmac(k)) if k.expose() == "hmac-key-from-the-environment")
        );
        assert_eq!(gw.settings.secrets().len(), 1, "the key is scrubbed");
        let cfg = parse(
            &format!("{G}    webhooks:\n      secret: a-long-url-secret-0123\n"),
            &env,
        )
        .unwrap();
        assert!(matches!(
            cfg.gateways[0].webhook_auth(),
            Some(WebhookAuth::UrlSecret(_))
        ));
        let both = errors(&format!(
            "{G}    webhooks:\n      secret: a-long-url-secret-0123\n      hmac_key: a-long-hmac-key-0123456\n"
        ));
        assert!(
            both[0].contains("webhooks: set either hmac_key"),
            "{both:?}"
        );
        // WAHA's documented example key is 8 characters: taken, with a warning.
        let short = parse(
            &format!("{G}    webhooks:\n      hmac_key: tiny-key\n"),
            &env,
        )
        .unwrap();
        assert!(matches!(
            short.gateways[0].webhook_auth(),
            Some(WebhookAuth::HmacSha512(k)) if k.expose() == "tiny-key"
        ));
        let none = errors(&format!("{G}    webhooks: {{}}\n"));
        assert!(
            none[0].contains("webhooks.hmac_key: is required"),
            "{none:?}"
        );
        let unknown = errors(&format!("{G}    webhooks:\n      hmac: x\n"));
        assert!(!unknown.is_empty());

        let cfg = parse(
            &format!("{E}    webhooks:\n      secret: evolution-secret-0123456\n"),
            &env,
        )
        .unwrap();
        let gw = &cfg.gateways[0];
        assert!(matches!(gw.webhook_auth(), Some(WebhookAuth::UrlSecret(_))));
        assert_eq!(
            gw.settings.secrets().len(),
            2,
            "token and secret are scrubbed"
        );
        let short = parse(
            &format!("{E}    webhooks:\n      secret: short-one\n"),
            &env,
        )
        .unwrap();
        assert!(matches!(
            short.gateways[0].webhook_auth(),
            Some(WebhookAuth::UrlSecret(s)) if s.expose() == "short-one"
        ));
        let hmac = errors(&format!(
            "{E}    webhooks:\n      hmac_key: evolution-signs-nothing\n"
        ));
        assert!(!hmac.is_empty(), "Evolution signs nothing: no hmac_key");
    }
}
