//! A simulated PlugChat account, `demo`, whose webhooks are posted to the exporter itself about
//! once a second: messages received and sent, their status changes, now and then a delivery
//! error, a disconnection every 90 s, and attendances that start every few seconds and finish
//! 20 to 120 s later (support work of minutes to hours, with time compressed), spread over four
//! departments and categorised in both of PlugChat's shapes. Every two minutes a webhook arrives
//! with a stale secret, so that the rejection panel has something to show.
//!
//! The names and phone numbers are fake, and the exporter never exports them anyway.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::push::now_ms;
use super::DEMO_PLUGCHAT_SECRET;
use crate::exporter::Exporter;

pub const ACCOUNT: &str = "demo";
const TICK: Duration = Duration::from_secs(1);
const DEPARTMENTS: [&str; 4] = ["Vendas", "Suporte", "Financeiro", "Pós-venda"];
const CATEGORIES: [&str; 4] = ["Dúvida", "Reclamação", "Pedido", "Elogio"];

/// Starts posting to the exporter at `exporter_addr` until `stop`.
pub fn spawn(exporter_addr: SocketAddr, exporter: &Arc<Exporter>, stop: CancellationToken) {
    let configured = exporter
        .plugchat
        .summary()
        .iter()
        .any(|(name, ..)| name == ACCOUNT);
    if !configured {
        tracing::debug!("demo PlugChat account not configured; its simulator stays off");
        return;
    }
    let base = format!(
        "http://{}/webhooks/plugchat/{ACCOUNT}/",
        reachable(exporter_addr)
    );
    tokio::spawn(async move {
        let client = match crate::http::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "demo PlugChat simulator cannot start");
                return;
            }
        };
        let mut sim = Simulation::new();
        loop {
            for hook in sim.tick(now_ms()) {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = post(&client, &base, hook) => {}
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    });
}

/// Where the exporter can be reached from inside: a wildcard listen address is not one.
pub(super) fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// One webhook to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    pub event: &'static str,
    pub body: Value,
    /// A stale secret, as a URL left over from before a rotation would carry.
    pub stale_secret: bool,
}

async fn post(client: &reqwest::Client, base: &str, hook: Hook) {
    let secret = if hook.stale_secret {
        "demo-secret-from-before-the-rotation"
    } else {
        DEMO_PLUGCHAT_SECRET
    };
    let url = format!("{base}{}?secret={secret}", hook.event);
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(hook.body.to_string())
        .send()
        .await;
    if let Err(e) = sent {
        tracing::debug!(error = %e.without_url(), event = hook.event, "demo PlugChat webhook not delivered");
    }
}

/// An attendance in progress, to be finished at `finish_ms`.
#[derive(Debug, Clone)]
struct Planned {
    number: u64,
    department: &'static str,
    request_ms: i64,
    start_ms: i64,
    finish_ms: i64,
}

/// The simulated account: a fixed pseudo-random story, the same on every run.
pub struct Simulation {
    rng: u64,
    tick: u64,
    next_number: u64,
    next_message: u64,
    open: Vec<Planned>,
}

impl Default for Simulation {
    fn default() -> Self {
        Self::new()
    }
}

impl Simulation {
    pub fn new() -> Self {
        Simulation {
            rng: 0x9E37_79B9_7F4A_7C15,
            tick: 0,
            next_number: 1492,
            next_message: 1,
            open: Vec::new(),
        }
    }

    /// The webhooks of one tick, at `now` (Unix milliseconds).
    pub fn tick(&mut self, now: i64) -> Vec<Hook> {
        let t = self.tick;
        self.tick += 1;
        let mut out = Vec::new();
        if t == 0 {
            // One attendance already under way, so that a finish shows within seconds.
            out.push(self.start(now, now - 62_000, now - 50_000, now + 2_000));
        } else if t % 6 == 1 {
            let wait = self.between(3, 90) as i64 * 1000;
            let length = self.between(20, 120) as i64 * 1000;
            // Now and then the operator's clock runs ahead of the request's, as in PlugChat's own example.
            let request = if self.between(0, 6) == 0 {
                now + 800
            } else {
                now - wait
            };
            out.push(self.start(now, request, now, now + length));
        }
        out.extend(self.finish_due(now));
        for _ in 0..self.between(1, 3) {
            out.push(hook("receiveMessage", self.received(now)));
        }
        for _ in 0..self.between(1, 2) {
            out.push(hook("sendingMessage", self.delivery(now, None)));
        }
        for _ in 0..self.between(1, 3) {
            out.push(hook("messageStatus", self.status(now)));
        }
        if t % 15 == 7 {
            let body = self.delivery(now, Some("Phone number does not exist"));
            out.push(hook("messageDeliveryError", body));
        }
        if t % 90 == 5 {
            out.push(hook("whenDisconnecting", disconnected(now, t)));
        }
        if t % 120 == 60 {
            let mut h = hook("receiveMessage", self.received(now));
            h.stale_secret = true;
            out.push(h);
        }
        out
    }

    fn start(&mut self, now: i64, request_ms: i64, start_ms: i64, finish_ms: i64) -> Hook {
        let number = self.next_number;
        self.next_number += 1;
        let department = DEPARTMENTS[self.between(0, DEPARTMENTS.len() as u64 - 1) as usize];
        let p = Planned {
            number,
            department,
            request_ms,
            start_ms,
            finish_ms,
        };
        let body = json!({
            "attendance": {
                "attendanceNumber": number,
                "customer": customer(number),
                "departament": department,
                "operator": "Operador Demo",
                "momment": request_ms,
                "startTime": start_ms,
                "status": "PROGRESS"
            },
            "chat": self.chat(now, number)
        });
        self.open.push(p);
        hook("startAttendance", body)
    }

    fn finish_due(&mut self, now: i64) -> Vec<Hook> {
        let (due, open): (Vec<_>, Vec<_>) = self.open.drain(..).partition(|p| p.finish_ms <= now);
        self.open = open;
        due.into_iter().map(|p| self.finish(now, &p)).collect()
    }

    fn finish(&mut self, now: i64, p: &Planned) -> Hook {
        let mut attendance = json!({
            "attendanceNumber": p.number,
            "customer": customer(p.number),
            "departament": p.department,
            "endTime": now,
            "finishBy": "Operador Demo",
            "operatorReport ": "Cliente atendido (demo)",
            "ratingObservation": "Obrigado!",
            "requestTime": p.request_ms,
            "startTime": p.start_ms,
            "status": "FINISH"
        });
        let category = CATEGORIES[(p.number % CATEGORIES.len() as u64) as usize];
        // PlugChat's two ways of telling categories: the old single object and the newer list.
        match p.number % 3 {
            0 => {
                attendance["attendanceCategory"] =
                    json!({"color": "#DDDD", "id": "cat-demo", "name": category});
            }
            1 => {
                attendance["attendanceCategories"] = json!([
                    {"categoryId": "cat-demo", "categoryName": category, "color": "#0a0", "itemId": "item-1", "itemName": "Item demo"},
                    {"categoryId": "cat-padrao", "categoryName": "Padrão", "color": "#aaa", "itemId": "item-2", "itemName": "Item demo"}
                ]);
            }
            _ => {}
        }
        let body = json!({"attendance": attendance, "chat": self.chat(now, p.number)});
        hook("finishAttendance", body)
    }

    /// The chat map of an attendance, keyed by message id, in Z-API callback shape.
    fn chat(&mut self, now: i64, number: u64) -> Value {
        let (a, b) = (self.message_id(), self.message_id());
        let mut chat = serde_json::Map::new();
        chat.insert(a.clone(), json!({
            "broadcast": false, "chatName": customer(number)["name"], "forwarded": false,
            "fromMe": false, "instanceId": "DEMO-INSTANCE", "isGroup": false, "messageId": a,
            "momment": now - 4_000, "phone": customer(number)["phone"], "senderName": customer(number)["name"],
            "status": "RECEIVED", "text": {"message": "Olá, preciso de ajuda (demo)"},
            "type": "ReceivedCallback", "waitingMessage": false
        }));
        chat.insert(b.clone(), json!({
            "fromMe": true, "isAutomaticMessage": true, "messageId": b, "momment": now - 2_000,
            "phone": customer(number)["phone"], "status": "READ", "text": {"message": "Só um momento"}
        }));
        Value::Object(chat)
    }

    fn received(&mut self, now: i64) -> Value {
        let n = self.between(1, 40);
        json!({
            "isStatusReply": false, "chatLid": null, "connectedPhone": "5500000000000",
            "waitingMessage": false, "isEdit": false, "isGroup": false, "isNewsletter": false,
            "instanceId": "DEMO-INSTANCE", "messageId": self.message_id(), "phone": customer(n)["phone"],
            "fromMe": false, "momment": now, "status": "RECEIVED", "chatName": customer(n)["name"],
            "senderName": customer(n)["name"], "broadcast": false, "forwarded": false,
            "type": "ReceivedCallback", "fromApi": false, "text": {"message": "Mensagem de teste (demo)"}
        })
    }

    fn delivery(&mut self, now: i64, error: Option<&str>) -> Value {
        let n = self.between(1, 40);
        let id = self.message_id();
        let mut v = json!({
            "phone": customer(n)["phone"], "zaapId": id, "messageId": id,
            "instanceId": "DEMO-INSTANCE", "momment": now, "type": "DeliveryCallback"
        });
        if let Some(e) = error {
            v["error"] = json!(e);
        }
        v
    }

    fn status(&mut self, now: i64) -> Value {
        const STATUSES: [&str; 8] = [
            "SENT",
            "SENT",
            "RECEIVED",
            "RECEIVED",
            "READ",
            "READ",
            "PLAYED",
            "READ_BY_ME",
        ];
        let status = STATUSES[self.between(0, STATUSES.len() as u64 - 1) as usize];
        let ids: Vec<String> = (0..self.between(1, 3)).map(|_| self.message_id()).collect();
        json!({
            "instanceId": "DEMO-INSTANCE", "status": status, "ids": ids, "momment": now,
            "phoneDevice": 0, "phone": customer(self.between(1, 40))["phone"],
            "isGroup": false, "type": "MessageStatusCallback"
        })
    }

    fn message_id(&mut self) -> String {
        self.next_message += 1;
        format!("DEMO{:016X}", self.next_message)
    }

    /// A pseudo-random number in `lo..=hi` (xorshift64*).
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        lo + r % (hi - lo + 1)
    }
}

fn hook(event: &'static str, body: Value) -> Hook {
    Hook {
        event,
        body,
        stale_secret: false,
    }
}

fn customer(n: u64) -> Value {
    json!({"name": format!("Cliente Demo {n}"), "phone": format!("55000000{:05}", n % 100_000)})
}

/// Z-API's DisconnectedCallback; its `momment` is in seconds in Z-API's own example, so the demo
/// sends both forms.
fn disconnected(now: i64, t: u64) -> Value {
    let moment = if t % 180 == 5 { now / 1000 } else { now };
    json!({
        "momment": moment, "error": "Device has been disconnected", "disconnected": true,
        "type": "DisconnectedCallback", "instanceId": "DEMO-INSTANCE"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_within_ten_seconds_and_attendances_finish() {
        let mut sim = Simulation::new();
        let t0 = 1_700_000_000_000;
        let mut seen = std::collections::HashSet::new();
        let (mut started, mut finished) = (0, 0);
        for s in 0..300 {
            for h in sim.tick(t0 + s * 1000) {
                if s < 10 {
                    seen.insert(h.event);
                }
                match h.event {
                    "startAttendance" => started += 1,
                    "finishAttendance" => {
                        finished += 1;
                        let a = &h.body["attendance"];
                        let length =
                            a["endTime"].as_i64().unwrap() - a["startTime"].as_i64().unwrap();
                        assert!((0..=121_000).contains(&length) || a["attendanceNumber"] == 1492);
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(seen.len(), 7, "{seen:?}");
        assert!(started > 40 && finished > 35, "{started} {finished}");
        assert!(
            sim.open.len() < 25,
            "attendances are finished, not piled up"
        );
    }

    #[test]
    fn wildcard_addresses_become_loopback() {
        assert_eq!(
            reachable("0.0.0.0:10070".parse().unwrap()),
            "127.0.0.1:10070".parse().unwrap()
        );
        assert_eq!(
            reachable("[::]:10070".parse().unwrap()),
            "[::1]:10070".parse().unwrap()
        );
        assert_eq!(
            reachable("10.1.2.3:80".parse().unwrap()),
            "10.1.2.3:80".parse().unwrap()
        );
    }
}
