//! The README's metric reference against the code: every metric the exporter can expose is
//! documented, and every metric the README documents exists.

use std::collections::BTreeSet;

use whatsapp_exporter::providers::all_families;

/// Metric names in the first column of the README's tables.
fn documented() -> BTreeSet<String> {
    let readme = std::fs::read_to_string("README.md").unwrap();
    readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("whatsapp_"))
        .map(str::to_string)
        .collect()
}

/// Metric families in the golden `/metrics` (produced by `tests/golden.rs` from the code) and in
/// the gateway family list.
fn exposed() -> BTreeSet<String> {
    let golden = std::fs::read_to_string("tests/golden/metrics.txt").unwrap();
    let mut names: BTreeSet<String> = golden
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    names.extend(all_families().map(|f| f.name.to_string()));
    names
}

#[test]
fn every_exposed_metric_is_documented() {
    let documented = documented();
    let missing: Vec<_> = exposed()
        .into_iter()
        .filter(|n| !documented.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics missing from the README's tables: {missing:?}"
    );
}

#[test]
fn every_documented_metric_exists() {
    let exposed = exposed();
    let unknown: Vec<_> = documented()
        .into_iter()
        .filter(|n| !exposed.contains(n))
        .collect();
    assert!(
        unknown.is_empty(),
        "README documents metrics the exporter does not have: {unknown:?}"
    );
}
