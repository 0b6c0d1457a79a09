//! On-premises WhatsApp Business API `POST /v1/messages` with `{recipient_type: individual, to,
//! type: text, text: {body}}`; the answer is `{messages: [{id}]}`. A gateway with `auth: login`
//! holds its token in its poller, so only a bearer or apikey gateway sends.

use serde_json::{json, Value};

use crate::config::{GatewayConfig, WabaAuth, WabaConfig};
use crate::error::PollError;
use crate::providers::outbound::{string_at, Message, Request};
use crate::secret::Secret;

pub fn request(gw: &GatewayConfig, c: &WabaConfig, m: &Message) -> Result<Request, PollError> {
    let auth = match &c.auth {
        WabaAuth::Bearer(t) => format!("Bearer {}", t.expose()),
        WabaAuth::Apikey(k) => format!("Apikey {}", k.expose()),
        WabaAuth::Login { .. } => {
            return Err(PollError::InvalidResponse(
                "a waba gateway with auth: login cannot send a canary".into(),
            ))
        }
    };
    Ok(Request {
        url: Secret::new(format!("{}/v1/messages", gw.url)),
        headers: vec![("Authorization", Secret::new(auth))],
        body: json!({
            "recipient_type": "individual",
            "to": m.number,
            "type": "text",
            "text": {"body": m.text},
        }),
    })
}

pub fn message_id(v: &Value) -> Option<&str> {
    string_at(v, &["messages", "0", "id"])
}

#[cfg(test)]
mod tests {
    use crate::flow::MessageKey;
    use crate::providers::send::tests::{gateway, judged, refuses_unsafe_ids};
    use crate::providers::send::{request, Message};

    #[test]
    fn the_documented_request_and_answer() {
        let gw = gateway(
            "  - {name: w, provider: waba, url: 'http://127.0.0.1:9', token: T0123456789}\n",
        );
        let m = Message {
            number: "16315551234",
            text: "hi",
            template: None,
        };
        let r = request(&gw, &m).unwrap();
        assert_eq!(r.url.expose(), "http://127.0.0.1:9/v1/messages");
        assert_eq!(r.body["text"]["body"], "hi");
        assert_eq!(
            judged(&gw, "waba", "send_text").unwrap(),
            MessageKey::of("gBEGkYiEB1VXAglK1ZEqA1YKPrU").unwrap()
        );
    }

    #[test]
    fn a_send_answer_id_that_would_change_a_url_is_refused() {
        refuses_unsafe_ids(
            &gateway(
                "  - {name: w, provider: waba, url: 'http://127.0.0.1:9', token: T0123456789}\n",
            ),
            "waba",
            "send_text",
            &["/messages/0/id"],
        );
    }
}
