//! A simulated WhatsApp Business API deployment: multi-connect with one shard, three nodes,
//! `auth: login`.
//!
//! As Meta documents a multi-connect cluster: the primary master owns the master shard and is
//! connected, the Coreapp owns shard 0 and is connected, the secondary master (a standby) reports
//! its socket down and `disconnected` by design. The Coreapp loses its socket now and then and
//! comes back through "connecting" and "receiving offline messages"; free space shrinks slowly;
//! the build expires in about 30 days.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::body::Incoming;
use hyper::{Method, Request};

use crate::providers::simulator::{no_hold, Simulator};

pub static SIMULATOR: Simulator = Simulator {
    route,
    hold: no_hold,
    gateways,
};

/// `onprem`, logging in with the credentials the simulator expects.
fn gateways(addr: SocketAddr) -> String {
    format!(
        r#"  - name: onprem
    provider: waba
    url: http://{addr}
    auth: login
    username: {DEMO_USERNAME}
    password: {DEMO_PASSWORD}
"#
    )
}

/// The credentials of the demo gateway, checked against [`DEMO_BASIC`] by the tests.
const DEMO_USERNAME: &str = "admin";
const DEMO_PASSWORD: &str = "demo-waba-password";
/// `Basic base64(admin:demo-waba-password)`, as a client sends it.
const DEMO_BASIC: &str = "Basic YWRtaW46ZGVtby13YWJhLXBhc3N3b3Jk";
const DEMO_WABA_TOKEN: &str = "demo-waba-token-not-secret";

const PRIMARY: &str = "waba-master-1:3f2a9c1b7d4e";
const SECONDARY: &str = "waba-master-2:8c1d2e3f4a5b";
const COREAPP: &str = "waba-core-1:1a2b3c4d5e6f";

pub fn route(req: &Request<Incoming>, parts: &[&str], t: u64) -> Option<(u16, String)> {
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match parts {
        ["v1", "users", "login"] if req.method() == Method::POST => Some(login(auth, now)),
        ["v1", "support"] | ["v1", "health"] if auth != Some(&bearer()) => Some(denied()),
        ["v1", "support"] => Some((200, support(t, now))),
        ["v1", "health"] => Some((200, health(t))),
        _ => None,
    }
}

fn bearer() -> String {
    format!("Bearer {DEMO_WABA_TOKEN}")
}

fn denied() -> (u16, String) {
    (
        401,
        r#"{"meta":{"api_status":"stable","version":"2.41.3"},"errors":[{"code":1005,"title":"Access denied","details":"Invalid credentials."}]}"#.into(),
    )
}

fn login(auth: Option<&str>, now: u64) -> (u16, String) {
    if auth != Some(DEMO_BASIC) {
        return denied();
    }
    let expires = format_utc(now + 7 * 86_400, ' ');
    (
        200,
        format!(
            r#"{{"users":[{{"token":"{DEMO_WABA_TOKEN}","expires_after":"{expires}+00:00"}}],"meta":{{"api_status":"stable","version":"2.41.3"}}}}"#
        ),
    )
}

/// The coreapp's socket over the cycle: down for 20 s, reconnecting, catching up, up.
pub fn coreapp_socket(t: u64) -> &'static str {
    match t {
        60..=79 => "DN",
        80..=89 => "SC",
        90..=104 => "UP receiving offline",
        _ => "UP",
    }
}

fn coreapp_gateway(t: u64) -> &'static str {
    match coreapp_socket(t) {
        "DN" => "disconnected",
        "SC" => "connecting",
        _ => "connected",
    }
}

/// `/v1/support` at `t` seconds into the cycle; `now` sets the build expiry, ~30 days ahead.
pub fn support(t: u64, now: u64) -> String {
    let expire = format_utc((now / 86_400 + 30) * 86_400, 'T');
    let node = |role: &str, shards: &str, socket: &str, data: u64| {
        format!(
            r#"{{"multi_connect":true,"role":"{role}","shards":{shards},"context":"healthcheck",
            "db_engine":"MYSQL","db_info":["demo"],"debug_info":"demo-phone-hidden",
            "description":"demo build","env":["DEMO=hidden"],"expire_timestamp":"{expire}",
            "free_space_data":{data},"free_space_logs":{logs},
            "free_space_media_incoming":9223372036853727000,
            "free_space_media_outgoing":9223372036853727000,"lc":"en","lg":"US",
            "os_name":"ubuntu-x86_64","os_version":"20.04","socket_conn":"{socket}",
            "version":"v2.41.3"}}"#,
            logs = 14_269_902_848 - t * 1_048_576,
        )
    };
    let gib = 1u64 << 30;
    format!(
        r#"{{"support":{{"{PRIMARY}":{},"{SECONDARY}":{},"{COREAPP}":{}}},"meta":{{"api_status":"stable","version":"2.41.3"}}}}"#,
        node(
            "primary_master",
            "[[-1,-1]]",
            "UP",
            40 * gib - t * 8_388_608
        ),
        node("secondary_master", "[]", "DN", 40 * gib - t * 4_194_304),
        node(
            "coreapp",
            "[[0,0]]",
            coreapp_socket(t),
            25 * gib - t * 16_777_216
        ),
    )
}

pub fn health(t: u64) -> String {
    format!(
        r#"{{"health":{{"{PRIMARY}":{{"gateway_status":"connected","role":"primary_master"}},"{SECONDARY}":{{"gateway_status":"disconnected","role":"secondary_master"}},"{COREAPP}":{{"gateway_status":"{}","role":"coreapp"}}}}}}"#,
        coreapp_gateway(t)
    )
}

/// `YYYY-MM-DD{sep}HH:MM:SS` in UTC, the inverse of the exporter's parser.
fn format_utc(secs: u64, sep: char) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // H. Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}{sep}{:02}:{:02}:{:02}",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::shape::Observation;
    use crate::providers::waba::{parse, parse_login, parse_utc, GatewayStatus, SocketState};

    const NOW: u64 = 1_760_000_000;

    #[test]
    fn coreapp_goes_down_and_comes_back() {
        let at = |t| parse(support(t, NOW).as_bytes(), health(t).as_bytes()).unwrap();
        let s = at(10);
        assert!(s.multi_connect && s.connected());
        assert_eq!(s.nodes.len(), 3);
        let core = |t| {
            let s = at(t);
            let n = s.nodes.into_iter().find(|n| n.name == COREAPP).unwrap();
            (n.socket.unwrap(), n.gateway_status.unwrap())
        };
        assert_eq!(core(65), (SocketState::Down, GatewayStatus::Disconnected));
        assert!(!at(65).connected());
        assert_eq!(core(85).0, SocketState::Connecting);
        assert_eq!(core(95).0, SocketState::UpReceivingOffline);
        assert!(at(95).connected());
        assert_eq!(core(170), (SocketState::Up, GatewayStatus::Connected));
        let standby = at(10)
            .nodes
            .into_iter()
            .find(|n| n.name == SECONDARY)
            .unwrap();
        assert_eq!(
            standby.socket,
            Some(SocketState::Down),
            "a standby by design"
        );
    }

    #[test]
    fn free_space_shrinks_and_the_build_expires_in_a_month() {
        let data = |t| {
            parse(support(t, NOW).as_bytes(), health(t).as_bytes())
                .unwrap()
                .nodes[0]
                .free_space[0]
                .unwrap()
        };
        assert!(data(100) < data(10));
        let s = parse(support(0, NOW).as_bytes(), health(0).as_bytes()).unwrap();
        let days = (s.nodes[0].build_expiry.unwrap() - NOW as i64) / 86_400;
        assert!((29..=30).contains(&days), "{days}");
    }

    #[test]
    fn dates_round_trip() {
        for secs in [0, 951_868_800, 1_519_918_166, 1_709_164_800, NOW] {
            assert_eq!(parse_utc(&format_utc(secs, ' ')), Some(secs as i64));
        }
        assert_eq!(format_utc(1_538_058_367, 'T'), "2018-09-27T14:26:07");
    }

    #[test]
    fn login_issues_a_week_long_token() {
        let (code, body) = login(Some(DEMO_BASIC), NOW);
        assert_eq!(code, 200);
        let i = parse_login(body.as_bytes()).unwrap();
        assert_eq!(i.token.expose(), DEMO_WABA_TOKEN);
        assert_eq!(i.expires_after, Some(NOW as i64 + 7 * 86_400));
        assert_eq!(login(Some("Basic eA=="), NOW).0, 401);
    }

    #[test]
    fn demo_gateway_logs_in_as_the_simulator_expects() {
        use crate::config::{ProviderConfig, WabaAuth};
        let yaml = format!("gateways:\n{}", gateways("127.0.0.1:1".parse().unwrap()));
        let cfg = crate::config::parse(&yaml, &|_| None).unwrap();
        let ProviderConfig::Waba(w) = &cfg.gateways[0].settings else {
            panic!("{cfg:?}")
        };
        let WabaAuth::Login { username, password } = &w.auth else {
            panic!("{w:?}")
        };
        assert_eq!(
            (username.as_str(), password.expose()),
            (DEMO_USERNAME, DEMO_PASSWORD)
        );
    }

    #[test]
    fn basic_header_is_what_a_client_sends() {
        crate::tls::install_crypto_provider();
        let req = reqwest::Client::new()
            .post("http://127.0.0.1/v1/users/login")
            .basic_auth(DEMO_USERNAME, Some(DEMO_PASSWORD))
            .build()
            .unwrap();
        let sent = req.headers().get("authorization").unwrap();
        assert_eq!(sent.to_str().unwrap(), DEMO_BASIC);
    }
}
