//! The one shape of every provider: a poller, and what its polls observe.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::error::PollError;
use crate::exposition::FragmentWriter;
use crate::number_state::Problems;

/// What one successful poll saw, ready to be written as metrics.
pub trait Observation: Send + Sync + fmt::Debug {
    /// Whether the WhatsApp number is connected, as `whatsapp_connected` tells it.
    fn connected(&self) -> bool;
    /// What the poll tells of the number's state: whether it counts as connected (a restricted
    /// number is connected, yet limited), and the problems the provider names. By default the
    /// number is as connected as `whatsapp_connected` says, with no problem named (the number
    /// state calls a disconnection with no named cause `socket_down`).
    fn number_evidence(&self) -> (bool, Problems) {
        (self.connected(), Problems::default())
    }
    /// The provider's own series.
    fn write(&self, w: &mut FragmentWriter);
    /// A few words for the status page, with no private data.
    fn summary(&self) -> String;
    /// The instances a server gateway found, each its own observation; `None` for a gateway that
    /// is one number.
    fn discovered(&self) -> Option<&Discovered> {
        None
    }
}

/// What one poll of a server's listing found: the instances it exports, and those it left out.
#[derive(Debug, Default)]
pub struct Discovered {
    /// The selected instances, sorted by name, each name unique and label-safe, at most
    /// `max_instances` of them.
    pub instances: Vec<(String, Box<dyn Observation>)>,
    /// Selected instances beyond `max_instances`, left out of this poll.
    pub overflow: u64,
    /// Instances of the listing left out because their name cannot stand in a label: they have
    /// none, it is not label-safe, it carries a secret of the gateway, or their row is too large
    /// to read.
    pub skipped: u64,
}

impl Discovered {
    pub fn connected_count(&self) -> usize {
        self.instances.iter().filter(|(_, o)| o.connected()).count()
    }
}

/// A server is not a WhatsApp number: it has no `whatsapp_connected` of its own, and the gateway
/// writes each instance's series under the instance's own labels.
impl Observation for Discovered {
    fn connected(&self) -> bool {
        false
    }

    fn write(&self, _w: &mut FragmentWriter) {}

    fn summary(&self) -> String {
        let mut s = format!(
            "{} instances, {} connected",
            self.instances.len(),
            self.connected_count()
        );
        if self.overflow > 0 {
            s.push_str(&format!(", {} over max_instances", self.overflow));
        }
        if self.skipped > 0 {
            s.push_str(&format!(", {} skipped for their names", self.skipped));
        }
        s
    }

    fn discovered(&self) -> Option<&Discovered> {
        Some(self)
    }
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
