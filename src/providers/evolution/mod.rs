//! Evolution API (self-hosted, Baileys): the connection state of one instance from
//! `GET /instance/connectionState/{instance}`, or of every instance of the server from one
//! `GET /instance/fetchInstances`, both with the key in the `apikey` header.
//!
//! The key is the global `AUTHENTICATION_API_KEY` or an instance's token; only the global key
//! lists every instance (an instance token lists its own). An unknown instance answers 404
//! whatever the key (the instance guard runs before the key is checked), a wrong key 401.
//!
//! The listing's rows carry each instance's token and phone number: only the name and
//! `connectionStatus` of a row are read.

use std::time::Duration;

use crate::config::{EvolutionConfig, GatewayConfig, Target};
use crate::error::PollError;
use crate::http::{fetch, path_segment};
use crate::providers::discovery::{discover, Selector};
use crate::providers::shape::{Observation, Poller};
use crate::secret::Secret;

pub mod demo;
pub mod send;
mod state;
pub mod webhook;

pub use state::{parse, parse_listing, State, Status};

crate::exposition::families! {
    /// Evolution API series, of a gateway of one instance or of each discovered instance.
    pub enum EvolutionFamily in FAMILIES {
        State => "whatsapp_evolution_state", Gauge, "Evolution API: the instance's connection state, as a state set.";
    }
}

/// Polls faster than this only load the server: one listing answers for every instance, and an
/// instance's state changes when its phone or session does.
pub const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
pub const MIN_INTERVAL_WHY: &str =
    "a self-hosted server lists every instance in one answer; polling faster only loads it";

pub struct Source {
    client: reqwest::Client,
    apikey: Secret,
    /// `connectionState/{instance}`, or `fetchInstances` for a server.
    url: String,
    /// The instances a server gateway exports; `None` for one instance.
    selector: Option<Selector>,
}

impl Source {
    pub fn new(gw: &GatewayConfig, cfg: &EvolutionConfig, client: reqwest::Client) -> Self {
        let url = match &cfg.target {
            Target::One(instance) => format!(
                "{}/instance/connectionState/{}",
                gw.url,
                path_segment(instance)
            ),
            Target::Server { .. } => format!("{}/instance/fetchInstances", gw.url),
        };
        Source {
            client,
            apikey: cfg.token.clone(),
            url,
            selector: Selector::of(&cfg.target, gw.settings.secrets()),
        }
    }
}

impl Poller for Source {
    async fn poll(&self, timeout: Duration) -> Result<Box<dyn Observation>, PollError> {
        let req = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header("apikey", self.apikey.expose());
        let Some(selector) = &self.selector else {
            let answer = fetch(req, timeout).await?;
            answer.check_status()?;
            return Ok(Box::new(parse(&answer.body)?));
        };
        let found = discover(req, timeout, selector, state::Row::into_status).await?;
        Ok(Box::new(found))
    }
}
