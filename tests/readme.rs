//! The documentation against the code and the rules: the metric reference (`docs/metrics.md`)
//! lists every metric the exporter can expose and nothing else; every alert has a runbook heading in
//! `docs/runbooks.md` that its `runbook_url` points at; and every relative link of the README and
//! `docs/` reaches an existing file and heading.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use whatsapp_exporter::providers::all_families;

const METRICS_DOC: &str = "docs/metrics.md";
const RUNBOOKS_DOC: &str = "docs/runbooks.md";
const RULES: &str = "alerts/whatsapp_exporter.rules.yml";
/// The project's home (Cargo.toml `repository`); runbook URLs are under it.
const RUNBOOK_BASE: &str =
    "https://github.com/whatsapp-exporter/whatsapp_exporter/blob/main/docs/runbooks.md#";

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Metric names in the first column of the metric reference's tables.
fn documented() -> BTreeSet<String> {
    read(METRICS_DOC)
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
    let golden = read("tests/golden/metrics.txt");
    let mut names: BTreeSet<String> = golden
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    names.extend(all_families().map(|f| f.name.to_string()));
    // Canaries are opt-in: the golden page has none.
    names.extend(
        whatsapp_exporter::canary::FAMILIES
            .iter()
            .map(|f| f.name.to_string()),
    );
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
        "metrics missing from the tables of {METRICS_DOC}: {missing:?}"
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
        "{METRICS_DOC} documents metrics the exporter does not have: {unknown:?}"
    );
}

/// GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as dashes.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks), with GitHub's `-1`, `-2`
/// suffixes for repeated headings.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let a = anchor(line.trim_start_matches('#'));
        let mut candidate = a.clone();
        let mut n = 0;
        while out.contains(&candidate) {
            n += 1;
            candidate = format!("{a}-{n}");
        }
        out.insert(candidate);
    }
    out
}

/// `(alert name, runbook_url)` for every alert of the rule file.
fn alerts() -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for line in read(RULES).lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("- alert:") {
            out.push((name.trim().to_string(), None));
        } else if let Some(url) = line.strip_prefix("runbook_url:") {
            if let Some(last) = out.last_mut() {
                last.1 = Some(url.trim().to_string());
            }
        }
    }
    out
}

#[test]
fn every_alert_has_a_runbook_heading_that_its_runbook_url_points_at() {
    let runbooks = read(RUNBOOKS_DOC);
    let headings: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(|h| h.trim().to_string())
        .collect();
    let anchors = anchors(&runbooks);
    let alerts = alerts();
    assert!(
        alerts.len() >= 20,
        "only {} alerts read from {RULES}",
        alerts.len()
    );
    let mut errors = Vec::new();
    for (name, url) in &alerts {
        if !headings.contains(name) {
            errors.push(format!("{name}: no `### {name}` heading in {RUNBOOKS_DOC}"));
        }
        let want = format!("{RUNBOOK_BASE}{}", name.to_lowercase());
        match url {
            Some(u) if *u == want => {}
            other => errors.push(format!("{name}: runbook_url {other:?}, want {want}")),
        }
        if !anchors.contains(&name.to_lowercase()) {
            errors.push(format!(
                "{name}: no anchor #{} in {RUNBOOKS_DOC}",
                name.to_lowercase()
            ));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn cargo_toml_names_the_home_the_runbook_urls_use() {
    let manifest = read("Cargo.toml");
    let home = RUNBOOK_BASE.split("/blob/").next().unwrap();
    assert!(
        manifest.contains(&format!("repository = \"{home}\"")),
        "Cargo.toml repository is not {home}"
    );
}

/// Relative Markdown links `[text](target)` of a file.
fn links(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = &rest[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                out.push(target.to_string());
            }
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn links_between_the_documents_resolve() {
    let mut files: Vec<PathBuf> = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir("docs")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut errors = Vec::new();
    let mut count = 0;
    for file in &files {
        let text = read(file);
        let dir = file.parent().unwrap_or(Path::new(""));
        for link in links(&text) {
            count += 1;
            let (path, frag) = match link.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            if !target.exists() {
                errors.push(format!(
                    "{}: {link}: {} does not exist",
                    file.display(),
                    target.display()
                ));
                continue;
            }
            if let Some(frag) = frag {
                if target.extension().is_some_and(|x| x == "md")
                    && !anchors(&read(&target)).contains(frag)
                {
                    errors.push(format!(
                        "{}: {link}: no heading #{frag} in {}",
                        file.display(),
                        target.display()
                    ));
                }
            }
        }
    }
    assert!(count > 30, "only {count} links found");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
