//! The series of a deployment, node by node.

use super::support::{GatewayStatus, Node, SocketState, Status, VOLUMES};
use super::WabaFamily;
use crate::exposition::FragmentWriter;
use crate::number_state::{Problem, Problems};
use crate::providers::shape::Observation;

impl Status {
    /// The nodes that own shards, when at least one node tells its shards.
    fn shard_owners(&self) -> Option<Vec<&Node>> {
        self.nodes.iter().any(|n| n.shards.is_some()).then(|| {
            self.nodes
                .iter()
                .filter(|n| n.shards.is_some_and(|s| s > 0))
                .collect()
        })
    }
}

fn socket_up(n: &Node) -> bool {
    n.socket.is_some_and(SocketState::is_up)
}

impl Observation for Status {
    /// The nodes meant to be connected have their socket up (`UP` or `UP receiving offline`).
    ///
    /// A single node is meant to be. In a High Availability or multi-connect cluster only the
    /// nodes that own shards are: the Coreapps serving the shards, and on multi-connect the
    /// primary master with the master shard. The secondary master and the standby Coreapps
    /// report their socket down and `gateway_status` disconnected by design, so they do not
    /// count; a cluster in which no node owns a shard (a failover that has not completed) is not
    /// connected. A cluster none of whose nodes tells its shards (an older client) is connected
    /// when any node's socket is up.
    fn connected(&self) -> bool {
        if !self.multi_connect {
            let mut sockets = self.nodes.iter().filter_map(|n| n.socket).peekable();
            return sockets.peek().is_some() && sockets.all(SocketState::is_up);
        }
        match self.shard_owners() {
            Some(owners) => !owners.is_empty() && owners.iter().all(|n| socket_up(n)),
            None => self.nodes.iter().any(socket_up),
        }
    }

    /// Not connected: unregistered is logged out (the number must be registered again), anything
    /// else the socket down.
    fn number_evidence(&self) -> (bool, Problems) {
        if self.connected() {
            return (true, Problems::default());
        }
        let unregistered = self
            .nodes
            .iter()
            .any(|n| n.gateway_status == Some(GatewayStatus::Unregistered));
        let problem = if unregistered {
            Problem::LoggedOut
        } else {
            Problem::SocketDown
        };
        (false, Problems::default().with(problem))
    }

    fn write(&self, w: &mut FragmentWriter) {
        for n in &self.nodes {
            write_node(n, w);
        }
    }

    fn summary(&self) -> String {
        let socket = |n: &Node| n.socket.map_or("?", SocketState::as_str);
        if !self.multi_connect {
            let n = self.nodes.iter().find(|n| n.name.is_empty());
            return format!(
                "socket {}, gateway {}",
                n.map_or("?", socket),
                n.and_then(|n| n.gateway_status)
                    .map_or("?", GatewayStatus::as_str)
            );
        }
        let up = self.nodes.iter().filter(|n| socket_up(n)).count();
        let owners = match self.shard_owners() {
            Some(o) if o.is_empty() => ", no shard owner".to_string(),
            Some(o) => format!(
                ", {} of {} shard owners up",
                o.iter().filter(|n| socket_up(n)).count(),
                o.len()
            ),
            None => String::new(),
        };
        format!("{} nodes, {up} with socket up{owners}", self.nodes.len())
    }
}

fn write_node(n: &Node, w: &mut FragmentWriter) {
    let node = [("node", n.name.as_str())];
    if let Some(s) = n.socket {
        w.states(WabaFamily::SocketState, &node, "state", s);
    }
    if let Some(g) = n.gateway_status {
        w.states(WabaFamily::GatewayStatus, &node, "status", g);
    }
    for (volume, free) in VOLUMES.iter().zip(n.free_space) {
        if let Some(bytes) = free {
            w.sample(
                WabaFamily::FreeSpace,
                &[("node", &n.name), ("volume", volume)],
                bytes,
            );
        }
    }
    if let Some(t) = n.build_expiry {
        w.sample(WabaFamily::BuildExpiry, &node, t as f64);
    }
    if n.has_build_info() {
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        let multi = n
            .multi_connect
            .map_or("", |m| if m { "true" } else { "false" });
        w.sample(
            WabaFamily::BuildInfo,
            &[
                ("node", &n.name),
                ("version", &s(&n.version)),
                ("db_engine", &s(&n.db_engine)),
                ("os_name", &s(&n.os_name)),
                ("os_version", &s(&n.os_version)),
                ("multi_connect", multi),
            ],
            1.0,
        );
    }
    if let Some(role) = &n.role {
        w.sample(
            WabaFamily::NodeInfo,
            &[("node", &n.name), ("role", role)],
            1.0,
        );
    }
    if let Some(shards) = n.shards {
        w.sample(WabaFamily::Shards, &node, shards as f64);
    }
}
