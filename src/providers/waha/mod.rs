//! WAHA (WhatsApp HTTP API, self-hosted): the status of one session from
//! `GET /api/sessions/{session}`, or of every session of the server from one
//! `GET /api/sessions?all=true` (`all` lists the STOPPED ones too), with the key in the
//! `X-Api-Key` header when the server has one.
//!
//! A wrong or missing key answers 401, an unknown session 404.

use std::time::Duration;

use crate::config::{GatewayConfig, Target, WahaConfig};
use crate::error::PollError;
use crate::http::{fetch, path_segment};
use crate::providers::discovery::{discover, Selector};
use crate::providers::shape::{Observation, Poller};
use crate::secret::Secret;

pub mod demo;
pub mod send;
mod session;
pub mod webhook;

pub use session::{parse, parse_listing, SessionStatus, Status};

crate::exposition::families! {
    /// WAHA series, of a gateway of one session or of each discovered session.
    pub enum WahaFamily in FAMILIES {
        Status => "whatsapp_waha_status", Gauge, "WAHA: the session's status, as a state set.";
    }
}

/// Polls faster than this only load the server: one listing answers for every instance, and an
/// instance's state changes when its phone or session does.
pub const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
pub const MIN_INTERVAL_WHY: &str =
    "a self-hosted server lists every instance in one answer; polling faster only loads it";

pub struct Source {
    client: reqwest::Client,
    api_key: Option<Secret>,
    /// `api/sessions/{session}`, or `api/sessions?all=true` for a server.
    url: String,
    /// The sessions a server gateway exports; `None` for one session.
    selector: Option<Selector>,
}

impl Source {
    pub fn new(gw: &GatewayConfig, cfg: &WahaConfig, client: reqwest::Client) -> Self {
        let url = match &cfg.target {
            Target::One(session) => format!("{}/api/sessions/{}", gw.url, path_segment(session)),
            Target::Server { .. } => format!("{}/api/sessions?all=true", gw.url),
        };
        Source {
            client,
            api_key: cfg.token.clone(),
            url,
            selector: Selector::of(&cfg.target, gw.settings.secrets()),
        }
    }
}

impl Poller for Source {
    async fn poll(&self, timeout: Duration) -> Result<Box<dyn Observation>, PollError> {
        let mut req = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(key) = &self.api_key {
            req = req.header("X-Api-Key", key.expose());
        }
        let Some(selector) = &self.selector else {
            let answer = fetch(req, timeout).await?;
            answer.check_status()?;
            return Ok(Box::new(parse(&answer.body)?));
        };
        let found = discover(req, timeout, selector, session::Session::into_status).await?;
        Ok(Box::new(found))
    }
}
