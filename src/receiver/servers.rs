//! Evolution API and WAHA pushes: one URL per gateway, and for a server gateway (`instances:`)
//! the pushes of all its instances, each routed by the instance (Evolution `instance`, WAHA
//! `session`) it names.
//!
//! - An instance the server's last listing selected: its own message-flow series
//!   (`gateway="<server>/<instance>"`, `server="<server>"`), and what the push says of its
//!   connection sets its `whatsapp_connected` at once, until the next poll.
//! - Any other name (not listed, beyond `max_instances`, or none): the server's own message-flow
//!   series count it, and its connection is not read. No label is ever made of a pushed name.
//! - A gateway of one instance takes the pushes that name its instance, or none; pushes of
//!   another instance (a global webhook pointed at it) are counted in its series without
//!   touching its connection or its disconnections.

use std::sync::Arc;
use std::time::SystemTime;

use crate::clock::unix_seconds;
use crate::config::{ProviderConfig, Target};
use crate::flow::{believable, Batch, Refused};
use crate::gateway::Gateway;
use crate::provider::Provider;
use crate::providers::discovery::Push;
use crate::providers::{evolution, waha};

use super::Receiver;

/// The pushes of a body, for the providers whose pushes name their instance.
pub fn parse(p: Provider, body: &[u8]) -> Result<Batch<Push>, Refused> {
    match p {
        Provider::Evolution => evolution::webhook::parse(body),
        Provider::Waha => waha::webhook::parse(body),
        _ => Err(Refused::UnknownEvent),
    }
}

impl Receiver {
    /// Counts and routes an accepted Evolution API or WAHA body.
    pub(super) fn servers(&self, gw: &Arc<Gateway>, body: &[u8]) -> Result<(), Refused> {
        let batch = parse(gw.config.provider, body)?;
        let one = match &gw.config.settings {
            ProviderConfig::Evolution(c) => match &c.target {
                Target::One(i) => Some(i.as_str()),
                Target::Server { .. } => None,
            },
            ProviderConfig::Waha(c) => match &c.target {
                Target::One(i) => Some(i.as_str()),
                Target::Server { .. } => None,
            },
            _ => None,
        };
        match one {
            Some(own) => self.one_instance(gw, own, batch),
            None => self.server(gw, batch),
        }
        Ok(())
    }

    fn one_instance(&self, gw: &Gateway, own: &str, batch: Batch<Push>) {
        let (mine, foreign): (Vec<Push>, Vec<Push>) = batch
            .items
            .into_iter()
            .partition(|p| p.instance.as_deref().is_none_or(|i| i == own));
        let events: Vec<_> = mine.iter().map(|p| p.event.clone()).collect();
        let fresh = self.deliver(gw, &events, batch.unparsed);
        let now = unix_seconds(SystemTime::now());
        gw.flow.update(|f| {
            for (p, _) in mine.iter().zip(fresh).filter(|(_, new)| *new) {
                if let Some(code) = p.disconnect {
                    f.disconnected(code);
                }
            }
            for p in &foreign {
                f.apply(&p.event, now, &self.tracker);
            }
        });
    }

    fn server(&self, gw: &Gateway, batch: Batch<Push>) {
        let now = unix_seconds(SystemTime::now());
        let mut unrouted: Vec<&Push> = Vec::new();
        for p in &batch.items {
            let flow = p.instance.as_deref().and_then(|i| gw.instance_flow(i));
            let (Some(flow), Some(name)) = (flow, p.instance.as_deref()) else {
                unrouted.push(p);
                continue;
            };
            let fresh = flow.update(|f| {
                let fresh = f.apply(&p.event, now, &self.tracker);
                if let Some(code) = p.disconnect.filter(|_| fresh) {
                    f.disconnected(code);
                }
                fresh
            });
            let believed = p.event.timestamp.is_none_or(|t| believable(t, now));
            if let (Some(true), Some(c), true) = (fresh, p.event.connected, believed) {
                gw.push_instance_connected(name, c, p.event.timestamp);
            }
        }
        if unrouted.is_empty() && batch.unparsed == 0 {
            return;
        }
        gw.flow.update(|f| {
            for p in unrouted {
                let fresh = f.apply(&p.event, now, &self.tracker);
                if let Some(code) = p.disconnect.filter(|_| fresh) {
                    f.disconnected(code);
                }
            }
            if batch.unparsed > 0 {
                f.unparsed(batch.unparsed);
            }
        });
    }
}
