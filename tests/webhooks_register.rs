//! `webhooks-register` against mock Z-API and Green API servers on 127.0.0.1, and what it prints
//! for a Meta app.

mod common;

use std::process::Output;

use common::{reply, Mock, TempDir};
use serde_json::Value;

const SECRET: &str = "zapi-webhook-secret+/0123456789";
const GREEN_TOKEN: &str = "green-webhook-token-0123456789";
const ZAPI_TOKEN: &str = "zapi-api-token-0123";
const CLIENT_TOKEN: &str = "zapi-client-token-0123";
const GREEN_API_TOKEN: &str = "green-api-token-0123";
const VERIFY: &str = "meta-verify-token-0123456789";

fn config(zapi: &str, green: &str) -> String {
    format!(
        r#"gateways:
  - name: sales
    provider: zapi
    url: {zapi}
    instance: 3C7A1B
    token: {ZAPI_TOKEN}
    client_token: {CLIENT_TOKEN}
    webhooks:
      secret: "{SECRET}"
  - name: support
    provider: greenapi
    url: {green}
    instance: "1101000001"
    token: {GREEN_API_TOKEN}
    webhooks:
      token: {GREEN_TOKEN}
  - name: plain
    provider: zapi
    url: {zapi}
    instance: X
    token: {ZAPI_TOKEN}
webhooks:
  cloudapi:
    - app: main
      app_secret: meta-app-secret-0123456789
      verify_token: {VERIFY}
"#
    )
}

async fn register(yaml: &str, args: &[&str]) -> Output {
    let dir = TempDir::new();
    let path = dir.0.join("whatsapp_exporter.yml");
    std::fs::write(&path, yaml).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_whatsapp_exporter"));
    cmd.arg("--config.file")
        .arg(&path)
        .arg("webhooks-register")
        .args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    drop(dir);
    out
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn no_secrets(o: &Output) {
    let t = text(o);
    let encoded: String = form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
    for s in [
        SECRET,
        encoded.as_str(),
        GREEN_TOKEN,
        ZAPI_TOKEN,
        CLIENT_TOKEN,
        GREEN_API_TOKEN,
        VERIFY,
    ] {
        assert!(!t.contains(s), "{s} printed:\n{t}");
    }
}

#[tokio::test]
async fn zapi_gets_every_webhook_url_with_the_secret() {
    let mock = Mock::start(|_| async { reply(200, r#"{"value":true}"#) }).await;
    let yaml = config(&mock.url(), "https://api.green-api.com");
    let out = register(
        &yaml,
        &[
            "--gateway",
            "sales",
            "--public-url",
            "https://exporter.example.com/",
            "--allow-insecure-url",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let seen = mock.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/instances/3C7A1B/token/zapi-api-token-0123/update-webhook-received",
            "/instances/3C7A1B/token/zapi-api-token-0123/update-webhook-delivery",
            "/instances/3C7A1B/token/zapi-api-token-0123/update-webhook-message-status",
            "/instances/3C7A1B/token/zapi-api-token-0123/update-webhook-disconnected",
            "/instances/3C7A1B/token/zapi-api-token-0123/update-webhook-connected",
        ]
    );
    let encoded: String = form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
    for s in &seen {
        assert_eq!(s.method, "PUT");
        assert_eq!(s.headers["client-token"], CLIENT_TOKEN);
        let body: Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(
            body["value"],
            format!("https://exporter.example.com/webhooks/sales?secret={encoded}")
        );
    }
    assert!(text(&out).contains("https://exporter.example.com/webhooks/sales?secret=****"));
    no_secrets(&out);
}

#[tokio::test]
async fn zapi_refusals_are_told_without_secrets() {
    let mock = Mock::start(|_| async {
        reply(
            401,
            format!(r#"{{"error":"null not allowed","echo":"{ZAPI_TOKEN}"}}"#),
        )
    })
    .await;
    let yaml = config(&mock.url(), "https://api.green-api.com");
    let out = register(
        &yaml,
        &[
            "--gateway",
            "sales",
            "--public-url",
            "https://exporter.example.com",
            "--allow-insecure-url",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(t.contains("HTTP 401") && t.contains("Client-Token"), "{t}");
    assert_eq!(mock.hits(), 1, "stops at the first refusal");
    no_secrets(&out);

    // Z-API accepts HTTPS webhooks only.
    let out = register(
        &yaml,
        &[
            "--gateway",
            "sales",
            "--public-url",
            "http://exporter.example.com",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("Z-API only accepts HTTPS"),
        "{}",
        text(&out)
    );
    // A gateway without webhooks, one that does not exist.
    let out = register(
        &yaml,
        &[
            "--gateway",
            "plain",
            "--public-url",
            "https://e.example.com",
        ],
    )
    .await;
    assert!(
        text(&out).contains("has no webhooks.secret"),
        "{}",
        text(&out)
    );
    let out = register(
        &yaml,
        &[
            "--gateway",
            "nosuch",
            "--public-url",
            "https://e.example.com",
        ],
    )
    .await;
    assert!(
        text(&out).contains("no gateway \"nosuch\""),
        "{}",
        text(&out)
    );
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn green_api_gets_the_url_and_the_bearer_token() {
    let mock = Mock::start(|_| async { reply(200, r#"{"saveSettings":true}"#) }).await;
    let yaml = config("https://api.z-api.io", &mock.url());
    let out = register(
        &yaml,
        &[
            "--gateway",
            "support",
            "--public-url",
            "https://exporter.example.com/prefix",
            "--allow-insecure-url",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(
        seen[0].path,
        "/waInstance1101000001/setSettings/green-api-token-0123"
    );
    let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        body["webhookUrl"],
        "https://exporter.example.com/prefix/webhooks/support"
    );
    assert_eq!(body["webhookUrlToken"], GREEN_TOKEN);
    for kind in [
        "incomingWebhook",
        "outgoingWebhook",
        "outgoingAPIMessageWebhook",
        "stateWebhook",
    ] {
        assert_eq!(body[kind], "yes", "{kind}");
    }
    no_secrets(&out);

    let refusing = Mock::start(|_| async { reply(200, r#"{"saveSettings":false}"#) }).await;
    let out = register(
        &config("https://api.z-api.io", &refusing.url()),
        &[
            "--gateway",
            "support",
            "--public-url",
            "https://exporter.example.com",
            "--allow-insecure-url",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("did not confirm"), "{}", text(&out));
}

#[tokio::test]
async fn green_api_over_plain_http_is_warned_about_and_dry_runs_send_nothing() {
    let yaml = config("https://api.z-api.io", "https://api.green-api.com");
    let out = register(
        &yaml,
        &[
            "--gateway",
            "support",
            "--public-url",
            "http://exporter.example.com",
            "--dry-run",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("plain HTTP") && t.contains("dry run"), "{t}");
    no_secrets(&out);
}

#[tokio::test]
async fn cloudapi_apps_get_instructions() {
    let yaml = config("https://api.z-api.io", "https://api.green-api.com");
    let out = register(
        &yaml,
        &[
            "--app",
            "main",
            "--public-url",
            "https://exporter.example.com",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("Callback URL:  https://exporter.example.com/webhooks/cloudapi/main"),
        "{t}"
    );
    assert!(
        t.contains(
            "messages, phone_number_quality_update, account_update, message_template_status_update"
        ),
        "{t}"
    );
    no_secrets(&out);
    let out = register(
        &yaml,
        &[
            "--app",
            "main",
            "--public-url",
            "https://exporter.example.com",
            "--show-verify-token",
        ],
    )
    .await;
    assert!(text(&out).contains(VERIFY));
    let out = register(
        &yaml,
        &[
            "--app",
            "main",
            "--public-url",
            "http://exporter.example.com",
        ],
    )
    .await;
    assert!(
        text(&out).contains("Meta only accepts HTTPS"),
        "{}",
        text(&out)
    );
    let out = register(
        &yaml,
        &[
            "--gateway",
            "sales",
            "--app",
            "main",
            "--public-url",
            "https://e.example.com",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "one of --gateway or --app");
}

const EVO_KEY: &str = "evo-api-key-0123456789";
const EVO_SECRET: &str = "evolution-hook-secret-0123456789";
const WAHA_HMAC: &str = "waha-hmac-key-0123456789";

fn servers_config(evo: &str, waha: &str) -> String {
    format!(
        r#"gateways:
  - name: evo-one
    provider: evolution
    url: {evo}
    token: {EVO_KEY}
    instance: my-instance
    webhooks:
      secret: {EVO_SECRET}
  - name: evo
    provider: evolution
    url: {evo}
    token: {EVO_KEY}
    instances: all
    webhooks:
      secret: {EVO_SECRET}
  - name: wa
    provider: waha
    url: {waha}
    instance: default
    webhooks:
      hmac_key: {WAHA_HMAC}
  - name: wasrv
    provider: waha
    url: {waha}
    instances: all
    webhooks:
      hmac_key: {WAHA_HMAC}
"#
    )
}

fn no_server_secrets(o: &Output) {
    let t = text(o);
    for s in [EVO_KEY, EVO_SECRET, WAHA_HMAC] {
        assert!(!t.contains(s), "{s} printed:\n{t}");
    }
}

/// The answer of `POST /webhook/set/{instance}` is the stored Webhook row
/// (EvolutionAPI/evolution-api src/api/integrations/event/webhook/webhook.controller.ts `set`,
/// a Prisma upsert of the Webhook model); the values here are examples.
#[tokio::test]
async fn evolution_sets_the_instance_webhook_and_tells_a_server_its_global_one() {
    let mock = Mock::start(|_| async {
        reply(
            201,
            r#"{"id":"cm2w","url":"x","enabled":true,"events":["CONNECTION_UPDATE"],"webhookByEvents":false,"webhookBase64":false,"instanceId":"af6c"}"#,
        )
    })
    .await;
    let yaml = servers_config(&mock.url(), "http://127.0.0.1:9");
    let out = register(
        &yaml,
        &[
            "--gateway",
            "evo-one",
            "--public-url",
            "https://exporter.example.com",
            "--allow-insecure-url",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/webhook/set/my-instance");
    assert_eq!(seen[0].headers["apikey"], EVO_KEY);
    let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
    let hook = &body["webhook"];
    assert_eq!(hook["enabled"], true);
    assert_eq!(
        hook["byEvents"], false,
        "one URL: the exporter routes by path"
    );
    assert_eq!(hook["base64"], false);
    assert_eq!(
        hook["url"],
        format!("https://exporter.example.com/webhooks/evo-one?secret={EVO_SECRET}")
    );
    let events: Vec<&str> = hook["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(events.contains(&"CONNECTION_UPDATE") && events.contains(&"MESSAGES_UPDATE"));
    assert!(text(&out).contains("webhooks/evo-one?secret=****"));
    no_server_secrets(&out);

    // A refusal is told without the key.
    let refuse = Mock::start(|_| async {
        reply(
            401,
            format!(
                r#"{{"status":401,"error":"Unauthorized","response":{{"message":"{EVO_KEY}"}}}}"#
            ),
        )
    })
    .await;
    let out = register(
        &servers_config(&refuse.url(), "http://127.0.0.1:9"),
        &[
            "--gateway",
            "evo-one",
            "--public-url",
            "https://exporter.example.com",
            "--allow-insecure-url",
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(text(&out).contains("HTTP 401"), "{}", text(&out));
    no_server_secrets(&out);

    // A server: the global webhook, printed, nothing sent.
    let before = mock.hits();
    let out = register(
        &yaml,
        &[
            "--gateway",
            "evo",
            "--public-url",
            "http://exporter.example.com",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("WEBHOOK_GLOBAL_URL=http://exporter.example.com/webhooks/evo?secret=****"),
        "{t}"
    );
    assert!(t.contains("WEBHOOK_EVENTS_MESSAGES_UPDATE=true"));
    assert!(
        t.contains("warning") && t.contains("plain HTTP"),
        "plain HTTP is warned of: {t}"
    );
    assert_eq!(mock.hits(), before);
    no_server_secrets(&out);
}

#[tokio::test]
async fn waha_prints_the_session_webhook_with_its_hmac() {
    let mock = Mock::start(|_| async { reply(500, "{}") }).await;
    let yaml = servers_config("http://127.0.0.1:9", &mock.url());
    let out = register(
        &yaml,
        &[
            "--gateway",
            "wa",
            "--public-url",
            "https://exporter.example.com",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("\"url\": \"https://exporter.example.com/webhooks/wa\""),
        "{t}"
    );
    assert!(
        t.contains("\"message.ack\"") && t.contains("\"hmac\": {\"key\": \"****\"}"),
        "{t}"
    );
    assert!(t.contains("/api/sessions/default"), "{t}");
    let out = register(
        &yaml,
        &[
            "--gateway",
            "wasrv",
            "--public-url",
            "https://exporter.example.com",
        ],
    )
    .await;
    let t = text(&out);
    assert!(
        t.contains("WHATSAPP_HOOK_URL=https://exporter.example.com/webhooks/wasrv"),
        "{t}"
    );
    assert!(t.contains("WHATSAPP_HOOK_HMAC_KEY=****"), "{t}");
    assert_eq!(mock.hits(), 0, "nothing is sent to WAHA");
    no_server_secrets(&out);
}
