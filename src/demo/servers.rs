//! The pushes of the demo's Evolution API server `evo` and WAHA server `waha`, each naming its
//! instance (Evolution `instance`) or session (WAHA `session`), as a server's global webhook
//! does. They follow the polled simulators' story (`providers::{evolution,waha}::demo`):
//!
//! - `evo/ops` is logged out at 60 s: `status.instance` closed and `connection.update` close with
//!   `statusReason` 401 come at once, before the next poll sees it; paired again at 120 s
//!   (connecting, then open);
//! - `evo/billing` and `evo/store-03` drop to connecting and come back, `evo/promo` flaps (closed
//!   by the poll, it pushes no close, as Evolution reconnects at once from any code but 401,
//!   402, 403 and 406: only connecting and open); `evo/onboarding` pushes a new QR code every
//!   30 s;
//! - every open instance sends (`send.message`, then `messages.update` SERVER_ACK, DELIVERY_ACK,
//!   READ) and receives (`messages.upsert`); `evo/marketing`'s deliveries are slow from 30 s to
//!   50 s, and a message now and then fails (ERROR);
//! - `waha/support` goes FAILED at 60 s, STARTING at 100 s, WORKING at 110 s; `waha/sales`
//!   re-sends SCAN_QR_CODE every 20 s; `waha/default` and `waha/support` send (`message.any`, then
//!   `message.ack` 1 SERVER, 2 DEVICE, 3 READ, now and then -1 ERROR) and receive (`message`).
//!
//! An instance that is not up loses its message pushes, as a disconnected number has none.
//! Every id, number and text is fake.

use serde_json::{json, Value};

use super::push::Target;
use super::pushes::Story;
use super::CYCLE_SECS;
use crate::providers::evolution::demo::{state, INSTANCES};
use crate::providers::waha::demo::{status, SESSIONS};

/// The Evolution instances' fake contacts and the WAHA sessions' are `55000000001NN`.
fn jid(n: u64) -> String {
    format!("55000000001{:02}@s.whatsapp.net", n % 100)
}

fn chat(n: u64) -> String {
    format!("55000000002{:02}@c.us", n % 100)
}

fn iso(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The envelope of every Evolution push (`WebhookController.emit`). `apikey` is the instance's
/// token (a demo value, as the listing's); `destination` (the URL, with its secret) and `sender`
/// (the number) are left out.
fn evo(event: &str, instance: &str, data: Value, now: i64) -> Value {
    let i = INSTANCES.iter().position(|n| *n == instance).unwrap_or(0);
    json!({
        "event": event,
        "instance": instance,
        "data": data,
        "date_time": iso(now),
        "server_url": "http://127.0.0.1",
        "apikey": format!("demo-instance-token-{i:02}"),
    })
}

/// The envelope of every WAHA push (events page, "Event Payload"); `me` (the number) left out.
fn waha(id: &str, event: &str, session: &str, payload: Value, now: i64) -> Value {
    json!({
        "id": format!("evt_{}", id.to_ascii_lowercase()),
        "timestamp": now,
        "event": event,
        "session": session,
        "metadata": {},
        "payload": payload,
        "engine": "NOWEB",
        "environment": {"version": "2026.7.1", "engine": "NOWEB", "tier": "CORE", "browser": null},
    })
}

impl Story {
    pub(super) fn evolution(&mut self, t: u64, now: i64) {
        let before = (t + CYCLE_SECS - 1) % CYCLE_SECS;
        for i in INSTANCES {
            let target = Target::Evolution(i);
            let (was, is) = (state(i, before), state(i, t));
            let conn = |state: &str, reason: u16| json!({"instance": i, "state": state, "statusReason": reason});
            if was != is {
                match is {
                    // Logged out on the phone: a code Evolution does not reconnect from.
                    "close" if i == "ops" => {
                        let status = json!({"instance": i, "status": "closed", "disconnectionAt": iso(now), "disconnectionReasonCode": 401, "disconnectionObject": "{\"error\":{\"output\":{\"statusCode\":401}}}"});
                        self.later(now, target, evo("status.instance", i, status, now));
                        self.later(
                            now,
                            target,
                            evo("connection.update", i, conn("close", 401), now),
                        );
                    }
                    // Any other close: Evolution reconnects at once and pushes no close.
                    "close" => {}
                    "connecting" => self.later(
                        now,
                        target,
                        evo("connection.update", i, conn("connecting", 200), now),
                    ),
                    _ => {
                        let open_at = if was == "close" {
                            self.later(
                                now,
                                target,
                                evo("connection.update", i, conn("connecting", 200), now),
                            );
                            now + self.between(500, 1500) as i64
                        } else {
                            now
                        };
                        self.later(
                            open_at,
                            target,
                            evo("connection.update", i, conn("open", 200), open_at),
                        );
                    }
                }
            }
            if i == "onboarding" && t % 30 == 0 {
                let code = format!("2@{}", self.id("DEMOQR"));
                let qr = json!({"qrcode": {"instance": i, "pairingCode": null, "code": code, "base64": "data:image/png;base64,"}});
                self.later(now, target, evo("qrcode.updated", i, qr, now));
            }
        }
        for _ in 0..self.between(1, 3) {
            let i = INSTANCES[self.between(0, INSTANCES.len() as u64 - 1) as usize];
            if state(i, t) != "open" {
                continue;
            }
            let target = Target::Evolution(i);
            let id = self.id("BAE5");
            let to = jid(self.between(0, 99));
            let raw = json!({"key": {"remoteJid": to, "fromMe": true, "id": id}, "pushName": "Demo", "status": "PENDING", "message": {"conversation": "mensagem de demonstração"}, "messageType": "conversation", "messageTimestamp": now / 1000, "source": "unknown"});
            self.later(now, target, evo("send.message", i, raw, now));
            let update = |status: &str| json!({"keyId": id, "remoteJid": to, "fromMe": true, "status": status});
            let server = now + self.between(300, 1000) as i64;
            self.later(
                server,
                target,
                evo("messages.update", i, update("SERVER_ACK"), server),
            );
            if self.between(0, 39) == 0 {
                let failed = server + self.between(1000, 5000) as i64;
                self.later(
                    failed,
                    target,
                    evo("messages.update", i, update("ERROR"), failed),
                );
                continue;
            }
            let slow = i == "marketing" && (30..=50).contains(&t);
            let delay = if slow {
                self.between(30_000, 90_000)
            } else {
                self.between(1000, 8000)
            } as i64;
            let delivered = now + delay;
            let read = delivered + self.between(3000, 30_000) as i64;
            self.later(
                delivered,
                target,
                evo("messages.update", i, update("DELIVERY_ACK"), delivered),
            );
            self.later(
                read,
                target,
                evo("messages.update", i, update("READ"), read),
            );
        }
        if self.between(0, 1) == 0 {
            let i = INSTANCES[self.between(0, INSTANCES.len() as u64 - 1) as usize];
            if state(i, t) == "open" {
                let id = self.id("3A5F");
                let from = jid(self.between(0, 99));
                let m = json!({"key": {"remoteJid": from, "fromMe": false, "id": id}, "pushName": "Cliente", "status": "DELIVERY_ACK", "message": {"conversation": "olá"}, "messageType": "conversation", "messageTimestamp": now / 1000, "source": "android"});
                self.later(now, Target::Evolution(i), evo("messages.upsert", i, m, now));
            }
        }
    }

    pub(super) fn waha(&mut self, t: u64, now: i64) {
        let before = (t + CYCLE_SECS - 1) % CYCLE_SECS;
        for s in SESSIONS {
            let (was, is) = (status(s, before), status(s, t));
            if was != is || (is == "SCAN_QR_CODE" && t % 20 == 0) {
                let evt = self.id("01K3Z5");
                let payload = json!({"name": s, "status": is, "statuses": [{"status": was, "timestamp": now - 1000}, {"status": is, "timestamp": now}]});
                self.later(
                    now,
                    Target::Waha(s),
                    waha(&evt, "session.status", s, payload, now),
                );
            }
        }
        for s in ["default", "support"] {
            if status(s, t) != "WORKING" {
                continue;
            }
            let target = Target::Waha(s);
            for _ in 0..self.between(0, 2) {
                let to = chat(self.between(0, 99));
                let id = format!("true_{to}_{}", self.id("3EB0"));
                let any = json!({"id": id, "timestamp": now / 1000, "from": to, "fromMe": true, "source": "api", "to": to, "participant": null, "body": "mensagem de demonstração", "hasMedia": false, "media": null, "ack": 0, "ackName": "PENDING", "vCards": []});
                let evt = self.id("01K3Z5");
                self.later(now, target, waha(&evt, "message.any", s, any, now));
                let mut at = now;
                let fail = self.between(0, 29) == 0;
                let steps: &[(i64, &str)] = if fail {
                    &[(1, "SERVER"), (-1, "ERROR")]
                } else {
                    &[(1, "SERVER"), (2, "DEVICE"), (3, "READ")]
                };
                for (ack, name) in steps {
                    at += match ack {
                        1 => self.between(200, 800),
                        2 => self.between(1000, 6000),
                        _ => self.between(3000, 30_000),
                    } as i64;
                    let payload = json!({"id": id, "from": to, "to": to, "participant": null, "fromMe": true, "ack": ack, "ackName": name});
                    let evt = self.id("01K3Z5");
                    self.later(at, target, waha(&evt, "message.ack", s, payload, at));
                }
            }
            if self.between(0, 2) == 0 {
                let from = chat(self.between(0, 99));
                let id = format!("false_{from}_{}", self.id("3EB1"));
                let m = json!({"id": id, "timestamp": now / 1000, "from": from, "fromMe": false, "source": "app", "to": from, "body": "olá", "hasMedia": false, "ack": 1, "vCards": []});
                let evt = self.id("01K3Z5");
                self.later(now, target, waha(&evt, "message", s, m, now));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::pushes::{is_message, up};
    use crate::flow::MessageStatus;
    use crate::providers::{evolution, waha};

    /// Plays two cycles: every push parses, names a real instance of the simulator, and tells
    /// what the simulator's state says.
    #[test]
    fn the_servers_push_their_story() {
        let mut story = Story::new();
        let start = 1_750_000_000_000i64;
        let (mut evo_events, mut waha_events) = (0, 0);
        let (mut delivered, mut acked, mut failed) = (0, 0, 0);
        let mut disconnects = Vec::new();
        for s in 0..2 * CYCLE_SECS {
            let t = s % CYCLE_SECS;
            for p in story.tick(t, start + s as i64 * 1000) {
                let body = p.body.to_string();
                let (batch, name) = match p.target {
                    Target::Evolution(i) => (evolution::webhook::parse(body.as_bytes()), i),
                    Target::Waha(s) => (waha::webhook::parse(body.as_bytes()), s),
                    _ => continue,
                };
                let batch = batch.unwrap();
                assert_eq!(batch.unparsed, 0, "{body}");
                for push in &batch.items {
                    assert_eq!(push.instance.as_deref(), Some(name));
                    if let Some(code) = push.disconnect {
                        disconnects.push((p.target, code, t));
                    }
                    if is_message(&p) {
                        assert!(up(p.target, t), "{name} pushes a message while down");
                    }
                    match (p.target, push.event.status) {
                        (Target::Evolution(_), Some(MessageStatus::Delivered)) => delivered += 1,
                        (Target::Waha(_), Some(MessageStatus::Delivered)) => acked += 1,
                        (_, Some(MessageStatus::Failed)) => failed += 1,
                        _ => {}
                    }
                    // Up when it says so; down when it pushes a disconnection (a reconnecting
                    // instance says connecting just before open).
                    if push.event.connected == Some(true) || push.disconnect.is_some() {
                        assert_eq!(
                            up(p.target, t),
                            push.disconnect.is_none(),
                            "{name} at {t}: {body}"
                        );
                    }
                }
                match p.target {
                    Target::Evolution(_) => evo_events += batch.items.len(),
                    _ => waha_events += batch.items.len(),
                }
                assert!(!body.contains(super::super::DEMO_WEBHOOK_SECRET));
            }
        }
        assert!(
            evo_events > 1000 && waha_events > 500,
            "{evo_events} {waha_events}"
        );
        assert!(
            delivered > 300 && acked > 200 && failed > 5,
            "{delivered} {acked} {failed}"
        );
        // ops is logged out (401) once a cycle, waha/support fails once a cycle, nothing else.
        assert_eq!(
            disconnects,
            vec![
                (Target::Evolution("ops"), "401", 60),
                (Target::Waha("support"), "FAILED", 60),
                (Target::Evolution("ops"), "401", 60),
                (Target::Waha("support"), "FAILED", 60),
            ]
        );
    }
}
