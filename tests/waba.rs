//! Black-box tests of the WhatsApp Business API (on-premises) provider against a mock deployment
//! on 127.0.0.1 that answers like the real API: both shapes of `/v1/support` and `/v1/health`,
//! logins with expiring tokens, `errors` bodies, and broken or endless answers.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{endless, reply, sample, samples, Exporter, Mock, MockBody, Seen};
use hyper::{Method, Response};

const TOKEN: &str = "tok-WABA-BEARER-4e1f0c";
const APIKEY: &str = "key-WABA-APIKEY-77a0b2";
const USERNAME: &str = "monitor";
const PASSWORD: &str = "pw-WABA-SECRET-9d2";
const WRONG_PASSWORD: &str = "pw-WABA-WRONG-5c8";
const ISSUED: &str = "tok-ISSUED-SECRET-";
const PHONE: &str = "5511987654321";
const ENV_VALUE: &str = "env-VALUE-31337";
const DETAILS: &str = "details-PRIVATE-text";

/// The seed's single-node answer without its `#` comments, with a phone number and environment.
fn single(socket_conn: &str) -> String {
    format!(
        r#"{{"support":{{"context":"healthcheck","db_engine":"MYSQL","db_info":["mysql-8"],
        "debug_info":"+{PHONE}","description":"whatsapp-build-version",
        "device_iso8601":"2018-09-20T10:00:00","e2e":{{"identity_timestamp":"id","registration_id":4242}},
        "env":["WA_DB_PASSWORD={ENV_VALUE}"],"expire_timestamp":"2018-09-27T14:26:07",
        "free_space_data":9223372036853727000,"free_space_logs":14269902848,
        "free_space_media_incoming":9223372036853727000,"free_space_media_outgoing":9223372036853727000,
        "lc":"en","lg":"US","multi_connect":false,"os_name":"ubuntu-x86_64","os_version":"16.04",
        "schema":{{"axolotl":1,"callback":2,"cluster":3,"config":4,"contact":5,"jobqueue":6,"message":7}},
        "socket_conn":"{socket_conn}","version":"v2.41.3"}},"meta":{{"api_status":"stable","version":"2.41.3"}}}}"#
    )
}

const HEALTH_SINGLE: &str =
    r#"{"health":{"gateway_status":"connected"},"meta":{"api_status":"stable"}}"#;

const MASTER: &str = "waba-master-1:3f2a9c1b7d4e";
const SECONDARY: &str = "waba-master-2:8c1d2e3f4a5b";
const CORE: &str = "waba-core-1:1a2b3c4d5e6f";

/// A multi-connect deployment with one shard, as Meta documents it: the primary master owns the
/// master shard and is connected, the Coreapp owns shard 0, the secondary master is a standby
/// whose socket is down and whose gateway is disconnected by design.
fn multi(core_socket: &str) -> String {
    let node = |role: &str, shards: &str, socket: &str| {
        format!(
            r#"{{"multi_connect":true,"role":"{role}","shards":{shards},"context":"healthcheck",
            "db_engine":"PGSQL","db_info":["pg-12"],"debug_info":"+{PHONE}","description":"build",
            "env":["X={ENV_VALUE}"],"socket_conn":"{socket}","version":"v2.41.3",
            "expire_timestamp":"2018-09-27T14:26:07","free_space_data":1073741824}}"#
        )
    };
    format!(
        r#"{{"support":{{"{MASTER}":{},"{SECONDARY}":{},"{CORE}":{}}}}}"#,
        node("primary_master", "[[-1,-1]]", "UP"),
        node("secondary_master", "[]", "DN"),
        node("coreapp", "[[0,0]]", core_socket),
    )
}

fn health_multi(core_status: &str) -> String {
    format!(
        r#"{{"health":{{"{MASTER}":{{"gateway_status":"connected","role":"primary_master"}},"{SECONDARY}":{{"gateway_status":"disconnected","role":"secondary_master"}},"{CORE}":{{"gateway_status":"{core_status}","role":"coreapp"}}}}}}"#
    )
}

fn access_denied() -> String {
    format!(
        r#"{{"meta":{{"api_status":"stable","version":"2.41.3"}},"errors":[{{"code":1005,"title":"Access denied","details":"{DETAILS} for +{PHONE}"}}]}}"#
    )
}

/// What the mock answers on a status path.
#[derive(Clone)]
enum Answer {
    Text(u16, String),
    Endless,
}

/// A WABA deployment: fixed-header or login auth, tokens that expire by use or by time.
struct Waba {
    support: Mutex<Answer>,
    health: Mutex<Answer>,
    /// The `Authorization` the status paths want; `None`: a token from the login.
    fixed: Option<String>,
    /// The `Authorization` the login wants.
    basic: String,
    /// The first issued token is refused after this many uses.
    first_token_uses: usize,
    /// Issued tokens expire this many seconds after the login (told in `expires_after`).
    token_secs: Option<u64>,
    forbidden: AtomicBool,
    logins: AtomicUsize,
    /// When each login came (Unix seconds).
    login_times: Mutex<Vec<f64>>,
    refused: AtomicUsize,
    /// Issued tokens: the value, its expiry (Unix seconds), its uses.
    issued: Mutex<Vec<(String, Option<u64>, usize)>>,
}

impl Waba {
    fn new(support: String, health: &str) -> Waba {
        Waba {
            support: Mutex::new(Answer::Text(200, support)),
            health: Mutex::new(Answer::Text(200, health.to_string())),
            fixed: None,
            basic: basic(USERNAME, PASSWORD),
            first_token_uses: usize::MAX,
            token_secs: None,
            forbidden: AtomicBool::new(false),
            logins: AtomicUsize::new(0),
            login_times: Mutex::new(Vec::new()),
            refused: AtomicUsize::new(0),
            issued: Mutex::new(Vec::new()),
        }
    }

    fn fixed(mut self, header: String) -> Waba {
        self.fixed = Some(header);
        self
    }

    fn set_support(&self, a: Answer) {
        *self.support.lock().unwrap() = a;
    }

    fn set_health(&self, a: Answer) {
        *self.health.lock().unwrap() = a;
    }

    fn logins(&self) -> usize {
        self.logins.load(Ordering::SeqCst)
    }

    async fn start(self) -> (Arc<Waba>, Mock) {
        let w = Arc::new(self);
        let w2 = w.clone();
        let mock = Mock::start(move |s| {
            let w = w2.clone();
            async move { w.handle(s) }
        })
        .await;
        (w, mock)
    }

    fn handle(&self, s: Seen) -> Response<MockBody> {
        let auth = s
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        match (s.method.clone(), s.path.as_str()) {
            (Method::POST, "/v1/users/login") => self.login(&auth),
            (Method::GET, "/v1/support" | "/v1/health") => {
                if !self.authorized(&auth) {
                    self.refused.fetch_add(1, Ordering::SeqCst);
                    return reply(401, access_denied());
                }
                if self.forbidden.load(Ordering::SeqCst) {
                    return reply(403, access_denied());
                }
                let answer = if s.path == "/v1/support" {
                    self.support.lock().unwrap().clone()
                } else {
                    self.health.lock().unwrap().clone()
                };
                match answer {
                    Answer::Text(code, body) => reply(code, body),
                    Answer::Endless => endless(200),
                }
            }
            _ => reply(404, r#"{"errors":[{"code":404,"title":"Not found"}]}"#),
        }
    }

    fn login(&self, auth: &str) -> Response<MockBody> {
        self.logins.fetch_add(1, Ordering::SeqCst);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        self.login_times.lock().unwrap().push(now.as_secs_f64());
        if auth != self.basic {
            return reply(401, access_denied());
        }
        let mut issued = self.issued.lock().unwrap();
        let token = format!("{ISSUED}{}", issued.len() + 1);
        let expiry = self.token_secs.map(|s| now_secs() + s);
        issued.push((token.clone(), expiry, 0));
        let expires = match expiry {
            Some(e) => format!(r#","expires_after":"{}+00:00""#, format_utc(e)),
            None => String::new(),
        };
        reply(
            200,
            format!(
                r#"{{"users":[{{"token":"{token}"{expires}}}],"meta":{{"api_status":"stable"}}}}"#
            ),
        )
    }

    fn authorized(&self, auth: &str) -> bool {
        if let Some(f) = &self.fixed {
            return auth == f;
        }
        let mut issued = self.issued.lock().unwrap();
        let Some(i) = issued
            .iter()
            .position(|(t, _, _)| auth == format!("Bearer {t}"))
        else {
            return false;
        };
        let (_, expiry, uses) = &mut issued[i];
        let expired = expiry.is_some_and(|e| now_secs() >= e);
        let used_up = i == 0 && *uses >= self.first_token_uses;
        *uses += 1;
        !expired && !used_up
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `YYYY-MM-DD HH:MM:SS` in UTC (H. Hinnant's civil_from_days).
fn format_utc(secs: u64) -> String {
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The `Authorization` header of HTTP basic auth, as a client builds it.
fn basic(user: &str, password: &str) -> String {
    whatsapp_exporter::install_crypto_provider();
    let req = reqwest::Client::new()
        .post("http://127.0.0.1/")
        .basic_auth(user, Some(password))
        .build()
        .unwrap();
    req.headers()["authorization"].to_str().unwrap().to_string()
}

/// A configuration polling every second in the background.
fn polled(name: &str, url: &str, auth: &str) -> String {
    format!(
        "gateways:\n  - name: {name}\n    provider: waba\n    url: {url}\n    interval: 1s\n    timeout: 500ms\n{auth}"
    )
}

/// A configuration whose gateway is polled only by `/probe` (see [`start_probed`]): a call at
/// most once a second, its interval, which [`probe`] waits out.
fn probed(name: &str, url: &str, auth: &str) -> String {
    format!(
        "gateways:\n  - name: {name}\n    provider: waba\n    url: {url}\n    interval: 1s\n    timeout: 1s\n{auth}"
    )
}

/// The exporter without background polling: only `/probe` calls the gateway.
async fn start_probed(yaml: &str) -> Exporter {
    let polling = whatsapp_exporter::Polling {
        no_background: true,
        ..Default::default()
    };
    Exporter::try_start_full(yaml, None, polling)
        .await
        .unwrap_or_else(|e| panic!("exporter did not start: {e}"))
}

fn bearer_auth() -> String {
    format!("    token: {TOKEN}\n")
}

fn login_auth(password: &str) -> String {
    format!("    auth: login\n    username: {USERNAME}\n    password: {password}\n")
}

/// A probe that polls: a gateway is called at most once per interval (1 s here), so this waits
/// for the interval since the last probe of `name` to pass.
async fn probe(ex: &Exporter, name: &str) -> String {
    static LAST: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());
    let wait = {
        let last = LAST.lock().unwrap();
        last.iter().find(|(n, _)| n == name).map(|(_, t)| {
            (*t + Duration::from_millis(1050)).saturating_duration_since(Instant::now())
        })
    };
    if let Some(w) = wait {
        tokio::time::sleep(w).await;
    }
    let (code, body) = ex.get(&format!("/probe?target={name}")).await;
    assert_eq!(code, 200);
    let mut last = LAST.lock().unwrap();
    last.retain(|(n, _)| n != name);
    last.push((name.to_string(), Instant::now()));
    body
}

/// Nothing private reaches `/metrics`, `/`, `/probe` or the logs.
async fn assert_private_stays_private(ex: &Exporter, name: &str, private: &[&str]) {
    let metrics = ex.metrics().await;
    let (_, page) = ex.get("/").await;
    let probed = probe(ex, name).await;
    let logs = common::logs();
    for p in private {
        assert!(!metrics.contains(p), "{p} in /metrics");
        assert!(!page.contains(p), "{p} on the status page");
        assert!(!probed.contains(p), "{p} in /probe");
        assert!(!logs.contains(p), "{p} in the logs");
    }
}

const ALWAYS_PRIVATE: [&str; 9] = [
    TOKEN,
    APIKEY,
    PASSWORD,
    WRONG_PASSWORD,
    ISSUED,
    PHONE,
    ENV_VALUE,
    DETAILS,
    "WA_DB_PASSWORD",
];

#[tokio::test]
async fn single_node_with_bearer_token() {
    let (waba, mock) = Waba::new(single("UP"), HEALTH_SINGLE)
        .fixed(format!("Bearer {TOKEN}"))
        .start()
        .await;
    let ex = Exporter::start(&polled("onprem", &mock.url(), &bearer_auth())).await;
    let m = ex
        .wait_for(5, |m| m.contains("whatsapp_poll_duration_seconds{"))
        .await;
    let gw = [("gateway", "onprem"), ("provider", "waba")];
    assert_eq!(sample(&m, "whatsapp_up", &gw), Some(1.0));
    assert_eq!(sample(&m, "whatsapp_connected", &gw), Some(1.0));
    let node = ("node", "");
    let state = |s| sample(&m, "whatsapp_waba_socket_state", &[node, ("state", s)]);
    assert_eq!(state("up"), Some(1.0));
    assert_eq!(state("down"), Some(0.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_waba_gateway_status",
            &[node, ("status", "connected")]
        ),
        Some(1.0)
    );
    assert!(
        m.contains("whatsapp_waba_free_space_bytes{gateway=\"onprem\",provider=\"waba\",node=\"\",volume=\"data\"} 9223372036853727000\n"),
        "free space near 2^63 as f64 prints it:\n{m}"
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_waba_free_space_bytes",
            &[node, ("volume", "logs")]
        ),
        Some(14269902848.0)
    );
    assert_eq!(
        samples(&m, "whatsapp_waba_free_space_bytes", &gw).len(),
        4,
        "one series per volume"
    );
    assert!(m.contains(
        "whatsapp_waba_build_expiry_timestamp_seconds{gateway=\"onprem\",provider=\"waba\",node=\"\"} 1538058367\n"
    ));
    assert!(m.contains("whatsapp_waba_build_info{gateway=\"onprem\",provider=\"waba\",node=\"\",version=\"v2.41.3\",db_engine=\"MYSQL\",os_name=\"ubuntu-x86_64\",os_version=\"16.04\",multi_connect=\"false\"} 1\n"));
    assert!(
        !m.contains("whatsapp_waba_node_info{"),
        "single node: no role"
    );
    assert!(
        !m.contains("whatsapp_waba_token_expiry_timestamp_seconds{"),
        "no login, no token expiry"
    );
    let paths: Vec<String> = mock.seen().iter().map(|s| s.path.clone()).collect();
    assert!(paths.contains(&"/v1/support".to_string()));
    assert!(paths.contains(&"/v1/health".to_string()));
    assert_eq!(waba.logins(), 0);
    let (_, page) = ex.get("/").await;
    assert!(page.contains("socket up, gateway connected"), "{page}");
    assert_private_stays_private(&ex, "onprem", &ALWAYS_PRIVATE).await;
    ex.stop().await;
}

/// The standby reports its socket down and `disconnected` by design: the number is connected as
/// long as the nodes that own the shards are.
#[tokio::test]
async fn multi_connect_with_a_standby_down_by_design_is_connected() {
    let (_waba, mock) = Waba::new(multi("UP"), &health_multi("connected"))
        .fixed(format!("Bearer {TOKEN}"))
        .start()
        .await;
    let ex = Exporter::start(&polled("mc", &mock.url(), &bearer_auth())).await;
    let m = ex
        .wait_for(5, |m| {
            m.contains("whatsapp_up{") && !m.contains("not_polled_yet")
        })
        .await;
    let gw = [("gateway", "mc")];
    assert_eq!(sample(&m, "whatsapp_up", &gw), Some(1.0));
    assert_eq!(sample(&m, "whatsapp_connected", &gw), Some(1.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_waba_socket_state",
            &[("node", SECONDARY), ("state", "down")]
        ),
        Some(1.0)
    );
    let (_, page) = ex.get("/").await;
    assert!(page.contains("2 of 2 shard owners up"), "{page}");
    ex.stop().await;
}

#[tokio::test]
async fn multi_connect_with_one_node_down() {
    let (_waba, mock) = Waba::new(multi("DN"), &health_multi("disconnected"))
        .fixed(format!("Bearer {TOKEN}"))
        .start()
        .await;
    let ex = Exporter::start(&polled("ha", &mock.url(), &bearer_auth())).await;
    let m = ex
        .wait_for(5, |m| m.contains("whatsapp_poll_duration_seconds{"))
        .await;
    let gw = [("gateway", "ha")];
    assert_eq!(sample(&m, "whatsapp_up", &gw), Some(1.0));
    assert_eq!(
        sample(&m, "whatsapp_connected", &gw),
        Some(0.0),
        "the shard-owning Coreapp is down"
    );
    let socket = |node, state| {
        sample(
            &m,
            "whatsapp_waba_socket_state",
            &[("node", node), ("state", state)],
        )
    };
    assert_eq!(socket(MASTER, "up"), Some(1.0));
    assert_eq!(
        socket(SECONDARY, "down"),
        Some(1.0),
        "node series stay as told"
    );
    assert_eq!(socket(CORE, "down"), Some(1.0));
    assert_eq!(socket(CORE, "up"), Some(0.0));
    let status = |node, s| {
        sample(
            &m,
            "whatsapp_waba_gateway_status",
            &[("node", node), ("status", s)],
        )
    };
    assert_eq!(status(CORE, "disconnected"), Some(1.0));
    assert_eq!(status(MASTER, "connected"), Some(1.0));
    for (node, role) in [
        (MASTER, "primary_master"),
        (SECONDARY, "secondary_master"),
        (CORE, "coreapp"),
    ] {
        assert_eq!(
            sample(
                &m,
                "whatsapp_waba_node_info",
                &[("node", node), ("role", role)]
            ),
            Some(1.0)
        );
    }
    let shards = |node| sample(&m, "whatsapp_waba_shards", &[("node", node)]);
    assert_eq!(shards(MASTER), Some(1.0), "the master shard");
    assert_eq!(shards(CORE), Some(1.0));
    assert_eq!(shards(SECONDARY), Some(0.0));
    assert_eq!(
        samples(&m, "whatsapp_waba_build_info", &gw).len(),
        3,
        "one per node"
    );
    assert_private_stays_private(&ex, "ha", &ALWAYS_PRIVATE).await;
    ex.stop().await;
}

#[tokio::test]
async fn every_socket_conn_value() {
    let (waba, mock) = Waba::new(single("UP"), HEALTH_SINGLE)
        .fixed(format!("Bearer {TOKEN}"))
        .start()
        .await;
    let ex = start_probed(&probed("sockets", &mock.url(), &bearer_auth())).await;
    for (socket_conn, state, connected) in [
        ("UP", "up", 1.0),
        ("DN", "down", 0.0),
        ("SC", "connecting", 0.0),
        ("UP receiving offline", "up_receiving_offline", 1.0),
        ("UNK", "unknown", 0.0),
        ("BANANA", "unknown", 0.0),
    ] {
        waba.set_support(Answer::Text(200, single(socket_conn)));
        let m = probe(&ex, "sockets").await;
        assert_eq!(
            sample(&m, "whatsapp_connected", &[]),
            Some(connected),
            "{socket_conn}"
        );
        for s in [
            "up",
            "down",
            "connecting",
            "up_receiving_offline",
            "unknown",
        ] {
            assert_eq!(
                sample(
                    &m,
                    "whatsapp_waba_socket_state",
                    &[("node", ""), ("state", s)]
                ),
                Some(if s == state { 1.0 } else { 0.0 }),
                "{socket_conn} -> {s}"
            );
        }
    }
    ex.stop().await;
}

#[tokio::test]
async fn apikey_header() {
    let (_waba, mock) = Waba::new(single("UP"), HEALTH_SINGLE)
        .fixed(format!("Apikey {APIKEY}"))
        .start()
        .await;
    let auth = format!("    auth: apikey\n    token: {APIKEY}\n");
    let ex = start_probed(&probed("keyed", &mock.url(), &auth)).await;
    let m = probe(&ex, "keyed").await;
    assert_eq!(sample(&m, "whatsapp_up", &[]), Some(1.0), "{m}");
    for s in mock.seen() {
        assert_eq!(
            s.headers["authorization"].to_str().unwrap(),
            format!("Apikey {APIKEY}")
        );
    }
    assert_private_stays_private(&ex, "keyed", &ALWAYS_PRIVATE).await;
    ex.stop().await;
}

#[tokio::test]
async fn login_token_is_kept_and_renewed_after_a_401() {
    let mut w = Waba::new(single("UP"), HEALTH_SINGLE);
    // Two polls (support and health each) use the first token up; then the gateway refuses it.
    w.first_token_uses = 4;
    let (waba, mock) = w.start().await;
    let ex = start_probed(&probed("login", &mock.url(), &login_auth(PASSWORD))).await;
    for poll in 1..=2 {
        let m = probe(&ex, "login").await;
        assert_eq!(sample(&m, "whatsapp_up", &[]), Some(1.0), "poll {poll}");
        assert_eq!(waba.logins(), 1, "one login for both polls");
    }
    let expiry = sample(
        &probe(&ex, "login").await,
        "whatsapp_waba_token_expiry_timestamp_seconds",
        &[],
    );
    // The third poll met the 401, logged in again and tried once more.
    assert_eq!(waba.logins(), 2);
    assert!(waba.refused.load(Ordering::SeqCst) >= 1);
    let week = now_secs() as f64 + 7.0 * 86_400.0;
    let expiry = expiry.expect("the token expiry is exported");
    assert!(
        (expiry - week).abs() < 60.0,
        "no expires_after: seven days assumed"
    );
    for _ in 0..5 {
        let m = probe(&ex, "login").await;
        assert_eq!(sample(&m, "whatsapp_up", &[]), Some(1.0));
        assert_eq!(
            sample(
                &m,
                "whatsapp_poll_failures_total",
                &[("reason", "unauthorized")]
            ),
            Some(0.0),
            "the 401 was recovered within its poll"
        );
    }
    assert_eq!(waba.logins(), 2, "no login on every poll");
    let issued_to_status_calls = mock
        .seen()
        .iter()
        .filter(|s| s.path != "/v1/users/login")
        .all(|s| {
            s.headers["authorization"]
                .to_str()
                .unwrap()
                .starts_with(&format!("Bearer {ISSUED}"))
        });
    assert!(issued_to_status_calls);
    for login in mock.seen().iter().filter(|s| s.path == "/v1/users/login") {
        assert_eq!(login.method, Method::POST);
        assert_eq!(
            login.headers["authorization"].to_str().unwrap(),
            basic(USERNAME, PASSWORD)
        );
    }

    // A 403 is a missing permission, not an expired token: no new login.
    waba.forbidden.store(true, Ordering::SeqCst);
    let m = probe(&ex, "login").await;
    assert_eq!(sample(&m, "whatsapp_up", &[]), Some(0.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_poll_failures_total",
            &[("reason", "unauthorized")]
        ),
        Some(1.0)
    );
    assert_eq!(waba.logins(), 2);
    assert!(
        sample(&m, "whatsapp_waba_token_expiry_timestamp_seconds", &[]).is_some(),
        "the token still stands"
    );
    assert_private_stays_private(&ex, "login", &ALWAYS_PRIVATE).await;
    ex.stop().await;
}

#[tokio::test]
async fn login_token_is_renewed_before_it_expires() {
    let mut w = Waba::new(single("UP"), HEALTH_SINGLE);
    // Twenty seconds: its last tenth spans two probes, a second apart at the least.
    w.token_secs = Some(20);
    let (waba, mock) = w.start().await;
    let ex = start_probed(&probed("renew", &mock.url(), &login_auth(PASSWORD))).await;
    let m = probe(&ex, "renew").await;
    let told = sample(&m, "whatsapp_waba_token_expiry_timestamp_seconds", &[]).unwrap();
    let first = waba.issued.lock().unwrap()[0].1.unwrap();
    assert_eq!(told, first as f64, "the expiry the login told");
    // Poll often until a second login; it must come before the gateway refuses the first token.
    let deadline = Instant::now() + Duration::from_secs(30);
    while waba.logins() < 2 {
        assert!(Instant::now() < deadline, "the token was never renewed");
        let m = probe(&ex, "renew").await;
        assert_eq!(sample(&m, "whatsapp_up", &[]), Some(1.0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        waba.refused.load(Ordering::SeqCst),
        0,
        "renewed before it expired"
    );
    let renewed = waba.login_times.lock().unwrap()[1];
    assert!(
        renewed < first as f64 - 0.4,
        "renewed in the last tenth of its life, not at its end: {:.2}s before",
        first as f64 - renewed
    );
    let m = probe(&ex, "renew").await;
    let second = waba.issued.lock().unwrap()[1].1.unwrap();
    assert_eq!(
        sample(&m, "whatsapp_waba_token_expiry_timestamp_seconds", &[]),
        Some(second as f64)
    );
    assert_private_stays_private(&ex, "renew", &ALWAYS_PRIVATE).await;
    ex.stop().await;
}

#[tokio::test]
async fn wrong_password_is_unauthorized_without_a_login_storm() {
    let (waba, mock) = Waba::new(single("UP"), HEALTH_SINGLE).start().await;
    let started = Instant::now();
    let ex = Exporter::start(&polled("badpw", &mock.url(), &login_auth(WRONG_PASSWORD))).await;
    let m = ex
        .wait_for(5, |m| m.contains("whatsapp_poll_duration_seconds{"))
        .await;
    let gw = [("gateway", "badpw")];
    assert_eq!(sample(&m, "whatsapp_up", &gw), Some(0.0));
    assert!(!m.contains("whatsapp_connected{gateway=\"badpw\""));
    // Probes in between the scheduled polls make neither more polls nor more logins.
    let mut probes = 0;
    while started.elapsed() < Duration::from_millis(3500) {
        let (code, m) = ex.get("/probe?target=badpw").await;
        assert_eq!(code, 200);
        assert_eq!(sample(&m, "whatsapp_up", &[]), Some(0.0));
        probes += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let m = ex.metrics().await;
    let polls = sample(&m, "whatsapp_polls_total", &gw).unwrap();
    // Many more probes than the interval allows polls (a loaded machine probes less often).
    assert!(probes >= 5, "{probes} probes");
    assert!(
        polls >= 1.0 && polls <= (elapsed / 0.9).floor() + 1.0,
        "{polls} polls in {elapsed:.1}s: one per interval, whatever the probes"
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_poll_failures_total",
            &[("gateway", "badpw"), ("reason", "unauthorized")]
        ),
        Some(polls),
        "every poll failed as unauthorized"
    );
    let logins = waba.logins();
    // One attempt per 0.9 interval at most, whatever the number of polls.
    let bound = (elapsed / 0.9).floor() as usize + 1;
    assert!(
        logins >= 1 && logins <= bound,
        "{logins} logins in {elapsed:.1}s ({polls} polls)"
    );
    assert!(
        mock.seen().iter().all(|s| s.path == "/v1/users/login"),
        "no status call without a token"
    );
    let (_, page) = ex.get("/").await;
    assert!(page.contains("unauthorized"), "{page}");
    assert_private_stays_private(&ex, "badpw", &ALWAYS_PRIVATE).await;
    ex.stop().await;
}

#[tokio::test]
async fn broken_answers_are_invalid_responses() {
    let (waba, mock) = Waba::new(single("UP"), HEALTH_SINGLE)
        .fixed(format!("Bearer {TOKEN}"))
        .start()
        .await;
    let ex = start_probed(&probed("broken", &mock.url(), &bearer_auth())).await;
    let cases = [
        (
            Answer::Text(200, "<html><body>502 Bad Gateway</body></html>".into()),
            Answer::Text(200, HEALTH_SINGLE.into()),
        ),
        (
            Answer::Text(200, single("UP")),
            Answer::Text(200, r#"{"health":{"gateway_status":"#.into()),
        ),
        (
            Answer::Text(200, access_denied()),
            Answer::Text(200, HEALTH_SINGLE.into()),
        ),
        (
            Answer::Text(200, single("UP")),
            Answer::Text(200, access_denied()),
        ),
        (
            Answer::Text(200, r#"{"support":{}}"#.into()),
            Answer::Text(200, HEALTH_SINGLE.into()),
        ),
        (Answer::Endless, Answer::Text(200, HEALTH_SINGLE.into())),
    ];
    let n = cases.len();
    for (i, (support, health)) in cases.into_iter().enumerate() {
        waba.set_support(support);
        waba.set_health(health);
        let m = probe(&ex, "broken").await;
        assert_eq!(sample(&m, "whatsapp_up", &[]), Some(0.0), "case {i}");
        assert_eq!(
            sample(
                &m,
                "whatsapp_poll_failures_total",
                &[("reason", "invalid_response")]
            ),
            Some((i + 1) as f64),
            "case {i}"
        );
    }
    let (_, page) = ex.get("/").await;
    assert!(page.contains("larger than 4 MiB"), "{page}");
    // Back to a good answer: up again.
    waba.set_support(Answer::Text(200, single("UP")));
    waba.set_health(Answer::Text(200, HEALTH_SINGLE.into()));
    let m = probe(&ex, "broken").await;
    assert_eq!(sample(&m, "whatsapp_up", &[]), Some(1.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_poll_failures_total",
            &[("reason", "invalid_response")]
        ),
        Some(n as f64)
    );
    let mut private = ALWAYS_PRIVATE.to_vec();
    private.push("Access denied");
    assert_private_stays_private(&ex, "broken", &private).await;
    ex.stop().await;
}

#[tokio::test]
async fn bearer_401_is_unauthorized() {
    let (_waba, mock) = Waba::new(single("UP"), HEALTH_SINGLE)
        .fixed("Bearer some-other-token".into())
        .start()
        .await;
    let ex = start_probed(&probed("refused", &mock.url(), &bearer_auth())).await;
    let m = probe(&ex, "refused").await;
    assert_eq!(sample(&m, "whatsapp_up", &[]), Some(0.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_poll_failures_total",
            &[("reason", "unauthorized")]
        ),
        Some(1.0)
    );
    assert!(mock.seen().iter().all(|s| s.path != "/v1/users/login"));
    assert_private_stays_private(&ex, "refused", &ALWAYS_PRIVATE).await;
    ex.stop().await;
}

#[tokio::test]
async fn insecure_skip_verify_is_warned_about() {
    let (_waba, mock) = Waba::new(single("UP"), HEALTH_SINGLE)
        .fixed(format!("Bearer {TOKEN}"))
        .start()
        .await;
    let auth = format!(
        "{}    tls:\n      insecure_skip_verify: true\n",
        bearer_auth()
    );
    let ex = start_probed(&probed("unverified", &mock.url(), &auth)).await;
    let logs = common::logs();
    let warned = logs
        .lines()
        .any(|l| l.contains("insecure_skip_verify") && l.contains("unverified"));
    assert!(warned, "{logs}");
    let m = probe(&ex, "unverified").await;
    assert_eq!(sample(&m, "whatsapp_up", &[]), Some(1.0));
    ex.stop().await;
}

/// `/v1/health` answers from a cache refreshed every few minutes: an interval far below that is
/// warned about once, when the gateway is built; a sensible one is not.
#[tokio::test]
async fn an_interval_below_what_the_api_answers_freshly_is_warned() {
    let yaml = "gateways:\n  - name: fastpoll\n    provider: waba\n    url: http://127.0.0.1:9\n    token: tok-FAST-1\n    interval: 5s\n    timeout: 1s\n  - name: slowpoll\n    provider: waba\n    url: http://127.0.0.1:9\n    token: tok-SLOW-1\n    interval: 2m\n    timeout: 1s\n";
    let ex = Exporter::start(yaml).await;
    let logs = common::logs();
    let warned = |gw: &str| {
        logs.lines().any(|l| {
            l.contains(&format!("gateway={gw} "))
                && l.contains("interval is shorter than the provider answers freshly")
        })
    };
    assert!(warned("fastpoll"), "{logs}");
    assert!(!warned("slowpoll"), "{logs}");
    let line = logs
        .lines()
        .find(|l| l.contains("gateway=fastpoll ") && l.contains("suggested_min"))
        .unwrap();
    assert!(line.contains("suggested_min=1m"), "{line}");
    assert!(!line.contains("tok-FAST-1"));
    ex.stop().await;
}
