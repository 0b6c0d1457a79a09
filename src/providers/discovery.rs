//! Discovery: the instances of a server's listing that a gateway exports, each as its own
//! gateway `<server>/<instance>`. Evolution API and WAHA read their listings into
//! `(name, observation)` rows; [`Selector::select`] keeps the selected ones whose names fit a
//! label, in name order, up to `max_instances`.

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;

use crate::config::{is_label_safe_instance, Instances, Target};
use crate::error::PollError;
use crate::providers::shape::{Discovered, Observation};

/// An item of a listing: a row of the expected shape, or anything else (which becomes a row with
/// no name, skipped and counted).
#[derive(Deserialize)]
#[serde(untagged)]
enum Item<T> {
    Row(T),
    Junk(IgnoredAny),
}

/// Reads a listing, a JSON list of objects, one row at a time: a row's fields are read leniently
/// by `T`, and only the fields `T` names are kept (the rest, tokens and phone numbers among them,
/// are skipped unread). Anything but a list is an invalid answer.
pub fn listing<T: DeserializeOwned + Default>(body: &[u8]) -> Result<Vec<T>, PollError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'[') {
        return Err(PollError::InvalidResponse(
            "the answer is not a JSON list of instances".into(),
        ));
    }
    let items: Vec<Item<T>> = serde_json::from_slice(body).map_err(|e| PollError::from_json(&e))?;
    Ok(items
        .into_iter()
        .map(|i| match i {
            Item::Row(r) => r,
            Item::Junk(_) => T::default(),
        })
        .collect())
}

/// The `instances` and `max_instances` of a server gateway.
#[derive(Debug, Clone)]
pub struct Selector {
    instances: Instances,
    max: usize,
}

impl Selector {
    pub fn new(instances: Instances, max: usize) -> Self {
        Selector { instances, max }
    }

    /// The selector of a server target; `None` for a gateway of one instance.
    pub fn of(target: &Target) -> Option<Self> {
        match target {
            Target::One(_) => None,
            Target::Server { instances, max } => Some(Selector::new(instances.clone(), *max)),
        }
    }

    /// The exported instances of a listing: rows without a name or with a name that cannot
    /// stand in a label are skipped (and counted), unselected ones are ignored, duplicates are
    /// kept once, and past `max_instances` (in name order, so the same ones stay) the rest is
    /// counted as overflow.
    pub fn select(
        &self,
        rows: impl IntoIterator<Item = (Option<String>, Box<dyn Observation>)>,
    ) -> Discovered {
        let mut skipped = 0u64;
        let mut instances: Vec<(String, Box<dyn Observation>)> = Vec::new();
        for (name, obs) in rows {
            let Some(name) = name.filter(|n| is_label_safe_instance(n)) else {
                skipped += 1;
                continue;
            };
            if self.instances.matches(&name) {
                instances.push((name, obs));
            }
        }
        // Stable: of two rows with one name, the first listed stays.
        instances.sort_by(|a, b| a.0.cmp(&b.0));
        instances.dedup_by(|b, a| a.0 == b.0);
        let overflow = instances.len().saturating_sub(self.max) as u64;
        instances.truncate(self.max);
        Discovered {
            instances,
            overflow,
            skipped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::FragmentWriter;

    #[derive(Debug)]
    struct Up(bool);

    impl Observation for Up {
        fn connected(&self) -> bool {
            self.0
        }
        fn write(&self, _: &mut FragmentWriter) {}
        fn summary(&self) -> String {
            String::new()
        }
    }

    fn rows(names: &[Option<&str>]) -> Vec<(Option<String>, Box<dyn Observation>)> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.map(str::to_string),
                    Box::new(Up(i % 2 == 0)) as Box<dyn Observation>,
                )
            })
            .collect()
    }

    fn names(d: &Discovered) -> Vec<&str> {
        d.instances.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct Row {
        #[serde(default, deserialize_with = "crate::json::lenient")]
        name: Option<String>,
    }

    #[test]
    fn listings_are_lists_read_row_by_row() {
        let rows: Vec<Row> =
            listing(br#" [{"name":"a","token":"s3cr3t"}, 7, null, {"name":5}, {}, "x"]"#).unwrap();
        let names: Vec<_> = rows.iter().map(|r| r.name.as_deref()).collect();
        assert_eq!(names, [Some("a"), None, None, None, None, None]);
        for body in [&b"{}"[..], b"null", b"", b"<html>", b"[{\"name\":"] {
            let e = listing::<Row>(body).unwrap_err();
            assert_eq!(e.reason(), "invalid_response", "{body:?}");
        }
        let e = listing::<Row>(br#"[{"name":"5511987654321"#).unwrap_err();
        assert!(!e.to_string().contains("5511987654321"), "{e}");
    }

    #[test]
    fn unsafe_and_missing_names_are_skipped_and_counted() {
        let d = Selector::new(Instances::All, 10).select(rows(&[
            Some("b"),
            Some("Loja Centro"),
            None,
            Some("a"),
            Some("a/../x"),
            Some("b"),
        ]));
        assert_eq!(names(&d), ["a", "b"]);
        assert!(d.instances[1].1.connected(), "the first `b` stays");
        assert_eq!((d.skipped, d.overflow), (3, 0));
    }

    #[test]
    fn the_cap_keeps_the_first_names_and_counts_the_rest() {
        let d = Selector::new(Instances::All, 2).select(rows(&[
            Some("d"),
            Some("c"),
            Some("b"),
            Some("a"),
        ]));
        assert_eq!(names(&d), ["a", "b"]);
        assert_eq!(d.overflow, 2);
    }

    #[test]
    fn only_selected_instances_count_against_the_cap() {
        let re = Instances::Regex(regex::Regex::new("^sales-").unwrap());
        let d = Selector::new(re, 1).select(rows(&[Some("ops"), Some("sales-2"), Some("sales-1")]));
        assert_eq!(names(&d), ["sales-1"]);
        assert_eq!((d.overflow, d.skipped), (1, 0));
        let list = Instances::Names(["ops".to_string(), "gone".to_string()].into());
        let d = Selector::new(list, 10).select(rows(&[Some("ops"), Some("sales-1")]));
        assert_eq!(names(&d), ["ops"]);
    }
}

/// One event of a server's push (Evolution API, WAHA): the instance it names, if any, and the
/// disconnection reason it tells. The instance name only routes the event to the discovered
/// instance `<server>/<instance>`; it is never logged, and becomes a label only through the
/// listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Push {
    pub instance: Option<String>,
    pub event: crate::flow::Event,
    /// A disconnection, by its bounded reason code (`whatsapp_disconnects_total`).
    pub disconnect: Option<&'static str>,
}

/// The longest instance name a push is routed by (longer names cannot be listed either).
pub const MAX_PUSHED_NAME: usize = 256;

/// The instance or session a push names, when it is a short string.
pub fn pushed_name(v: Option<&serde_json::Value>) -> Option<String> {
    let s = v?.as_str()?.trim();
    (!s.is_empty() && s.len() <= MAX_PUSHED_NAME).then(|| s.to_string())
}
