//! The one shape of every provider: a poller, and what its polls observe.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::error::PollError;
use crate::exposition::FragmentWriter;

/// What one successful poll saw, ready to be written as metrics.
pub trait Observation: Send + Sync + fmt::Debug {
    /// Whether the WhatsApp number is connected, as `whatsapp_connected` tells it.
    fn connected(&self) -> bool;
    /// The provider's own series.
    fn write(&self, w: &mut FragmentWriter);
    /// A few words for the status page, with no private data.
    fn summary(&self) -> String;
}

/// The one shape of every provider's poller.
pub trait Poller: Send + Sync {
    /// Asks the gateway, within `timeout`, and reads what it said.
    fn poll(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Box<dyn Observation>, PollError>> + Send;

    /// Series the poller keeps between polls (a login token's expiry, queue counters), written
    /// whatever the outcome of the last poll.
    fn write_kept(&self, _w: &mut FragmentWriter) {}
}
