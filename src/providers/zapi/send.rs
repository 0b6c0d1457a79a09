//! Z-API / PlugzAPI `POST /instances/{instance}/token/{token}/send-text` with `{phone, message}`
//! and the `Client-Token` header when configured (Z-API docs, `message/send-message-text.md`). The
//! answer `{zaapId, messageId, id}` carries the WhatsApp id in `messageId` (`id` is a copy for
//! Zapier); statuses (MessageStatusCallback `ids[]`) name the same id.
//!
//! The cleanup: `DELETE /instances/{instance}/token/{token}/messages?messageId=&phone=&owner=true`
//! (query parameters, no body; answer 204) deletes a message the instance sent (Z-API docs,
//! `message/delete-message`).
//!
//! Marking read on the receiving side: `POST /instances/{instance}/token/{token}/read-message`
//! with `{phone, messageId}`, the chat and id of the ReceivedCallback (Z-API docs,
//! `message/read-message`).

use serde_json::{json, Value};

use crate::config::{GatewayConfig, ZapiConfig};
use crate::http::path_segment;
use crate::providers::outbound::{string_at, Call, Message, Received, Request};
use crate::secret::Secret;

/// The instance's URL for `call` (a path, with its query when it has one); the token is in it.
fn url(gw: &GatewayConfig, c: &ZapiConfig, call: &str) -> Secret {
    Secret::new(format!(
        "{}/instances/{}/token/{}/{call}",
        gw.url,
        path_segment(&c.instance),
        path_segment(c.token.expose())
    ))
}

/// The Client-Token header, sent with every call when configured.
fn headers(c: &ZapiConfig) -> Vec<(&'static str, Secret)> {
    c.client_token
        .iter()
        .map(|t| ("Client-Token", t.clone()))
        .collect()
}

pub fn request(gw: &GatewayConfig, c: &ZapiConfig, m: &Message) -> Request {
    Request {
        url: url(gw, c, "send-text"),
        headers: headers(c),
        body: json!({"phone": m.number, "message": m.text}),
    }
}

pub fn delete(gw: &GatewayConfig, c: &ZapiConfig, number: &str, id: &str) -> Call {
    let call = format!(
        "messages?messageId={}&phone={}&owner=true",
        path_segment(id),
        path_segment(number)
    );
    Call {
        method: reqwest::Method::DELETE,
        url: url(gw, c, &call),
        headers: headers(c),
        body: None,
    }
}

pub fn read(gw: &GatewayConfig, c: &ZapiConfig, r: &Received) -> Option<Call> {
    Some(Call {
        method: reqwest::Method::POST,
        url: url(gw, c, "read-message"),
        headers: headers(c),
        body: Some(json!({"phone": r.chat?, "messageId": r.id})),
    })
}

pub fn message_id(v: &Value) -> Option<&str> {
    string_at(v, &["messageId"]).or_else(|| string_at(v, &["id"]))
}

#[cfg(test)]
mod tests {
    use crate::error::Reason;
    use crate::flow::MessageKey;
    use crate::providers::send::tests::{
        documented_call, documented_read, gateway, judged, refuses_unsafe_ids,
    };
    use crate::providers::send::{request, Message};

    fn gw() -> crate::config::GatewayConfig {
        gateway("  - {name: z, provider: zapi, url: 'http://127.0.0.1:9', instance: I, token: T0123456789, client_token: C0123456789}\n")
    }

    #[test]
    fn the_documented_request_and_answer() {
        let m = Message {
            number: "5511999998888",
            text: "hello",
            template: None,
        };
        let r = request(&gw(), &m).unwrap();
        assert_eq!(
            r.url.expose(),
            "http://127.0.0.1:9/instances/I/token/T0123456789/send-text"
        );
        assert_eq!(r.headers[0].0, "Client-Token");
        assert_eq!(
            r.body,
            serde_json::json!({"phone": "5511999998888", "message": "hello"})
        );
        assert_eq!(
            judged(&gw(), "zapi", "send_text").unwrap(),
            MessageKey::of("D241XXXX732339502B68").unwrap()
        );
    }

    #[test]
    fn the_documented_delete() {
        let d = crate::providers::send::delete_request(
            &gw(),
            "5511999998888",
            "3999984263738042930CD6ECDE9VDWSA",
        )
        .unwrap();
        documented_call(&d, "http://127.0.0.1:9", "zapi", "delete_message");
        assert_eq!(d.headers[0].0, "Client-Token");
    }

    #[test]
    fn refusals() {
        let e = judged(&gw(), "zapi", "send_text_no_id").unwrap_err();
        assert_eq!(e.reason(), Reason::InvalidResponse);
        let e = judged(&gw(), "zapi", "client_token_refused_403").unwrap_err();
        assert_eq!(e.reason(), Reason::Unauthorized);
    }

    #[test]
    fn the_documented_mark_read() {
        let r = crate::providers::send::Received {
            chat: Some("5511999998888"),
            id: "3999984263738042930CD6ECDE9VDWSA",
        };
        documented_read(&gw(), &r, "http://127.0.0.1:9", "zapi");
    }

    #[test]
    fn a_send_answer_id_that_would_change_a_url_is_refused() {
        refuses_unsafe_ids(&gw(), "zapi", "send_text", &["/messageId", "/id"]);
    }
}
