//! Green API `POST /waInstance{idInstance}/sendMessage/{apiTokenInstance}` with
//! `{chatId: "<number>@c.us", message}` (docs, sending/SendMessage). The answer `{idMessage}` is
//! the id that outgoingAPIMessageReceived and outgoingMessageStatus name.
//!
//! The cleanup: `POST /waInstance{idInstance}/deleteMessage/{apiTokenInstance}` with `{chatId,
//! idMessage}` (answer 200, empty) deletes the message for everyone, `onlySenderDelete` left out
//! (docs, service/DeleteMessage; for everyone within 72 hours of the send).
//!
//! Marking read on the receiving side: `POST /waInstance{idInstance}/readChat/{apiTokenInstance}`
//! with `{chatId, idMessage}`, the incoming message's `senderData.chatId` and `idMessage` (docs,
//! marks/ReadChat).

use serde_json::{json, Value};

use crate::config::{GatewayConfig, GreenApiConfig};
use crate::http::path_segment;
use crate::providers::outbound::{string_at, Call, Message, Received, Request};
use crate::secret::Secret;

/// The instance's URL of `method`; the token is in it.
fn url(gw: &GatewayConfig, c: &GreenApiConfig, method: &str) -> Secret {
    Secret::new(format!(
        "{}/waInstance{}/{method}/{}",
        gw.url,
        path_segment(&c.instance),
        path_segment(c.token.expose())
    ))
}

/// A POST of `body` to the instance's `method`.
fn post(gw: &GatewayConfig, c: &GreenApiConfig, method: &str, body: Value) -> Call {
    Call {
        method: reqwest::Method::POST,
        url: url(gw, c, method),
        headers: Vec::new(),
        body: Some(body),
    }
}

pub fn request(gw: &GatewayConfig, c: &GreenApiConfig, m: &Message) -> Request {
    Request {
        url: url(gw, c, "sendMessage"),
        headers: Vec::new(),
        body: json!({"chatId": format!("{}@c.us", m.number), "message": m.text}),
    }
}

pub fn delete(gw: &GatewayConfig, c: &GreenApiConfig, number: &str, id: &str) -> Call {
    let body = json!({"chatId": format!("{number}@c.us"), "idMessage": id});
    post(gw, c, "deleteMessage", body)
}

pub fn read(gw: &GatewayConfig, c: &GreenApiConfig, r: &Received) -> Option<Call> {
    let body = json!({"chatId": r.chat?, "idMessage": r.id});
    Some(post(gw, c, "readChat", body))
}

pub fn message_id(v: &Value) -> Option<&str> {
    string_at(v, &["idMessage"])
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
        let gw = gateway("  - {name: g, provider: greenapi, url: 'http://127.0.0.1:9', instance: 1101000001, token: T0123456789}\n");
        let m = Message {
            number: "11001234567",
            text: "hi",
            template: None,
        };
        let r = request(&gw, &m).unwrap();
        assert_eq!(
            r.url.expose(),
            "http://127.0.0.1:9/waInstance1101000001/sendMessage/T0123456789"
        );
        assert_eq!(r.body["chatId"], "11001234567@c.us");
        assert_eq!(
            judged(&gw, "greenapi", "send_message").unwrap(),
            MessageKey::of("3EB0C767D097B7C7C030").unwrap()
        );
    }

    #[test]
    fn the_documented_delete() {
        let gw = gateway("  - {name: g, provider: greenapi, url: 'http://127.0.0.1:9', instance: 1101000001, token: T0123456789}\n");
        let d =
            crate::providers::send::delete_request(&gw, "79123456789", "BAE5F4886F6F2D05").unwrap();
        documented_call(&d, "http://127.0.0.1:9", "greenapi", "delete_message");
    }

    #[test]
    fn the_documented_mark_read() {
        let gw = gateway("  - {name: g, provider: greenapi, url: 'http://127.0.0.1:9', instance: 1101000001, token: T0123456789}\n");
        let r = crate::providers::send::Received {
            chat: Some("79876543210@c.us"),
            id: "B275A7AA0D6EF89BB9245169BDF174E6",
        };
        documented_read(&gw, &r, "http://127.0.0.1:9", "greenapi");
    }

    #[test]
    fn a_send_answer_id_that_would_change_a_url_is_refused() {
        refuses_unsafe_ids(&gateway(
            "  - {name: g, provider: greenapi, url: 'http://127.0.0.1:9', instance: 1101000001, token: T0123456789}\n",
        ), "greenapi", "send_message", &["/idMessage"]);
    }
}
