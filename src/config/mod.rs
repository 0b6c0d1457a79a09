//! The configuration file: YAML as in SPEC.md, validated strictly.
//!
//! Parsing happens in two steps so that every error can name the gateway it belongs to: the file is
//! first read with each gateway kept as a raw YAML value, then each gateway is decoded on its own
//! (unknown keys rejected) and checked against what its provider needs.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::provider::Provider;
use crate::secret::Secret;

mod canary;
mod cloudapi;
mod discovery;
mod evolution;
mod gateway;
mod greenapi;
mod waba;
mod waha;
mod zapi;

pub use canary::{normalise_number, receives_pushes, CanaryConfig, Template};
pub use cloudapi::{check_api_version, check_phone_number_id, DEFAULT_GRAPH_API_VERSION};
pub use discovery::{
    is_label_safe_instance, Instances, Target, DEFAULT_MAX_INSTANCES, MAX_INSTANCE_NAME,
};
pub use gateway::{
    CloudApiConfig, EvolutionConfig, GatewayConfig, GreenApiConfig, Notifications, ProviderConfig,
    TlsConfig, WabaAuth, WabaConfig, WahaConfig, WahaHooks, WebhookAuth, ZapiConfig,
};

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_CONCURRENT_POLLS: usize = 64;
/// A larger file is refused before it is read: a configuration of 10,000 gateways is about 1 MiB.
pub const MAX_FILE_SIZE: u64 = 10 << 20;
/// Flow collections (`[...]`, `{...}`) nested deeper are refused before parsing: the YAML parser
/// takes time quadratic in the nesting, and no configuration nests more than a few levels.
pub const MAX_FLOW_DEPTH: usize = 32;
/// The bounds of `interval`: polls faster than this hammer a gateway, slower ones watch nothing.
pub const INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(24 * 3600));
/// The bounds of `timeout`.
pub const TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(3600));
/// The largest `max_concurrent_polls`.
pub const MAX_CONCURRENT_POLLS_LIMIT: usize = 100_000;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub global: Global,
    pub gateways: Vec<GatewayConfig>,
    pub plugchat: Vec<PlugChatAccount>,
    /// `webhooks.cloudapi`: one receiver per Meta app.
    pub cloudapi_apps: Vec<CloudApiApp>,
    pub message_tracking: MessageTracking,
    /// `canaries:`: real messages between configured gateways (`docs/canaries.md`).
    pub canaries: Vec<CanaryConfig>,
}

/// A Meta app whose webhooks arrive at `/webhooks/cloudapi/<app>`.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudApiApp {
    pub app: String,
    /// Signs every POST (`X-Hub-Signature-256`).
    pub app_secret: Secret,
    /// Answers the verification handshake.
    pub verify_token: Secret,
}

/// `webhooks.message_tracking`: the ids followed from sent to delivered, for every gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageTracking {
    /// 0 turns the tracking off.
    pub max_tracked: usize,
    pub max_age: Duration,
}

impl Default for MessageTracking {
    fn default() -> Self {
        MessageTracking {
            max_tracked: DEFAULT_MAX_TRACKED,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

pub const DEFAULT_MAX_TRACKED: usize = 100_000;
/// At about 40 bytes an id, 10 million is some 400 MB: more is a mistake.
pub const MAX_MAX_TRACKED: usize = 10_000_000;
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Meta retries for 36 hours; a week is far beyond any status.
pub const MAX_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The shortest secret the exporter advises users to choose (a URL secret, an HMAC key, a
/// bearer token); a shorter one is taken with a warning, as a provider may dictate it.
pub const MIN_WEBHOOK_SECRET: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    pub interval: Duration,
    pub timeout: Duration,
    pub max_concurrent_polls: usize,
    pub number_state: NumberStateConfig,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            max_concurrent_polls: DEFAULT_MAX_CONCURRENT_POLLS,
            number_state: NumberStateConfig::default(),
        }
    }
}

/// `global.number_state`: how a number's state is judged and kept steady.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberStateConfig {
    /// How long a state must hold before it is shown (`for`).
    pub hold: Duration,
    /// How far back a delivered status, a received message or a delivered canary counts as the
    /// positive evidence of `working`.
    pub evidence_window: Duration,
    /// A sent message with no delivered, read or failed status after this is stuck.
    pub acks_stuck_after: Duration,
    /// Pushes missing for this long, where the number's usual rate says they should come, have
    /// stopped.
    pub silent_after: Duration,
}

impl Default for NumberStateConfig {
    fn default() -> Self {
        NumberStateConfig {
            hold: Duration::from_secs(120),
            evidence_window: Duration::from_secs(3600),
            acks_stuck_after: Duration::from_secs(300),
            silent_after: Duration::from_secs(1800),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlugChatAccount {
    pub account: String,
    pub secret: Secret,
}

/// Everything wrong with a configuration file, one line per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn one(msg: impl Into<String>) -> Self {
        ConfigError(vec![msg.into()])
    }
}

/// Whether the secrets a file names are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    Read,
    /// `--config.no-secrets`: `*_file` keys are not opened and `${VAR}` in secret keys is not
    /// looked up (a CI job lints the file without them); everything else is checked as usual.
    Skip,
}

/// The value a skipped secret stands in with: long enough for every length check.
const UNREAD_SECRET: &str = "unread-secret-unread-secret-unread";

/// Reads and validates a configuration file (at most [`MAX_FILE_SIZE`]).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    parse(&read(path)?, &|name| std::env::var(name).ok())
}

/// Validates a configuration file without its secrets (`--config.check --config.no-secrets`);
/// an unset variable in a non-secret key (a URL) is not an error either.
pub fn load_without_secrets(path: &Path) -> Result<Config, ConfigError> {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .or(Some("https://unset.invalid".into()))
    };
    parse_with(&read(path)?, &env, Secrets::Skip)
}

/// The file's text, refused past [`MAX_FILE_SIZE`] without reading more than that.
fn read(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| {
        ConfigError::one(format!(
            "cannot read {}: {e} (pass --config.file, or try --demo to run without a configuration)",
            path.display()
        ))
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    let too_large = |size: u64| {
        ConfigError::one(format!(
            "{}: the file is too large ({:.1} MiB); a configuration may be {} MiB at most",
            path.display(),
            size as f64 / (1u64 << 20) as f64,
            MAX_FILE_SIZE >> 20
        ))
    };
    if let Ok(meta) = file.metadata() {
        if meta.len() > MAX_FILE_SIZE {
            return Err(too_large(meta.len()));
        }
    }
    // Read no more than the cap even if the file grows, or is a device that never ends.
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        ConfigError::one(format!(
            "{}: not UTF-8 text (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

// ---- raw shapes, as written in the file ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    global: Option<RawGlobal>,
    #[serde(default)]
    gateways: Option<Vec<serde_yaml_ng::Value>>,
    #[serde(default)]
    webhooks: Option<RawWebhooks>,
    #[serde(default)]
    canaries: Option<Vec<serde_yaml_ng::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    interval: Option<String>,
    timeout: Option<String>,
    max_concurrent_polls: Option<usize>,
    number_state: Option<RawNumberState>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNumberState {
    #[serde(rename = "for")]
    hold: Option<String>,
    evidence_window: Option<String>,
    acks_stuck_after: Option<String>,
    silent_after: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebhooks {
    #[serde(default)]
    plugchat: Vec<serde_yaml_ng::Value>,
    #[serde(default)]
    cloudapi: Vec<serde_yaml_ng::Value>,
    #[serde(default)]
    message_tracking: Option<RawTracking>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTracking {
    max_tracked: Option<usize>,
    max_age: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCloudApiApp {
    app: String,
    app_secret: Option<String>,
    app_secret_file: Option<PathBuf>,
    verify_token: Option<String>,
    verify_token_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugChat {
    account: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
}

/// An id written with or without quotes: `instance: 1101000001` is a YAML number, and users
/// write it that way.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum IdString {
    Text(String),
    Number(u64),
}

impl IdString {
    fn into_string(self) -> String {
        match self {
            IdString::Text(s) => s,
            IdString::Number(n) => n.to_string(),
        }
    }
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Parses a configuration from text; `env` resolves `${VAR}` references.
pub fn parse(text: &str, env: Env) -> Result<Config, ConfigError> {
    parse_with(text, env, Secrets::Read)
}

/// Parses a configuration from text, reading its secrets or not.
pub fn parse_with(text: &str, env: Env, secrets: Secrets) -> Result<Config, ConfigError> {
    if text.len() as u64 > MAX_FILE_SIZE {
        return Err(ConfigError::one(format!(
            "the configuration is too large; it may be {} MiB at most",
            MAX_FILE_SIZE >> 20
        )));
    }
    if let Some((line, col)) = flow_too_deep(text, MAX_FLOW_DEPTH) {
        return Err(ConfigError::one(format!(
            "brackets nested more than {MAX_FLOW_DEPTH} deep at line {line} column {col}: refused before parsing"
        )));
    }
    let text = if text.trim().is_empty() { "{}" } else { text };
    let raw: RawConfig =
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::one(describe_yaml_error(&e)))?;
    let mut errors = Vec::new();
    let global = parse_global(raw.global.unwrap_or_default(), &mut errors);

    let mut gateways = Vec::new();
    let mut names = HashSet::new();
    for (i, value) in raw.gateways.unwrap_or_default().into_iter().enumerate() {
        let mut ctx = Ctx::gateway(i, &value, secrets);
        if let Some(name) = value.get("name").and_then(|v| v.as_str()) {
            if !names.insert(name.to_string()) {
                ctx.err("name", format!("duplicate gateway name {name:?}"));
            }
        }
        if let Some(gw) = gateway::parse(value, &global, env, &mut ctx) {
            gateways.push(gw);
        }
        errors.append(&mut ctx.errors);
    }

    let hooks = raw.webhooks.unwrap_or_default();
    let cloudapi_apps = parse_cloudapi_apps(hooks.cloudapi, env, secrets, &mut errors);
    let message_tracking = parse_tracking(hooks.message_tracking, &mut errors);
    let mut plugchat = Vec::new();
    let mut accounts = HashSet::new();
    for (i, value) in hooks.plugchat.into_iter().enumerate() {
        let mut ctx = Ctx::named("webhooks.plugchat", i, &value, "account", secrets);
        if let Some(name) = value.get("account").and_then(|v| v.as_str()) {
            if !accounts.insert(name.to_string()) {
                ctx.err("account", format!("duplicate account {name:?}"));
            }
        }
        if let Some(acc) = parse_plugchat(value, env, &mut ctx) {
            plugchat.push(acc);
        }
        errors.append(&mut ctx.errors);
    }

    let canaries = canary::parse(
        raw.canaries.unwrap_or_default(),
        &gateways,
        &cloudapi_apps,
        env,
        secrets,
        &mut errors,
    );

    if errors.is_empty() {
        Ok(Config {
            global,
            gateways,
            plugchat,
            cloudapi_apps,
            message_tracking,
            canaries,
        })
    } else {
        Err(ConfigError(errors))
    }
}

fn parse_cloudapi_apps(
    values: Vec<serde_yaml_ng::Value>,
    env: Env,
    secrets: Secrets,
    errors: &mut Vec<String>,
) -> Vec<CloudApiApp> {
    let mut apps = Vec::new();
    let mut names = HashSet::new();
    for (i, value) in values.into_iter().enumerate() {
        let mut ctx = Ctx::named("webhooks.cloudapi", i, &value, "app", secrets);
        if let Some(name) = value.get("app").and_then(|v| v.as_str()) {
            if !names.insert(name.to_string()) {
                ctx.err("app", format!("duplicate app {name:?}"));
            }
        }
        match serde_yaml_ng::from_value::<RawCloudApiApp>(value) {
            Err(e) => ctx.whole(describe_yaml_error(&e)),
            Ok(raw) => {
                if !is_label_safe_name(&raw.app) {
                    ctx.err("app", "must match [A-Za-z0-9_.-]+");
                }
                let secret = ctx.secret("app_secret", raw.app_secret, raw.app_secret_file, env);
                let verify =
                    ctx.secret("verify_token", raw.verify_token, raw.verify_token_file, env);
                let why = [
                    ("app_secret", "signs every webhook: copy it from the Meta app's Basic settings"),
                    ("verify_token", "answers Meta's verification handshake: choose one and set it in the app's WhatsApp configuration too"),
                ];
                for ((key, reason), given) in why.iter().zip([secret.is_some(), verify.is_some()]) {
                    if !given && !ctx.failed.contains(*key) {
                        ctx.err(key, format!("is required: it {reason}"));
                    }
                }
                if let (Some(app_secret), Some(verify_token), true) =
                    (secret, verify, ctx.errors.is_empty())
                {
                    apps.push(CloudApiApp {
                        app: raw.app,
                        app_secret,
                        verify_token,
                    });
                }
            }
        }
        errors.append(&mut ctx.errors);
    }
    apps
}

fn parse_tracking(raw: Option<RawTracking>, errors: &mut Vec<String>) -> MessageTracking {
    let mut t = MessageTracking::default();
    let Some(raw) = raw else { return t };
    if let Some(n) = raw.max_tracked {
        if n > MAX_MAX_TRACKED {
            errors.push(format!(
                "webhooks.message_tracking: max_tracked: {n} is more than {MAX_MAX_TRACKED} (about 40 bytes each)"
            ));
        } else {
            t.max_tracked = n;
        }
    }
    if let Some(age) = raw.max_age {
        match parse_duration(&age) {
            Ok(d) if d > MAX_MAX_AGE => errors.push(format!(
                "webhooks.message_tracking: max_age: {} is longer than 7 days",
                humantime::format_duration(d)
            )),
            Ok(d) => t.max_age = d,
            Err(e) => errors.push(format!("webhooks.message_tracking: max_age: {e}")),
        }
    }
    t
}

fn parse_global(raw: RawGlobal, errors: &mut Vec<String>) -> Global {
    let mut g = Global::default();
    let mut dur = |key: &str, v: Option<String>, out: &mut Duration| {
        if let Some(v) = v {
            match parse_schedule_duration(key, &v) {
                Ok(d) => *out = d,
                Err(e) => errors.push(format!("global: {key}: {e}")),
            }
        }
    };
    dur("interval", raw.interval, &mut g.interval);
    dur("timeout", raw.timeout, &mut g.timeout);
    let ns = raw.number_state.unwrap_or_default();
    let n = &mut g.number_state;
    for (key, v, out) in [
        ("for", ns.hold, &mut n.hold),
        (
            "evidence_window",
            ns.evidence_window,
            &mut n.evidence_window,
        ),
        (
            "acks_stuck_after",
            ns.acks_stuck_after,
            &mut n.acks_stuck_after,
        ),
        ("silent_after", ns.silent_after, &mut n.silent_after),
    ] {
        if let Some(v) = v {
            match parse_schedule_duration(key, &v) {
                Ok(d) => *out = d,
                Err(e) => errors.push(format!("global: number_state: {key}: {e}")),
            }
        }
    }
    if let Some(n) = raw.max_concurrent_polls {
        if n == 0 {
            errors.push("global: max_concurrent_polls: must be at least 1".into());
        } else if n > MAX_CONCURRENT_POLLS_LIMIT {
            errors.push(format!(
                "global: max_concurrent_polls: must be at most {MAX_CONCURRENT_POLLS_LIMIT}"
            ));
        } else {
            g.max_concurrent_polls = n;
        }
    }
    if g.timeout > g.interval {
        errors.push(format!(
            "global: timeout: {} is longer than the interval {}",
            humantime::format_duration(g.timeout),
            humantime::format_duration(g.interval)
        ));
    }
    g
}

/// Collects the errors of one list entry, each prefixed with where it is.
struct Ctx {
    prefix: String,
    errors: Vec<String>,
    /// Keys already reported, so that one mistake is told once.
    failed: HashSet<String>,
    secrets: Secrets,
}

impl Ctx {
    fn gateway(i: usize, value: &serde_yaml_ng::Value, secrets: Secrets) -> Self {
        Self::named("gateways", i, value, "name", secrets)
    }

    fn named(
        list: &str,
        i: usize,
        value: &serde_yaml_ng::Value,
        key: &str,
        secrets: Secrets,
    ) -> Self {
        let prefix = match value.get(key).and_then(|v| v.as_str()) {
            Some(name) => format!("{list}[{i}] ({name})"),
            None => format!("{list}[{i}]"),
        };
        Ctx {
            prefix,
            errors: Vec::new(),
            failed: HashSet::new(),
            secrets,
        }
    }

    fn err(&mut self, key: &str, msg: impl fmt::Display) {
        self.failed
            .insert(key.trim_end_matches("_file").to_string());
        self.errors.push(format!("{}: {key}: {msg}", self.prefix));
    }

    /// A secret the exporter asks the user to choose for a webhook: required once the block is
    /// there, and long enough not to be guessed.
    fn webhook_secret(
        &mut self,
        key: &str,
        inline: Option<String>,
        file: Option<PathBuf>,
        env: Env,
    ) -> Option<Secret> {
        let s = self.secret(key, inline, file, env);
        match s {
            None if !self.failed.contains(key) => {
                self.err(key, format!("is required with webhooks (or {key}_file)"));
                None
            }
            Some(s) => {
                self.warn_if_short(key, &s);
                Some(s)
            }
            None => None,
        }
    }

    /// A webhook secret shorter than [`MIN_WEBHOOK_SECRET`] is taken, as the provider may dictate
    /// it (WAHA's documented example key, a Green API token already in use), with one warning
    /// that names where it is set, never the secret.
    fn warn_if_short(&self, key: &str, s: &Secret) {
        if s.expose().chars().count() < MIN_WEBHOOK_SECRET {
            tracing::warn!(
                at = %self.prefix,
                key,
                min = MIN_WEBHOOK_SECRET,
                "the webhook secret is shorter than advised: it is all that stands between the internet and the webhook URL, and a short one can be guessed by anyone who may send requests; rotate it to 32 random characters or more"
            );
        }
    }

    fn whole(&mut self, msg: impl fmt::Display) {
        self.errors.push(format!("{}: {msg}", self.prefix));
    }

    /// An id the provider cannot do without.
    fn required_id(&mut self, key: &str, id: Option<IdString>, p: Provider) -> Option<String> {
        let id = id.map(IdString::into_string).filter(|i| !i.is_empty());
        if id.is_none() {
            self.err(key, format!("provider {p} needs {key}"));
        }
        id
    }

    /// A secret the provider cannot do without; told once when it was given but is unreadable.
    fn required_secret(&mut self, key: &str, s: Option<Secret>, p: Provider) -> Option<Secret> {
        if s.is_none() && !self.failed.contains(key) {
            self.err(key, format!("provider {p} needs {key} or {key}_file"));
        }
        s
    }

    /// Resolves a secret given inline (with `${VAR}`) or as a file; `None` when neither is set.
    fn secret(
        &mut self,
        key: &str,
        inline: Option<String>,
        file: Option<PathBuf>,
        env: Env,
    ) -> Option<Secret> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.err(key, format!("set either {key} or {key}_file, not both"));
                None
            }
            (Some(v), None) if self.secrets == Secrets::Skip => {
                // The reference is still checked for its syntax.
                match expand_env(&v, &|_| Some(String::new())) {
                    Ok(_) => Some(Secret::new(UNREAD_SECRET.into())),
                    Err(e) => {
                        self.err(key, e);
                        None
                    }
                }
            }
            (None, Some(_)) if self.secrets == Secrets::Skip => {
                Some(Secret::new(UNREAD_SECRET.into()))
            }
            (Some(v), None) => match expand_env(&v, env) {
                Ok(v) if v.is_empty() => {
                    self.err(key, "is empty");
                    None
                }
                Ok(v) => Some(Secret::new(v)),
                Err(e) => {
                    self.err(key, e);
                    None
                }
            },
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(v) if v.trim().is_empty() => {
                    self.err(
                        &format!("{key}_file"),
                        format!("{} is empty", path.display()),
                    );
                    None
                }
                Ok(v) => Some(Secret::new(v.trim().to_string())),
                Err(e) => {
                    self.err(
                        &format!("{key}_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            },
            (None, None) => None,
        }
    }
}

fn parse_plugchat(value: serde_yaml_ng::Value, env: Env, ctx: &mut Ctx) -> Option<PlugChatAccount> {
    let raw: RawPlugChat = match serde_yaml_ng::from_value(value) {
        Ok(r) => r,
        Err(e) => {
            ctx.whole(describe_yaml_error(&e));
            return None;
        }
    };
    if !is_label_safe_name(&raw.account) {
        ctx.err("account", "must match [A-Za-z0-9_.-]+");
    }
    let secret = ctx.secret("secret", raw.secret, raw.secret_file, env);
    match secret {
        None if !ctx.failed.contains("secret") => ctx.err(
            "secret",
            "is required: PlugChat signs nothing, the secret in the URL is the only authentication",
        ),
        Some(ref s) => ctx.warn_if_short("secret", s),
        _ => {}
    }
    if !ctx.errors.is_empty() {
        return None;
    }
    secret.map(|secret| PlugChatAccount {
        account: raw.account,
        secret,
    })
}

/// The field names of a struct that derives `Deserialize`, read from the derive itself so that
/// no list is kept by hand beside the struct.
fn struct_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};

    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("only structs are probed"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probed"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// A YAML error without the value it complains of: `invalid type: integer `123456789012``
/// would print an inline secret. Keys and variant names are kept; they are not secrets.
fn describe_yaml_error(e: &serde_yaml_ng::Error) -> String {
    let msg = e.to_string();
    // serde writes `invalid type: integer `1`, expected ...` and `invalid value: string "x",
    // expected ...`, after the path of the key when there is one: keep the kind of value, drop
    // the value.
    let found = ["invalid type: ", "invalid value: ", "invalid length "]
        .iter()
        .find_map(|p| msg.find(p).map(|at| at + p.len()));
    let Some(start) = found else {
        return msg;
    };
    let kind = msg[start..].split([' ', ',']).next().unwrap_or("");
    match msg[start..].find(", expected") {
        Some(end) => format!("{}{kind}{}", &msg[..start], &msg[start + end..]),
        None => format!("{}{kind}", &msg[..start]),
    }
}

/// Names that become label values and URL path segments: `[A-Za-z0-9_.-]+`.
fn is_label_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Parses a humantime duration such as `30s` or `1m30s`; zero is refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration ({e})"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// An `interval` or `timeout` (`key`), within [`INTERVAL_RANGE`] or [`TIMEOUT_RANGE`].
pub fn parse_schedule_duration(key: &str, s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    let (lo, hi) = if key == "timeout" {
        TIMEOUT_RANGE
    } else {
        INTERVAL_RANGE
    };
    let f = |d: Duration| humantime::format_duration(d).to_string();
    if d < lo {
        return Err(format!(
            "{} is shorter than the shortest {key}, {}",
            f(d),
            f(lo)
        ));
    }
    if d > hi {
        // Not `f(d)`: 300000000000y prints as a wall of units.
        return Err(format!("is longer than the longest {key}, {}", f(hi)));
    }
    Ok(d)
}

/// Where flow collections (`[`, `{`) first nest deeper than `max`, as (line, column), found by
/// a scan that is linear in the text. Only brackets where YAML may open a collection count (at
/// the start of a value or inside another collection), and quoted scalars and comments are
/// skipped, so a `[` inside a token or a string is no nesting.
fn flow_too_deep(text: &str, max: usize) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let (mut depth, mut line, mut line_start) = (0usize, 1usize, 0usize);
    // The last byte that was not blank: a collection or a quoted scalar may open after
    // nothing, `:`, `-`, `?`, `,`, `[`, `{`.
    let mut prev = b'\n';
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let opens = matches!(prev, b'\n' | b':' | b'-' | b'?' | b',' | b'[' | b'{');
        match c {
            b'\n' => {
                line += 1;
                line_start = i + 1;
                // A line break ends a value in block context but not in a flow collection.
                if depth == 0 {
                    prev = b'\n';
                }
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' if i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'\n') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'[' | b'{' if opens => {
                depth += 1;
                if depth > max {
                    return Some((line, i - line_start + 1));
                }
            }
            b']' | b'}' if depth > 0 => depth -= 1,
            // An indicator only before a blank: `a-[` and `http://` are plain text.
            b':' | b'-' | b'?'
                if !matches!(b.get(i + 1), None | Some(b' ' | b'\t' | b'\r' | b'\n')) =>
            {
                prev = b'x';
                i += 1;
                continue;
            }
            b':' | b'-' | b'?' | b',' => {}
            b'"' | b'\'' if opens => {
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'\\' if c == b'"' => i += 1,
                        b'\'' if c == b'\'' && b.get(i + 1) == Some(&b'\'') => i += 1,
                        q if q == c => break,
                        b'\n' => {
                            line += 1;
                            line_start = i + 1;
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            // Anything else is text: no collection opens right after it.
            _ => {
                prev = b'x';
                i += 1;
                continue;
            }
        }
        prev = c;
        i += 1;
    }
    None
}

/// Replaces `${VAR}` with the variable's value; an unset variable is an error that names it
/// (the value is a secret and is never printed). `$$` is a literal `$`.
pub fn expand_env(s: &str, env: Env) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or("unclosed ${ in value")?;
            let var = &body[..end];
            let value = env(var).ok_or_else(|| format!("environment variable {var} is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PLUGZAPI_TOKEN" => Some("tok-123".into()),
            "PLUGCHAT_SECRET" => Some("0123456789abcdef0123".into()),
            _ => None,
        }
    }

    fn errors(yaml: &str) -> Vec<String> {
        parse(yaml, &env).expect_err("config should be refused").0
    }

    #[test]
    fn full_example_parses() {
        let cfg = parse(
            r#"
global:
  interval: 30s
  timeout: 5s
gateways:
  - name: sales
    provider: plugzapi
    instance: 3C7A1B
    token: ${PLUGZAPI_TOKEN}
  - name: z
    provider: zapi
    instance: X
    token: t
    client_token: ct
    interval: 1m
  - name: onprem
    provider: waba
    url: https://waba.internal:9090/
    auth: login
    username: admin
    password: pw
  - name: support
    provider: greenapi
    url: https://api.green-api.com
    instance: "1101000001"
    token: g
    notifications: consume
  - name: brand
    provider: cloudapi
    phone_number_id: "106540352242922"
    token: meta
webhooks:
  plugchat:
    - account: store
      secret: ${PLUGCHAT_SECRET}
"#,
            &env,
        )
        .expect("valid config");
        assert_eq!(cfg.gateways.len(), 5);
        let sales = &cfg.gateways[0];
        assert_eq!(sales.url, "https://api.plugzapi.com.br");
        let ProviderConfig::Zapi(z) = &sales.settings else {
            panic!("{sales:?}")
        };
        assert_eq!(z.token.expose(), "tok-123");
        assert_eq!(sales.interval, Duration::from_secs(30));
        assert_eq!(cfg.gateways[1].url, "https://api.z-api.io");
        assert_eq!(cfg.gateways[1].interval, Duration::from_secs(60));
        assert_eq!(cfg.gateways[2].url, "https://waba.internal:9090");
        let ProviderConfig::GreenApi(g) = &cfg.gateways[3].settings else {
            panic!()
        };
        assert_eq!(g.notifications, Notifications::Consume);
        assert_eq!(cfg.gateways[4].url, "https://graph.facebook.com");
        assert_eq!(cfg.plugchat[0].account, "store");
    }

    #[test]
    fn errors_name_gateway_and_key() {
        let errs = errors(
            "gateways:\n  - name: a\n    provider: plugzapi\n    instance: i\n    token: t\n  - name: onprem\n    provider: waba\n    auth: login\n    password: p\n    url: https://x\n",
        );
        assert_eq!(
            errs,
            vec!["gateways[1] (onprem): auth: login needs username"]
        );
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let errs = errors("gateways:\n  - name: a\n    provider: plugzapi\n    instance: i\n    token: t\n    tokn: x\n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("gateways[0] (a): "), "{errs:?}");
        assert!(errs[0].contains("unknown field `tokn`"), "{errs:?}");
        let errs = errors("global:\n  intervall: 1s\n");
        assert!(errs[0].contains("unknown field `intervall`"), "{errs:?}");
    }

    #[test]
    fn number_state_settings_are_durations_and_nothing_else() {
        let cfg = parse(
            "global:\n  number_state:\n    for: 5m\n    silent_after: 2h\n",
            &env,
        )
        .unwrap();
        let n = cfg.global.number_state;
        assert_eq!(n.hold, Duration::from_secs(300));
        assert_eq!(n.silent_after, Duration::from_secs(7200));
        assert_eq!(n.acks_stuck_after, Duration::from_secs(300), "the default");
        let errs = errors("global:\n  number_state:\n    for: soon\n    fro: 1m\n");
        assert!(errs[0].contains("unknown field `fro`"), "{errs:?}");
        let errs = errors("global:\n  number_state:\n    evidence_window: 0s\n");
        assert!(
            errs[0].starts_with("global: number_state: evidence_window: "),
            "{errs:?}"
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let errs = errors(
            r#"
gateways:
  - name: a
    provider: plugzapi
    instance: i
    token: t
    interval: 0s
  - name: a
    provider: zapi
    instance: i
    token: t
  - name: b
    provider: greenapi
    instance: i
  - name: c
    provider: plugzapi
    instance: i
    token: ${MISSING}
    interval: 5s
    timeout: 10s
  - name: bad name!
    provider: cloudapi
    token: x
    phone_number_id: "1"
  - name: d
    provider: waba
    url: https://w
  - name: e
    provider: plugzapi
    instance: i
    token: t
    notifications: consume
  - name: f
    provider: nosuch
"#,
        );
        let expect = [
            "gateways[0] (a): interval: must be greater than zero",
            "gateways[1] (a): name: duplicate gateway name \"a\"",
            "gateways[2] (b): token: provider greenapi needs token or token_file",
            "gateways[3] (c): timeout: 10s is longer than the interval 5s",
            "gateways[3] (c): token: environment variable MISSING is not set",
            "gateways[4] (bad name!): name: must match [A-Za-z0-9_.-]+",
            "gateways[5] (d): auth: bearer needs token or token_file",
            "gateways[6] (e): notifications: is not used by provider plugzapi",
        ];
        for e in expect {
            assert!(errs.iter().any(|x| x == e), "missing {e:?} in {errs:#?}");
        }
        assert!(
            errs.iter()
                .any(|x| x.starts_with("gateways[7] (f): provider: unknown variant `nosuch`")),
            "{errs:#?}"
        );
        assert_eq!(errs.len(), expect.len() + 1, "{errs:#?}");
    }

    #[test]
    fn missing_env_error_does_not_print_other_values() {
        let errs = errors("gateways:\n  - name: a\n    provider: plugzapi\n    instance: i\n    token: abc${NOPE}\n");
        assert_eq!(
            errs,
            vec!["gateways[0] (a): token: environment variable NOPE is not set"]
        );
    }

    #[test]
    fn token_file_is_read_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("wa-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tok");
        std::fs::write(&file, "secret-from-file\n").unwrap();
        let yaml = format!(
            "gateways:\n  - name: a\n    provider: plugzapi\n    instance: i\n    token_file: {}\n",
            file.display()
        );
        let cfg = parse(&yaml, &env).unwrap();
        assert_eq!(
            cfg.gateways[0].settings.secrets()[0].expose(),
            "secret-from-file"
        );
        let yaml = "gateways:\n  - name: a\n    provider: plugzapi\n    instance: i\n    token_file: /nonexistent/x\n";
        assert!(
            errors(yaml)[0].starts_with("gateways[0] (a): token_file: cannot read /nonexistent/x")
        );
    }

    #[test]
    fn plugchat_needs_a_secret() {
        let errs = errors("webhooks:\n  plugchat:\n    - account: store\n");
        assert!(
            errs[0].starts_with("webhooks.plugchat[0] (store): secret: is required"),
            "{errs:?}"
        );
        let cfg = parse(
            "webhooks:\n  plugchat:\n    - account: store\n      secret: short\n",
            &|_| None,
        )
        .unwrap();
        assert_eq!(
            cfg.plugchat[0].secret.expose(),
            "short",
            "taken, with a warning"
        );
    }

    #[test]
    fn ids_may_be_written_without_quotes() {
        let cfg = parse(
            "gateways:\n  - name: g\n    provider: greenapi\n    instance: 1101000001\n    token: t\n  - name: c\n    provider: cloudapi\n    phone_number_id: 106540352242922\n    token: t\n",
            &env,
        )
        .unwrap();
        let (ProviderConfig::GreenApi(g), ProviderConfig::CloudApi(c)) =
            (&cfg.gateways[0].settings, &cfg.gateways[1].settings)
        else {
            panic!("{cfg:?}")
        };
        assert_eq!(g.instance, "1101000001");
        assert_eq!(c.phone_number_id, "106540352242922");
    }

    #[test]
    fn a_key_of_another_provider_is_told_as_such() {
        let errs = errors("gateways:\n  - name: c\n    provider: cloudapi\n    phone_number_id: 1\n    token: t\n    tls: {insecure_skip_verify: true}\n    instance: x\n");
        assert!(
            errs.contains(&"gateways[0] (c): tls: is not used by provider cloudapi".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(
                &"gateways[0] (c): instance: is not used by provider cloudapi".to_string()
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn values_are_never_echoed_in_type_errors() {
        let errs = errors("gateways:\n  - name: a\n    provider: plugzapi\n    instance: i\n    token: 987654321098\n");
        assert!(errs.iter().all(|e| !e.contains("987654321098")), "{errs:?}");
        assert!(errs[0].starts_with("gateways[0] (a): "), "{errs:?}");
        let errs = errors("global:\n  max_concurrent_polls: \"s3cr3t-value\"\n");
        assert!(errs.iter().all(|e| !e.contains("s3cr3t")), "{errs:?}");
    }

    #[test]
    fn struct_fields_come_from_the_derive() {
        assert_eq!(
            struct_fields::<RawGlobal>(),
            [
                "interval",
                "timeout",
                "max_concurrent_polls",
                "number_state"
            ]
        );
    }

    #[test]
    fn secrets_can_be_left_unread() {
        let yaml = "gateways:\n  - name: a\n    provider: plugzapi\n    url: ${GW_URL}\n    instance: i\n    token_file: /nonexistent/token\n  - name: b\n    provider: cloudapi\n    phone_number_id: 1\n    token: ${UNSET_TOKEN}\n    tokn: typo\n";
        let errs = parse_with(yaml, &|_| Some("https://x".into()), Secrets::Skip)
            .unwrap_err()
            .0;
        assert_eq!(errs.len(), 1, "only the typo, not the secrets: {errs:?}");
        assert!(errs[0].contains("tokn"), "{errs:?}");
        assert!(errors(yaml).len() > 1, "read, the secrets are errors too");
    }

    #[test]
    fn env_expansion() {
        assert_eq!(
            expand_env("a${PLUGZAPI_TOKEN}b", &env).unwrap(),
            "atok-123b"
        );
        assert_eq!(expand_env("$$x$y", &env).unwrap(), "$x$y");
        assert!(expand_env("${OPEN", &env).is_err());
    }

    #[test]
    fn deep_flow_nesting_is_refused_and_shallow_brackets_pass() {
        assert_eq!(flow_too_deep("a: [[[x]]]", 3), None);
        assert_eq!(flow_too_deep("a: [[[[x]]]]", 3), Some((1, 7)));
        assert!(flow_too_deep(&format!("a: {}", "{a: ".repeat(40)), 32).is_some());
        // Not collections: brackets inside plain or quoted scalars and comments.
        let token = format!("token: abc{}\n", "[".repeat(100));
        assert_eq!(flow_too_deep(&token, 3), None);
        let quoted = format!(
            "token: \"{}\"\nx: 'it''s {}'\n",
            "[".repeat(100),
            "{".repeat(100)
        );
        assert_eq!(flow_too_deep(&quoted, 3), None);
        assert_eq!(flow_too_deep(&format!("# {}\n", "[".repeat(100)), 3), None);
        // An apostrophe inside a word opens no quote that would hide what follows.
        let hidden = format!("name: it's\ngateways: {}", "[".repeat(100));
        assert!(flow_too_deep(&hidden, 32).is_some());
        // Multi-line flow collections count across lines.
        assert!(flow_too_deep("a: [\n [\n  [\n   [x]]]]", 3).is_some());
    }

    #[test]
    fn durations_are_bounded() {
        let errs = errors("global:\n  interval: 300000000000y\n");
        assert!(
            errs[0].starts_with("global: interval: is longer than the longest interval, 1day"),
            "{errs:?}"
        );
        let errs = errors("global:\n  interval: 10ms\n  timeout: 5ms\n");
        assert!(
            errs.iter().any(|e| e.contains("interval: 10ms is shorter")),
            "{errs:?}"
        );
        let errs = errors("gateways:\n  - name: a\n    provider: plugzapi\n    instance: i\n    token: t\n    interval: 48h\n    timeout: 2h\n");
        assert!(
            errs.iter()
                .any(|e| e.starts_with("gateways[0] (a): interval: is longer")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("gateways[0] (a): timeout: is longer")),
            "{errs:?}"
        );
        let errs = errors("global:\n  max_concurrent_polls: 18446744073709551615\n");
        assert!(errs[0].contains("at most"), "{errs:?}");
    }

    #[test]
    fn webhook_keys() {
        let cfg = parse(
            r#"
gateways:
  - name: z
    provider: zapi
    instance: X
    token: t
    webhooks: {secret: 0123456789abcdef0123}
  - name: g
    provider: greenapi
    instance: "1"
    token: t
    webhooks: {token: 0123456789abcdef0123}
webhooks:
  cloudapi:
    - app: main
      app_secret: s
      verify_token: v
  message_tracking: {max_tracked: 5000, max_age: 2h}
"#,
            &env,
        )
        .unwrap();
        assert!(cfg.gateways[0].webhook_auth().is_some());
        assert!(matches!(
            cfg.gateways[1].webhook_auth(),
            Some(WebhookAuth::Bearer(_))
        ));
        assert_eq!(cfg.gateways[1].settings.secrets().len(), 2, "scrubbed too");
        assert_eq!(cfg.cloudapi_apps[0].app, "main");
        assert_eq!(
            cfg.message_tracking,
            MessageTracking {
                max_tracked: 5000,
                max_age: Duration::from_secs(7200)
            }
        );
        let errs = errors(
            "gateways:
  - name: w
    provider: waba
    url: https://w
    token: t
    webhooks: {secret: x}
  - name: z
    provider: zapi
    instance: i
    token: t
    webhooks: {}
webhooks:
  cloudapi:
    - {app: a, app_secret: s, verify_token: v}
    - {app: a, app_secret: s}
  message_tracking: {max_tracked: 99999999, max_age: 30d}
",
        );
        for e in [
            "gateways[0] (w): webhooks: is not used by provider waba",
            "gateways[1] (z): webhooks.secret: is required with webhooks (or webhooks.secret_file)",
            "webhooks.cloudapi[1] (a): app: duplicate app \"a\"",
            "webhooks.message_tracking: max_tracked: 99999999 is more than 10000000 (about 40 bytes each)",
            "webhooks.message_tracking: max_age: 30days is longer than 7 days",
        ] {
            assert!(errs.iter().any(|x| x == e), "missing {e:?} in {errs:#?}");
        }
        assert!(
            errs.iter()
                .any(|x| x.starts_with("webhooks.cloudapi[1] (a): verify_token: is required")),
            "{errs:#?}"
        );
    }

    #[test]
    fn empty_file_is_a_valid_config_with_no_gateways() {
        let cfg = parse("{}", &env).unwrap();
        assert!(cfg.gateways.is_empty());
        assert_eq!(cfg.global, Global::default());
    }
}
