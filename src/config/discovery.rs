//! What a self-hosted server gateway watches: one instance (`instance: NAME`), or every instance
//! of its listing that `instances` selects (`all`, a list of names, or `{regex: "..."}`), at most
//! `max_instances` of them. Evolution API and WAHA share these keys.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

use super::{Ctx, IdString};
use crate::provider::Provider;

/// How many instances one server gateway exports when `max_instances` is not set.
pub const DEFAULT_MAX_INSTANCES: usize = 1000;
/// The largest `max_instances` the configuration takes.
pub const MAX_MAX_INSTANCES: usize = 100_000;
/// The longest instance name that becomes part of a `gateway` label.
pub const MAX_INSTANCE_NAME: usize = 128;

/// One instance, or the instances of a server's listing.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `instance: NAME`: the gateway is that one number.
    One(String),
    /// `instances: ...`: every selected instance of the listing is its own gateway
    /// `<server>/<instance>`, at most `max` of them.
    Server { instances: Instances, max: usize },
}

impl Target {
    pub fn discovers(&self) -> bool {
        matches!(self, Target::Server { .. })
    }
}

/// Which instances of a listing are exported.
#[derive(Debug, Clone)]
pub enum Instances {
    All,
    /// These names (each label-safe).
    Names(BTreeSet<String>),
    /// The names this regular expression matches anywhere (anchor it with `^...$` for a whole
    /// name).
    Regex(regex::Regex),
}

impl Instances {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Instances::All => true,
            Instances::Names(names) => names.contains(name),
            Instances::Regex(re) => re.is_match(name),
        }
    }
}

impl PartialEq for Instances {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Instances::All, Instances::All) => true,
            (Instances::Names(a), Instances::Names(b)) => a == b,
            (Instances::Regex(a), Instances::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// Whether an instance name can stand in a `gateway` label as it is: any name a provider allows
/// (spaces, accents, quotes: label values are UTF-8 and escaped as the text format requires), of
/// 1 to [`MAX_INSTANCE_NAME`] characters, without control characters (a newline or an escape
/// sequence would break a log line or a terminal). A name that is not is never renamed (two
/// names could then meet in one label); it is left out and counted.
pub fn is_label_safe_instance(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_INSTANCE_NAME
        && !name.chars().any(char::is_control)
}

/// The keys `instance`, `instances` and `max_instances` of a block, checked together.
pub(super) fn target(
    p: Provider,
    instance: Option<IdString>,
    instances: Option<Value>,
    max_instances: Option<Value>,
    ctx: &mut Ctx,
) -> Option<Target> {
    let instance = instance.map(IdString::into_string);
    match (instance, instances) {
        (Some(_), Some(_)) => {
            ctx.err(
                "instances",
                "set either instance (one number) or instances (a whole server), not both",
            );
            None
        }
        (Some(name), None) => {
            if max_instances.is_some() {
                ctx.err("max_instances", "is only used with instances");
            }
            if name.trim().is_empty() {
                ctx.err("instance", "is empty");
                return None;
            }
            Some(Target::One(name))
        }
        (None, Some(v)) => {
            let max = max(max_instances, ctx);
            let instances = selection(v, ctx);
            Some(Target::Server {
                instances: instances?,
                max: max?,
            })
        }
        (None, None) => {
            ctx.err(
                "instance",
                format!("provider {p} needs instance (one number) or instances (all, a list of names or {{regex: ...}})"),
            );
            None
        }
    }
}

fn max(v: Option<Value>, ctx: &mut Ctx) -> Option<usize> {
    let Some(v) = v else {
        return Some(DEFAULT_MAX_INSTANCES);
    };
    match v.as_u64() {
        Some(n) if (1..=MAX_MAX_INSTANCES as u64).contains(&n) => Some(n as usize),
        _ => {
            ctx.err(
                "max_instances",
                format!("must be a whole number from 1 to {MAX_MAX_INSTANCES}"),
            );
            None
        }
    }
}

const SELECTION_HELP: &str = "must be all, a list of instance names, or {regex: \"...\"}";

fn selection(v: Value, ctx: &mut Ctx) -> Option<Instances> {
    match v {
        Value::String(s) if s == "all" => Some(Instances::All),
        Value::Sequence(items) => {
            let mut names = BTreeSet::new();
            let mut bad = false;
            for (i, item) in items.into_iter().enumerate() {
                let name = match item {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    _ => {
                        ctx.err(&format!("instances[{i}]"), "must be an instance name");
                        bad = true;
                        continue;
                    }
                };
                if !is_label_safe_instance(&name) {
                    ctx.err(
                        &format!("instances[{i}]"),
                        format!("must be 1 to {MAX_INSTANCE_NAME} characters without control characters: it becomes part of the gateway label"),
                    );
                    bad = true;
                    continue;
                }
                names.insert(name);
            }
            if bad {
                return None;
            }
            if names.is_empty() {
                ctx.err("instances", "the list is empty");
                return None;
            }
            Some(Instances::Names(names))
        }
        Value::Mapping(m) => {
            let mut re = None;
            for (k, v) in m {
                match (k.as_str(), v) {
                    (Some("regex"), Value::String(s)) => re = Some(s),
                    (Some("regex"), _) => {
                        ctx.err("instances.regex", "must be a string");
                        return None;
                    }
                    (Some(other), _) => {
                        ctx.err(
                            "instances",
                            format!("unknown key `{other}`: {SELECTION_HELP}"),
                        );
                        return None;
                    }
                    (None, _) => {
                        ctx.err("instances", SELECTION_HELP);
                        return None;
                    }
                }
            }
            let Some(re) = re else {
                ctx.err("instances", SELECTION_HELP);
                return None;
            };
            match regex::RegexBuilder::new(&re).size_limit(1 << 20).build() {
                Ok(re) => Some(Instances::Regex(re)),
                Err(e) => {
                    let why = match e {
                        regex::Error::CompiledTooBig(_) => "is too large".to_string(),
                        e => format!("is not a valid regular expression: {e}"),
                    };
                    ctx.err("instances.regex", why);
                    None
                }
            }
        }
        _ => {
            ctx.err("instances", SELECTION_HELP);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, ProviderConfig};

    fn target(block: &str) -> Result<Target, Vec<String>> {
        let yaml = format!(
            "gateways:\n  - name: evo\n    provider: evolution\n    url: http://127.0.0.1:1\n    token: k\n{block}"
        );
        let cfg = parse(&yaml, &|_| None).map_err(|e| e.0)?;
        match &cfg.gateways[0].settings {
            ProviderConfig::Evolution(c) => Ok(c.target.clone()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_instance_or_a_server() {
        assert_eq!(
            target("    instance: my-instance\n"),
            Ok(Target::One("my-instance".into()))
        );
        assert_eq!(
            target("    instances: all\n"),
            Ok(Target::Server {
                instances: Instances::All,
                max: DEFAULT_MAX_INSTANCES
            })
        );
        assert_eq!(
            target("    instances: [sales, \"5511\", 42]\n    max_instances: 5\n"),
            Ok(Target::Server {
                instances: Instances::Names(["sales", "5511", "42"].map(String::from).into()),
                max: 5
            })
        );
        let Ok(Target::Server {
            instances: Instances::Regex(re),
            ..
        }) = target("    instances: {regex: \"^sales-\"}\n")
        else {
            panic!()
        };
        assert_eq!(re.as_str(), "^sales-");
    }

    #[test]
    fn mistakes_are_told_by_key() {
        for (block, want) in [
            ("", "gateways[0] (evo): instance: provider evolution needs instance (one number) or instances"),
            ("    instance: a\n    instances: all\n", "gateways[0] (evo): instances: set either instance"),
            ("    instance: a\n    max_instances: 3\n", "gateways[0] (evo): max_instances: is only used with instances"),
            ("    instances: every\n", "gateways[0] (evo): instances: must be all, a list"),
            ("    instances: []\n", "gateways[0] (evo): instances: the list is empty"),
            ("    instances: [\"Loja\\tCentro\"]\n", "gateways[0] (evo): instances[0]: must be 1 to 128 characters without control characters"),
            ("    instances: [{a: 1}]\n", "gateways[0] (evo): instances[0]: must be an instance name"),
            ("    instances: {regex: \"(\"}\n", "gateways[0] (evo): instances.regex: is not a valid regular expression"),
            ("    instances: {regex: 3}\n", "gateways[0] (evo): instances.regex: must be a string"),
            ("    instances: {regexp: a}\n", "gateways[0] (evo): instances: unknown key `regexp`"),
            ("    instances: all\n    max_instances: 0\n", "gateways[0] (evo): max_instances: must be a whole number from 1 to 100000"),
            ("    instances: all\n    max_instances: many\n", "gateways[0] (evo): max_instances: must be a whole number"),
            ("    instances: all\n    notifications: consume\n", "gateways[0] (evo): notifications: is not used by provider evolution"),
            ("    instances: all\n    instnces: x\n", "unknown field `instnces`"),
        ] {
            let errs = target(block).unwrap_err();
            assert!(
                errs.iter().any(|e| e.contains(want)),
                "{block:?}: {errs:#?}"
            );
        }
    }

    #[test]
    fn evolution_needs_its_key_and_waha_may_run_without() {
        let errs = parse(
            "gateways:\n  - name: evo\n    provider: evolution\n    url: http://e\n    instances: all\n",
            &|_| None,
        )
        .unwrap_err()
        .0;
        assert_eq!(
            errs,
            ["gateways[0] (evo): token: provider evolution needs token or token_file"]
        );
        let errs = parse(
            "gateways:\n  - name: evo\n    provider: evolution\n    instance: a\n    token: k\n",
            &|_| None,
        )
        .unwrap_err()
        .0;
        assert_eq!(
            errs,
            ["gateways[0] (evo): url: provider evolution has no default URL: set url"]
        );
        let cfg = parse(
            "gateways:\n  - name: w\n    provider: waha\n    url: http://w:3000\n    instance: default\n",
            &|_| None,
        )
        .unwrap();
        let ProviderConfig::Waha(w) = &cfg.gateways[0].settings else {
            panic!()
        };
        assert!(w.token.is_none());
        assert!(!cfg.gateways[0].settings.discovers());
    }

    #[test]
    fn instance_names_that_fit_a_label() {
        let longest = "é".repeat(MAX_INSTANCE_NAME);
        for ok in [
            "sales",
            "store-01",
            "a.b_c",
            "5511",
            "Loja Centro",
            "Atendimento São Paulo",
            "a/b",
            "a\"b\\c",
            " é ",
            &longest,
        ] {
            assert!(is_label_safe_instance(ok), "{ok}");
        }
        let long = "x".repeat(MAX_INSTANCE_NAME + 1);
        for bad in [
            "",
            &long,
            "a\n",
            "a\tb",
            "a\u{1b}[31m",
            "a\u{7f}",
            "a\u{85}",
        ] {
            assert!(!is_label_safe_instance(bad), "{bad:?}");
        }
    }

    #[test]
    fn selections_match() {
        assert!(Instances::All.matches("x"));
        let names = Instances::Names(["a".to_string()].into());
        assert!(names.matches("a") && !names.matches("ab"));
        let re = Instances::Regex(regex::Regex::new("^sales-").unwrap());
        assert!(re.matches("sales-1") && !re.matches("presales-1"));
        assert_eq!(
            Instances::Regex(regex::Regex::new("a").unwrap()),
            Instances::Regex(regex::Regex::new("a").unwrap())
        );
    }
}
