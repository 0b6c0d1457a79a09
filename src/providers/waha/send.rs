//! WAHA `POST /api/sendText` with `{session, chatId: "<number>@c.us", text}` and `X-Api-Key`
//! when the server has one; the answer (HTTP 201, a WAMessage) carries the id in `id`
//! (`<fromMe>_<chatId>_<id>`), the id of its `message.ack` events.
//!
//! The cleanup: `DELETE /api/{session}/chats/{chatId}/messages/{messageId}` with that serialized
//! id (devlikeapro/waha `src/api/chats.controller.ts`); both engines delete for everyone (WEBJS
//! `message.delete(true)`, NOWEB a revoke, `sendMessage(jid, {delete: key})`).
//!
//! Marking read on the receiving side: `POST /api/sendSeen` with `{session, chatId, messageIds:
//! [id]}`, the incoming message's `from` and serialized `id` (`src/structures/chatting.dto.ts`).

use serde_json::{json, Value};

use crate::config::{GatewayConfig, Target, WahaConfig};
use crate::error::PollError;
use crate::http::path_segment;
use crate::providers::outbound::{string_at, Call, Message, Received, Request};
use crate::secret::Secret;

pub fn request(gw: &GatewayConfig, c: &WahaConfig, m: &Message) -> Result<Request, PollError> {
    let Target::One(session) = &c.target else {
        return Err(PollError::InvalidResponse(
            "a whole server cannot send: name one session".into(),
        ));
    };
    Ok(Request {
        url: Secret::new(format!("{}/api/sendText", gw.url)),
        headers: c.token.iter().map(|t| ("X-Api-Key", t.clone())).collect(),
        body: json!({"session": session, "chatId": format!("{}@c.us", m.number), "text": m.text}),
    })
}

pub fn delete(gw: &GatewayConfig, c: &WahaConfig, number: &str, id: &str) -> Option<Call> {
    let Target::One(session) = &c.target else {
        return None;
    };
    Some(Call {
        method: reqwest::Method::DELETE,
        url: Secret::new(format!(
            "{}/api/{}/chats/{}/messages/{}",
            gw.url,
            path_segment(session),
            path_segment(&format!("{number}@c.us")),
            path_segment(id)
        )),
        headers: c.token.iter().map(|t| ("X-Api-Key", t.clone())).collect(),
        body: None,
    })
}

pub fn read(gw: &GatewayConfig, c: &WahaConfig, r: &Received) -> Option<Call> {
    let Target::One(session) = &c.target else {
        return None;
    };
    Some(Call {
        method: reqwest::Method::POST,
        url: Secret::new(format!("{}/api/sendSeen", gw.url)),
        headers: c.token.iter().map(|t| ("X-Api-Key", t.clone())).collect(),
        body: Some(json!({"session": session, "chatId": r.chat?, "messageIds": [r.id]})),
    })
}

pub fn message_id(v: &Value) -> Option<&str> {
    string_at(v, &["id"]).or_else(|| string_at(v, &["id", "_serialized"]))
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
        let gw = gateway(
            "  - {name: w, provider: waha, url: 'http://127.0.0.1:9', instance: default}\n",
        );
        let m = Message {
            number: "12132132130",
            text: "hi",
            template: None,
        };
        let r = request(&gw, &m).unwrap();
        assert_eq!(r.url.expose(), "http://127.0.0.1:9/api/sendText");
        assert!(r.headers.is_empty());
        assert_eq!(r.body["chatId"], "12132132130@c.us");
        assert_eq!(r.body["session"], "default");
        assert_eq!(
            judged(&gw, "waha", "send_text").unwrap(),
            MessageKey::of("true_12132132130@c.us_3EB0C767D097B7C7C030").unwrap()
        );
    }

    #[test]
    fn the_documented_delete() {
        let gw = gateway(
            "  - {name: w, provider: waha, url: 'http://127.0.0.1:9', instance: default}\n",
        );
        let d = crate::providers::send::delete_request(
            &gw,
            "12132132130",
            "true_12132132130@c.us_3EB0C767D097B7C7C030",
        )
        .unwrap();
        documented_call(&d, "http://127.0.0.1:9", "waha", "delete_message");
    }

    #[test]
    fn the_documented_mark_read() {
        let gw = gateway(
            "  - {name: w, provider: waha, url: 'http://127.0.0.1:9', instance: default, token: K0123456789}\n",
        );
        let r = crate::providers::send::Received {
            chat: Some("11111111111@c.us"),
            id: "false_11111111111@c.us_AAAAAAAAAAAAAAAAAAAA",
        };
        documented_read(&gw, &r, "http://127.0.0.1:9", "waha");
        let c = crate::providers::send::read_request(&gw, &r).unwrap();
        assert_eq!(c.headers[0].0, "X-Api-Key");
    }

    #[test]
    fn a_send_answer_id_that_would_change_a_url_is_refused() {
        refuses_unsafe_ids(
            &gateway(
                "  - {name: w, provider: waha, url: 'http://127.0.0.1:9', instance: default}\n",
            ),
            "waha",
            "send_text",
            &["/id"],
        );
    }
}
