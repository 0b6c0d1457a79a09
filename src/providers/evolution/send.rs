//! Evolution API `POST /message/sendText/{instance}` with `{number, text}` and the `apikey`
//! header; the answer (HTTP 201) carries the message id in `key.id`, the id of its
//! `messages.update` events.
//!
//! The cleanup: `DELETE /chat/deleteMessageForEveryone/{instance}` with `{id, remoteJid,
//! fromMe: true}` (answer 201), the message's key (EvolutionAPI/evolution-api
//! `src/api/routes/chat.router.ts`, `src/validate/chat.schema.ts`).
//!
//! Marking read on the receiving side: `POST /chat/markMessageAsRead/{instance}` with
//! `{readMessages: [{remoteJid, fromMe: false, id}]}`, the incoming message's key (same files).

use serde_json::{json, Value};

use crate::config::{EvolutionConfig, GatewayConfig, Target};
use crate::error::PollError;
use crate::http::path_segment;
use crate::providers::outbound::{string_at, Call, Message, Received, Request};
use crate::secret::Secret;

pub fn request(gw: &GatewayConfig, c: &EvolutionConfig, m: &Message) -> Result<Request, PollError> {
    let Target::One(instance) = &c.target else {
        return Err(PollError::InvalidResponse(
            "a whole server cannot send: name one instance".into(),
        ));
    };
    Ok(Request {
        url: Secret::new(format!(
            "{}/message/sendText/{}",
            gw.url,
            path_segment(instance)
        )),
        headers: vec![("apikey", c.token.clone())],
        body: json!({"number": m.number, "text": m.text}),
    })
}

/// A chat call of the gateway's instance: `method` on `/chat/<call>/<instance>` with `body`;
/// `None` for a whole server, which has no one instance to ask.
fn chat_call(
    gw: &GatewayConfig,
    c: &EvolutionConfig,
    method: reqwest::Method,
    call: &str,
    body: Value,
) -> Option<Call> {
    let Target::One(instance) = &c.target else {
        return None;
    };
    Some(Call {
        method,
        url: Secret::new(format!("{}/chat/{call}/{}", gw.url, path_segment(instance))),
        headers: vec![("apikey", c.token.clone())],
        body: Some(body),
    })
}

pub fn delete(gw: &GatewayConfig, c: &EvolutionConfig, number: &str, id: &str) -> Option<Call> {
    let body = json!({"id": id, "remoteJid": format!("{number}@s.whatsapp.net"), "fromMe": true});
    chat_call(
        gw,
        c,
        reqwest::Method::DELETE,
        "deleteMessageForEveryone",
        body,
    )
}

pub fn read(gw: &GatewayConfig, c: &EvolutionConfig, r: &Received) -> Option<Call> {
    let body = json!({"readMessages": [{"remoteJid": r.chat?, "fromMe": false, "id": r.id}]});
    chat_call(gw, c, reqwest::Method::POST, "markMessageAsRead", body)
}

pub fn message_id(v: &Value) -> Option<&str> {
    string_at(v, &["key", "id"])
}

#[cfg(test)]
mod tests {
    use crate::flow::MessageKey;
    use crate::providers::send::tests::{
        documented_call, documented_read, gateway, judged, refuses_unsafe_ids,
    };
    use crate::providers::send::{request, Message};

    #[test]
    fn the_documented_request_and_answer() {
        let gw = gateway("  - {name: e, provider: evolution, url: 'http://127.0.0.1:9', instance: my-instance, token: K0123456789}\n");
        let m = Message {
            number: "553198296801",
            text: "hi",
            template: None,
        };
        let r = request(&gw, &m).unwrap();
        assert_eq!(
            r.url.expose(),
            "http://127.0.0.1:9/message/sendText/my-instance"
        );
        assert_eq!(r.headers[0].0, "apikey");
        assert_eq!(r.body["number"], "553198296801");
        assert_eq!(
            judged(&gw, "evolution", "send_text").unwrap(),
            MessageKey::of("BAE594145F4C59B4").unwrap()
        );
    }

    #[test]
    fn the_documented_delete() {
        let gw = gateway("  - {name: e, provider: evolution, url: 'http://127.0.0.1:9', instance: my-instance, token: K0123456789}\n");
        let d = crate::providers::send::delete_request(&gw, "553198296801", "BAE594145F4C59B4")
            .unwrap();
        documented_call(&d, "http://127.0.0.1:9", "evolution", "delete_message");
        assert_eq!(d.headers[0].0, "apikey");
    }

    #[test]
    fn the_documented_mark_read() {
        let gw = gateway("  - {name: e, provider: evolution, url: 'http://127.0.0.1:9', instance: my-instance, token: K0123456789}\n");
        let r = crate::providers::send::Received {
            chat: Some("553198296801@s.whatsapp.net"),
            id: "BAE594145F4C59B4",
        };
        documented_read(&gw, &r, "http://127.0.0.1:9", "evolution");
    }

    #[test]
    fn a_send_answer_id_that_would_change_a_url_is_refused() {
        refuses_unsafe_ids(&gateway(
            "  - {name: e, provider: evolution, url: 'http://127.0.0.1:9', instance: my-instance, token: K0123456789}\n",
        ), "evolution", "send_text", &["/key/id"]);
    }
}
