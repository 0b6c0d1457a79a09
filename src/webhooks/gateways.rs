//! `whatsapp_exporter webhooks-register`: points a gateway's webhooks at this exporter, with the
//! gateway's own credentials from the configuration.
//!
//! - Z-API / PlugzAPI: `PUT {url}/instances/{id}/token/{token}/update-webhook-{kind}` with
//!   `{"value": URL}` for received, delivery, message-status, disconnected and connected
//!   (developer.z-api.io, webhooks/on-*.mdx); the answer is `{"value": true}`. Z-API accepts HTTPS
//!   webhook URLs only.
//! - Green API: `POST {url}/waInstance{id}/setSettings/{token}` with `webhookUrl`, `webhookUrlToken`
//!   and the notification kinds switched on (green-api.com/en/docs/api/account/SetSettings); the
//!   answer is `{"saveSettings": true}`, applied within 5 minutes.
//! - Evolution API, one instance: `POST {url}/webhook/set/{instance}` (header `apikey`) with the
//!   URL and the events it reads; a whole server: the global webhook's environment is printed.
//! - WAHA: a session's webhooks are part of its whole configuration (`PUT /api/sessions/{name}`
//!   replaces it): the entry of `config.webhooks[]` (url, events, hmac key) and the global
//!   environment are printed, nothing is sent.
//! - Cloud API: Meta's webhooks are set in the Meta app (App Dashboard → WhatsApp →
//!   Configuration), not by the number's token: the command prints the callback URL, where the
//!   verify token comes from, and the fields to subscribe.
//!
//! Secrets are never printed: the URL secret shows as `****`, tokens not at all (the verify token
//! only with `--show-verify-token`, for the operator to paste).

use std::path::Path;
use std::time::Duration;

use reqwest::Url;
use serde_json::{json, Value};

use super::register::{excerpt, is_loopback};
use crate::config::{self, CloudApiApp, GatewayConfig, ProviderConfig};
use crate::error::PollError;
use crate::secret::Secret;

const TIMEOUT: Duration = Duration::from_secs(20);
const MASK: &str = "****";

/// The Z-API webhook kinds the exporter counts, in the order they are set.
pub const ZAPI_KINDS: [&str; 5] = [
    "received",
    "delivery",
    "message-status",
    "disconnected",
    "connected",
];

/// The Cloud API webhook fields the exporter reads.
pub const CLOUDAPI_FIELDS: [&str; 4] = [
    "messages",
    "phone_number_quality_update",
    "account_update",
    "message_template_status_update",
];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configured gateway (zapi, plugzapi, greenapi, evolution or waha, with `webhooks:`) whose webhooks are
    /// set.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with = "app",
        required_unless_present = "app"
    )]
    pub gateway: Option<String>,

    /// A webhooks.cloudapi app: prints what to set in the Meta app.
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,

    /// The public address at which the provider reaches this exporter, e.g.
    /// https://exporter.example.com (a path prefix of a reverse proxy may follow).
    #[arg(long = "public-url", value_name = "URL")]
    pub public_url: String,

    /// Allow http:// for 127.0.0.1, ::1 and localhost, for the public URL and the gateway's API
    /// (tests against a local mock); never for other hosts.
    #[arg(long = "allow-insecure-url")]
    pub allow_insecure_url: bool,

    /// Print the Cloud API verify token too (it is a secret: only on a terminal you trust).
    #[arg(long = "show-verify-token")]
    pub show_verify_token: bool,

    /// Print what would be set, and send nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

pub async fn run(config_path: &Path, args: Args) -> Result<(), String> {
    let cfg = config::load(config_path)
        .map_err(|e| format!("{}: invalid configuration:\n{e}", config_path.display()))?;
    if let Some(app) = &args.app {
        let app = cfg
            .cloudapi_apps
            .iter()
            .find(|a| &a.app == app)
            .ok_or_else(|| format!("no webhooks.cloudapi app {app:?} in the configuration"))?;
        let base = public_url(&args.public_url, args.allow_insecure_url, true, "Meta")?;
        print!(
            "{}",
            cloudapi_instructions(&base, app, args.show_verify_token)
        );
        return Ok(());
    }
    let name = args.gateway.as_deref().unwrap_or_default();
    let gw = cfg
        .gateways
        .iter()
        .find(|g| g.name == name)
        .ok_or_else(|| format!("no gateway {name:?} in the configuration"))?;
    match &gw.settings {
        ProviderConfig::Zapi(z) => {
            let secret = z.webhook_secret.as_ref().ok_or_else(|| needs_webhooks(gw, "secret"))?;
            let base = public_url(&args.public_url, args.allow_insecure_url, true, "Z-API")?;
            api_url(&gw.url, args.allow_insecure_url)?;
            let url = Secret::new(format!("{base}/webhooks/{}?secret={}", gw.name, encoded(secret)));
            let shown = format!("{base}/webhooks/{}?secret={MASK}", gw.name);
            println!(
                "{} webhooks of gateway {:?} -> {shown}{}",
                gw.provider,
                gw.name,
                if args.dry_run { " (dry run, nothing sent)" } else { "" }
            );
            if args.dry_run {
                return Ok(());
            }
            for kind in ZAPI_KINDS {
                zapi_set(gw, z, kind, &url).await?;
                println!("  update-webhook-{kind}: accepted");
            }
            Ok(())
        }
        ProviderConfig::GreenApi(g) => {
            let token = g.webhook_token.as_ref().ok_or_else(|| needs_webhooks(gw, "token"))?;
            let base = public_url(&args.public_url, args.allow_insecure_url, false, "Green API")?;
            api_url(&gw.url, args.allow_insecure_url)?;
            if base.starts_with("http://") {
                eprintln!("warning: {base} is plain HTTP: the webhookUrlToken would cross the network in clear text");
            }
            let url = format!("{base}/webhooks/{}", gw.name);
            println!(
                "Green API webhooks of gateway {:?} -> {url} (Authorization: Bearer <webhooks.token>){}",
                gw.name,
                if args.dry_run { " (dry run, nothing sent)" } else { "" }
            );
            if args.dry_run {
                return Ok(());
            }
            green_set(gw, g, &url, token).await?;
            println!("  setSettings: accepted (Green API applies settings within 5 minutes; the instance may restart)");
            Ok(())
        }
        ProviderConfig::CloudApi(_) => Err(format!(
            "gateway {:?} is a Cloud API number: its webhooks come through a Meta app; use --app with a webhooks.cloudapi app",
            gw.name
        )),
        ProviderConfig::Waba(_) => Err(format!(
            "gateway {:?} (waba): the exporter does not receive WhatsApp Business API on-premises webhooks",
            gw.name
        )),
        ProviderConfig::Evolution(e) => {
            let secret = e.webhook_secret.as_ref().ok_or_else(|| needs_webhooks(gw, "secret"))?;
            let base = public_url(&args.public_url, args.allow_insecure_url, false, "Evolution API")?;
            if base.starts_with("http://") {
                eprintln!("warning: {base} is plain HTTP: the webhook secret and the instance's apikey (in every body) would cross the network in clear text");
            }
            let url = Secret::new(format!("{base}/webhooks/{}?secret={}", gw.name, encoded(secret)));
            let shown = format!("{base}/webhooks/{}?secret={MASK}", gw.name);
            let config::Target::One(instance) = &e.target else {
                print!("{}", evolution_server_instructions(gw, &shown));
                return Ok(());
            };
            api_url(&gw.url, args.allow_insecure_url)?;
            println!(
                "Evolution API webhook of gateway {:?} -> {shown}{}",
                gw.name,
                if args.dry_run { " (dry run, nothing sent)" } else { "" }
            );
            if args.dry_run {
                return Ok(());
            }
            evolution_set(gw, e, instance, &url).await?;
            println!("  webhook/set: accepted (events {})", EVOLUTION_EVENTS.join(", "));
            Ok(())
        }
        ProviderConfig::Waha(w) => {
            let base = public_url(&args.public_url, args.allow_insecure_url, false, "WAHA")?;
            if base.starts_with("http://") {
                eprintln!("warning: {base} is plain HTTP: the events (and a URL secret) would cross the network in clear text");
            }
            let hooks = w.webhooks.as_ref().ok_or_else(|| needs_webhooks(gw, "hmac_key"))?;
            print!("{}", waha_instructions(gw, w, hooks, &base));
            Ok(())
        }
    }
}

/// The Evolution API events the exporter reads, as the webhook's `events` list names them.
pub const EVOLUTION_EVENTS: [&str; 6] = [
    "CONNECTION_UPDATE",
    "STATUS_INSTANCE",
    "QRCODE_UPDATED",
    "MESSAGES_UPSERT",
    "MESSAGES_UPDATE",
    "SEND_MESSAGE",
];

/// The WAHA events the exporter reads.
pub const WAHA_EVENTS: [&str; 4] = ["session.status", "message", "message.any", "message.ack"];

/// `POST {url}/webhook/set/{instance}` with the `apikey` header and the v2 body
/// `{"webhook": {enabled, url, byEvents, base64, events}}` (evolution-api
/// src/api/integrations/event/webhook/webhook.schema.ts): one URL for every event (byEvents false
/// keeps the path the exporter routes), no media in base64.
async fn evolution_set(
    gw: &GatewayConfig,
    e: &config::EvolutionConfig,
    instance: &str,
    url: &Secret,
) -> Result<(), String> {
    let endpoint = format!(
        "{}/webhook/set/{}",
        gw.url,
        crate::http::path_segment(instance)
    );
    let body = json!({
        "webhook": {
            "enabled": true,
            "url": url.expose(),
            "byEvents": false,
            "base64": false,
            "events": EVOLUTION_EVENTS,
        }
    });
    let req = client(&endpoint)?
        .post(&endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("apikey", e.token.expose())
        .body(body.to_string());
    let mut hide = vec![e.token.expose(), url.expose()];
    if let Some(s) = &e.webhook_secret {
        hide.push(s.expose());
    }
    let v = send(req, "Evolution API (webhook/set)", &hide).await?;
    // The answer is the stored webhook row.
    let enabled = v
        .get("enabled")
        .or_else(|| v.get("webhook").and_then(|w| w.get("enabled")))
        .and_then(crate::json::boolean);
    match enabled {
        Some(true) => Ok(()),
        _ => Err("Evolution API (webhook/set) did not confirm (no \"enabled\": true)".into()),
    }
}

/// A server's instances all push to one URL: Evolution's global webhook.
pub fn evolution_server_instructions(gw: &GatewayConfig, shown: &str) -> String {
    let mut lines = vec![
        format!("Gateway {:?} is a whole Evolution API server: its instances push to one URL, the server's", gw.name),
        "global webhook, set in the server's environment (then restart it):".to_string(),
        "  WEBHOOK_GLOBAL_ENABLED=true".to_string(),
        format!("  WEBHOOK_GLOBAL_URL={shown}"),
        "  WEBHOOK_GLOBAL_WEBHOOK_BY_EVENTS=false".to_string(),
    ];
    lines.extend(
        EVOLUTION_EVENTS
            .iter()
            .map(|e| format!("  WEBHOOK_EVENTS_{e}=true")),
    );
    lines.push("where **** is webhooks.secret of the gateway in the configuration. The exporter routes each".into());
    lines.push(
        "push to the instance it names; instances it does not export are counted on the server."
            .into(),
    );
    lines.join("\n") + "\n"
}

/// WAHA's webhooks are part of a session's configuration (`config.webhooks[]` of
/// `PUT /api/sessions/{session}`, which replaces the whole configuration) or of the server's
/// environment: the command prints what to set rather than overwrite a session's settings.
pub fn waha_instructions(
    gw: &GatewayConfig,
    w: &config::WahaConfig,
    hooks: &config::WahaHooks,
    base: &str,
) -> String {
    let hmac = matches!(hooks, config::WahaHooks::Hmac(_));
    let url = if hmac {
        format!("{base}/webhooks/{}", gw.name)
    } else {
        format!("{base}/webhooks/{}?secret={MASK}", gw.name)
    };
    let events = WAHA_EVENTS
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let sign = if hmac {
        format!(", \"hmac\": {{\"key\": \"{MASK}\"}}")
    } else {
        String::new()
    };
    let entry = format!("  {{\"url\": \"{url}\", \"events\": [{events}]{sign}}}");
    let mut lines = Vec::new();
    match &w.target {
        config::Target::One(session) => {
            lines.push(format!("WAHA session {session:?} of gateway {:?}: add this entry to the session's config.webhooks", gw.name));
            lines.push(format!("(PUT <url>/api/sessions/{session} with the session's whole config as GET /api/sessions/{session}"));
            lines.push(
                "shows it, this entry added; or in the dashboard, the session's webhooks):".into(),
            );
        }
        config::Target::Server { .. } => {
            lines.push(format!("Gateway {:?} is a whole WAHA server: give every session this entry in its config.webhooks", gw.name));
            lines.push("(PUT <url>/api/sessions/<session>), or set the server's global webhook in its environment:".into());
            lines.push(format!("  WHATSAPP_HOOK_URL={url}"));
            lines.push(format!("  WHATSAPP_HOOK_EVENTS={}", WAHA_EVENTS.join(",")));
            if hmac {
                lines.push(format!("  WHATSAPP_HOOK_HMAC_KEY={MASK}"));
            }
            lines.push("The session entry:".into());
        }
    }
    lines.push(entry);
    if hmac {
        lines.push("where **** is webhooks.hmac_key of the gateway in the configuration. WAHA then signs every".into());
        lines.push("body (X-Webhook-Hmac, HMAC-SHA512), checked before the body is read.".into());
    } else {
        lines.push("where **** is webhooks.secret of the gateway in the configuration. Where WAHA signs webhooks".into());
        lines.push("(2024.11.5 and later), hmac_key is the better choice.".into());
    }
    lines.join("\n") + "\n"
}

fn needs_webhooks(gw: &GatewayConfig, key: &str) -> String {
    format!(
        "gateway {:?} has no webhooks.{key} in the configuration: add it (a long random string), reload, then register",
        gw.name
    )
}

fn encoded(s: &Secret) -> String {
    form_urlencoded::byte_serialize(s.expose().as_bytes()).collect()
}

/// The public base URL, without trailing slash.
pub fn public_url(
    raw: &str,
    allow_insecure: bool,
    https_only: bool,
    who: &str,
) -> Result<String, String> {
    let url =
        Url::parse(raw.trim()).map_err(|e| format!("--public-url: {raw:?} is not a URL ({e})"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("--public-url: give the base address only, without ?query or #fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("--public-url: user names and passwords in the URL are not supported".into());
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure && is_loopback(&url) => {}
        "http" if allow_insecure => {
            return Err(
                "--public-url: --allow-insecure-url only allows http:// for 127.0.0.1, ::1 and localhost".into(),
            )
        }
        "http" if https_only => {
            return Err(format!(
                "--public-url: {who} only accepts HTTPS webhook URLs; serve HTTPS with --web.config.file or behind a reverse proxy, and give its https:// address"
            ))
        }
        "http" => {}
        other => return Err(format!("--public-url: unsupported scheme {other:?}; use https://")),
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// The gateway's API carries its token in the path: HTTPS, or loopback HTTP when allowed.
fn api_url(raw: &str, allow_insecure: bool) -> Result<(), String> {
    let url = Url::parse(raw).map_err(|e| format!("the gateway's url is not a URL ({e})"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure && is_loopback(&url) => Ok(()),
        _ => Err("the gateway's url is not https://: the API token is only sent over HTTPS (--allow-insecure-url allows http:// on loopback)".into()),
    }
}

fn client(endpoint: &str) -> Result<reqwest::Client, String> {
    let mut b = crate::http::builder().timeout(TIMEOUT);
    if Url::parse(endpoint).is_ok_and(|u| is_loopback(&u)) {
        b = b.no_proxy();
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

async fn send(req: reqwest::RequestBuilder, who: &str, hide: &[&str]) -> Result<Value, String> {
    let answer = crate::http::fetch(req, TIMEOUT)
        .await
        .map_err(|e| match e {
            PollError::Timeout(_) => format!("{who} did not answer within {}s", TIMEOUT.as_secs()),
            e => {
                // The URL holds the token: scrub whatever the error quotes.
                let mut m = e.to_string();
                for h in hide.iter().filter(|h| h.len() >= 4) {
                    m = m.replace(h, MASK);
                }
                format!("cannot call {who}: {m}")
            }
        })?;
    if !answer.status.is_success() {
        let said = excerpt(&answer.body, hide);
        let hint = match answer.status.as_u16() {
            401 | 403 => " (the gateway's token, or the Client-Token, was refused)",
            404 => " (check the gateway's url, instance and token)",
            _ => "",
        };
        let mut msg = format!(
            "{who} answered HTTP {}{hint}; nothing was changed",
            answer.status.as_u16()
        );
        if !said.is_empty() {
            msg.push_str(&format!("\n{who} said: {said}"));
        }
        return Err(msg);
    }
    serde_json::from_slice(&answer.body).map_err(|e| {
        format!(
            "{who} answered something that is not JSON ({})",
            crate::json::describe_error(&e)
        )
    })
}

async fn zapi_set(
    gw: &GatewayConfig,
    z: &config::ZapiConfig,
    kind: &str,
    url: &Secret,
) -> Result<(), String> {
    let endpoint = format!(
        "{}/instances/{}/token/{}/update-webhook-{kind}",
        gw.url,
        crate::http::path_segment(&z.instance),
        crate::http::path_segment(z.token.expose())
    );
    let mut req = client(&endpoint)?
        .put(&endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(json!({ "value": url.expose() }).to_string());
    if let Some(ct) = &z.client_token {
        req = req.header("Client-Token", ct.expose());
    }
    let mut hide = vec![z.token.expose(), url.expose()];
    if let Some(ct) = &z.client_token {
        hide.push(ct.expose());
    }
    if let Some(s) = &z.webhook_secret {
        hide.push(s.expose());
    }
    let who = format!("{} (update-webhook-{kind})", gw.provider);
    let v = send(req, &who, &hide).await?;
    match v.get("value").and_then(crate::json::boolean) {
        Some(true) => Ok(()),
        _ => Err(format!(
            "{who} did not confirm (no \"value\": true){}",
            match v.get("error").and_then(Value::as_str) {
                Some(e) => format!(": {}", excerpt(e.as_bytes(), &hide)),
                None => String::new(),
            }
        )),
    }
}

async fn green_set(
    gw: &GatewayConfig,
    g: &config::GreenApiConfig,
    url: &str,
    token: &Secret,
) -> Result<(), String> {
    let endpoint = format!(
        "{}/waInstance{}/setSettings/{}",
        gw.url,
        crate::http::path_segment(&g.instance),
        crate::http::path_segment(g.token.expose())
    );
    let body = json!({
        "webhookUrl": url,
        "webhookUrlToken": token.expose(),
        "incomingWebhook": "yes",
        "outgoingWebhook": "yes",
        "outgoingAPIMessageWebhook": "yes",
        "outgoingMessageWebhook": "yes",
        "stateWebhook": "yes",
    });
    let req = client(&endpoint)?
        .post(&endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    let hide = [g.token.expose(), token.expose()];
    let v = send(req, "Green API (setSettings)", &hide).await?;
    match v.get("saveSettings").and_then(crate::json::boolean) {
        Some(true) => Ok(()),
        _ => Err("Green API (setSettings) did not confirm (no \"saveSettings\": true)".into()),
    }
}

/// What to set in the Meta app for `app`.
pub fn cloudapi_instructions(base: &str, app: &CloudApiApp, show_token: bool) -> String {
    let token = if show_token {
        app.verify_token.expose().to_string()
    } else {
        format!(
            "the verify_token of webhooks.cloudapi app {:?} in the configuration (--show-verify-token prints it)",
            app.app
        )
    };
    format!(
        "Meta app {:?}: the Cloud API's webhooks are set in the Meta app, not by the exporter.\n\
         In the App Dashboard, WhatsApp > Configuration > Webhook:\n\
         \x20 Callback URL:  {base}/webhooks/cloudapi/{}\n\
         \x20 Verify token:  {token}\n\
         Meta then calls the URL once (GET, the verification handshake); the exporter must be running\n\
         with this configuration and reachable over HTTPS with a valid certificate.\n\
         Then subscribe these webhook fields: {}.\n\
         The exporter checks each POST with the app secret (App Dashboard > App settings > Basic).\n",
        app.app,
        app.app,
        CLOUDAPI_FIELDS.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls() {
        assert_eq!(
            public_url("https://ex.example.com/p/", false, true, "Z-API").unwrap(),
            "https://ex.example.com/p"
        );
        let e = public_url("http://ex.example.com", false, true, "Z-API").unwrap_err();
        assert!(e.contains("Z-API only accepts HTTPS"), "{e}");
        assert!(public_url("http://ex.example.com", false, false, "Green API").is_ok());
        assert!(public_url("http://ex.example.com", true, false, "Green API").is_err());
        assert!(public_url("http://127.0.0.1:1", true, true, "Z-API").is_ok());
        assert!(public_url("https://ex.example.com/?secret=x", false, true, "Z-API").is_err());
    }

    #[test]
    fn cloudapi_instructions_hide_the_token_unless_asked() {
        let app = CloudApiApp {
            app: "main".into(),
            app_secret: Secret::new("app-secret-0123456789".into()),
            verify_token: Secret::new("verify-0123456789".into()),
        };
        let text = cloudapi_instructions("https://ex.example.com", &app, false);
        assert!(text.contains("https://ex.example.com/webhooks/cloudapi/main"));
        assert!(text.contains("phone_number_quality_update"));
        assert!(!text.contains("verify-0123456789") && !text.contains("app-secret"));
        assert!(cloudapi_instructions("https://x", &app, true).contains("verify-0123456789"));
    }
}
