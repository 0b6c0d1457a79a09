//! `whatsapp_exporter plugchat-register`: points all seven PlugChat webhooks of an account at this
//! exporter with `PUT {plugchat}/api/integrations/update-webhooks`.
//!
//! The API token comes from `PLUGCHAT_API_TOKEN` or `--token-file`, never from the command line
//! (where `ps` and shell history would show it). PlugChat only accepts HTTPS webhooks, so a plain
//! `http://` base is refused, except on the loopback interface with `--allow-insecure-url`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde_json::{Map, Value};

use super::plugchat::{EVENTS, PATH_PREFIX};
use crate::config::{self, PlugChatAccount};
use crate::error::PollError;
use crate::secret::Secret;

pub const DEFAULT_PLUGCHAT_URL: &str = "https://www.plugchat.com.br";
pub const TOKEN_ENV: &str = "PLUGCHAT_API_TOKEN";
pub const UPDATE_PATH: &str = "/api/integrations/update-webhooks";
const TIMEOUT: Duration = Duration::from_secs(20);
const MASK: &str = "****";
const PUBLIC_URL_FLAG: &str = "--public-url";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The webhooks.plugchat account of the configuration file whose URLs are registered
    /// (may be left out when the file has only one).
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,

    /// The public HTTPS address at which PlugChat reaches this exporter, e.g.
    /// https://exporter.example.com (a path prefix of a reverse proxy may follow).
    #[arg(long = "public-url", value_name = "URL")]
    pub public_url: String,

    /// A file holding the PlugChat API token; without it, the PLUGCHAT_API_TOKEN environment
    /// variable. The token is never taken from the command line.
    #[arg(long = "token-file", value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// The PlugChat API.
    #[arg(long = "plugchat-url", value_name = "URL", default_value = DEFAULT_PLUGCHAT_URL)]
    pub plugchat_url: String,

    /// Allow http:// for 127.0.0.1, ::1 and localhost (tests against a local mock); never for
    /// other hosts.
    #[arg(long = "allow-insecure-url")]
    pub allow_insecure_url: bool,

    /// Print the URLs that would be registered, and send nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

/// Registers the webhooks; the error says what went wrong in plain words.
pub async fn run(config_path: &Path, args: Args) -> Result<(), String> {
    let cfg = config::load(config_path)
        .map_err(|e| format!("{}: invalid configuration:\n{e}", config_path.display()))?;
    let account = pick_account(&cfg.plugchat, args.account.as_deref())?;
    let base = checked_url(PUBLIC_URL_FLAG, &args.public_url, args.allow_insecure_url)?;
    let api = checked_url(
        "--plugchat-url",
        &args.plugchat_url,
        args.allow_insecure_url,
    )?;
    let token = if args.dry_run {
        None
    } else {
        Some(read_token(
            args.token_file.as_deref(),
            std::env::var(TOKEN_ENV).ok(),
        )?)
    };
    let urls = webhook_urls(&base, account);
    println!(
        "PlugChat webhooks of account {:?} ({}):",
        account.account,
        if token.is_some() {
            "registering"
        } else {
            "dry run, nothing sent"
        }
    );
    for (event, _) in &urls {
        println!(
            "  {event:<22} {}",
            masked_url(&base, &account.account, event)
        );
    }
    let Some(token) = token else {
        return Ok(());
    };
    put_webhooks(&api, &token, &urls, account).await?;
    println!("PlugChat accepted the seven webhook URLs.");
    Ok(())
}

/// The account named by `--account`, or the only one.
fn pick_account<'a>(
    accounts: &'a [PlugChatAccount],
    name: Option<&str>,
) -> Result<&'a PlugChatAccount, String> {
    let names = || {
        accounts
            .iter()
            .map(|a| a.account.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (name, accounts) {
        (_, []) => Err("the configuration has no webhooks.plugchat account: add one (account and secret) first".into()),
        (None, [only]) => Ok(only),
        (None, _) => Err(format!(
            "the configuration has several PlugChat accounts ({}): choose one with --account",
            names()
        )),
        (Some(n), _) => accounts.iter().find(|a| a.account == n).ok_or_else(|| {
            format!(
                "no webhooks.plugchat account {n:?} in the configuration (it has: {})",
                names()
            )
        }),
    }
}

/// A base URL without trailing slash; HTTPS, or HTTP on loopback when explicitly allowed.
pub fn checked_url(flag: &str, raw: &str, allow_insecure: bool) -> Result<String, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("{flag}: {raw:?} is not a URL ({e})"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{flag}: give the base address only, without ?query or #fragment"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{flag}: user names and passwords in the URL are not supported"
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure && is_loopback(&url) => {}
        "http" if allow_insecure => {
            return Err(format!(
                "{flag}: --allow-insecure-url only allows http:// for 127.0.0.1, ::1 and localhost"
            ))
        }
        "http" if flag == PUBLIC_URL_FLAG => {
            return Err(format!(
                "{flag}: PlugChat only accepts HTTPS webhook URLs; serve HTTPS with --web.config.file or behind a reverse proxy, and give its https:// address"
            ))
        }
        "http" => return Err(format!("{flag}: the API token is only sent over HTTPS")),
        other => return Err(format!("{flag}: unsupported scheme {other:?}; use https://")),
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

pub(crate) fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The token from `--token-file`, else from the environment; surrounding whitespace dropped.
fn read_token(file: Option<&Path>, env: Option<String>) -> Result<Secret, String> {
    let (value, from) = match file {
        Some(p) => (
            std::fs::read_to_string(p)
                .map_err(|e| format!("--token-file: cannot read {}: {e}", p.display()))?,
            format!("--token-file {}", p.display()),
        ),
        None => (
            env.ok_or_else(|| {
                format!("no PlugChat API token: set {TOKEN_ENV} or pass --token-file PATH")
            })?,
            TOKEN_ENV.to_string(),
        ),
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("the PlugChat API token in {from} is empty"));
    }
    Ok(Secret::new(value.to_string()))
}

/// `(event, URL)` for the seven events: `{base}/webhooks/plugchat/{account}/{event}?secret=S`.
fn webhook_urls(base: &str, account: &PlugChatAccount) -> Vec<(&'static str, Secret)> {
    let secret: String =
        form_urlencoded::byte_serialize(account.secret.expose().as_bytes()).collect();
    EVENTS
        .iter()
        .map(|event| {
            let url = format!(
                "{base}{PATH_PREFIX}{}/{event}?secret={secret}",
                account.account
            );
            (*event, Secret::new(url))
        })
        .collect()
}

fn masked_url(base: &str, account: &str, event: &str) -> String {
    format!("{base}{PATH_PREFIX}{account}/{event}?secret={MASK}")
}

async fn put_webhooks(
    api: &str,
    token: &Secret,
    urls: &[(&'static str, Secret)],
    account: &PlugChatAccount,
) -> Result<(), String> {
    let body: Map<String, Value> = urls
        .iter()
        .map(|(event, url)| (event.to_string(), Value::String(url.expose().to_string())))
        .collect();
    let endpoint = format!("{api}{UPDATE_PATH}");
    let client = client(&endpoint)?;
    let answer = crate::http::fetch(
        client
            .put(&endpoint)
            .header(reqwest::header::AUTHORIZATION, token.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(Value::Object(body).to_string()),
        TIMEOUT,
    )
    .await
    .map_err(|e| match e {
        PollError::Timeout(_) => format!(
            "PlugChat at {api} did not answer within {}s",
            TIMEOUT.as_secs()
        ),
        e => format!("cannot call PlugChat at {api}: {e}"),
    })?;
    let code = answer.status.as_u16();
    if answer.status.is_success() {
        return Ok(());
    }
    let said = excerpt(&answer.body, &[token.expose(), account.secret.expose()]);
    Err(explain(code, &said))
}

fn client(endpoint: &str) -> Result<reqwest::Client, String> {
    let mut b = crate::http::builder().timeout(TIMEOUT);
    // A proxy from the environment must not see a call meant for the loopback interface.
    if Url::parse(endpoint).is_ok_and(|u| is_loopback(&u)) {
        b = b.no_proxy();
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// What PlugChat's refusal means, in the words of its documentation.
fn explain(code: u16, said: &str) -> String {
    let what = match code {
        401 => "PlugChat refused the token (HTTP 401). Check that the API token is valid and current (it is sent as the Authorization header, from PLUGCHAT_API_TOKEN or --token-file) and that the body carries all seven webhook URLs.".to_string(),
        405 => "PlugChat refused the method (HTTP 405). This command sends PUT /api/integrations/update-webhooks as documented; check that --plugchat-url is the PlugChat API address.".to_string(),
        415 => "PlugChat refused the content type (HTTP 415). This command sends Content-Type: application/json; a proxy between here and PlugChat may be changing it.".to_string(),
        code => format!("PlugChat answered HTTP {code}; the webhooks were not changed."),
    };
    if said.is_empty() {
        what
    } else {
        format!("{what}\nPlugChat said: {said}")
    }
}

/// The start of PlugChat's answer, printable, with the token and secret blanked in case it echoes
/// the request. Answers are capped at 4 MiB by the read, so masking the whole of one is cheap.
pub(crate) fn excerpt(body: &[u8], hide: &[&str]) -> String {
    let mut text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    for h in hide.iter().filter(|h| !h.is_empty()) {
        text = text.replace(h, MASK);
        let encoded: String = form_urlencoded::byte_serialize(h.as_bytes()).collect();
        text = text.replace(&encoded, MASK);
    }
    // Cut only after masking: a secret straddling the cut would otherwise show in part.
    text.chars()
        .take(300)
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(secret: &str) -> PlugChatAccount {
        PlugChatAccount {
            account: "store".into(),
            secret: Secret::new(secret.into()),
        }
    }

    #[test]
    fn urls_carry_the_encoded_secret() {
        let urls = webhook_urls(
            "https://ex.example.com/prefix",
            &account("a+b/c&d=e f%0123456"),
        );
        assert_eq!(urls.len(), 7);
        assert_eq!(urls[0].0, "finishAttendance");
        assert_eq!(
            urls[5].1.expose(),
            "https://ex.example.com/prefix/webhooks/plugchat/store/messageStatus?secret=a%2Bb%2Fc%26d%3De+f%250123456"
        );
        assert!(!masked_url("https://x", "store", "messageStatus").contains("a%2B"));
    }

    #[test]
    fn only_https_or_explicit_loopback_http() {
        assert_eq!(
            checked_url("--public-url", "https://exporter.example.com/", false).unwrap(),
            "https://exporter.example.com"
        );
        assert_eq!(
            checked_url("--public-url", "https://ex.example.com/hooks/", false).unwrap(),
            "https://ex.example.com/hooks"
        );
        let e = checked_url("--public-url", "http://exporter.example.com", false).unwrap_err();
        assert!(e.contains("only accepts HTTPS"), "{e}");
        assert!(checked_url("--public-url", "http://exporter.example.com", true).is_err());
        assert!(checked_url("--public-url", "http://127.0.0.1:9", false).is_err());
        assert!(checked_url("--public-url", "http://127.0.0.1:9", true).is_ok());
        assert!(checked_url("--public-url", "http://localhost:9", true).is_ok());
        assert!(checked_url("--public-url", "http://[::1]:9", true).is_ok());
        assert!(checked_url("--public-url", "https://x.example.com/?a=1", false).is_err());
        assert!(checked_url("--public-url", "https://u:p@x.example.com", false).is_err());
        assert!(checked_url("--public-url", "ftp://x.example.com", false).is_err());
        assert!(checked_url("--public-url", "exporter.example.com", false).is_err());
    }

    #[test]
    fn account_choice() {
        let one = [account("0123456789abcdef")];
        assert_eq!(pick_account(&one, None).unwrap().account, "store");
        assert!(pick_account(&one, Some("other"))
            .unwrap_err()
            .contains("store"));
        assert!(pick_account(&[], None).is_err());
        let two = [account("0123456789abcdef"), account("0123456789abcdef")];
        assert!(pick_account(&two, None).unwrap_err().contains("--account"));
    }

    #[test]
    fn token_sources() {
        assert_eq!(
            read_token(None, Some(" tok\n".into())).unwrap().expose(),
            "tok"
        );
        assert!(read_token(None, None).unwrap_err().contains(TOKEN_ENV));
        assert!(read_token(None, Some("  ".into()))
            .unwrap_err()
            .contains("empty"));
        let e = read_token(Some(Path::new("/nonexistent/token")), Some("t".into())).unwrap_err();
        assert!(e.contains("--token-file"), "{e}");
    }

    #[test]
    fn refusals_in_plain_words_without_secrets() {
        assert!(explain(401, "").contains("Authorization"));
        assert!(explain(405, "").contains("PUT"));
        assert!(explain(415, "").contains("application/json"));
        assert!(explain(500, "").contains("HTTP 500"));
        let said = excerpt(
            b"{\"error\":\"bad\",\"echo\":\"tok-123 and a%2Bsecret\"}\n",
            &["tok-123", "a+secret"],
        );
        assert_eq!(said, "{\"error\":\"bad\",\"echo\":\"**** and ****\"}");
    }

    #[test]
    fn a_secret_at_the_cut_is_masked_whole() {
        let body = format!("{}tok-STRADDLE-1234567890", "x".repeat(295));
        let said = excerpt(body.as_bytes(), &["tok-STRADDLE-1234567890"]);
        assert!(!said.contains("tok-"), "no part of the secret: {said}");
    }
}
