//! PlugzAPI and Z-API (the same API): `GET /instances/{id}/token/{token}/status`.
//!
//! The token sits in the URL path, so the URL is built once, kept as a [`Secret`], and never
//! formatted into anything that is logged.

use std::time::Duration;

use crate::config::{GatewayConfig, ZapiConfig};
use crate::error::PollError;
use crate::http::fetch;
use crate::providers::shape::{Observation, Poller};
use crate::secret::Secret;

pub mod demo;
pub mod send;
mod status;
pub mod webhook;

pub use status::{judge, parse, Refusal, Status, StatusError};

crate::exposition::families! {
    /// PlugzAPI and Z-API series.
    pub enum ZapiFamily in FAMILIES {
        SessionActive => "whatsapp_session_active", Gauge, "PlugzAPI/Z-API: 1 if the instance has an active WhatsApp session.";
        PhoneConnected => "whatsapp_phone_connected", Gauge, "PlugzAPI/Z-API: 1 if the phone is connected to the internet.";
        StatusError => "whatsapp_status_error", Gauge, "PlugzAPI/Z-API: the error the status call reports, as a state set.";
    }
}

/// Polling the status faster than this tells nothing new: it changes when the phone or the session
/// does, and every call counts against the account's API use.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
pub const MIN_INTERVAL_WHY: &str =
    "the status changes only when the phone or the session does, and every call counts against the account";

pub struct Source {
    client: reqwest::Client,
    /// The full status URL, token included.
    url: Secret,
    client_token: Option<Secret>,
}

impl Source {
    pub fn new(gw: &GatewayConfig, cfg: &ZapiConfig, client: reqwest::Client) -> Self {
        let url = format!(
            "{}/instances/{}/token/{}/status",
            gw.url,
            crate::http::path_segment(&cfg.instance),
            crate::http::path_segment(cfg.token.expose())
        );
        Source {
            client,
            url: Secret::new(url),
            client_token: cfg.client_token.clone(),
        }
    }
}

impl Poller for Source {
    async fn poll(&self, timeout: Duration) -> Result<Box<dyn Observation>, PollError> {
        // No per-request timeout: `Gateway::poll` bounds the whole poll, body included.
        let mut req = self
            .client
            .get(self.url.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(ct) = &self.client_token {
            req = req.header("Client-Token", ct.expose());
        }
        let answer = fetch(req, timeout).await?;
        Ok(Box::new(judge(&answer)?))
    }
}
