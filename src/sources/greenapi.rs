//! Placeholder until the greenapi provider lands.
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::GatewayConfig;
use crate::error::PollError;
use crate::gateway::Gateway;

pub struct Source;

impl Source {
    pub fn new(_cfg: &GatewayConfig, _client: reqwest::Client) -> Result<Self, String> {
        Err("provider greenapi is not available in this build".into())
    }

    pub async fn poll(&self, _timeout: Duration) -> Result<Box<dyn super::Observation>, PollError> {
        Err(PollError::InvalidResponse("not available".into()))
    }

    pub fn consumes_queue(&self) -> bool {
        false
    }
}

pub async fn consume(_gw: Arc<Gateway>, _stop: CancellationToken) {}
