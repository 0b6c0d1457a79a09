//! What `--demo` takes of each provider: a simulated API, a pure function of the seconds since the
//! demo started, and the configuration entries of the gateways that poll it. Each provider's
//! `demo.rs` fills one in; `providers::simulators` lists them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use hyper::body::Incoming;
use hyper::Request;

/// Every simulated story repeats after this many seconds.
pub const CYCLE_SECS: u64 = 180;

/// The secrets of the demo: not secret, but treated as if they were.
pub const DEMO_TOKEN: &str = "demo-token-not-secret";
pub const DEMO_CLIENT_TOKEN: &str = "demo-client-token";
/// The webhook secret of the demo's Z-API gateways and Evolution API server, and the demo Meta app's secrets.
pub const DEMO_WEBHOOK_SECRET: &str = "demo-webhook-secret-not-secret";
pub const DEMO_APP_SECRET: &str = "demo-app-secret-not-secret";
pub const DEMO_VERIFY_TOKEN: &str = "demo-verify-token-not-secret";
/// The key the demo's WAHA server signs its webhooks with (`X-Webhook-Hmac`).
pub const DEMO_WAHA_HMAC_KEY: &str = "demo-waha-hmac-key-not-secret";

/// A wait before answering, as a long poll holds its request.
pub type Hold = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An answer: its HTTP status and body.
pub type Answer = (u16, String);

pub struct Simulator {
    /// Answers the paths it knows (split at `/`), at second `t` of the cycle.
    pub route: fn(&Request<Incoming>, &[&str], u64) -> Option<Answer>,
    /// Holds a request before it is answered, for the paths that are long polls.
    pub hold: fn(&str, u64) -> Option<Hold>,
    /// The YAML entries of the demo gateways that poll this simulator at `addr`.
    pub gateways: fn(SocketAddr) -> String,
}

/// No request of this simulator is held.
pub fn no_hold(_path: &str, _secs: u64) -> Option<Hold> {
    None
}
