//! The simulated gateways' own pushes, posted to the exporter itself so that the Message flow
//! dashboard has data in `--demo`: the Z-API gateways `sales` and `support` to
//! `/webhooks/<gateway>`, the Cloud API number `brand` through the Meta app `demo` (signed with
//! its app secret), the Evolution API server `evo` to `/webhooks/evo` (its secret in the URL) and
//! the WAHA server `waha` to `/webhooks/waha` (signed with HMAC-SHA512), for their instances
//! (see `servers.rs`). The Green API instance pushes through its queue, which its simulator
//! fills. The delivery canary's messages are relayed here too (see `relay.rs`).
//!
//! The story repeats every [`CYCLE_SECS`] seconds, as the polled simulators' do:
//! - messages are sent every second and go sent → delivered (2–10 s) → read, with messages
//!   received in between;
//! - `sales` is disconnected from 90 s to 135 s (the push says so before the next poll), and
//!   silent, though connected, from 160 s to the end of the cycle (its webhooks are lost);
//! - `support`'s webhooks arrive one to two minutes late from 60 s to 80 s, and a burst of
//!   failures (SHADOW_BAN, unknown numbers) comes at 40 s;
//! - `brand` hits the spam rate limit (131048) at 20 s, has slow deliveries from 110 s to 130 s,
//!   a quality FLAGGED at 100 s (which polls it at once) and an approved template at 10 s.
//!
//! Every id, number and text is fake; the exporter would not export them anyway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::push::{now_ms, Push, Target};
use super::{CYCLE_SECS, DEMO_APP_SECRET, DEMO_WAHA_HMAC_KEY, DEMO_WEBHOOK_SECRET};
use crate::exporter::Exporter;
use crate::providers::cloudapi::demo::DEMO_PHONE_NUMBER_ID;
use crate::providers::evolution::demo::state;
use crate::providers::waha::demo::status;

/// The demo's Meta app.
pub const APP: &str = "demo";
const TICK: Duration = Duration::from_secs(1);
/// Meta's documentation example display number; no real number stands behind it here.
const DISPLAY: &str = "15550783881";
const WABA: &str = "102290129340398";

pub fn spawn(exporter_addr: SocketAddr, exporter: &Arc<Exporter>, stop: CancellationToken) {
    if ["sales", "brand", "evo", "waha"]
        .iter()
        .all(|g| exporter.gateway(g).is_none())
    {
        return;
    }
    let base = format!("http://{}", super::plugchat::reachable(exporter_addr));
    // The simulators' address: where the canaries' sends are relayed from.
    let relays_at: Option<SocketAddr> = exporter.gateway("sales").and_then(|g| {
        g.config
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .ok()
    });
    tokio::spawn(async move {
        let client = match crate::http::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "demo push simulator cannot start");
                return;
            }
        };
        let mut sim = Story::new();
        let start = now_ms();
        loop {
            let now = now_ms();
            let t = ((now - start) / 1000) as u64 % CYCLE_SECS;
            if let Some(at) = relays_at {
                sim.pending.extend(super::relay::take(at));
            }
            for push in sim.tick(t, now) {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = post(&client, &base, &push) => {}
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    });
}

async fn post(client: &reqwest::Client, base: &str, push: &Push) {
    let body = push.body.to_string();
    let req = match push.target {
        Target::Zapi(gw) => {
            client.post(format!("{base}/webhooks/{gw}?secret={DEMO_WEBHOOK_SECRET}"))
        }
        Target::Cloud => client
            .post(format!("{base}/webhooks/cloudapi/{APP}"))
            .header("x-hub-signature-256", sign(body.as_bytes())),
        Target::Evolution(_) => {
            client.post(format!("{base}/webhooks/evo?secret={DEMO_WEBHOOK_SECRET}"))
        }
        Target::Waha(_) => client
            .post(format!("{base}/webhooks/waha"))
            .header("x-webhook-hmac", sign_waha(body.as_bytes()))
            .header("x-webhook-hmac-algorithm", "sha512")
            .header("x-webhook-timestamp", now_ms().to_string()),
    };
    let sent = req
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    if let Err(e) = sent {
        tracing::debug!(error = %e.without_url(), "demo push not delivered");
    }
}

fn sign(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, DEMO_APP_SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    format!("sha256={}", hex(tag.as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// WAHA's `X-Webhook-Hmac`: the hex HMAC-SHA512 of the body under the session webhook's key.
fn sign_waha(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA512, DEMO_WAHA_HMAC_KEY.as_bytes());
    hex(ring::hmac::sign(&key, body).as_ref())
}

/// The pushes of the demo: a fixed pseudo-random story, the same on every run.
pub struct Story {
    rng: u64,
    next_id: u64,
    pub(super) pending: Vec<Push>,
}

impl Default for Story {
    fn default() -> Self {
        Self::new()
    }
}

impl Story {
    pub fn new() -> Self {
        Story {
            rng: 0x2545_F491_4F6C_DD1D,
            next_id: 1,
            pending: Vec::new(),
        }
    }

    pub(super) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        lo + self.rng % (hi - lo + 1)
    }

    pub(super) fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:016X}", self.next_id.wrapping_mul(0x9E37_79B9))
    }

    /// The pushes due at second `t` of the cycle, at `now` (Unix milliseconds).
    pub fn tick(&mut self, t: u64, now: i64) -> Vec<Push> {
        self.zapi(t, now, "sales");
        self.zapi(t, now, "support");
        self.cloud(t, now);
        self.evolution(t, now);
        self.waha(t, now);
        let (mut due, later): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|p| p.due_ms <= now);
        self.pending = later;
        // While sales is silent, its webhooks are lost, as a number that stopped working loses them.
        if t >= 160 {
            due.retain(|p| p.target != Target::Zapi("sales"));
        }
        // An Evolution instance or WAHA session that is down loses its message pushes.
        due.retain(|p| !is_message(p) || up(p.target, t));
        // The pending list is bounded by the story: a message has at most three statuses ahead.
        due
    }

    pub(super) fn later(&mut self, due_ms: i64, target: Target, body: Value) {
        self.pending.push(Push {
            due_ms,
            target,
            body,
        });
    }

    fn zapi(&mut self, t: u64, now: i64, gw: &'static str) {
        let target = Target::Zapi(gw);
        let sales = gw == "sales";
        if sales && t == 90 {
            self.later(now, target, json!({"type": "DisconnectedCallback", "disconnected": true, "error": "Device has been disconnected", "momment": now, "instanceId": "DEMO-SALES"}));
        }
        if sales && t == 135 {
            self.later(now, target, json!({"type": "ConnectedCallback", "connected": true, "momment": now, "instanceId": "DEMO-SALES", "phone": "5511900000000"}));
        }
        if sales && ((90..135).contains(&t) || t >= 160) {
            return;
        }
        // From 60 s to 80 s, support's webhooks are one to two minutes late.
        let lag = if !sales && (60..=80).contains(&t) {
            self.between(60, 120) as i64 * 1000
        } else {
            0
        };
        for _ in 0..self.between(1, 2) {
            let id = self.id("3EB0");
            if !sales && (40..=44).contains(&t) {
                let (error, code) = if self.between(0, 1) == 0 {
                    (
                        "The message was not sent due to a likely shadow ban",
                        Some("SHADOW_BAN"),
                    )
                } else {
                    ("Phone number does not exist", None)
                };
                let mut body = json!({"type": "DeliveryCallback", "messageId": id, "zaapId": id, "error": error, "momment": now - lag, "phone": "5511900000001", "instanceId": "DEMO"});
                if let Some(c) = code {
                    body["errorCode"] = json!(c);
                }
                self.later(now + lag, target, body);
                continue;
            }
            let sent = now;
            let delivered = sent + self.between(2, 10) as i64 * 1000;
            let read = delivered + self.between(3, 30) as i64 * 1000;
            self.later(sent + lag, target, json!({"type": "DeliveryCallback", "messageId": id, "zaapId": id, "momment": sent, "phone": "5511900000001", "instanceId": "DEMO"}));
            for (status, at) in [("SENT", sent), ("RECEIVED", delivered), ("READ", read)] {
                self.later(at + lag, target, json!({"type": "MessageStatusCallback", "status": status, "ids": [id.clone()], "momment": at, "phone": "5511900000001", "instanceId": "DEMO", "isGroup": false}));
            }
        }
        if self.between(0, 1) == 0 {
            let id = self.id("3EB1");
            self.later(now + lag, target, json!({"type": "ReceivedCallback", "messageId": id, "fromMe": false, "momment": now, "phone": "5511900000002", "status": "RECEIVED", "text": {"message": "mensagem de demonstração"}, "instanceId": "DEMO"}));
        }
    }

    fn cloud(&mut self, t: u64, now: i64) {
        let secs = |ms: i64| (ms / 1000).to_string();
        for _ in 0..self.between(1, 3) {
            let id = format!("wamid.{}", self.id("HBgLDEMO"));
            let sent = now;
            if (20..=24).contains(&t) {
                let code = if self.between(0, 2) == 0 {
                    131026
                } else {
                    131048
                };
                let title = if code == 131048 {
                    "Spam rate limit hit"
                } else {
                    "Message undeliverable"
                };
                let status = json!({"id": id, "status": "failed", "timestamp": secs(sent), "recipient_id": "15550000001", "errors": [{"code": code, "title": title}]});
                self.later(sent, Target::Cloud, statuses(vec![status]));
                continue;
            }
            let slow = (110..=130).contains(&t);
            let delay = if slow {
                self.between(60, 200)
            } else {
                self.between(1, 8)
            } as i64
                * 1000;
            let delivered = sent + delay;
            let read = delivered + self.between(2, 40) as i64 * 1000;
            for (status, at) in [("sent", sent), ("delivered", delivered), ("read", read)] {
                let s = json!({"id": id, "status": status, "timestamp": secs(at), "recipient_id": "15550000001", "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility"}});
                self.later(at, Target::Cloud, statuses(vec![s]));
            }
        }
        if self.between(0, 1) == 0 {
            let id = format!("wamid.{}", self.id("HBgLIN"));
            let m = json!({"from": "15550000002", "id": id, "timestamp": secs(now), "type": "text", "text": {"body": "demo"}});
            self.later(now, Target::Cloud, change("messages", json!({"messaging_product": "whatsapp", "metadata": {"display_phone_number": DISPLAY, "phone_number_id": DEMO_PHONE_NUMBER_ID}, "messages": [m]})));
        }
        if t == 100 {
            self.later(now, Target::Cloud, change("phone_number_quality_update", json!({"display_phone_number": DISPLAY, "event": "FLAGGED", "current_limit": "TIER_1K"})));
        }
        if t == 10 {
            self.later(now, Target::Cloud, change("message_template_status_update", json!({"event": "APPROVED", "message_template_id": 1689556908129832u64, "message_template_name": "order_confirmation", "message_template_language": "en_US", "reason": "NONE"})));
        }
    }
}

fn statuses(list: Vec<Value>) -> Value {
    change(
        "messages",
        json!({"messaging_product": "whatsapp", "metadata": {"display_phone_number": DISPLAY, "phone_number_id": DEMO_PHONE_NUMBER_ID}, "statuses": list}),
    )
}

fn change(field: &str, value: Value) -> Value {
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "time": time, "changes": [{"field": field, "value": value}]}]})
}

/// Whether a push is one of connection (kept while the instance is down) or of a message.
pub fn is_message(p: &Push) -> bool {
    let event = p.body["event"].as_str().unwrap_or_default();
    event.starts_with("message") || event.starts_with("send.")
}

/// Whether the instance or session of a message push is up at second `t`.
pub fn up(target: Target, t: u64) -> bool {
    match target {
        Target::Evolution(i) => state(i, t) == "open",
        Target::Waha(s) => status(s, t) == "WORKING",
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{cloudapi, zapi};

    /// Plays the story for two cycles and parses every push as the receiver would.
    #[test]
    fn every_push_is_one_the_receiver_reads() {
        let mut story = Story::new();
        let start = 1_750_000_000_000i64;
        let (mut zapi_events, mut cloud_events, mut failures) = (0, 0, 0);
        let mut silent_sales = true;
        for s in 0..2 * CYCLE_SECS {
            let t = s % CYCLE_SECS;
            for p in story.tick(t, start + s as i64 * 1000) {
                let body = p.body.to_string();
                match p.target {
                    Target::Zapi(gw) => {
                        let b = zapi::webhook::parse(body.as_bytes()).unwrap();
                        assert_eq!(b.unparsed, 0);
                        zapi_events += b.items.len();
                        failures += b.items.iter().filter(|e| !e.errors.is_empty()).count();
                        if gw == "sales" && t > 165 {
                            silent_sales = false;
                        }
                    }
                    Target::Evolution(_) | Target::Waha(_) => {}
                    Target::Cloud => {
                        let p = cloudapi::webhook::parse(body.as_bytes()).unwrap();
                        assert_eq!(p.batch.unparsed, 0);
                        cloud_events += p.batch.items.len();
                        failures += p
                            .batch
                            .items
                            .iter()
                            .filter(|r| !r.event.errors.is_empty())
                            .count();
                    }
                }
                assert!(!body.contains(DEMO_WEBHOOK_SECRET) && !body.contains(DEMO_APP_SECRET));
            }
        }
        assert!(
            zapi_events > 500 && cloud_events > 500,
            "{zapi_events} {cloud_events}"
        );
        assert!(failures > 10, "{failures}");
        assert!(silent_sales, "sales is silent at the end of the cycle");
        assert!(story.pending.len() < 1000, "bounded");
    }

    #[test]
    fn waha_signatures_are_the_sessions() {
        let body = br#"{"event":"message","session":"default"}"#;
        let sig = sign_waha(body);
        assert!(crate::providers::waha::webhook::hmac_matches(
            DEMO_WAHA_HMAC_KEY.as_bytes(),
            body,
            Some(sig.as_bytes()),
            Some(b"sha512")
        ));
    }

    #[test]
    fn signatures_are_the_apps() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let sig = sign(body);
        assert!(cloudapi::webhook::signature_matches(
            DEMO_APP_SECRET.as_bytes(),
            body,
            Some(sig.as_bytes())
        ));
    }
}
