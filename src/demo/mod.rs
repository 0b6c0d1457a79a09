//! `--demo`: simulated gateways of every provider, served from inside the process on 127.0.0.1,
//! whose states change over time, and a configuration that points at them.
//!
//! Each simulator is a pure function of the seconds since the demo started, so the demo tells the
//! same story every time: a number that connects, a phone that goes offline, a disconnect, a
//! recovery, a gateway that answers 503 for a while.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::exporter::{ConfigSource, Exporter};
pub use crate::providers::simulator::{
    CYCLE_SECS, DEMO_APP_SECRET, DEMO_CLIENT_TOKEN, DEMO_TOKEN, DEMO_VERIFY_TOKEN,
    DEMO_WAHA_HMAC_KEY, DEMO_WEBHOOK_SECRET,
};
use crate::providers::simulators;

mod plugchat;
mod push;
mod pushes;
mod relay;
mod servers;

/// The PlugChat account's secret: not secret, but treated as if it were.
pub const DEMO_PLUGCHAT_SECRET: &str = "demo-plugchat-secret-not-secret";

/// Starts the simulated gateways and returns the configuration that polls them.
pub async fn start() -> Result<ConfigSource, String> {
    let addr = serve_simulators().await?;
    let yaml = demo_config(addr);
    let mut cfg = config::parse(&yaml, &|_| None).map_err(|e| e.to_string())?;
    // Its 5-second interval tells the story in minutes; the warning that an interval is too
    // short protects real providers' rate limits, and these gateways are served from here.
    for gw in &mut cfg.gateways {
        gw.simulated = true;
    }
    Ok(ConfigSource::Fixed(Box::new(cfg)))
}

/// The demo configuration, as a user would write it: every provider's demo gateways, the
/// PlugChat account, and two delivery canaries between the Z-API gateways (fake numbers).
pub fn demo_config(addr: SocketAddr) -> String {
    let gateways: String = simulators().iter().map(|s| (s.gateways)(addr)).collect();
    format!(
        r#"global:
  interval: 5s
  timeout: 2s
gateways:
{gateways}webhooks:
  plugchat:
    - account: {plugchat_account}
      secret: {DEMO_PLUGCHAT_SECRET}
  cloudapi:
    - app: {app}
      app_secret: {DEMO_APP_SECRET}
      verify_token: {DEMO_VERIFY_TOKEN}
canaries:
  - name: sales-to-support
    from: sales
    to: support
    to_number: "{to_support}"
    interval: 5m
    timeout: 2m
  - name: support-to-sales
    from: support
    to: sales
    to_number: "{to_sales}"
    interval: 5m
    timeout: 2m
"#,
        to_support = relay::NUMBERS[1].2,
        to_sales = relay::NUMBERS[0].2,
        plugchat_account = plugchat::ACCOUNT,
        app = pushes::APP,
    )
}

async fn serve_simulators() -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let started = Instant::now();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(move |req| simulate(req, addr, started));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn simulate(
    req: Request<Incoming>,
    addr: SocketAddr,
    started: Instant,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let secs = started.elapsed().as_secs();
    let t = secs % CYCLE_SECS;
    let path = req.uri().path().to_string();
    for hold in simulators().iter().filter_map(|s| (s.hold)(&path, secs)) {
        hold.await;
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (status, body) = if relay::is_send_text(req.method(), &parts) {
        relay::send_text(req, &parts, addr, started).await
    } else if relay::is_cleanup(req.method(), &parts) {
        relay::cleanup(&parts)
    } else {
        route(&req, &path, t)
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// Each provider's simulator answers the paths it knows; the first that does, wins.
fn route(req: &Request<Incoming>, path: &str, t: u64) -> (u16, String) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    simulators()
        .iter()
        .find_map(|s| (s.route)(req, &parts, t))
        .unwrap_or_else(|| (404, r#"{"error":"not found"}"#.into()))
}

/// Sends simulated PlugChat webhooks, and the simulated gateways' own pushes, to the exporter
/// itself.
pub fn spawn_plugchat(
    exporter_addr: SocketAddr,
    exporter: &Arc<Exporter>,
    stop: CancellationToken,
) {
    plugchat::spawn(exporter_addr, exporter, stop.clone());
    pushes::spawn(exporter_addr, exporter, stop);
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::providers::Provider;

    #[test]
    fn the_demo_has_a_gateway_of_every_provider() {
        let cfg = config::parse(&demo_config("127.0.0.1:1".parse().unwrap()), &|_| None).unwrap();
        for p in Provider::ALL {
            assert!(
                cfg.gateways.iter().any(|g| g.provider == *p),
                "no demo gateway for {p}"
            );
        }
        assert_eq!(cfg.plugchat[0].account, plugchat::ACCOUNT);
    }
}
