//! Green API `POST /waInstance{idInstance}/sendMessage/{apiTokenInstance}` with
//! `{chatId: "<number>@c.us", message}` (docs, sending/SendMessage). The answer `{idMessage}` is
//! the id that outgoingAPIMessageReceived and outgoingMessageStatus name.

use serde_json::{json, Value};

use crate::config::{GatewayConfig, GreenApiConfig};
use crate::http::path_segment;
use crate::providers::send::{string_at, Message, Request};
use crate::secret::Secret;

pub fn request(gw: &GatewayConfig, c: &GreenApiConfig, m: &Message) -> Request {
    let url = format!(
        "{}/waInstance{}/sendMessage/{}",
        gw.url,
        path_segment(&c.instance),
        path_segment(c.token.expose())
    );
    Request {
        url: Secret::new(url),
        headers: Vec::new(),
        body: json!({"chatId": format!("{}@c.us", m.number), "message": m.text}),
    }
}

pub fn message_id(v: &Value) -> Option<&str> {
    string_at(v, &["idMessage"])
}

#[cfg(test)]
mod tests {
    use crate::flow::MessageKey;
    use crate::providers::send::tests::{gateway, judged};
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
}
