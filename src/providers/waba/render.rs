//! The series of a deployment, node by node.

use super::support::{GatewayStatus, Node, SocketState, Status, VOLUMES};
use super::WabaFamily;
use crate::exposition::FragmentWriter;
use crate::providers::shape::Observation;

impl Observation for Status {
    /// Every node that tells its socket has it up.
    fn connected(&self) -> bool {
        let mut sockets = self.nodes.iter().filter_map(|n| n.socket).peekable();
        sockets.peek().is_some() && sockets.all(SocketState::is_up)
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
        let up = self
            .nodes
            .iter()
            .filter(|n| n.socket.is_some_and(SocketState::is_up))
            .count();
        format!("{} nodes, {up} with socket up", self.nodes.len())
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
