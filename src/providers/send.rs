//! Sending one text, for the delivery canary: each provider's folder builds its send request and
//! finds the message id in the answer (`providers::<name>::send`); this file dispatches on the
//! gateway's typed configuration and makes the call.
//!
//! The id is hashed into a [`MessageKey`] at once, the same key the webhook parsers make of a
//! status's id, so a status finds its send without the id being kept. The number and the text are
//! in the request only; an error never quotes the answer's body.

use std::time::Duration;

use serde_json::Value;

use crate::config::{GatewayConfig, ProviderConfig};
use crate::error::PollError;
use crate::flow::{CanaryArrival, MessageKey};
use crate::http::fetch;
use crate::secret::Secret;

pub use super::outbound::{safe_id, string_at, Call, Message, Received, Request};

/// The send request of the gateway's provider; `Err` for a gateway that cannot send.
pub fn request(gw: &GatewayConfig, m: &Message) -> Result<Request, PollError> {
    match &gw.settings {
        ProviderConfig::Zapi(c) => Ok(super::zapi::send::request(gw, c, m)),
        ProviderConfig::GreenApi(c) => Ok(super::greenapi::send::request(gw, c, m)),
        ProviderConfig::CloudApi(c) => super::cloudapi::send::request(gw, c, m),
        ProviderConfig::Waba(c) => super::waba::send::request(gw, c, m),
        ProviderConfig::Evolution(c) => super::evolution::send::request(gw, c, m),
        ProviderConfig::Waha(c) => super::waha::send::request(gw, c, m),
    }
}

/// A send the gateway accepted: the key of its id, and the id itself for the cleanup only (a
/// secret: never logged, labelled or kept beyond the run).
pub struct Sent {
    pub key: MessageKey,
    pub id: Secret,
}

/// The message id in a 2xx answer of the gateway's provider, and its key.
pub fn accepted(gw: &GatewayConfig, body: &[u8]) -> Result<Sent, PollError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| PollError::from_json(&e))?;
    let id = match &gw.settings {
        ProviderConfig::Zapi(_) => super::zapi::send::message_id(&v),
        ProviderConfig::GreenApi(_) => super::greenapi::send::message_id(&v),
        ProviderConfig::CloudApi(_) => super::cloudapi::send::message_id(&v),
        ProviderConfig::Waba(_) => super::waba::send::message_id(&v),
        ProviderConfig::Evolution(_) => super::evolution::send::message_id(&v),
        ProviderConfig::Waha(_) => super::waha::send::message_id(&v),
    };
    let id =
        id.ok_or_else(|| PollError::InvalidResponse("the send answer names no message id".into()))?;
    // Refused before anything is keyed or called: a cleanup would put it in a URL.
    if !safe_id(id) {
        return Err(PollError::InvalidResponse(
            "the send answer's message id cannot name a message (empty, dots, or a separator)"
                .into(),
        ));
    }
    MessageKey::of(id)
        .map(|key| Sent {
            key,
            id: Secret::new(id.to_string()),
        })
        .ok_or_else(|| PollError::InvalidResponse("the send answer names no message id".into()))
}

/// The judgement of a whole send answer: a 2xx with a message id, else the error a poll would
/// report for that status (401/403 unauthorized, 429 rate limited, others http_status).
pub fn judge(gw: &GatewayConfig, answer: &crate::http::Answer) -> Result<Sent, PollError> {
    answer.check_status()?;
    accepted(gw, &answer.body)
}

/// Sends the message and returns the key of its id (and the id), within `timeout`.
pub async fn send(
    client: &reqwest::Client,
    gw: &GatewayConfig,
    m: &Message<'_>,
    timeout: Duration,
) -> Result<Sent, PollError> {
    let r = request(gw, m)?;
    let mut req = client
        .post(r.url.expose())
        .header(reqwest::header::ACCEPT, "application/json")
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(r.body.to_string());
    for (k, v) in &r.headers {
        req = req.header(*k, v.expose());
    }
    let answer = fetch(req, timeout).await?;
    judge(gw, &answer)
}

/// The request that deletes the message `id`, sent by the gateway to `number`, for everyone;
/// `None` when the provider has no such API (Cloud API, on-premises WhatsApp Business API).
pub fn delete_request(gw: &GatewayConfig, number: &str, id: &str) -> Option<Call> {
    match &gw.settings {
        ProviderConfig::Zapi(c) => Some(super::zapi::send::delete(gw, c, number, id)),
        ProviderConfig::GreenApi(c) => Some(super::greenapi::send::delete(gw, c, number, id)),
        ProviderConfig::Evolution(c) => super::evolution::send::delete(gw, c, number, id),
        ProviderConfig::Waha(c) => super::waha::send::delete(gw, c, number, id),
        ProviderConfig::CloudApi(_) | ProviderConfig::Waba(_) => None,
    }
}

/// The request that marks a message that arrived on the gateway read; `None` when the provider
/// has no such API (the on-premises WhatsApp Business API receives no webhooks here) or the
/// arrival did not name the chat the provider needs.
pub fn read_request(gw: &GatewayConfig, r: &Received) -> Option<Call> {
    match &gw.settings {
        ProviderConfig::Zapi(c) => super::zapi::send::read(gw, c, r),
        ProviderConfig::GreenApi(c) => super::greenapi::send::read(gw, c, r),
        ProviderConfig::CloudApi(c) => Some(super::cloudapi::send::read(gw, c, r)),
        ProviderConfig::Evolution(c) => super::evolution::send::read(gw, c, r),
        ProviderConfig::Waha(c) => super::waha::send::read(gw, c, r),
        ProviderConfig::Waba(_) => None,
    }
}

/// Deletes the message for everyone, within `timeout`: `Ok(false)` when the provider cannot,
/// `Err` when the gateway did not answer 2xx. An error never quotes the answer's body.
pub async fn delete(
    client: &reqwest::Client,
    gw: &GatewayConfig,
    number: &str,
    id: &str,
    timeout: Duration,
) -> Result<bool, PollError> {
    match delete_request(gw, number, id) {
        Some(d) => call(client, d, timeout).await.map(|()| true),
        None => Ok(false),
    }
}

/// Marks a canary's message that arrived on the gateway read, within `timeout`: `Ok(false)` when
/// the provider cannot (or the arrival named no id), `Err` when the gateway did not answer 2xx.
pub async fn mark_read(
    client: &reqwest::Client,
    gw: &GatewayConfig,
    arrival: &CanaryArrival,
    timeout: Duration,
) -> Result<bool, PollError> {
    // A push's id that could not name one message in a call is not used: nothing to mark.
    let Some(id) = arrival.id.as_ref().filter(|id| safe_id(id.expose())) else {
        return Ok(false);
    };
    let r = Received {
        chat: arrival.chat.as_ref().map(Secret::expose),
        id: id.expose(),
    };
    match read_request(gw, &r) {
        Some(c) => call(client, c, timeout).await.map(|()| true),
        None => Ok(false),
    }
}

/// Makes a cleanup call; only its status counts, and an error never quotes the answer's body.
async fn call(client: &reqwest::Client, d: Call, timeout: Duration) -> Result<(), PollError> {
    let mut req = client
        .request(d.method, d.url.expose())
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(b) = &d.body {
        req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(b.to_string());
    }
    for (k, v) in &d.headers {
        req = req.header(*k, v.expose());
    }
    fetch(req, timeout).await?.check_status()?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixture of `tests/fixtures/canary/<provider>/<name>.json`: its answer's status and body.
    pub fn fixture(provider: &str, name: &str) -> (u16, Vec<u8>) {
        let path = format!(
            "{}/tests/fixtures/canary/{provider}/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(
            v["source"].as_str().is_some_and(|s| !s.is_empty()),
            "{path}: no source"
        );
        let a = &v["answer"];
        let status = a["status"].as_u64().unwrap() as u16;
        let body = match &a["body"] {
            Value::String(s) => s.clone().into_bytes(),
            b => serde_json::to_vec(b).unwrap(),
        };
        (status, body)
    }

    pub fn gateway(yaml: &str) -> GatewayConfig {
        let cfg = crate::config::parse(&format!("gateways:\n{yaml}"), &|_| None).unwrap();
        cfg.gateways.into_iter().next().unwrap()
    }

    pub fn answer(status: u16, body: Vec<u8>) -> crate::http::Answer {
        crate::http::Answer {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            body: body.into(),
            retry_after: None,
        }
    }

    /// The documented request of a fixture: its method, its path with the query, and its body.
    pub fn fixture_request(provider: &str, name: &str) -> (String, String, Value) {
        let path = format!(
            "{}/tests/fixtures/canary/{provider}/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let r = &v["request"];
        (
            r["method"].as_str().unwrap().to_string(),
            r["path"].as_str().unwrap().to_string(),
            r["body"].clone(),
        )
    }

    /// Checks a delete request against the fixture's documented one (the URL after `base`), and
    /// that the fixture's answer is a success.
    pub fn documented_call(d: &Call, base: &str, provider: &str, name: &str) {
        let (method, path, body) = fixture_request(provider, name);
        assert_eq!(d.method.as_str(), method);
        assert_eq!(d.url.expose().strip_prefix(base), Some(path.as_str()));
        assert_eq!(d.body.clone().unwrap_or(Value::Null), body);
        let (status, b) = fixture(provider, name);
        assert!(
            answer(status, b).check_status().is_ok(),
            "{provider}/{name}"
        );
    }

    /// Checks a mark-read request against the fixture's documented one (the URL after `base`),
    /// and that the fixture's answer is a success.
    pub fn documented_read(gw: &GatewayConfig, r: &Received, base: &str, provider: &str) {
        let Some(c) = read_request(gw, r) else {
            panic!("{provider}: no mark-read request");
        };
        documented_call(&c, base, provider, "read_message");
        let no_chat = Received { chat: None, ..*r };
        if !matches!(gw.settings, ProviderConfig::CloudApi(_)) {
            assert!(read_request(gw, &no_chat).is_none(), "{provider}: no chat");
        }
    }

    /// Judges a fixture's answer for `gw`.
    pub fn judged(gw: &GatewayConfig, provider: &str, name: &str) -> Result<MessageKey, PollError> {
        let (status, body) = fixture(provider, name);
        judge(gw, &answer(status, body)).map(|s| s.key)
    }

    /// Judges the fixture's answer with the id at every JSON pointer of `ids` replaced by an id
    /// that cannot name a message in a call: each is refused as a send failure, reason
    /// `invalid_response`.
    pub fn refuses_unsafe_ids(gw: &GatewayConfig, provider: &str, name: &str, ids: &[&str]) {
        let (status, body) = fixture(provider, name);
        for bad in ["", ".", "..", "a\u{0}b"] {
            let mut v: Value = serde_json::from_slice(&body).unwrap();
            for p in ids {
                *v.pointer_mut(p).unwrap() = Value::String(bad.into());
            }
            let judged = judge(gw, &answer(status, serde_json::to_vec(&v).unwrap()));
            let Err(e) = judged else {
                panic!("{provider}: the id {bad:?} was accepted");
            };
            assert_eq!(e.reason(), crate::error::Reason::InvalidResponse, "{bad:?}");
        }
    }

    #[test]
    fn ids_that_would_change_a_url_are_unsafe() {
        for ok in [
            "3EB0C767D097B7C7C030",
            "true_12132132130@c.us_3EB0C767D097B7C7C030",
            "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA==",
            "a.b",
            "...a",
            "wamid.HBgL+/x==",
            "a/b",
        ] {
            assert!(safe_id(ok), "{ok}");
        }
        for bad in ["", ".", "..", "....", "a\nb", "a\u{0}b"] {
            assert!(!safe_id(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_pushed_id_of_dots_marks_nothing_read() {
        // Port 9 is closed: a call that went out would fail, not answer Ok(false).
        let gw = gateway(
            "  - {name: w, provider: waha, url: 'http://127.0.0.1:9', instance: default}\n",
        );
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::new();
        for id in ["..", ".", "a\u{7}b"] {
            let text = crate::flow::canary_text(7);
            let a = CanaryArrival::of(Some(&text), Some("11111111111@c.us"), Some(id)).unwrap();
            let r = mark_read(&client, &gw, &a, Duration::from_secs(1)).await;
            assert!(matches!(r, Ok(false)), "{id:?}: a call went out");
        }
    }

    #[test]
    fn paths_through_json() {
        let v: Value = serde_json::from_str(r#"{"a":[{"b":" x "}],"c":""}"#).unwrap();
        assert_eq!(string_at(&v, &["a", "0", "b"]), Some("x"));
        assert_eq!(string_at(&v, &["c"]), None);
        assert_eq!(string_at(&v, &["a", "1", "b"]), None);
    }
}
