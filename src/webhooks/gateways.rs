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
    /// The configured gateway (zapi, plugzapi or greenapi, with `webhooks:`) whose webhooks are
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
        ProviderConfig::Evolution(_) | ProviderConfig::Waha(_) => Err(format!(
            "gateway {:?} ({}): registering its webhooks is not supported yet",
            gw.name, gw.provider
        )),
    }
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
