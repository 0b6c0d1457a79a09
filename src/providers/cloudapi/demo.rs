//! A simulated WhatsApp Cloud API number (Graph API `GET /{version}/{phone_number_id}`).

use hyper::body::Incoming;
use hyper::Request;

use std::net::SocketAddr;

use crate::providers::simulator::{no_hold, Simulator, DEMO_TOKEN};

pub static SIMULATOR: Simulator = Simulator {
    route,
    hold: no_hold,
    gateways,
};

fn gateways(addr: SocketAddr) -> String {
    format!(
        r#"  - name: brand
    provider: cloudapi
    url: http://{addr}
    phone_number_id: "{DEMO_PHONE_NUMBER_ID}"
    token: {DEMO_TOKEN}
"#
    )
}

/// The seconds of the cycle while the business account is blocked over its payment method.
const PAYMENT_BLOCK: std::ops::RangeInclusive<u64> = 15..=39;

/// The id in Meta's documentation examples; no real number stands behind it here.
pub const DEMO_PHONE_NUMBER_ID: &str = "106540352242922";

pub fn route(req: &Request<Incoming>, parts: &[&str], t: u64) -> Option<(u16, String)> {
    let [version, id] = parts else {
        return None;
    };
    if !version.starts_with('v') || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bearer = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if bearer != Some(&format!("Bearer {DEMO_TOKEN}")) {
        return Some((
            401,
            graph_error(
                190,
                "OAuthException",
                "Invalid OAuth access token - Cannot parse access token",
            ),
        ));
    }
    if *id != DEMO_PHONE_NUMBER_ID {
        return Some((
            400,
            graph_error(
                100,
                "GraphMethodException",
                "Unsupported get request. Object with ID does not exist",
            ),
        ));
    }
    Some((200, phone_number(t)))
}

fn graph_error(code: u32, kind: &str, message: &str) -> String {
    format!(
        r#"{{"error":{{"message":"{message}","type":"{kind}","code":{code},"fbtrace_id":"DemoTrace{code}"}}}}"#
    )
}

/// The brand number's story: early on the business account is BLOCKED for a while over its
/// payment method (the one health error of the story, within the first minute so that a
/// dashboard opened on a fresh demo shows it soon); then quality slides GREEN → YELLOW → RED (the
/// number is FLAGGED and can only send LIMITED), recovers through YELLOW with a lowered limit, and
/// all is well again.
pub fn phone_number(t: u64) -> String {
    let (status, quality, tier) = match t {
        0..=44 => ("CONNECTED", "GREEN", "TIER_10K"),
        45..=79 => ("CONNECTED", "YELLOW", "TIER_10K"),
        80..=124 => ("FLAGGED", "RED", "TIER_10K"),
        125..=149 => ("CONNECTED", "YELLOW", "TIER_2K"),
        150..=164 => ("CONNECTED", "GREEN", "TIER_2K"),
        _ => ("CONNECTED", "GREEN", "TIER_10K"),
    };
    let phone = if quality == "RED" {
        r#"{"entity_type":"PHONE_NUMBER","id":"106540352242922","can_send_message":"LIMITED","additional_info":["Your business phone number's quality is low."]}"#
    } else {
        r#"{"entity_type":"PHONE_NUMBER","id":"106540352242922","can_send_message":"AVAILABLE"}"#
    };
    let waba = if PAYMENT_BLOCK.contains(&t) {
        r#"{"entity_type":"WABA","id":"102290129340398","can_send_message":"BLOCKED","errors":[{"error_code":141006,"error_description":"There is an error with the payment method.","possible_solution":"Update the payment method in WhatsApp Manager."}]}"#
    } else {
        r#"{"entity_type":"WABA","id":"102290129340398","can_send_message":"AVAILABLE"}"#
    };
    let overall = if waba.contains("BLOCKED") {
        "BLOCKED"
    } else if phone.contains("LIMITED") {
        "LIMITED"
    } else {
        "AVAILABLE"
    };
    format!(
        r#"{{"status":"{status}","quality_rating":"{quality}","name_status":"APPROVED","code_verification_status":"VERIFIED","throughput":{{"level":"STANDARD"}},"messaging_limit_tier":"{tier}","whatsapp_business_manager_messaging_limit":"{tier}","health_status":{{"can_send_message":"{overall}","entities":[{phone},{waba},{{"entity_type":"BUSINESS","id":"506914307656634","can_send_message":"AVAILABLE"}},{{"entity_type":"APP","id":"634974688087057","can_send_message":"AVAILABLE"}}]}},"id":"{DEMO_PHONE_NUMBER_ID}"}}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::cloudapi::parse;
    use crate::providers::shape::Observation;

    #[test]
    fn quality_drifts_and_comes_back() {
        let at = |t| parse(phone_number(t).as_bytes()).unwrap();
        let overall = |t| at(t).health.unwrap().can_send[0];
        assert_eq!(at(10).quality_rating, Some("GREEN"));
        assert_eq!(overall(10), ("OVERALL", "AVAILABLE"));
        assert_eq!(overall(25), ("OVERALL", "BLOCKED"));
        assert_eq!(
            at(25).health.unwrap().errors,
            vec![("WABA", "141006".to_string())]
        );
        assert!(at(25).connected(), "the number itself stays CONNECTED");
        assert!(at(40).health.unwrap().errors.is_empty());
        assert_eq!(at(60).quality_rating, Some("YELLOW"));
        assert_eq!(at(100).quality_rating, Some("RED"));
        assert!(!at(100).connected(), "FLAGGED while RED");
        assert_eq!(overall(100), ("OVERALL", "LIMITED"));
        assert_eq!(at(100).messaging_limit, Some(10_000.0));
        assert_eq!(at(130).messaging_limit, Some(2_000.0), "tier lowered");
        assert_eq!(overall(155), ("OVERALL", "AVAILABLE"));
        assert!(at(170).health.unwrap().errors.is_empty());
        assert_eq!(at(170).messaging_limit, Some(10_000.0));
        assert!(at(179).connected());
    }
}
