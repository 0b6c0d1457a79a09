//! Discovery: the instances of a server's listing that a gateway exports, each as its own
//! gateway `<server>/<instance>`.
//!
//! A listing (Evolution API's `fetchInstances`, WAHA's `sessions?all=true`) may weigh tens of MiB
//! on a server of 30,000 instances, so it is never held whole: [`discover`] reads it as it
//! streams, a [`Splitter`] cuts the top-level list into its rows, each row is read on its own
//! (only the fields its type names), and a [`Picker`] keeps the selected instances whose names
//! fit a label, at most `max_instances` of them, those with the lowest names. What a listing
//! costs is one piece of the answer in flight (held in the shared answer budget at its size),
//! one row carried over between pieces (at most [`MAX_ROW`], which like any answer that small is
//! read outside the budget) and the kept instances.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::de::{DeserializeOwned, IgnoredAny};

use crate::config::{is_label_safe_instance, Instances, Target};
use crate::error::PollError;
use crate::providers::shape::{Discovered, Observation};
use crate::secret::{Scrubber, Secret};

/// The largest row of a listing that is read. A row of Evolution API, settings and all, is about
/// 1.5 KiB; a larger one is broken or hostile, and is skipped (and counted) unread rather than
/// buffered.
pub const MAX_ROW: usize = 64 << 10;

/// One element of a listing, as the [`Splitter`] cuts it.
#[derive(Debug, PartialEq)]
pub enum Piece<'a> {
    /// The element's bytes, at most [`MAX_ROW`] of them.
    Row(&'a [u8]),
    /// An element over [`MAX_ROW`], skipped unread.
    Oversized,
}

/// Where the splitter stands in the listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before the `[` of the list.
    Start,
    /// After `[`: an element or `]`.
    Open,
    /// After `,`: an element.
    Comma,
    /// Inside an element.
    Element,
    /// After an element: `,` or `]`.
    After,
    /// After the `]`: only whitespace.
    Closed,
}

/// Where an element ends, as [`Splitter::step`] tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ends {
    With,
    Before,
}

/// What kind of element is being cut, and how far into it the splitter is.
#[derive(Debug, Clone, Copy, Default)]
struct Cut {
    /// Open `{` and `[` outside strings; an object or a list ends when it is back to 0.
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// A number or a literal (`true`, `null`): it ends at a delimiter.
    scalar: bool,
    /// The element's bytes so far, over every piece of the answer.
    len: usize,
}

/// Cuts a top-level JSON list into its elements as its bytes arrive, in pieces of any size. It
/// only follows strings (with their escapes) and nesting, so that a `]` or `,` inside a string or
/// a nested object is no boundary; each element is then read by serde on its own. An element
/// that arrives over several pieces is carried over, up to `max` bytes: a larger one is dropped
/// as it comes and told as [`Piece::Oversized`].
#[derive(Debug)]
pub struct Splitter {
    at: At,
    cut: Cut,
    carry: Vec<u8>,
    max: usize,
}

fn not_a_list() -> PollError {
    PollError::InvalidResponse("the answer is not a JSON list of instances".into())
}

impl Splitter {
    pub fn new(max: usize) -> Self {
        Splitter {
            at: At::Start,
            cut: Cut::default(),
            carry: Vec::new(),
            max,
        }
    }

    /// Reads the next piece of the answer, handing every element that ends in it to `each`.
    pub fn feed(
        &mut self,
        piece: &[u8],
        each: &mut impl FnMut(Piece<'_>) -> Result<(), PollError>,
    ) -> Result<(), PollError> {
        // Where the element under way starts in this piece.
        let mut start = 0;
        let mut i = 0;
        while i < piece.len() {
            let b = piece[i];
            match self.at {
                At::Element => {
                    // Most of a row is text: runs without a quote or a backslash are passed over
                    // in one go.
                    if self.cut.in_string && !self.cut.escaped {
                        let run = piece[i..]
                            .iter()
                            .position(|&b| b == b'"' || b == b'\\')
                            .unwrap_or(piece.len() - i);
                        if run > 0 {
                            self.cut.len += run;
                            i += run;
                            continue;
                        }
                    }
                    if let Some(ends) = self.step(b) {
                        // A scalar ends before its delimiter, which is read again.
                        let end = if ends == Ends::With { i + 1 } else { i };
                        self.end_element(&piece[start..end], each)?;
                        i = end;
                        continue;
                    }
                }
                _ if b.is_ascii_whitespace() => {}
                At::Start if b == b'[' => self.at = At::Open,
                At::Open | At::After if b == b']' => self.at = At::Closed,
                At::After if b == b',' => self.at = At::Comma,
                At::Open | At::Comma if b != b']' && b != b',' => {
                    self.at = At::Element;
                    self.cut = Cut {
                        scalar: !matches!(b, b'{' | b'[' | b'"'),
                        ..Cut::default()
                    };
                    start = i;
                    continue;
                }
                _ => return Err(not_a_list()),
            }
            i += 1;
        }
        if self.at == At::Element {
            self.carry_over(&piece[start..]);
        }
        Ok(())
    }

    /// Reads one byte of an element: whether the element ends with it, or just before it.
    fn step(&mut self, b: u8) -> Option<Ends> {
        let c = &mut self.cut;
        c.len += 1;
        if c.in_string {
            if c.escaped {
                c.escaped = false;
            } else if b == b'\\' {
                c.escaped = true;
            } else if b == b'"' {
                c.in_string = false;
                return (c.depth == 0).then_some(Ends::With);
            }
            return None;
        }
        if c.scalar {
            if b.is_ascii_whitespace() || b == b',' || b == b']' {
                c.len -= 1;
                return Some(Ends::Before);
            }
            return None;
        }
        match b {
            b'"' => c.in_string = true,
            b'{' | b'[' => c.depth += 1,
            b'}' | b']' => {
                c.depth = c.depth.saturating_sub(1);
                return (c.depth == 0).then_some(Ends::With);
            }
            _ => {}
        }
        None
    }

    /// An element ended: `tail` is its part in the current piece.
    fn end_element(
        &mut self,
        tail: &[u8],
        each: &mut impl FnMut(Piece<'_>) -> Result<(), PollError>,
    ) -> Result<(), PollError> {
        self.at = At::After;
        if self.cut.len > self.max {
            self.carry.clear();
            return each(Piece::Oversized);
        }
        if self.carry.is_empty() {
            return each(Piece::Row(tail));
        }
        self.carry.extend_from_slice(tail);
        let out = each(Piece::Row(&self.carry));
        self.carry.clear();
        out
    }

    /// Keeps the start of an element that goes on in the next piece, unless it is already over
    /// the cap: then nothing of it is kept.
    fn carry_over(&mut self, head: &[u8]) {
        if self.cut.len > self.max {
            self.carry = Vec::new();
        } else {
            self.carry.extend_from_slice(head);
        }
    }

    /// The answer is over: it must have closed its list.
    pub fn finish(&self) -> Result<(), PollError> {
        match self.at {
            At::Closed => Ok(()),
            At::Start => Err(not_a_list()),
            _ => Err(PollError::InvalidResponse(
                "the list of instances is cut short".into(),
            )),
        }
    }
}

/// Reads one row of a listing: its fields are read leniently by `T`, and only the fields `T`
/// names are kept (the rest, tokens and phone numbers among them, are skipped unread). An
/// element that is no row of the shape is a row with no name; one that is not JSON makes the
/// answer invalid.
fn row<T: DeserializeOwned + Default>(piece: Piece<'_>) -> Result<T, PollError> {
    let Piece::Row(bytes) = piece else {
        return Ok(T::default());
    };
    // Read as `T` straight away (an untagged enum would copy every row, settings and all,
    // before reading it); only what fails to read as `T` is read again, to tell a row of
    // another shape (no name, skipped and counted) from one that is no JSON.
    match serde_json::from_slice(bytes) {
        Ok(r) => Ok(r),
        Err(_) => {
            serde_json::from_slice::<IgnoredAny>(bytes).map_err(|e| PollError::from_json(&e))?;
            Ok(T::default())
        }
    }
}

/// Reads a whole listing, a JSON list of objects, one row at a time (see [`row`]). Anything but
/// a list is an invalid answer.
pub fn listing<T: DeserializeOwned + Default>(body: &[u8]) -> Result<Vec<T>, PollError> {
    let mut rows = Vec::new();
    let mut split = Splitter::new(MAX_ROW);
    split.feed(body, &mut |p| {
        rows.push(row(p)?);
        Ok(())
    })?;
    split.finish()?;
    Ok(rows)
}

/// Asks a server for its listing and keeps, as it streams, what `selector` selects: `into` turns
/// a row into the instance's name and state. Rows are read as they arrive and dropped at once;
/// see the module's documentation for what this holds.
pub async fn discover<T, O>(
    req: reqwest::RequestBuilder,
    timeout: Duration,
    selector: &Selector,
    into: impl Fn(T) -> (Option<String>, O),
) -> Result<Discovered, PollError>
where
    T: DeserializeOwned + Default,
    O: Observation + 'static,
{
    let mut split = Splitter::new(MAX_ROW);
    let mut pick = selector.picker();
    let answer = crate::http::stream(req, timeout, crate::http::MAX_LISTING_BODY, |piece| {
        split.feed(piece, &mut |p| {
            if p == Piece::Oversized {
                pick.skip();
                return Ok(());
            }
            let (name, obs) = into(row(p)?);
            pick.offer(name, Box::new(obs));
            Ok(())
        })
    })
    .await?;
    answer.check_status()?;
    split.finish()?;
    Ok(pick.finish())
}

/// The secrets of a server gateway, which no discovered name may carry into a label.
#[derive(Clone, Default)]
struct SecretNames {
    scrubber: Scrubber,
    whole: Vec<Secret>,
}

impl SecretNames {
    /// Whether `name` is a secret or carries one: the whole of a secret, or a run of
    /// [`crate::secret::PIECE`] bytes of one, as the label scrubber would redact it.
    fn holds(&self, name: &str) -> bool {
        self.whole.iter().any(|s| s.expose() == name)
            || matches!(self.scrubber.scrub(name), std::borrow::Cow::Owned(_))
    }
}

/// The `instances` and `max_instances` of a server gateway, and its secrets.
#[derive(Clone)]
pub struct Selector {
    instances: Instances,
    max: usize,
    secrets: Arc<SecretNames>,
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selector")
            .field("instances", &self.instances)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Selector {
    pub fn new(instances: Instances, max: usize) -> Self {
        Selector {
            instances,
            max,
            secrets: Arc::default(),
        }
    }

    /// The selector of a server target, which leaves out every name that carries one of
    /// `secrets` (see [`Picker::offer`]); `None` for a gateway of one instance.
    pub fn of<'a>(target: &Target, secrets: impl IntoIterator<Item = &'a Secret>) -> Option<Self> {
        let Target::Server { instances, max } = target else {
            return None;
        };
        let whole: Vec<Secret> = secrets
            .into_iter()
            .filter(|s| !s.expose().is_empty())
            .cloned()
            .collect();
        let scrubber = Scrubber::new(whole.iter().map(Secret::expose));
        Some(Selector {
            instances: instances.clone(),
            max: *max,
            secrets: Arc::new(SecretNames { scrubber, whole }),
        })
    }

    /// A picker for one listing.
    pub fn picker(&self) -> Picker<'_> {
        Picker {
            selector: self,
            kept: BTreeMap::new(),
            overflow: 0,
            skipped: 0,
        }
    }

    /// The exported instances of a listing read whole (see [`Picker`]).
    pub fn select(
        &self,
        rows: impl IntoIterator<Item = (Option<String>, Box<dyn Observation>)>,
    ) -> Discovered {
        let mut pick = self.picker();
        for (name, obs) in rows {
            pick.offer(name, obs);
        }
        pick.finish()
    }
}

/// The instances of one listing, picked row by row as they arrive: rows without a name, with a
/// name that cannot stand in a label, or with one that carries a secret of the gateway are
/// skipped (and counted), unselected ones are ignored, duplicates are kept once (the first
/// listed), and of the rest the `max_instances` with the lowest names are kept.
///
/// The lowest names, not the first listed: a server lists in whatever order its database
/// gives, and the same instances must stay exported from one poll to the next. Holding at most
/// `max_instances` of them at a time is enough: a name pushed out by a lower one can never come
/// back, as the highest kept name only gets lower. The selected rows past the cap are counted
/// as overflow; a name listed twice past the cap counts twice (knowing it would mean holding
/// every name of the listing).
pub struct Picker<'s> {
    selector: &'s Selector,
    kept: BTreeMap<String, Box<dyn Observation>>,
    overflow: u64,
    skipped: u64,
}

impl Picker<'_> {
    pub fn offer(&mut self, name: Option<String>, obs: Box<dyn Observation>) {
        let s = self.selector;
        let Some(name) = name.filter(|n| is_label_safe_instance(n) && !s.secrets.holds(n)) else {
            self.skipped += 1;
            return;
        };
        if !s.instances.matches(&name) || self.kept.contains_key(&name) {
            return;
        }
        if self.kept.len() < s.max {
            self.kept.insert(name, obs);
            return;
        }
        self.overflow += 1;
        if self
            .kept
            .last_key_value()
            .is_some_and(|(last, _)| name < *last)
        {
            self.kept.pop_last();
            self.kept.insert(name, obs);
        }
    }

    /// A row that could not be read (over [`MAX_ROW`]): skipped and counted as a row without a
    /// name.
    pub fn skip(&mut self) {
        self.skipped += 1;
    }

    pub fn finish(self) -> Discovered {
        Discovered {
            instances: self.kept.into_iter().collect(),
            overflow: self.overflow,
            skipped: self.skipped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::FragmentWriter;
    use serde::Deserialize;

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

    /// The elements of `body` cut by a splitter fed `body` in pieces of `size` bytes; `None`
    /// for an oversized one.
    fn split(body: &[u8], size: usize, max: usize) -> Result<Vec<Option<String>>, PollError> {
        let mut out = Vec::new();
        let mut s = Splitter::new(max);
        for piece in body.chunks(size.max(1)) {
            s.feed(piece, &mut |p| {
                out.push(match p {
                    Piece::Row(b) => Some(String::from_utf8(b.to_vec()).unwrap()),
                    Piece::Oversized => None,
                });
                Ok(())
            })?;
        }
        s.finish()?;
        Ok(out)
    }

    /// `split` at every piece size from 1 byte to the whole body agrees.
    fn split_all_ways(body: &str, max: usize) -> Result<Vec<Option<String>>, PollError> {
        let whole = split(body.as_bytes(), body.len(), max);
        for size in 1..body.len() {
            let got = split(body.as_bytes(), size, max);
            assert_eq!(
                format!("{got:?}"),
                format!("{whole:?}"),
                "pieces of {size} bytes"
            );
        }
        whole
    }

    #[test]
    fn the_splitter_cuts_ugly_lists_at_their_commas_only() {
        let body = " \n[ {\"name\":\"a],[\\\"}{\",\"x\":{\"y\":[1,{\"z\":\"]\"}]}} ,\t\"s,]\\\\\" ,-1.5e3,true ,null,[],{}\r\n,[[\"]\"]] ] \n";
        let got = split_all_ways(body, MAX_ROW).unwrap();
        let want = [
            r#"{"name":"a],[\"}{","x":{"y":[1,{"z":"]"}]}}"#,
            r#""s,]\\""#,
            "-1.5e3",
            "true",
            "null",
            "[]",
            "{}",
            r#"[["]"]]"#,
        ];
        assert_eq!(got, want.map(|w| Some(w.to_string())));
        for empty in ["[]", " [ ] ", "[\n]"] {
            assert_eq!(split_all_ways(empty, MAX_ROW).unwrap(), []);
        }
    }

    #[test]
    fn the_splitter_refuses_what_is_no_whole_list() {
        for body in [
            "",
            "   ",
            "{\"name\":\"a\"}",
            "null",
            "\"[1]\"",
            "<html>[]",
            "[1,]",
            "[,1]",
            "[1 2]",
            "[1]]",
            "[] x",
            "[{\"name\":\"a\"}",
            "[{\"name\":\"a]\"",
            "[\"a\\\"]",
            "[1",
            "[",
        ] {
            let e = split_all_ways(body, MAX_ROW).unwrap_err();
            assert_eq!(e.reason(), "invalid_response", "{body:?}");
        }
    }

    #[test]
    fn an_element_over_the_cap_is_skipped_whole_and_the_rest_read() {
        let big = format!(r#"{{"name":"big","pad":"{}"}}"#, "x".repeat(64));
        let body = format!(
            r#"[{{"name":"a"}},{big},"{}",{{"name":"b"}}]"#,
            "y".repeat(40)
        );
        let got = split_all_ways(&body, 32).unwrap();
        assert_eq!(
            got,
            [
                Some(r#"{"name":"a"}"#.to_string()),
                None,
                None,
                Some(r#"{"name":"b"}"#.to_string())
            ]
        );
        // Carried over a piece at a time, the big element is never buffered past the cap.
        let mut s = Splitter::new(32);
        for piece in big.as_bytes().chunks(7).take(8) {
            s.feed(if s.at == At::Start { b"[" } else { b"" }, &mut |_| Ok(()))
                .unwrap();
            s.feed(piece, &mut |_| Ok(())).unwrap();
            assert!(s.carry.len() <= 32 && s.carry.capacity() <= 64);
        }
    }

    #[test]
    fn the_lowest_names_are_kept_whatever_the_listing_order() {
        let listing = ["m", "c", "x", "a", "q", "b", "c", "z"];
        for rot in 0..listing.len() {
            let mut order = listing.to_vec();
            order.rotate_left(rot);
            let listed: Vec<_> = order.iter().map(|n| Some(*n)).collect();
            let d = Selector::new(Instances::All, 3).select(rows(&listed));
            assert_eq!(names(&d), ["a", "b", "c"], "{order:?}");
            assert_eq!(d.overflow, 4, "{order:?}");
        }
    }

    #[test]
    fn names_that_carry_a_secret_are_skipped_and_counted() {
        let key = Secret::new("B3844804-AAAA-4C2E-9D1F-0123456789AB".into());
        let short = Secret::new("k1".into());
        let target = Target::Server {
            instances: Instances::All,
            max: 10,
        };
        let sel = Selector::of(&target, [&key, &short]).unwrap();
        let d = sel.select(rows(&[
            Some("B3844804-AAAA-4C2E-9D1F-0123456789AB"),
            Some("store-B3844804-AAAA"),
            Some("k1"),
            Some("sales"),
            Some("k10"),
        ]));
        assert_eq!(names(&d), ["k10", "sales"]);
        assert_eq!((d.skipped, d.overflow), (3, 0));
        assert!(!format!("{sel:?}").contains("B3844804"));
        assert!(Selector::of(&Target::One("a".into()), [&key]).is_none());
    }

    #[test]
    fn names_are_kept_as_they_are_but_control_characters_and_long_names() {
        let long = "x".repeat(crate::config::MAX_INSTANCE_NAME + 1);
        let d = Selector::new(Instances::All, 10).select(rows(&[
            Some("b"),
            Some("Loja Centro"),
            None,
            Some("a"),
            Some("Atendimento São Paulo"),
            Some("a\nb"),
            Some(&long),
            Some("b"),
        ]));
        assert_eq!(
            names(&d),
            ["Atendimento São Paulo", "Loja Centro", "a", "b"]
        );
        assert!(d.instances[3].1.connected(), "the first `b` stays");
        assert_eq!((d.skipped, d.overflow), (3, 0));
    }

    #[test]
    fn pushes_name_their_instance_as_it_is_listed() {
        let v = serde_json::json!({"a": " Loja Centro ", "b": "", "c": 5, "d": "é".repeat(128), "e": "é".repeat(257)});
        assert_eq!(pushed_name(v.get("a")).as_deref(), Some(" Loja Centro "));
        assert_eq!(
            pushed_name(v.get("d")).map(|n| n.chars().count()),
            Some(128)
        );
        for none in ["b", "c", "e", "f"] {
            assert_eq!(pushed_name(v.get(none)), None, "{none}");
        }
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

/// The longest instance name a push is routed by, in bytes: a listed name has at most
/// [`crate::config::MAX_INSTANCE_NAME`] characters of at most 4 bytes each.
pub const MAX_PUSHED_NAME: usize = 4 * crate::config::MAX_INSTANCE_NAME;

/// The instance or session a push names, exactly as the server spells it (spaces and accents
/// included, nothing trimmed: the listing's name is matched as it is), when it is a string short
/// enough to be a listed name.
pub fn pushed_name(v: Option<&serde_json::Value>) -> Option<String> {
    let s = v?.as_str()?;
    (!s.is_empty() && s.len() <= MAX_PUSHED_NAME).then(|| s.to_string())
}
