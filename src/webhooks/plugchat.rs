//! Placeholder until the PlugChat receiver lands.
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::config::PlugChatAccount;

pub struct Receiver;

impl Receiver {
    pub fn new(_registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        Ok(Receiver)
    }

    pub fn configure(&self, _accounts: &[PlugChatAccount]) {}

    pub async fn handle(&self, _req: Request<Incoming>) -> Response<Full<Bytes>> {
        crate::server::text(StatusCode::NOT_FOUND, "Not Found\n")
    }

    pub fn summary(&self) -> Vec<(String, u64, u64)> {
        Vec::new()
    }
}
