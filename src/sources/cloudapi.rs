//! Placeholder until the cloudapi provider lands.
use std::time::Duration;

use crate::config::GatewayConfig;
use crate::error::PollError;
use crate::exposition::FragmentWriter;

pub struct Source;

impl Source {
    pub fn new(_cfg: &GatewayConfig, _client: reqwest::Client) -> Result<Self, String> {
        Err("provider cloudapi is not available in this build".into())
    }

    pub async fn poll(&self, _timeout: Duration) -> Result<Box<dyn super::Observation>, PollError> {
        Err(PollError::InvalidResponse("not available".into()))
    }

    pub fn write_kept(&self, _w: &mut FragmentWriter) {}
}
