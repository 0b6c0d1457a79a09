//! WAHA `POST /api/sendText` with `{session, chatId: "<number>@c.us", text}` and `X-Api-Key`
//! when the server has one; the answer (HTTP 201, a WAMessage) carries the id in `id`
//! (`<fromMe>_<chatId>_<id>`), the id of its `message.ack` events.

use serde_json::{json, Value};

use crate::config::{GatewayConfig, Target, WahaConfig};
use crate::error::PollError;
use crate::providers::send::{string_at, Message, Request};
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

pub fn message_id(v: &Value) -> Option<&str> {
    string_at(v, &["id"]).or_else(|| string_at(v, &["id", "_serialized"]))
}

#[cfg(test)]
mod tests {
    use crate::flow::MessageKey;
    use crate::providers::send::tests::{gateway, judged};
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
}
