//! WhatsApp Cloud API webhooks (`POST /webhooks/cloudapi/<app>`), read leniently entry by entry.
//!
//! The envelope is `{object: "whatsapp_business_account", entry: [{id: WABA id, time?, changes:
//! [{field, value}]}]}` (developers.facebook.com/documentation/business-messaging/whatsapp/
//! webhooks/reference/messages/status). `messages` changes carry `metadata.phone_number_id`, the
//! number's id as configured, with `statuses[]` (string Unix seconds, `errors[].code`) and
//! incoming `messages[]`; `phone_number_quality_update`, `account_update` and
//! `message_template_status_update` name a WABA (`entry.id`), and a number only by its display
//! phone number, which is kept as a keyed hash and nothing else.
//!
//! The signature is checked before this parser runs: see [`signature_matches`].

use serde_json::{Map, Value};

use crate::flow::{
    self, Batch, CloudEvent, CloudSpec, Event, FlowSpec, MessageKey, MessageStatus, Refused,
    ReplayKey,
};

/// Event names: the `messages` field split into its status updates and incoming messages (and
/// its system `errors`), then the other fields by name.
pub static EVENTS: [&str; 8] = [
    "statuses",
    "messages",
    "errors",
    "phone_number_quality_update",
    "account_update",
    "message_template_status_update",
    flow::OTHER,
    flow::UNPARSED,
];

/// The error codes of developers.facebook.com/documentation/business-messaging/whatsapp/support/
/// error-codes that tell of the number's health or the recipient.
pub static CODES: [&str; 13] = [
    "131026",
    "131047",
    "131048",
    "131049",
    "131050",
    "131056",
    "130472",
    "130429",
    "131031",
    "368",
    "131042",
    "131057",
    flow::OTHER,
];

/// phone_number_quality_update `event`: the documented ONBOARDING and THROUGHPUT_UPGRADE, and the
/// older FLAGGED, UNFLAGGED, DOWNGRADE, UPGRADE.
pub static QUALITY: [&str; 7] = [
    "FLAGGED",
    "UNFLAGGED",
    "DOWNGRADE",
    "UPGRADE",
    "ONBOARDING",
    "THROUGHPUT_UPGRADE",
    flow::OTHER,
];

/// account_update `event`; DISABLED_UPDATE is told with its `ban_info.waba_ban_state`.
pub static ACCOUNT: [&str; 20] = [
    "ACCOUNT_RESTRICTION",
    "ACCOUNT_VIOLATION",
    "DISABLED_UPDATE_DISABLE",
    "DISABLED_UPDATE_SCHEDULE_FOR_DISABLE",
    "DISABLED_UPDATE_REINSTATE",
    "DISABLED_UPDATE",
    "ACCOUNT_DELETED",
    "ACCOUNT_OFFBOARDED",
    "ACCOUNT_RECONNECTED",
    "AD_ACCOUNT_LINKED",
    "AUTH_INTL_PRICE_ELIGIBILITY_UPDATE",
    "BUSINESS_PRIMARY_LOCATION_COUNTRY_UPDATE",
    "MM_LITE_TERMS_SIGNED",
    "PARTNER_ADDED",
    "PARTNER_REMOVED",
    "PARTNER_APP_INSTALLED",
    "PARTNER_APP_UNINSTALLED",
    "PARTNER_CLIENT_CERTIFICATION_STATUS_UPDATE",
    "VERIFIED_ACCOUNT",
    flow::OTHER,
];

/// message_template_status_update `event` (TemplateStatus of david-lev/pywa,
/// pywa/types/templates.py).
pub static TEMPLATE: [&str; 15] = [
    "APPROVED",
    "REJECTED",
    "PENDING",
    "FLAGGED",
    "PAUSED",
    "DISABLED",
    "IN_APPEAL",
    "REINSTATED",
    "PENDING_DELETION",
    "DELETED",
    "LIMIT_EXCEEDED",
    "ARCHIVED",
    "UNARCHIVED",
    "LOCKED",
    flow::OTHER,
];

pub static SPEC: FlowSpec = FlowSpec {
    events: &EVENTS,
    codes: &CODES,
    cloud: Some(CloudSpec {
        quality: &QUALITY,
        account: &ACCOUNT,
        template: &TEMPLATE,
    }),
    disconnects: &[],
};

/// Whom an event is about: a configured number by its id, else a number by its display phone
/// number (hashed), else a WABA.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    pub phone_number_id: Option<String>,
    pub display: Option<MessageKey>,
    pub waba: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub to: Target,
    pub event: Event,
}

/// What a `messages` change tells about the numbers of a WABA, for routing the events that name
/// a number by its display phone number or name only the WABA.
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    pub phone_number_id: String,
    pub display: Option<MessageKey>,
    pub waba: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub batch: Batch<Routed>,
    pub learned: Vec<Learned>,
}

/// Whether `header` (`X-Hub-Signature-256: sha256=<hex>`) is the HMAC-SHA256 of the raw `body`
/// with the app secret, compared in constant time.
pub fn signature_matches(app_secret: &[u8], body: &[u8], header: Option<&[u8]>) -> bool {
    let Some(hex) = header.and_then(|h| h.strip_prefix(b"sha256=")) else {
        return false;
    };
    let Some(given) = crate::inbound::decode_hex::<32>(hex) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, app_secret);
    ring::hmac::verify(&key, body, &given).is_ok()
}

/// The events of a body whose signature was checked.
pub fn parse(body: &[u8]) -> Result<Parsed, Refused> {
    let v = flow::json(body)?;
    let o = v.as_object().ok_or(Refused::UnknownEvent)?;
    if o.get("object").and_then(Value::as_str) != Some("whatsapp_business_account") {
        return Err(Refused::UnknownEvent);
    }
    let Some(Value::Array(entries)) = o.get("entry") else {
        return Err(Refused::UnknownEvent);
    };
    let mut out = Parsed::default();
    for entry in entries {
        match entry.as_object() {
            Some(e) => read_entry(e, &mut out),
            None => out.batch.unparsed += 1,
        }
    }
    Ok(out)
}

fn read_entry(entry: &Map<String, Value>, out: &mut Parsed) {
    let waba = entry.get("id").and_then(id_text);
    let time = flow::unix_time(entry.get("time"));
    let Some(Value::Array(changes)) = entry.get("changes") else {
        out.batch.unparsed += 1;
        return;
    };
    for change in changes {
        let field = change.get("field").and_then(Value::as_str);
        let value = change.get("value").and_then(Value::as_object);
        let (Some(field), Some(value)) = (field, value) else {
            out.batch.unparsed += 1;
            continue;
        };
        let mut to = Target {
            waba: waba.clone(),
            ..Default::default()
        };
        let mut push = |to: &Target, event: Event| {
            out.batch.items.push(Routed {
                to: to.clone(),
                event,
            })
        };
        match field {
            "messages" => {
                read_messages(value, waba.as_ref(), out);
                continue;
            }
            "phone_number_quality_update" => {
                to.display = display(value.get("display_phone_number"));
                let e = cloud_event(
                    value,
                    &QUALITY,
                    time,
                    "phone_number_quality_update",
                    CloudEvent::Quality,
                );
                push(&to, e);
            }
            "account_update" => {
                to.display = display(value.get("phone_number"));
                let mut name = text(value.get("event")).unwrap_or_default();
                if name == "DISABLED_UPDATE" {
                    let state = value
                        .get("ban_info")
                        .and_then(|b| b.get("waba_ban_state"))
                        .and_then(Value::as_str);
                    if let Some(s) = state {
                        name = format!("DISABLED_UPDATE_{}", s.trim());
                    }
                }
                let mut e = Event::named("account_update");
                e.timestamp = time;
                e.cloud = Some(CloudEvent::Account(flow::known(&ACCOUNT, &name)));
                push(&to, e);
            }
            "message_template_status_update" => {
                let e = cloud_event(
                    value,
                    &TEMPLATE,
                    time,
                    "message_template_status_update",
                    CloudEvent::Template,
                );
                push(&to, e);
            }
            _ => {
                let mut e = Event::named(flow::OTHER);
                e.timestamp = time;
                push(&to, e);
            }
        }
    }
}

/// A `messages` change: its statuses, incoming messages and system errors, all for the number of
/// `metadata.phone_number_id`.
fn read_messages(value: &Map<String, Value>, waba: Option<&String>, out: &mut Parsed) {
    let metadata = value.get("metadata");
    let id = metadata
        .and_then(|m| m.get("phone_number_id"))
        .and_then(id_text);
    let to = Target {
        phone_number_id: id.clone(),
        display: None,
        waba: waba.cloned(),
    };
    if let Some(id) = id {
        let display = display(metadata.and_then(|m| m.get("display_phone_number")));
        let learned = Learned {
            phone_number_id: id,
            display,
            waba: waba.cloned(),
        };
        // Only the last is compared, to stay linear in a body of many numbers: learning the
        // same number twice changes nothing.
        if out.learned.last() != Some(&learned) {
            out.learned.push(learned);
        }
    }
    let items = |k: &str| match value.get(k) {
        Some(Value::Array(a)) => a.as_slice(),
        _ => &[],
    };
    for s in items("statuses") {
        match s.as_object() {
            Some(s) => out.batch.items.push(Routed {
                to: to.clone(),
                event: status_event(s),
            }),
            None => out.batch.unparsed += 1,
        }
    }
    for m in items("messages") {
        match m.as_object() {
            Some(m) => {
                let mut e = Event::named("messages");
                e.timestamp = flow::unix_time(m.get("timestamp"));
                let kind = m.get("type").and_then(Value::as_str).unwrap_or("");
                e.replay = ReplayKey::of_value(m.get("id"), &["message", kind]);
                e.received = 1;
                // The message's `id` is what marking it read names; the chat is the number.
                let text = m.get("text").and_then(|t| t.get("body"));
                e.canary = flow::CanaryArrival::of(
                    text.and_then(Value::as_str),
                    m.get("from").and_then(Value::as_str),
                    m.get("id").and_then(Value::as_str),
                );
                out.batch.items.push(Routed {
                    to: to.clone(),
                    event: e,
                });
            }
            None => out.batch.unparsed += 1,
        }
    }
    let errors = items("errors");
    if !errors.is_empty() {
        let mut e = Event::named("errors");
        e.errors = errors.iter().map(|e| code(e.get("code"))).collect();
        out.batch.items.push(Routed { to, event: e });
    }
}

fn status_event(s: &Map<String, Value>) -> Event {
    let mut e = Event::named("statuses");
    e.timestamp = flow::unix_time(s.get("timestamp"));
    let status = s.get("status").and_then(Value::as_str).map(str::trim);
    e.replay = replay_key(s, status.unwrap_or(""));
    e.status = Some(match status {
        Some("sent") => MessageStatus::Sent,
        Some("delivered") => MessageStatus::Delivered,
        Some("read") => MessageStatus::Read,
        Some("played") => MessageStatus::Played,
        Some("failed") => MessageStatus::Failed,
        _ => MessageStatus::Other,
    });
    e.messages = MessageKey::of_value(s.get("id")).into_iter().collect();
    if let Some(Value::Array(errors)) = s.get("errors") {
        e.errors = errors.iter().map(|x| code(x.get("code"))).collect();
    }
    if e.status == Some(MessageStatus::Failed) && e.errors.is_empty() {
        e.errors.push(flow::OTHER);
    }
    e
}

/// A message has one status of each kind: the same status with the same errors again is Meta's
/// retry (or a replay); the raw error codes keep apart two failures that name different ones.
fn replay_key(s: &Map<String, Value>, status: &str) -> Option<ReplayKey> {
    let codes: Vec<String> = match s.get("errors") {
        Some(Value::Array(errors)) => errors
            .iter()
            .map(|x| match x.get("code") {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(c)) => c.clone(),
                _ => String::new(),
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut parts = vec![status];
    parts.extend(codes.iter().map(String::as_str));
    ReplayKey::of_value(s.get("id"), &parts)
}

fn cloud_event(
    value: &Map<String, Value>,
    known: &'static [&'static str],
    time: Option<f64>,
    field: &'static str,
    kind: fn(&'static str) -> CloudEvent,
) -> Event {
    let name = text(value.get("event")).unwrap_or_default();
    let mut e = Event::named(field);
    e.timestamp = time;
    e.cloud = Some(kind(flow::known(known, &name)));
    e
}

/// An error code as its label: a known one, else `other`.
fn code(v: Option<&Value>) -> &'static str {
    match v.and_then(crate::json::integer) {
        Some(c) => flow::known(&CODES, &c.to_string()),
        None => flow::OTHER,
    }
}

/// An id, given as a string or a number; digits only (it becomes a map key, never a label).
fn id_text(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

/// A display phone number as a key: its digits, hashed.
fn display(v: Option<&Value>) -> Option<MessageKey> {
    let digits: String = v?.as_str()?.chars().filter(char::is_ascii_digit).collect();
    MessageKey::of(&digits)
}

fn text(v: Option<&Value>) -> Option<String> {
    v?.as_str().map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        raw: Vec<u8>,
        signature: String,
        secret: String,
    }

    fn fixture(name: &str) -> Fixture {
        let path = format!(
            "{}/tests/fixtures/webhooks/cloudapi/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let f: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        Fixture {
            raw: f["raw_body"].as_str().unwrap().as_bytes().to_vec(),
            signature: f["headers"]["X-Hub-Signature-256"]
                .as_str()
                .unwrap()
                .to_string(),
            secret: f["test_app_secret"].as_str().unwrap().to_string(),
        }
    }

    fn events(name: &str) -> Vec<Routed> {
        let f = fixture(name);
        let p = parse(&f.raw).unwrap();
        assert_eq!(p.batch.unparsed, 0, "{name}");
        p.batch.items
    }

    #[test]
    fn fixture_signatures_verify_and_tampering_does_not() {
        for name in [
            "status_sent",
            "status_failed_131048",
            "account_restriction",
            "template_status_approved",
        ] {
            let f = fixture(name);
            let secret = f.secret.as_bytes();
            let sig = f.signature.as_bytes();
            assert!(signature_matches(secret, &f.raw, Some(sig)), "{name}");
            assert!(
                !signature_matches(b"another secret", &f.raw, Some(sig)),
                "{name}"
            );
            let mut tampered = f.raw.clone();
            tampered[10] ^= 1;
            assert!(!signature_matches(secret, &tampered, Some(sig)), "{name}");
            let upper = format!("sha256={}", f.signature[7..].to_ascii_uppercase());
            assert!(signature_matches(secret, &f.raw, Some(upper.as_bytes())));
            assert!(
                !signature_matches(secret, &f.raw, Some(&sig[7..])),
                "no prefix"
            );
            assert!(
                !signature_matches(secret, &f.raw, Some(&sig[..sig.len() - 2])),
                "short"
            );
            assert!(!signature_matches(secret, &f.raw, None));
        }
    }

    #[test]
    fn statuses_route_by_phone_number_id() {
        for (name, status) in [
            ("status_sent", MessageStatus::Sent),
            ("status_delivered", MessageStatus::Delivered),
            ("status_read", MessageStatus::Read),
        ] {
            let items = events(name);
            assert_eq!(items.len(), 1);
            let e = &items[0].event;
            assert_eq!((e.name, e.status), ("statuses", Some(status)), "{name}");
            assert_eq!(e.messages.len(), 1);
            assert!(e.timestamp.is_some(), "string seconds");
            assert!(items[0].to.phone_number_id.is_some());
        }
        let sent = events("status_sent");
        assert_eq!(
            sent[0].to.phone_number_id.as_deref(),
            Some("106540352242922")
        );
        assert_eq!(sent[0].event.timestamp, Some(1750030073.0));
    }

    #[test]
    fn failures_carry_their_codes() {
        for code in ["131026", "131047", "131048", "131049", "131056", "130472"] {
            let items = events(&format!("status_failed_{code}"));
            let e = &items[0].event;
            assert_eq!(e.status, Some(MessageStatus::Failed));
            assert_eq!(e.errors, vec![code], "{code}");
        }
        let unknown = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"9"},"statuses":[{"id":"w","status":"failed","timestamp":"1750000000","errors":[{"code":999999}]},{"id":"x","status":"failed"}]}}]}]}"#;
        let p = parse(unknown).unwrap();
        assert_eq!(p.batch.items[0].event.errors, vec![flow::OTHER]);
        assert_eq!(
            p.batch.items[1].event.errors,
            vec![flow::OTHER],
            "failed without errors"
        );
    }

    #[test]
    fn incoming_messages() {
        for name in ["incoming_text", "incoming_image"] {
            let items = events(name);
            assert_eq!(items[0].event.name, "messages");
            assert_eq!(items[0].event.received, 1);
        }
        let p = parse(&fixture("incoming_text").raw).unwrap();
        assert_eq!(p.learned.len(), 1);
        assert_eq!(p.learned[0].phone_number_id, "1122334455667");
        assert!(p.learned[0].display.is_some());
        assert_eq!(events("incoming_text")[0].event.canary, None);
        let canary = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"9"},"messages":[{"from":"16315551234","id":"wamid.m","type":"text","text":{"body":"Check whatsapp_exporter canary 0000000000000010 ok"}}]}}]}]}"#;
        let p = parse(canary).unwrap();
        let a = p.batch.items[0].event.canary.as_deref().map(|a| a.parts());
        assert_eq!(a, Some((16, Some("16315551234"), Some("wamid.m"))));
    }

    #[test]
    fn quality_account_and_template_events() {
        let q = events("phone_quality_onboarding");
        assert_eq!(q[0].event.cloud, Some(CloudEvent::Quality("ONBOARDING")));
        assert!(q[0].to.display.is_some() && q[0].to.waba.is_some());
        assert_eq!(
            events("phone_quality_throughput_upgrade")[0].event.cloud,
            Some(CloudEvent::Quality("THROUGHPUT_UPGRADE"))
        );
        for (name, label) in [
            ("account_restriction", "ACCOUNT_RESTRICTION"),
            ("account_violation", "ACCOUNT_VIOLATION"),
            ("account_disabled_update_disable", "DISABLED_UPDATE_DISABLE"),
            ("account_deleted", "ACCOUNT_DELETED"),
            ("account_offboarded", "ACCOUNT_OFFBOARDED"),
            ("account_reconnected", "ACCOUNT_RECONNECTED"),
        ] {
            let e = &events(name)[0].event;
            assert_eq!(e.cloud, Some(CloudEvent::Account(label)), "{name}");
            assert!(e.timestamp.is_some(), "{name}: entry.time");
        }
        assert_eq!(
            events("template_status_approved")[0].event.cloud,
            Some(CloudEvent::Template("APPROVED"))
        );
        assert_eq!(
            events("template_status_rejected")[0].event.cloud,
            Some(CloudEvent::Template("REJECTED"))
        );
        let flagged = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","time":1750000000,"changes":[{"field":"phone_number_quality_update","value":{"event":"FLAGGED","display_phone_number":"+1 555 0100","current_limit":"TIER_1K"}},{"field":"phone_number_quality_update","value":{"event":"NEW_KIND"}}]}]}"#;
        let p = parse(flagged).unwrap();
        assert_eq!(
            p.batch.items[0].event.cloud,
            Some(CloudEvent::Quality("FLAGGED"))
        );
        assert_eq!(
            p.batch.items[1].event.cloud,
            Some(CloudEvent::Quality(flow::OTHER))
        );
    }

    #[test]
    fn mixed_batches_and_shapes() {
        let body = br#"{"object":"whatsapp_business_account","entry":[7,{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"9"},"statuses":[3,{"id":"w","status":"delivered","timestamp":"1750000000"}]}},{"value":{}},{"field":"security","value":{"x":1}}]},{"id":"2"}]}"#;
        let p = parse(body).unwrap();
        assert_eq!(
            p.batch.unparsed, 4,
            "entry 7, status 3, change without field, entry without changes"
        );
        let names: Vec<_> = p.batch.items.iter().map(|r| r.event.name).collect();
        assert_eq!(names, ["statuses", flow::OTHER]);
        assert_eq!(
            parse(br#"{"object":"page","entry":[]}"#),
            Err(Refused::UnknownEvent)
        );
        assert_eq!(
            parse(br#"{"object":"whatsapp_business_account"}"#),
            Err(Refused::UnknownEvent)
        );
        assert_eq!(parse(b"[]"), Err(Refused::UnknownEvent));
        assert_eq!(parse(b"{"), Err(Refused::InvalidJson));
    }

    #[test]
    fn nothing_private_is_kept() {
        for name in [
            "incoming_text",
            "status_failed_131048",
            "phone_quality_onboarding",
        ] {
            let kept = format!("{:?}", parse(&fixture(name).raw).unwrap());
            for private in [
                "972987654321",
                "972123456789",
                "15550783881",
                "wamid",
                "Body Text",
                "Test Name",
            ] {
                assert!(!kept.contains(private), "{name}: {private} in {kept}");
            }
        }
    }

    #[test]
    fn a_status_is_known_again_by_its_message_id_status_and_errors() {
        let body = |id: &str, status: &str, code: u32| {
            format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"metadata":{{"phone_number_id":"9"}},"statuses":[{{"id":"{id}","status":"{status}","timestamp":"1750000000","errors":[{{"code":{code}}}]}}],"messages":[{{"id":"{id}","type":"text","timestamp":"1750000000"}}]}}}}]}}]}}"#
            )
        };
        let keys = |b: String| -> Vec<_> {
            parse(b.as_bytes())
                .unwrap()
                .batch
                .items
                .into_iter()
                .map(|r| r.event.replay)
                .collect()
        };
        let failed = keys(body("wamid.A", "failed", 131048));
        assert!(failed.iter().all(Option::is_some));
        assert_ne!(
            failed[0], failed[1],
            "a status and a message are two events"
        );
        assert_eq!(failed, keys(body("wamid.A", "failed", 131048)));
        assert_ne!(failed[0], keys(body("wamid.A", "read", 131048))[0]);
        assert_ne!(failed[0], keys(body("wamid.A", "failed", 131049))[0]);
        assert_ne!(failed[0], keys(body("wamid.B", "failed", 131048))[0]);
        assert_eq!(keys(body("", "failed", 131048)), vec![None, None]);
    }
}
