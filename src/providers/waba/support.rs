//! The answers of `/v1/support` and `/v1/health`, read field by field.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::MAX_NODES;
use crate::error::PollError;
use crate::labels::plain;

crate::labels::closed_set! {
    /// `socket_conn`: the node's connection to the WhatsApp servers.
    pub enum SocketState {
        Up => "up",
        Down => "down",
        Connecting => "connecting",
        UpReceivingOffline => "up_receiving_offline",
        Unknown => "unknown",
    }
}

impl SocketState {
    pub fn from_text(s: &str) -> Self {
        let words: Vec<&str> = s.split_whitespace().collect();
        match words.join(" ").to_ascii_uppercase().as_str() {
            "UP" => SocketState::Up,
            "DN" => SocketState::Down,
            "SC" => SocketState::Connecting,
            "UP RECEIVING OFFLINE" => SocketState::UpReceivingOffline,
            _ => SocketState::Unknown,
        }
    }

    pub fn is_up(self) -> bool {
        matches!(self, SocketState::Up | SocketState::UpReceivingOffline)
    }
}

crate::labels::closed_set! {
    /// `gateway_status` from `/v1/health`.
    pub enum GatewayStatus {
        Connected => "connected",
        Connecting => "connecting",
        Disconnected => "disconnected",
        Uninitialized => "uninitialized",
        Unregistered => "unregistered",
        Unknown => "unknown",
    }
    catch_all = Unknown;
}

impl GatewayStatus {
    pub fn from_text(s: &str) -> Self {
        Self::from_label(&s.trim().to_ascii_lowercase())
    }
}

/// The volumes of `free_space_*`, in the order of [`Node::free_space`].
pub const VOLUMES: [&str; 4] = ["data", "logs", "media_incoming", "media_outgoing"];

/// What one node tells; every field may be missing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    /// `hostname:container-id` (sanitised) on multi-connect, empty on a single node.
    pub name: String,
    pub socket: Option<SocketState>,
    pub gateway_status: Option<GatewayStatus>,
    pub multi_connect: Option<bool>,
    pub role: Option<String>,
    pub shards: Option<u64>,
    pub version: Option<String>,
    pub db_engine: Option<String>,
    pub os_name: Option<String>,
    pub os_version: Option<String>,
    /// `expire_timestamp`, in Unix seconds.
    pub build_expiry: Option<i64>,
    pub free_space: [Option<f64>; 4],
}

/// The fields read from a node; everything else, `env` and `debug_info` first, is skipped unread.
const NODE_FIELDS: [&str; 13] = [
    "socket_conn",
    "multi_connect",
    "role",
    "shards",
    "version",
    "db_engine",
    "os_name",
    "os_version",
    "expire_timestamp",
    "free_space_data",
    "free_space_logs",
    "free_space_media_incoming",
    "free_space_media_outgoing",
];

impl Node {
    /// Reads the value of `key` if it is one we export; `false` leaves it for the caller.
    fn read_field<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        if !NODE_FIELDS.contains(&key) {
            return Ok(false);
        }
        // Read as a JSON value first, so that a field of an unexpected type is absent rather
        // than the whole answer refused.
        let v: Value = map.next_value()?;
        let text = |max| v.as_str().map(|s| label_value(s, max));
        match key {
            "socket_conn" => self.socket = v.as_str().map(SocketState::from_text),
            "multi_connect" => self.multi_connect = crate::json::boolean(&v),
            "role" => self.role = text(32),
            "shards" => self.shards = count_shards(&v),
            "version" => self.version = text(64),
            "db_engine" => self.db_engine = text(16),
            "os_name" => self.os_name = text(64),
            "os_version" => self.os_version = text(32),
            "expire_timestamp" => self.build_expiry = v.as_str().and_then(super::parse_utc),
            _ => {
                if let Some(i) = VOLUMES
                    .iter()
                    .position(|vol| key.strip_prefix("free_space_") == Some(*vol))
                {
                    self.free_space[i] = crate::json::number(&v);
                }
            }
        }
        Ok(true)
    }

    /// Whether an object is a node of a multi-connect answer rather than, say, `e2e`.
    fn looks_like_node(&self) -> bool {
        self.socket.is_some()
            || self.multi_connect.is_some()
            || self.role.is_some()
            || self.shards.is_some()
            || self.version.is_some()
    }

    pub(super) fn has_build_info(&self) -> bool {
        self.version.is_some()
            || self.db_engine.is_some()
            || self.os_name.is_some()
            || self.os_version.is_some()
            || self.multi_connect.is_some()
    }
}

/// `shards` is a list of `[first, last]` ranges of shard ids (`[[-1, -1], [0, 0]]` on a primary
/// master owning the master shard and shard 0): the node owns the ids they cover. An entry of
/// another shape counts as one shard.
fn count_shards(v: &Value) -> Option<u64> {
    let ranges = v.as_array()?;
    Some(
        ranges
            .iter()
            .map(|r| match r.as_array().map(|a| a.as_slice()) {
                Some([a, b]) => match (a.as_i64(), b.as_i64()) {
                    (Some(a), Some(b)) if b >= a => b.abs_diff(a).saturating_add(1),
                    _ => 1,
                },
                _ => 1,
            })
            .fold(0u64, u64::saturating_add),
    )
}

/// A label value from the gateway: a bounded length and a plain alphabet, whatever it sent.
pub fn label_value(s: &str, max: usize) -> String {
    plain(s, max, "._:+-")
}

/// The `support` object: a node's fields at the top, or nodes keyed by `hostname:container-id`.
#[derive(Default)]
struct SupportBody {
    top: Node,
    nodes: Vec<Node>,
    /// Nodes beyond [`MAX_NODES`].
    dropped: usize,
}

impl<'de> Deserialize<'de> for SupportBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(SupportVisitor)
    }
}

struct SupportVisitor;

impl<'de> Visitor<'de> for SupportVisitor {
    type Value = SupportBody;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the support object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SupportBody, A::Error> {
        let mut body = SupportBody::default();
        while let Some(key) = map.next_key::<String>()? {
            if body.top.read_field(&key, &mut map)? {
                continue;
            }
            let Some(mut node) = map.next_value::<MaybeNode>()?.0 else {
                continue;
            };
            if !node.looks_like_node() {
                continue;
            }
            if body.nodes.len() >= MAX_NODES {
                body.dropped += 1;
                continue;
            }
            node.name = label_value(&key, 128);
            body.nodes.push(node);
        }
        Ok(body)
    }
}

/// Any JSON value: an object is read as a node, anything else skipped unread.
struct MaybeNode(Option<Node>);

impl<'de> Deserialize<'de> for MaybeNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MaybeNodeVisitor)
    }
}

struct MaybeNodeVisitor;

impl<'de> Visitor<'de> for MaybeNodeVisitor {
    type Value = MaybeNode;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MaybeNode, A::Error> {
        let mut node = Node::default();
        while let Some(key) = map.next_key::<String>()? {
            if !node.read_field(&key, &mut map)? {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(MaybeNode(Some(node)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MaybeNode, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(MaybeNode(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<MaybeNode, E> {
        Ok(MaybeNode(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<MaybeNode, E> {
        Ok(MaybeNode(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<MaybeNode, E> {
        Ok(MaybeNode(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<MaybeNode, E> {
        Ok(MaybeNode(None))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<MaybeNode, E> {
        Ok(MaybeNode(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<MaybeNode, E> {
        Ok(MaybeNode(None))
    }
}

#[derive(Deserialize)]
struct SupportAnswer {
    #[serde(default)]
    support: Option<SupportBody>,
    #[serde(default)]
    errors: Option<Vec<ApiError>>,
}

#[derive(Deserialize)]
struct HealthAnswer {
    #[serde(default)]
    health: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    errors: Option<Vec<ApiError>>,
}

/// An entry of the API's `errors` list; its `title` and `details` are free text and stay unread.
#[derive(Deserialize)]
pub(super) struct ApiError {
    #[serde(default)]
    code: Option<Value>,
}

/// Errors in a 200 answer mean it is not the status asked for; only their codes are told.
pub(super) fn api_errors(errors: Option<&[ApiError]>) -> Result<(), PollError> {
    let errors = errors.unwrap_or_default();
    if errors.is_empty() {
        return Ok(());
    }
    let codes: Vec<String> = errors
        .iter()
        .take(3)
        .map(|e| match e.code.as_ref().and_then(Value::as_i64) {
            Some(c) => c.to_string(),
            None => "?".into(),
        })
        .collect();
    Err(PollError::InvalidResponse(format!(
        "the gateway answered with errors (codes {})",
        codes.join(", ")
    )))
}

/// What one poll of a deployment saw: its nodes, sorted by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub nodes: Vec<Node>,
    pub multi_connect: bool,
}

/// Parses the answers of `/v1/support` and `/v1/health` into one status.
pub fn parse(support: &[u8], health: &[u8]) -> Result<Status, PollError> {
    let mut status = parse_support(support)?;
    for (name, gateway_status, role) in parse_health(health)? {
        if let Some(node) = status.nodes.iter_mut().find(|n| n.name == name) {
            node.gateway_status = gateway_status;
            if node.role.is_none() {
                node.role = role;
            }
        } else if status.nodes.len() < MAX_NODES {
            // A node that only `/v1/health` knows of, such as one whose support call failed.
            status.nodes.push(Node {
                name,
                gateway_status,
                role,
                ..Node::default()
            });
        }
    }
    status.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(status)
}

fn parse_support(body: &[u8]) -> Result<Status, PollError> {
    let a: Option<SupportAnswer> =
        serde_json::from_slice(body).map_err(|e| PollError::from_json(&e))?;
    let a = a.ok_or_else(|| PollError::InvalidResponse("the support answer is null".into()))?;
    api_errors(a.errors.as_deref())?;
    let body = a
        .support
        .ok_or_else(|| PollError::InvalidResponse("the answer has no `support` object".into()))?;
    if body.dropped > 0 {
        tracing::debug!(
            ignored = body.dropped,
            "multi-connect answer with more nodes than exported"
        );
    }
    let multi_connect = body.top.socket.is_none() && !body.nodes.is_empty();
    let nodes = if multi_connect {
        body.nodes
    } else {
        vec![body.top]
    };
    if nodes.iter().all(|n| n.socket.is_none()) {
        return Err(PollError::InvalidResponse(
            "the support answer has no `socket_conn`".into(),
        ));
    }
    Ok(Status {
        nodes,
        multi_connect,
    })
}

type HealthEntry = (String, Option<GatewayStatus>, Option<String>);

/// `{"health":{"gateway_status":S}}`, or per node `{"health":{"host:container":{...}}}`.
fn parse_health(body: &[u8]) -> Result<Vec<HealthEntry>, PollError> {
    let a: Option<HealthAnswer> =
        serde_json::from_slice(body).map_err(|e| PollError::from_json(&e))?;
    let a = a.ok_or_else(|| PollError::InvalidResponse("the health answer is null".into()))?;
    api_errors(a.errors.as_deref())?;
    let health = a
        .health
        .ok_or_else(|| PollError::InvalidResponse("the answer has no `health` object".into()))?;
    let entry = |name: String, obj: &serde_json::Map<String, Value>| {
        let status = obj
            .get("gateway_status")
            .and_then(Value::as_str)
            .map(GatewayStatus::from_text);
        let role = obj
            .get("role")
            .and_then(Value::as_str)
            .map(|r| label_value(r, 32));
        (name, status, role)
    };
    if health.contains_key("gateway_status") {
        return Ok(vec![entry(String::new(), &health)]);
    }
    Ok(health
        .iter()
        .filter_map(|(k, v)| v.as_object().map(|o| (k, o)))
        .filter(|(_, o)| o.contains_key("gateway_status") || o.contains_key("role"))
        .take(MAX_NODES)
        .map(|(k, o)| entry(label_value(k, 128), o))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::FragmentWriter;
    use crate::providers::shape::Observation;

    /// The seed's single-node answer, its `#` comments removed and its placeholders filled in.
    const SINGLE: &str = r#"{ "support": { "context": "healthcheck", "db_engine": "MYSQL",
        "db_info": [ "mysql-driver-8.0.19" ], "debug_info": "+5511999998888",
        "description": "whatsapp-build-version", "device_iso8601": "2018-09-20T10:00:00",
        "e2e": { "identity_timestamp": "id-timestamp", "registration_id": 12345 },
        "env": [ "WA_DB_PASSWORD=env-SECRET-pw" ], "expire_timestamp": "2018-09-27T14:26:07",
        "free_space_data": 9223372036853727000, "free_space_logs": 14269902848,
        "free_space_media_incoming": 9223372036853727000,
        "free_space_media_outgoing": 9223372036853727000, "lc": "en", "lg": "US",
        "multi_connect": false, "os_name": "ubuntu-x86_64", "os_version": "16.04",
        "schema": { "axolotl": 1, "callback": 2, "cluster": 3, "config": 4, "contact": 5,
        "jobqueue": 6, "message": 7 }, "socket_conn": "UP", "version": "v2.41.3" } }"#;

    /// The seed's multi-connect answer, with three nodes.
    const MULTI: &str = r#"{ "support": {
        "waba-master-1:3f2a9c1b7d4e": { "multi_connect": true, "role": "primary_master",
            "shards": [[-1, -1]], "context": "healthcheck", "db_engine": "PGSQL",
            "db_info": [ "pg" ], "debug_info": "+5511999998888", "description": "build",
            "env": ["A=env-SECRET-pw"], "socket_conn": "UP", "version": "v2.41.3" },
        "waba-core-1:1a2b3c4d5e6f": { "multi_connect": true, "role": "coreapp",
            "shards": [[0, 0]], "db_engine": "PGSQL", "debug_info": "+5511999998888",
            "socket_conn": "DN", "version": "v2.41.3" },
        "waba-core-2:6f5e4d3c2b1a": { "multi_connect": true, "role": "coreapp",
            "shards": [[1, 1]], "socket_conn": "UP receiving offline", "version": "v2.41.3",
            "free_space_data": 1024 } },
        "meta": { "api_status": "stable", "version": "2.41.3" } }"#;

    const HEALTH_SINGLE: &str = r#"{"health":{"gateway_status":"connected"}}"#;
    const HEALTH_MULTI: &str = r#"{"health":{
        "waba-master-1:3f2a9c1b7d4e":{"gateway_status":"connected","role":"primary_master"},
        "waba-core-1:1a2b3c4d5e6f":{"gateway_status":"disconnected","role":"coreapp"},
        "waba-core-2:6f5e4d3c2b1a":{"gateway_status":"connecting","role":"coreapp"}}}"#;

    fn render(s: &Status) -> String {
        let mut w = FragmentWriter::new(&[], &super::super::FAMILIES);
        s.write(&mut w);
        let f = w.finish();
        let mut out = Vec::new();
        crate::exposition::render(&mut out, &[&super::super::FAMILIES], std::iter::once(&f))
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn single_node_seed() {
        let s = parse(SINGLE.as_bytes(), HEALTH_SINGLE.as_bytes()).unwrap();
        assert!(!s.multi_connect);
        assert_eq!(
            s.nodes,
            vec![Node {
                name: String::new(),
                socket: Some(SocketState::Up),
                gateway_status: Some(GatewayStatus::Connected),
                multi_connect: Some(false),
                role: None,
                shards: None,
                version: Some("v2.41.3".into()),
                db_engine: Some("MYSQL".into()),
                os_name: Some("ubuntu-x86_64".into()),
                os_version: Some("16.04".into()),
                build_expiry: Some(1_538_058_367),
                free_space: [
                    Some(9223372036853727000.0),
                    Some(14269902848.0),
                    Some(9223372036853727000.0),
                    Some(9223372036853727000.0)
                ],
            }]
        );
        assert!(s.connected());
        let text = render(&s);
        assert!(text.contains(
            "whatsapp_waba_free_space_bytes{node=\"\",volume=\"data\"} 9223372036853727000\n"
        ));
        assert!(text.contains("whatsapp_waba_socket_state{node=\"\",state=\"up\"} 1\n"));
        assert!(text.contains("whatsapp_waba_build_info{node=\"\",version=\"v2.41.3\",db_engine=\"MYSQL\",os_name=\"ubuntu-x86_64\",os_version=\"16.04\",multi_connect=\"false\"} 1\n"));
        assert!(
            text.contains("whatsapp_waba_build_expiry_timestamp_seconds{node=\"\"} 1538058367\n")
        );
        assert!(!text.contains("whatsapp_waba_node_info"));
        assert!(!text.contains("whatsapp_waba_shards"));
        assert_eq!(s.summary(), "socket up, gateway connected");
    }

    #[test]
    fn multi_connect_seed() {
        let s = parse(MULTI.as_bytes(), HEALTH_MULTI.as_bytes()).unwrap();
        assert!(s.multi_connect);
        let names: Vec<&str> = s.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "waba-core-1:1a2b3c4d5e6f",
                "waba-core-2:6f5e4d3c2b1a",
                "waba-master-1:3f2a9c1b7d4e"
            ]
        );
        assert_eq!(s.nodes[0].socket, Some(SocketState::Down));
        assert_eq!(s.nodes[1].socket, Some(SocketState::UpReceivingOffline));
        assert_eq!(s.nodes[0].gateway_status, Some(GatewayStatus::Disconnected));
        assert_eq!(s.nodes[2].role.as_deref(), Some("primary_master"));
        assert_eq!(s.nodes[2].shards, Some(1));
        assert!(!s.connected(), "a shard owner (waba-core-1) is down");
        let text = render(&s);
        assert!(text.contains(
            "whatsapp_waba_socket_state{node=\"waba-core-1:1a2b3c4d5e6f\",state=\"down\"} 1\n"
        ));
        assert!(text.contains(
            "whatsapp_waba_node_info{node=\"waba-master-1:3f2a9c1b7d4e\",role=\"primary_master\"} 1\n"
        ));
        assert!(text.contains(
            "whatsapp_waba_gateway_status{node=\"waba-core-2:6f5e4d3c2b1a\",status=\"connecting\"} 1\n"
        ));
        assert!(text.contains("whatsapp_waba_free_space_bytes{node=\"waba-core-2:6f5e4d3c2b1a\",volume=\"data\"} 1024\n"));
        assert_eq!(
            s.summary(),
            "3 nodes, 2 with socket up, 2 of 3 shard owners up"
        );
    }

    #[test]
    fn private_fields_are_not_kept() {
        for (support, health) in [(SINGLE, HEALTH_SINGLE), (MULTI, HEALTH_MULTI)] {
            let s = parse(support.as_bytes(), health.as_bytes()).unwrap();
            let all = format!("{s:?}{}{}", render(&s), s.summary());
            for private in [
                "5511999998888",
                "env-SECRET-pw",
                "registration",
                "12345",
                "mysql-driver",
                "healthcheck",
            ] {
                assert!(!all.contains(private), "{private} in {all}");
            }
        }
    }

    #[test]
    fn shards_count_the_ids_their_ranges_cover() {
        let n = |v: &str| count_shards(&serde_json::from_str(v).unwrap());
        assert_eq!(n("[[-1, -1], [0, 0]]"), Some(2));
        assert_eq!(n("[[-1, -1]]"), Some(1));
        assert_eq!(n("[]"), Some(0));
        assert_eq!(n("[[0, 3]]"), Some(4));
        assert_eq!(n("[[3, 0], \"x\"]"), Some(2));
        assert_eq!(n("null"), None);
    }

    #[test]
    fn every_socket_conn_value() {
        for (text, want) in [
            ("UP", SocketState::Up),
            ("DN", SocketState::Down),
            ("SC", SocketState::Connecting),
            ("UP receiving offline", SocketState::UpReceivingOffline),
            ("up  Receiving OFFLINE", SocketState::UpReceivingOffline),
            ("UNK", SocketState::Unknown),
            ("UP | DN", SocketState::Unknown),
            ("", SocketState::Unknown),
        ] {
            assert_eq!(SocketState::from_text(text), want, "{text:?}");
        }
    }

    #[test]
    fn gateway_status_values() {
        for s in <GatewayStatus as crate::labels::LabelSet>::LABELS {
            assert_eq!(GatewayStatus::from_text(s).as_str(), *s);
        }
        assert_eq!(GatewayStatus::from_text("banned"), GatewayStatus::Unknown);
    }

    #[test]
    fn missing_fields_are_absent_and_odd_types_ignored() {
        let s = parse(
            br#"{"support":{"socket_conn":"SC","free_space_logs":"12","free_space_data":true,"multi_connect":"true","expire_timestamp":"soon","new_field":{"x":1}}}"#,
            br#"{"health":{"gateway_status":"uninitialized"},"meta":{}}"#,
        )
        .unwrap();
        let n = &s.nodes[0];
        assert_eq!(n.free_space, [None, Some(12.0), None, None]);
        assert_eq!(n.multi_connect, Some(true));
        assert_eq!(n.build_expiry, None);
        assert_eq!(n.version, None);
        assert!(!s.connected());
        let text = render(&s);
        assert!(!text.contains("build_expiry"));
        assert!(!text.contains("volume=\"data\""));
    }

    #[test]
    fn label_values_are_bounded_and_plain() {
        assert_eq!(label_value("v2.41.3", 64), "v2.41.3");
        assert_eq!(label_value("a\"b\nc{d}", 64), "a_b_c_d_");
        assert_eq!(label_value(&"x".repeat(500), 16).len(), 16);
        let s = parse(
            br#"{"support":{"host\"1:c":{"socket_conn":"UP","version":"2.0 <b>beta</b>"}}}"#,
            br#"{"health":{}}"#,
        )
        .unwrap();
        assert_eq!(s.nodes[0].name, "host_1:c");
        assert_eq!(s.nodes[0].version.as_deref(), Some("2.0__b_beta__b_"));
    }

    #[test]
    fn node_count_is_capped() {
        let nodes: Vec<String> = (0..100)
            .map(|i| format!("\"h{i}:c\":{{\"socket_conn\":\"UP\"}}"))
            .collect();
        let body = format!("{{\"support\":{{{}}}}}", nodes.join(","));
        let s = parse(body.as_bytes(), br#"{"health":{}}"#).unwrap();
        assert_eq!(s.nodes.len(), MAX_NODES);
    }

    #[test]
    fn errors_and_broken_answers_are_invalid_responses() {
        let err = br#"{"meta":{"version":"v2.41.3","api_status":"stable"},"errors":[{"code":1005,"title":"Access denied","details":"phone +5511999998888 secret-detail"}]}"#;
        let e = parse(err, HEALTH_SINGLE.as_bytes()).unwrap_err();
        assert_eq!(e.reason(), "invalid_response");
        assert!(e.to_string().contains("1005"), "{e}");
        assert!(!e.to_string().contains("secret-detail"));
        assert!(!e.to_string().contains("Access denied"));
        assert_eq!(
            parse(SINGLE.as_bytes(), err).unwrap_err().reason(),
            "invalid_response"
        );
        for body in [
            &b"null"[..],
            b"",
            b"<html><body>502 Bad Gateway</body></html>",
            b"{\"support\":",
            b"{\"support\":null}",
            b"{\"support\":\"UP\"}",
            b"{\"support\":{}}",
            b"{\"support\":{\"version\":\"v2\"}}",
            b"[]",
            b"{}",
        ] {
            let e = parse(body, HEALTH_SINGLE.as_bytes()).unwrap_err();
            assert_eq!(
                e.reason(),
                "invalid_response",
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        for health in [&b"null"[..], b"{}", b"{\"health\":[1]}", b"oops"] {
            assert!(parse(SINGLE.as_bytes(), health).is_err());
        }
    }

    /// A cluster as Meta documents it: in High Availability only the Coreapp that owns the shards
    /// is connected, every other node (masters included) reports disconnected; on multi-connect
    /// with X shards X Coreapps and the primary master (the master shard) are connected.
    fn cluster(nodes: &[(&str, &str, &str, &str)]) -> Status {
        let support: Vec<String> = nodes
            .iter()
            .map(|(name, role, shards, socket)| {
                format!(r#""{name}":{{"multi_connect":true,"role":"{role}","shards":{shards},"socket_conn":"{socket}"}}"#)
            })
            .collect();
        let health: Vec<String> = nodes
            .iter()
            .map(|(name, role, _, socket)| {
                let g = if socket.starts_with("UP") {
                    "connected"
                } else {
                    "disconnected"
                };
                format!(r#""{name}":{{"gateway_status":"{g}","role":"{role}"}}"#)
            })
            .collect();
        parse(
            format!(r#"{{"support":{{{}}}}}"#, support.join(",")).as_bytes(),
            format!(r#"{{"health":{{{}}}}}"#, health.join(",")).as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn connected_means_the_nodes_meant_to_be_connected_are() {
        let ha = |owner_socket: &str, owner_shards: &str| {
            cluster(&[
                ("m1:a", "primary_master", "[]", "DN"),
                ("m2:b", "secondary_master", "[]", "DN"),
                ("c1:c", "coreapp", owner_shards, owner_socket),
                ("c2:d", "coreapp", "[]", "DN"),
            ])
        };
        assert!(ha("UP", "[[-1,-1],[0,0]]").connected(), "healthy HA");
        assert!(ha("UP receiving offline", "[[-1,-1],[0,0]]").connected());
        assert!(
            !ha("DN", "[[-1,-1],[0,0]]").connected(),
            "the shard owner lost its socket"
        );
        assert!(!ha("SC", "[[-1,-1],[0,0]]").connected());
        assert!(!ha("DN", "[]").connected(), "no node owns the shards");
        assert!(!ha("UP", "[]").connected(), "up, but owning nothing");

        let mc = |core2: &str, master: &str| {
            cluster(&[
                ("m1:a", "primary_master", "[[-1,-1]]", master),
                ("m2:b", "secondary_master", "[]", "DN"),
                ("c1:c", "coreapp", "[[0,0]]", "UP"),
                ("c2:d", "coreapp", "[[1,1]]", core2),
                ("c3:e", "coreapp", "[]", "DN"),
            ])
        };
        assert!(
            mc("UP", "UP").connected(),
            "healthy multi-connect, spare down"
        );
        assert!(
            !mc("DN", "UP").connected(),
            "a shard-owning Coreapp is down"
        );
        assert!(
            !mc("UP", "DN").connected(),
            "the master shard's owner is down"
        );
        assert_eq!(
            mc("UP", "UP").summary(),
            "5 nodes, 3 with socket up, 3 of 3 shard owners up"
        );

        // A cluster that tells no shards: any node up will do.
        let old = parse(
            br#"{"support":{"a:1":{"role":"coreapp","socket_conn":"DN"},"b:2":{"role":"coreapp","socket_conn":"UP"}}}"#,
            br#"{"health":{}}"#,
        )
        .unwrap();
        assert!(old.connected());
        let old = parse(
            br#"{"support":{"a:1":{"role":"coreapp","socket_conn":"DN"},"b:2":{"role":"coreapp","socket_conn":"DN"}}}"#,
            br#"{"health":{}}"#,
        )
        .unwrap();
        assert!(!old.connected());
    }
}
