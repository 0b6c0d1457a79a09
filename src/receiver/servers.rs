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
//! - A push older than the server's last successful poll (by the time it gives, when it gives
//!   one) is counted as an event only: it neither sets `whatsapp_connected` nor counts in
//!   `whatsapp_disconnects_total` ([`super::speaks_of_now`]).

use std::sync::Arc;
use std::time::SystemTime;

use crate::clock::unix_seconds;
use crate::config::{ProviderConfig, Target};
use crate::flow::{Batch, Refused};
use crate::gateway::Gateway;
use crate::provider::Provider;
use crate::providers::discovery::Push;
use crate::providers::{evolution, waha};

use super::{log_pushed_disconnection, speaks_of_now, Receiver};

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
        let now = unix_seconds(SystemTime::now());
        // Asked before the flow is locked: the gateway's state is never locked inside it.
        let current: Vec<bool> = mine
            .iter()
            .map(|p| speaks_of_now(gw, p.event.timestamp, now))
            .collect();
        let fresh = self.deliver(gw, &events, batch.unparsed);
        gw.flow.update(|f| {
            let counted = mine.iter().zip(fresh).zip(current);
            for ((p, _), _) in counted.filter(|((_, new), now)| *new && *now) {
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
            let current = speaks_of_now(gw, p.event.timestamp, now);
            let fresh = flow.update(|f| {
                let fresh = f.apply(&p.event, now, &self.tracker);
                if let Some(code) = p.disconnect.filter(|_| fresh && current) {
                    f.disconnected(code);
                }
                fresh
            });
            if let (Some(true), Some(c), true) = (fresh, p.event.connected, current) {
                if !c {
                    log_pushed_disconnection(&format!("{}/{name}", gw.name()), &p.event);
                }
                gw.push_instance_connected(name, c, p.event.timestamp);
            }
        }
        if unrouted.is_empty() && batch.unparsed == 0 {
            return;
        }
        let current: Vec<bool> = unrouted
            .iter()
            .map(|p| speaks_of_now(gw, p.event.timestamp, now))
            .collect();
        gw.flow.update(|f| {
            for (p, current) in unrouted.into_iter().zip(current) {
                let fresh = f.apply(&p.event, now, &self.tracker);
                if let Some(code) = p.disconnect.filter(|_| fresh && current) {
                    f.disconnected(code);
                }
            }
            if batch.unparsed > 0 {
                f.unparsed(batch.unparsed);
            }
        });
    }
}
