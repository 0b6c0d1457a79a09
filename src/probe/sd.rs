//! `GET /sd`: every gateway this replica owns as a probe target, in the JSON of Prometheus'
//! `http_sd_configs`, so that a probe job lists no target by hand. A replica started with
//! `--shard i/n` owns the gateways it polls, and a server's discovered instances go with their
//! server, so the targets of every replica's `/sd` are the whole configuration, each once.
//!
//! Groups, each target once:
//!
//! | targets | labels |
//! | --- | --- |
//! | configured gateways, one group per provider | `provider` |
//! | servers with `instances:` (Evolution API, WAHA), one group per provider | `provider`, `__param_instances="false"` |
//! | the instances of one server's last listing, `<server>/<instance>` | `provider`, `server` |
//!
//! A configured gateway has no `server` label, as its series have none. A server's own target
//! asks `/probe` to leave its instances out, as each instance is a target of its own: a probe job
//! of every target then holds each series once. Only names are listed: no URL, no secret.

use std::collections::BTreeMap;

use hyper::header::{self, HeaderValue};
use hyper::Response;
use serde::Serialize;

use crate::exporter::Exporter;
use crate::respond::Body;

/// The label `/probe` reads as `&instances=false` on a server's own target.
const INSTANCES_PARAM: &str = "__param_instances";

/// One `http_sd_configs` target group.
#[derive(Debug, Serialize, PartialEq)]
pub struct Group {
    pub targets: Vec<String>,
    pub labels: BTreeMap<&'static str, String>,
}

/// A gateway as `/sd` sees it: its name, provider, and the instances of its last listing when it
/// is a server with `instances:`.
pub struct Owned<'a> {
    pub name: &'a str,
    pub provider: &'static str,
    pub instances: Option<Vec<String>>,
}

/// The target groups of these gateways, in a stable order (provider, then server).
pub fn groups<'a>(gateways: impl IntoIterator<Item = Owned<'a>>) -> Vec<Group> {
    let mut by_labels: BTreeMap<(&'static str, Option<String>, bool), Vec<String>> =
        BTreeMap::new();
    for g in gateways {
        match g.instances {
            None => by_labels
                .entry((g.provider, None, false))
                .or_default()
                .push(g.name.to_string()),
            Some(mut instances) => {
                by_labels
                    .entry((g.provider, None, true))
                    .or_default()
                    .push(g.name.to_string());
                if instances.is_empty() {
                    continue;
                }
                instances.sort();
                let targets = instances.iter().map(|i| format!("{}/{i}", g.name));
                by_labels
                    .entry((g.provider, Some(g.name.to_string()), false))
                    .or_default()
                    .extend(targets);
            }
        }
    }
    by_labels
        .into_iter()
        .map(|((provider, server, own), mut targets)| {
            targets.sort();
            let mut labels = BTreeMap::from([("provider", provider.to_string())]);
            if let Some(s) = server {
                labels.insert(crate::exposition::SERVER_LABEL, s);
            }
            if own {
                labels.insert(INSTANCES_PARAM, "false".to_string());
            }
            Group { targets, labels }
        })
        .collect()
}

/// The answer to `GET /sd`.
pub fn handle(ex: &Exporter) -> Response<Body> {
    let gateways = ex.gateways();
    let owned = gateways.iter().map(|g| Owned {
        name: g.name(),
        provider: g.config.provider.as_str(),
        instances: g
            .config
            .settings
            .discovers()
            .then(|| g.state().instances.keys().cloned().collect()),
    });
    let body = match serde_json::to_vec(&groups(owned)) {
        Ok(b) => b,
        // Strings and maps of strings always serialise.
        Err(_) => b"[]".to_vec(),
    };
    let mut r = Response::new(Body::new(body.into()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw<'a>(name: &'a str, provider: &'static str, instances: Option<&[&str]>) -> Owned<'a> {
        Owned {
            name,
            provider,
            instances: instances.map(|i| i.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn targets_are_grouped_by_their_labels() {
        let groups = groups([
            gw("sales", "zapi", None),
            gw("evo", "evolution", Some(&["b", "a"])),
            gw("brand", "zapi", None),
            gw("empty", "evolution", Some(&[])),
        ]);
        let json = serde_json::to_value(&groups).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"targets": ["empty", "evo"], "labels": {"provider": "evolution", "__param_instances": "false"}},
                {"targets": ["evo/a", "evo/b"], "labels": {"provider": "evolution", "server": "evo"}},
                {"targets": ["brand", "sales"], "labels": {"provider": "zapi"}},
            ])
        );
    }

    #[test]
    fn no_gateways_is_an_empty_list() {
        assert_eq!(serde_json::to_string(&groups([])).unwrap(), "[]");
    }
}
