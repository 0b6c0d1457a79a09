//! The layers of `docs/architecture.md`, held against the code: a module imports only from its
//! own layer or the layers below, and no two files import each other in a circle.
//!
//! Imports are read as text (`crate::a::b` anywhere outside a file's test module), which is what
//! a reader of the code sees too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first, by top-level module. A module not listed fails the test: a new
/// module takes its place here, and in the drawing of `docs/architecture.md`.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaves",
        &[
            "provider",
            "config",
            "error",
            "exposition",
            "labels",
            "json",
            "secret",
            "clock",
            "sync",
            "tls",
            "respond",
            "logging",
            "shard",
            "web_config",
            "fdlimit",
            "flow",
            "flow_state",
            "inbound",
            "number_state",
        ],
    ),
    ("http", &["http"]),
    ("providers", &["providers", "webhooks"]),
    (
        "runtime",
        &[
            "gateway",
            "scheduler",
            "consumer",
            "receiver",
            "canary",
            "metrics",
            "exporter",
        ],
    ),
    (
        "edge",
        &[
            "server",
            "probe",
            "conns",
            "status_page",
            "demo",
            "app",
            "cli",
        ],
    ),
    ("crate", &["lib"]),
];

fn layer_of(top: &str) -> Option<(usize, &'static str)> {
    LAYERS
        .iter()
        .enumerate()
        .find(|(_, (_, mods))| mods.contains(&top))
        .map(|(i, (name, _))| (i, *name))
}

/// Every source file of the library, by its module path (`providers::waba::login`).
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(Path::new("src"), &mut files);
    files
        .into_iter()
        .filter(|p| p != Path::new("src/main.rs"))
        .map(|p| {
            let rel = p.strip_prefix("src").unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            (parts.join("::"), p)
        })
        .collect()
}

/// The code of a file without its `#[cfg(test)]` module, which may reach anywhere.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The modules a file names with `crate::`, resolved to the longest known module path.
fn imports(text: &str, known: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        // `use crate::{a, b}` names several modules of the crate root.
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for name in group[..end].split(',').map(str::trim) {
                let first = name.split("::").next().unwrap_or("");
                if known.contains_key(first) {
                    out.insert(first.to_string());
                }
            }
            continue;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        let target = (1..=segments.len())
            .rev()
            .map(|n| segments[..n].join("::"))
            .find(|m| known.contains_key(m));
        if let Some(t) = target {
            out.insert(t);
        }
    }
    out
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let known = modules();
    known
        .iter()
        .map(|(m, p)| {
            let mut deps = imports(&code(p), &known);
            deps.remove(m);
            (m.clone(), deps)
        })
        .collect()
}

#[test]
fn every_module_has_a_layer() {
    let missing: Vec<String> = modules()
        .keys()
        .filter(|m| layer_of(top(m)).is_none())
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a layer (add them to LAYERS and docs/architecture.md): {missing:?}"
    );
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let mut upward = Vec::new();
    for (m, deps) in graph() {
        let Some((mine, my_name)) = layer_of(top(&m)) else {
            continue;
        };
        for d in deps {
            if let Some((theirs, their_name)) = layer_of(top(&d)) {
                if theirs > mine {
                    upward.push(format!("{m} ({my_name}) imports {d} ({their_name})"));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that look up:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_import_cycles() {
    let g = graph();
    // Depth-first search; a module met again on the current path closes a cycle.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == m) {
            cycles.push(format!("{} -> {m}", path[i..].join(" -> ")));
            return;
        }
        if !done.insert(m.to_string()) {
            return;
        }
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            visit(d, g, path, done, cycles);
        }
        path.pop();
    }
    let (mut done, mut cycles) = (BTreeSet::new(), Vec::new());
    for m in g.keys() {
        visit(m, &g, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_check_sees_an_upward_import() {
    // The reader itself: an import of the exporter from a provider would be found.
    let known = modules();
    let found = imports(
        "use crate::exporter::Exporter;\nlet x = crate::{gateway, nope};",
        &known,
    );
    assert!(
        found.contains("exporter") && found.contains("gateway"),
        "{found:?}"
    );
    let (provider_layer, _) = layer_of("providers").unwrap();
    let (exporter_layer, _) = layer_of("exporter").unwrap();
    assert!(exporter_layer > provider_layer);
}
