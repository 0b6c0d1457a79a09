//! Cloud API `POST /{api-version}/{phone-number-id}/messages`, a template (a business-initiated
//! message outside the 24-hour customer service window must be one): `{messaging_product:
//! whatsapp, to, type: template, template: {name, language: {code}, components: [{type: body,
//! parameters: [{type: text, text}]}]}}` with the token as `Authorization: Bearer`. The answer's
//! `messages[0].id` is the WAMID that the statuses webhooks name.
//!
//! Marking read on the receiving side: the same endpoint with `{messaging_product: whatsapp,
//! status: read, message_id}`, the incoming message's id (Meta, "Mark messages as read"). The
//! Cloud API has no call that deletes a sent message.

use serde_json::{json, Value};

use crate::config::{CloudApiConfig, GatewayConfig};
use crate::error::PollError;
use crate::providers::outbound::{string_at, Call, Message, Received, Request};
use crate::secret::Secret;

pub fn request(gw: &GatewayConfig, c: &CloudApiConfig, m: &Message) -> Result<Request, PollError> {
    let Some(t) = m.template else {
        return Err(PollError::InvalidResponse(
            "a Cloud API canary needs a template".into(),
        ));
    };
    let url = format!(
        "{}/{}/{}/messages",
        gw.url, c.api_version, c.phone_number_id
    );
    Ok(Request {
        url: Secret::new(url),
        headers: vec![(
            "Authorization",
            Secret::new(format!("Bearer {}", c.token.expose())),
        )],
        body: json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": m.number,
            "type": "template",
            "template": {
                "name": t.name,
                "language": {"code": t.language},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": m.text}]}],
            },
        }),
    })
}

pub fn read(gw: &GatewayConfig, c: &CloudApiConfig, r: &Received) -> Call {
    Call {
        method: reqwest::Method::POST,
        url: Secret::new(format!(
            "{}/{}/{}/messages",
            gw.url, c.api_version, c.phone_number_id
        )),
        headers: vec![(
            "Authorization",
            Secret::new(format!("Bearer {}", c.token.expose())),
        )],
        body: Some(json!({"messaging_product": "whatsapp", "status": "read", "message_id": r.id})),
    }
}

pub fn message_id(v: &Value) -> Option<&str> {
    string_at(v, &["messages", "0", "id"])
}

#[cfg(test)]
mod tests {
    use crate::error::Reason;
    use crate::flow::MessageKey;
    use crate::providers::send::tests::{documented_read, gateway, judged, refuses_unsafe_ids};
    use crate::providers::send::{request, Message};

    #[test]
    fn a_template_carries_the_text_in_its_body_parameter() {
        let gw = gateway("  - {name: c, provider: cloudapi, url: 'http://127.0.0.1:9', phone_number_id: '106540352242922', token: T0123456789, api_version: v23.0}\n");
        let t = crate::config::Template {
            name: "canary".into(),
            language: "en".into(),
        };
        let m = Message {
            number: "16505555555",
            text: "whatsapp_exporter canary 0123456789abcdef",
            template: Some(&t),
        };
        let r = request(&gw, &m).unwrap();
        assert_eq!(
            r.url.expose(),
            "http://127.0.0.1:9/v23.0/106540352242922/messages"
        );
        assert_eq!(r.headers[0].1.expose(), "Bearer T0123456789");
        assert_eq!(
            r.body["template"]["components"][0]["parameters"][0]["text"],
            m.text
        );
        assert_eq!(r.body["template"]["language"]["code"], "en");
        assert_eq!(
            judged(&gw, "cloudapi", "send_template").unwrap(),
            MessageKey::of("wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA").unwrap()
        );
        let e = judged(&gw, "cloudapi", "template_not_found_404").unwrap_err();
        assert_eq!(e.reason(), Reason::HttpStatus);
        let none = Message {
            template: None,
            ..m
        };
        assert!(request(&gw, &none).is_err());
    }

    #[test]
    fn the_documented_mark_read() {
        let gw = gateway("  - {name: c, provider: cloudapi, url: 'http://127.0.0.1:9', phone_number_id: '106540352242922', token: T0123456789, api_version: v26.0}\n");
        let r = crate::providers::send::Received {
            chat: None,
            id: "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA",
        };
        documented_read(&gw, &r, "http://127.0.0.1:9", "cloudapi");
    }

    #[test]
    fn a_send_answer_id_that_would_change_a_url_is_refused() {
        refuses_unsafe_ids(&gateway(
            "  - {name: c, provider: cloudapi, url: 'http://127.0.0.1:9', phone_number_id: '106540352242922', token: T0123456789, api_version: v23.0}\n",
        ), "cloudapi", "send_template", &["/messages/0/id"]);
    }
}
