//! `canaries:`: a real message sent now and then from one configured gateway to another, and
//! followed until it arrives.
//!
//! The receiving number is a secret (a phone number): read from `to_number`, `to_number_file` or
//! `${VAR}`, and never printed. Errors name the canary and the key, never a value.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{parse_duration, CloudApiApp, Ctx, Env, GatewayConfig, Notifications, ProviderConfig};
use crate::provider::Provider;
use crate::secret::Secret;

/// Canaries are not polls: a message every few minutes is the least a number shows to its
/// contacts, and below this it looks like spam to WhatsApp.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5 * 60);
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3 * 60);
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_DAILY_CAP: u32 = 200;
/// 24 h at the shortest interval is 288 runs; a cap above that changes nothing.
pub const MAX_DAILY_CAP: u32 = 10_000;

/// One canary, checked against the gateways of the same file.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryConfig {
    pub name: String,
    /// The gateway that sends.
    pub from: String,
    /// The gateway that receives.
    pub to: String,
    /// The receiving gateway's phone number, digits only (international form, no `+`).
    pub to_number: Secret,
    pub interval: Duration,
    /// From the send request to the end of the run: what has not come by then is lost.
    pub timeout: Duration,
    /// Runs started per UTC day, at most.
    pub daily_cap: u32,
    /// Cloud API senders only: the approved template sent instead of a free text.
    pub template: Option<Template>,
    /// After each accepted send, delete the message for everyone where the provider can.
    pub cleanup: bool,
}

/// A Cloud API message template whose body takes one text parameter (the canary's text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    pub language: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    from: String,
    to: String,
    to_number: Option<String>,
    to_number_file: Option<PathBuf>,
    interval: Option<String>,
    timeout: Option<String>,
    daily_cap: Option<u32>,
    template: Option<RawTemplate>,
    cleanup: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    name: String,
    language: String,
}

/// Whether the gateway's pushes reach the exporter: its webhooks are configured (a Cloud API
/// number: a Meta app under `webhooks.cloudapi`), or its Green API queue is consumed.
pub fn receives_pushes(gw: &GatewayConfig, cloud_apps: bool) -> bool {
    match &gw.settings {
        ProviderConfig::GreenApi(g) => {
            g.notifications == Notifications::Consume || g.webhook_token.is_some()
        }
        ProviderConfig::CloudApi(_) => cloud_apps,
        _ => gw.webhook_auth().is_some(),
    }
}

/// How to make a gateway's pushes reach the exporter, told in a refusal.
fn how_to_receive(gw: &GatewayConfig) -> String {
    let name = &gw.name;
    match gw.provider {
        Provider::PlugzApi | Provider::ZApi => format!(
            "add `webhooks: {{secret: ...}}` to gateway {name} and point its callbacks at /webhooks/{name}?secret=..."
        ),
        Provider::GreenApi => format!(
            "add `webhooks: {{token: ...}}` to gateway {name} (its webhookUrlToken, URL /webhooks/{name}) or set `notifications: consume`"
        ),
        Provider::CloudApi => {
            "add the Meta app of the number under webhooks.cloudapi (callback /webhooks/cloudapi/<app>)".to_string()
        }
        Provider::Evolution | Provider::Waha => format!(
            "configure the webhooks of gateway {name} so that its events reach /webhooks/{name}"
        ),
        Provider::Waba => {
            "the exporter does not receive the WhatsApp Business API's webhooks: pick gateways of another provider".to_string()
        }
    }
}

/// Parses `canaries:`, checking each against the configured gateways.
pub(super) fn parse(
    list: Vec<serde_yaml_ng::Value>,
    gateways: &[GatewayConfig],
    apps: &[CloudApiApp],
    env: Env,
    secrets: super::Secrets,
    errors: &mut Vec<String>,
) -> Vec<CanaryConfig> {
    let mut out = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, value) in list.into_iter().enumerate() {
        let mut ctx = Ctx::named("canaries", i, &value, "name", secrets);
        if let Some(name) = value.get("name").and_then(|v| v.as_str()) {
            if !names.insert(name.to_string()) {
                ctx.err("name", format!("duplicate canary name {name:?}"));
            }
        }
        if let Some(c) = one(value, gateways, !apps.is_empty(), env, &mut ctx) {
            out.push(c);
        }
        errors.append(&mut ctx.errors);
    }
    out
}

fn one(
    value: serde_yaml_ng::Value,
    gateways: &[GatewayConfig],
    cloud_apps: bool,
    env: Env,
    ctx: &mut Ctx,
) -> Option<CanaryConfig> {
    let raw: Raw = match serde_yaml_ng::from_value(value) {
        Ok(r) => r,
        Err(e) => {
            ctx.whole(super::describe_yaml_error(&e));
            return None;
        }
    };
    if !super::is_label_safe_name(&raw.name) {
        ctx.err("name", "must match [A-Za-z0-9_.-]+");
    }
    let gateway = |ctx: &mut Ctx, key: &str, name: &str| -> Option<GatewayConfig> {
        let Some(gw) = gateways.iter().find(|g| g.name == name) else {
            ctx.err(key, format!("no gateway is named {name:?}"));
            return None;
        };
        if gw.settings.discovers() {
            ctx.err(
                key,
                format!("gateway {name:?} is a whole server: name one instance (`instance:`)"),
            );
            return None;
        }
        Some(gw.clone())
    };
    let from = gateway(ctx, "from", &raw.from);
    let to = gateway(ctx, "to", &raw.to);
    if raw.from == raw.to {
        ctx.err("to", "must be another gateway than from");
    }
    if let Some(gw) = &from {
        if !receives_pushes(gw, cloud_apps) {
            ctx.err(
                "from",
                format!(
                    "gateway {:?} receives no webhooks, so the canary cannot see its message's statuses: {}",
                    gw.name,
                    how_to_receive(gw)
                ),
            );
        }
    }
    if let Some(gw) = &to {
        if !receives_pushes(gw, cloud_apps) {
            ctx.err(
                "to",
                format!(
                    "gateway {:?} receives no webhooks, so the canary cannot see its message arrive: {}",
                    gw.name,
                    how_to_receive(gw)
                ),
            );
        }
    }
    let number = ctx.secret("to_number", raw.to_number, raw.to_number_file, env);
    let to_number = match number {
        None if !ctx.failed.contains("to_number") => {
            ctx.err(
                "to_number",
                "is required (or to_number_file): the receiving gateway's phone number",
            );
            None
        }
        None => None,
        Some(n) if ctx.secrets == super::Secrets::Skip => Some(n),
        Some(n) => match normalise_number(n.expose()) {
            Some(digits) => Some(Secret::new(digits)),
            None => {
                ctx.err(
                    "to_number",
                    "is not a phone number: write it in international form, 8 to 15 digits (a leading + and spaces are allowed)",
                );
                None
            }
        },
    };
    let interval = duration(
        ctx,
        "interval",
        raw.interval.as_deref(),
        DEFAULT_INTERVAL,
        MIN_INTERVAL,
    );
    let timeout = duration(
        ctx,
        "timeout",
        raw.timeout.as_deref(),
        DEFAULT_TIMEOUT,
        MIN_TIMEOUT,
    );
    if let (Some(i), Some(t)) = (interval, timeout) {
        if t >= i {
            ctx.err(
                "timeout",
                "must be shorter than interval: a run ends before the next one starts",
            );
        }
    }
    let daily_cap = raw.daily_cap.unwrap_or(DEFAULT_DAILY_CAP);
    if daily_cap == 0 || daily_cap > MAX_DAILY_CAP {
        ctx.err(
            "daily_cap",
            format!("must be between 1 and {MAX_DAILY_CAP}"),
        );
    }
    let from_cloud = from.as_ref().map(|g| g.provider) == Some(Provider::CloudApi);
    let template = match raw.template {
        Some(_) if from.is_some() && !from_cloud => {
            ctx.err(
                "template",
                "is used only when from is a cloudapi gateway; the others send a plain text",
            );
            None
        }
        Some(t) => {
            let ok = |s: &str| {
                !s.is_empty()
                    && s.len() <= 512
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
            };
            if !ok(&t.name) {
                ctx.err("template.name", "must be a template name ([a-z0-9_]+)");
            }
            if !ok(&t.language) {
                ctx.err(
                    "template.language",
                    "must be a language code such as en or pt_BR",
                );
            }
            Some(Template {
                name: t.name,
                language: t.language,
            })
        }
        None if from_cloud => {
            ctx.err(
                "template",
                "is required when from is a cloudapi gateway: a business-initiated message outside the 24-hour window must be an approved template (see docs/canaries.md)",
            );
            None
        }
        None => None,
    };
    if !ctx.errors.is_empty() {
        return None;
    }
    Some(CanaryConfig {
        name: raw.name,
        from: from?.name,
        to: to?.name,
        to_number: to_number?,
        interval: interval?,
        timeout: timeout?,
        daily_cap,
        template,
        cleanup: raw.cleanup.unwrap_or(true),
    })
}

fn duration(
    ctx: &mut Ctx,
    key: &str,
    raw: Option<&str>,
    default: Duration,
    min: Duration,
) -> Option<Duration> {
    let Some(s) = raw else {
        return Some(default);
    };
    let f = |d: Duration| humantime::format_duration(d).to_string();
    match parse_duration(s) {
        Ok(d) if d < min => {
            ctx.err(
                key,
                format!(
                    "{} is shorter than the shortest {key} of a canary, {}",
                    f(d),
                    f(min)
                ),
            );
            None
        }
        Ok(d) if d > MAX_INTERVAL => {
            ctx.err(key, format!("is longer than {}", f(MAX_INTERVAL)));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            ctx.err(key, e);
            None
        }
    }
}

/// The digits of a phone number in international form (`+55 11 99999-8888` → `5511999998888`).
pub fn normalise_number(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut digits = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '(' | ')' | '.' => {}
            _ => return None,
        }
    }
    (8..=15).contains(&digits.len()).then_some(digits)
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, ConfigError};

    const NUMBER: &str = "5511999998888";

    fn gateways() -> String {
        "gateways:
  - name: sales
    provider: zapi
    url: http://127.0.0.1:1
    instance: I
    token: zapi-token-0123456789
    webhooks: {secret: 0123456789abcdef0123}
  - name: support
    provider: greenapi
    url: http://127.0.0.1:1
    instance: 1101000001
    token: green-token-0123456789
    notifications: consume
  - name: deaf
    provider: zapi
    url: http://127.0.0.1:1
    instance: J
    token: zapi-token-0123456789
  - name: meta
    provider: cloudapi
    url: http://127.0.0.1:1
    phone_number_id: '106540352242922'
    token: cloud-token-0123456789
  - name: onprem
    provider: waba
    url: http://127.0.0.1:1
    token: waba-token-0123456789
"
        .to_string()
    }

    fn errors(canaries: &str) -> Vec<String> {
        let yaml = format!("{}canaries:\n{canaries}", gateways());
        match parse(&yaml, &|v| (v == "NUMBER").then(|| NUMBER.to_string())) {
            Ok(_) => Vec::new(),
            Err(ConfigError(e)) => e,
        }
    }

    #[test]
    fn a_canary_between_two_gateways_that_receive() {
        let yaml = format!(
            "{}canaries:\n  - {{name: c, from: sales, to: support, to_number: '+55 11 99999-8888', interval: 5m, timeout: 30s, daily_cap: 10}}\n",
            gateways()
        );
        let cfg = parse(&yaml, &|_| None).unwrap();
        let c = &cfg.canaries[0];
        assert_eq!((c.from.as_str(), c.to.as_str()), ("sales", "support"));
        assert_eq!(c.to_number.expose(), NUMBER);
        assert_eq!(c.interval.as_secs(), 300);
        assert_eq!(c.daily_cap, 10);
        assert!(!format!("{c:?}").contains(NUMBER), "the number is a secret");
        let defaults = format!(
            "{}canaries:\n  - {{name: c, from: sales, to: support, to_number: '${{NUMBER}}'}}\n",
            gateways()
        );
        let cfg = parse(&defaults, &|_| Some(NUMBER.into())).unwrap();
        assert_eq!(cfg.canaries[0].interval.as_secs(), 900);
        assert_eq!(cfg.canaries[0].timeout.as_secs(), 180);
        assert!(cfg.canaries[0].cleanup, "cleans up unless told not to");
        let kept = format!(
            "{}canaries:\n  - {{name: c, from: sales, to: support, to_number: '${{NUMBER}}', cleanup: false}}\n",
            gateways()
        );
        assert!(!parse(&kept, &|_| Some(NUMBER.into())).unwrap().canaries[0].cleanup);
    }

    #[test]
    fn mistakes_name_the_canary_and_the_key_and_never_the_number() {
        let errs = errors(
            "  - {name: fast, from: sales, to: support, to_number: '${NUMBER}', interval: 1m}
  - {name: deaf, from: deaf, to: support, to_number: '${NUMBER}'}
  - {name: dumb, from: sales, to: deaf, to_number: '${NUMBER}'}
  - {name: ghost, from: nobody, to: support, to_number: '${NUMBER}'}
  - {name: same, from: sales, to: sales, to_number: '${NUMBER}'}
  - {name: nonum, from: sales, to: support}
  - {name: badnum, from: sales, to: support, to_number: 'call 5511999998888 now'}
  - {name: slow, from: sales, to: support, to_number: '${NUMBER}', interval: 5m, timeout: 5m}
  - {name: cap, from: sales, to: support, to_number: '${NUMBER}', daily_cap: 0}
  - {name: meta, from: meta, to: support, to_number: '${NUMBER}'}
  - {name: tpl, from: sales, to: support, to_number: '${NUMBER}', template: {name: canary, language: en}}
  - {name: onprem, from: onprem, to: support, to_number: '${NUMBER}'}
  - {name: fast, from: sales, to: support, to_number: '${NUMBER}', colour: red}
",
        );
        let joined = errs.join("\n");
        assert!(!joined.contains(NUMBER), "{joined}");
        for want in [
            "canaries[0] (fast): interval: 1m is shorter than the shortest interval of a canary, 5m",
            "canaries[1] (deaf): from: gateway \"deaf\" receives no webhooks, so the canary cannot see its message's statuses: add `webhooks: {secret: ...}` to gateway deaf",
            "canaries[2] (dumb): to: gateway \"deaf\" receives no webhooks, so the canary cannot see its message arrive",
            "canaries[3] (ghost): from: no gateway is named \"nobody\"",
            "canaries[4] (same): to: must be another gateway than from",
            "canaries[5] (nonum): to_number: is required",
            "canaries[6] (badnum): to_number: is not a phone number",
            "canaries[7] (slow): timeout: must be shorter than interval",
            "canaries[8] (cap): daily_cap: must be between 1 and 10000",
            "canaries[9] (meta): from: gateway \"meta\" receives no webhooks",
            "canaries[9] (meta): template: is required when from is a cloudapi gateway",
            "canaries[10] (tpl): template: is used only when from is a cloudapi gateway",
            "canaries[11] (onprem): from: gateway \"onprem\" receives no webhooks, so the canary cannot see its message's statuses: the exporter does not receive the WhatsApp Business API's webhooks",
            "canaries[12] (fast): name: duplicate canary name",
            "canaries[12] (fast): unknown field `colour`",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in:\n{joined}"
            );
        }
    }

    #[test]
    fn numbers_in_international_form() {
        use super::normalise_number as n;
        assert_eq!(n("+55 (11) 99999-8888").as_deref(), Some(NUMBER));
        assert_eq!(n("1234567").as_deref(), None, "too short");
        assert_eq!(n("1234567890123456").as_deref(), None, "too long");
        assert_eq!(n("5511999998888@c.us"), None);
    }
}
