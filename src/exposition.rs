//! The Prometheus text format for everything labelled by gateway.
//!
//! Each gateway renders its own series once, when its state changes (after a poll, or when its
//! notification queue delivers), into a [`Fragment`] that keeps the lines of each metric family
//! apart. A scrape then only concatenates fragments family by family: its cost does not grow with
//! the work of building metric objects, which matters at 10,000 gateways.

use std::cell::RefCell;
use std::fmt::Write as _;

/// A metric type in the text format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family: its name, type and help, as the text format heads it.
#[derive(Debug, PartialEq, Eq)]
pub struct FamilyDef {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

/// A family as a writer addresses it: the set it belongs to and its place there.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    set: &'static [FamilyDef],
    index: usize,
}

impl Slot {
    pub const fn new(set: &'static [FamilyDef], index: usize) -> Self {
        Slot { set, index }
    }

    pub fn def(self) -> &'static FamilyDef {
        &self.set[self.index]
    }
}

/// Declares a set of metric families: an enum to address them and a `static` list of their
/// definitions, in the order they are exposed.
///
/// The common families are declared here; each provider declares its own in its folder, and
/// `providers::FAMILY_SETS` lists them in provider order.
macro_rules! families {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident in $set:ident {
            $($variant:ident => $metric:literal, $kind:ident, $help:literal;)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name { $($variant),* }

        /// The definitions of the families, in the order of the enum.
        $vis static $set: [$crate::exposition::FamilyDef; [$($name::$variant),*].len()] = [$(
            $crate::exposition::FamilyDef {
                name: $metric,
                kind: $crate::exposition::Kind::$kind,
                help: $help,
            }
        ),*];

        impl $name {
            #[allow(dead_code)]
            pub fn name(self) -> &'static str {
                $set[self as usize].name
            }
        }

        impl From<$name> for $crate::exposition::Slot {
            fn from(f: $name) -> Self {
                $crate::exposition::Slot::new(&$set, f as usize)
            }
        }
    };
}

pub(crate) use families;

families! {
    /// The families every polled gateway has.
    pub enum Family in COMMON {
        Up => "whatsapp_up", Gauge, "1 if the last poll got a valid answer from the gateway API, else 0.";
        Connected => "whatsapp_connected", Gauge, "1 if the WhatsApp number is connected; absent while whatsapp_up is 0.";
        ConnectedChanges => "whatsapp_connected_changes_total", Counter, "Times whatsapp_connected changed value.";
        PollDuration => "whatsapp_poll_duration_seconds", Gauge, "How long the last poll took.";
        LastSuccess => "whatsapp_last_success_timestamp_seconds", Gauge, "Unix time of the last successful poll.";
        Polls => "whatsapp_polls_total", Counter, "Polls made.";
        PollFailures => "whatsapp_poll_failures_total", Counter, "Failed polls by reason.";
        LastPollError => "whatsapp_last_poll_error_info", Gauge, "1 while whatsapp_up is 0, with the reason of the last failed poll, or not_polled_yet before the first poll.";
        NextPoll => "whatsapp_next_poll_timestamp_seconds", Gauge, "Unix time the background schedule polls the gateway next; in the past, the poll is overdue.";
        RetryAfter => "whatsapp_retry_after_timestamp_seconds", Gauge, "Unix time before which the gateway asked (Retry-After) not to be called; no call is made before it.";
        DiscoveredInstances => "whatsapp_discovered_instances", Gauge, "Instances of the server that are exported as gateways <server>/<instance>; absent while whatsapp_up is 0.";
        DiscoveryOverflow => "whatsapp_discovery_overflow_total", Counter, "Instances of the server left out by max_instances, added at every poll.";
        DiscoverySkipped => "whatsapp_discovery_skipped_instances", Gauge, "Instances of the server left out because their name cannot stand in a label; absent while whatsapp_up is 0.";
        WebhookEvents => "whatsapp_webhook_events_total", Counter, "Accepted webhook events by event, the provider's own names (other: names not known; unparsed: entries that could not be read).";
        WebhookRejected => "whatsapp_webhook_rejected_total", Counter, "Refused webhooks by reason.";
        WebhookLastEvent => "whatsapp_webhook_last_event_timestamp_seconds", Gauge, "Arrival time of the latest accepted webhook event.";
        WebhookLag => "whatsapp_webhook_lag_seconds", Histogram, "Arrival time minus the provider's own timestamp of the event.";
        WebhookDuplicates => "whatsapp_webhook_duplicates_total", Counter, "Webhook events dropped uncounted as repeats of one that came lately (a provider's retry or a replay), known by the provider's own event or message id.";
        WebhookTimestampRejected => "whatsapp_webhook_timestamp_rejected_total", Counter, "Accepted webhook events whose own timestamp was not believed (over 8 days old or over 5 minutes ahead): counted, but not as lag, delivery time or last event time.";
        MessageStatuses => "whatsapp_message_status_total", Counter, "Outgoing message statuses pushed, by status.";
        MessagesReceived => "whatsapp_messages_received_total", Counter, "Incoming messages pushed.";
        MessageErrors => "whatsapp_message_errors_total", Counter, "Send and delivery errors by code (known codes of the provider, else other).";
        MessageDelivery => "whatsapp_message_delivery_seconds", Histogram, "Time from sent to delivered (or read, when no delivered came) of the same message.";
        TrackingEvictions => "whatsapp_message_tracking_evictions_total", Counter, "Message ids dropped from sent-to-delivered tracking, the table being full or the id too old.";
        CloudQualityEvents => "whatsapp_cloudapi_quality_events_total", Counter, "Cloud API: phone_number_quality_update webhooks by event.";
        CloudAccountEvents => "whatsapp_cloudapi_account_events_total", Counter, "Cloud API: account_update webhooks by event.";
        CloudTemplateEvents => "whatsapp_cloudapi_template_events_total", Counter, "Cloud API: message_template_status_update webhooks by event.";
        Disconnects => "whatsapp_disconnects_total", Counter, "Disconnections of the number pushed by the provider, by reason code (Evolution API: the Baileys status code; WAHA: FAILED).";
        NumberState => "whatsapp_number_state", Gauge, "Is this number working: 1 for its state (working, connected, restricted, zombie, disconnected, unknown), shown once it has held for global.number_state.for.";
        NumberProblem => "whatsapp_number_problem", Gauge, "1 for each problem of the number that stands now, by problem.";
        NumberStateChanges => "whatsapp_number_state_changes_total", Counter, "Times the shown number state changed.";
        MessagesUnacknowledged => "whatsapp_messages_unacknowledged", Gauge, "Tracked sent messages older than acks_stuck_after with no delivered, read or failed status.";
    }
}

/// The label that ties a discovered instance's series to the server gateway that found it.
pub const SERVER_LABEL: &str = "server";

/// The series of one gateway, rendered, with each family's lines kept apart.
#[derive(Debug, Default)]
pub struct Fragment {
    text: String,
    /// The provider's own families, after the common ones.
    own: &'static [FamilyDef],
    /// `text[ends[i-1]..ends[i]]` holds the lines of family `i` (common first, then own).
    ends: Vec<u32>,
}

impl Fragment {
    /// The lines of family `i` of the common set followed by this fragment's own set.
    fn lines(&self, i: usize) -> &str {
        let (Some(&end), start) = (
            self.ends.get(i),
            i.checked_sub(1).and_then(|p| self.ends.get(p)),
        ) else {
            return "";
        };
        &self.text[start.copied().unwrap_or(0) as usize..end as usize]
    }

    /// The lines of one family, empty when the gateway has none.
    pub fn family(&self, f: impl Into<Slot>) -> &str {
        let slot = f.into();
        if std::ptr::eq(slot.set, &COMMON[..]) {
            self.lines(slot.index)
        } else if std::ptr::eq(slot.set, self.own) {
            self.lines(COMMON.len() + slot.index)
        } else {
            ""
        }
    }

    pub fn text_len(&self) -> usize {
        self.text.len()
    }
}

/// The common labels of a writer, escaped, and its scrubber for the others.
#[derive(Clone, Copy)]
struct Labels<'a> {
    base: &'a str,
    scrub: Option<&'a crate::secret::Scrubber>,
}

thread_local! {
    /// The line buffers of finished writers, for the next ones on the thread: a poll writes its
    /// gateway's series into a few dozen growing strings, and allocating them afresh at every
    /// poll fragmented the heap (several MiB of RSS at 10,000 gateways) and cost time.
    static SPARE_LINES: RefCell<Vec<Vec<String>>> = const { RefCell::new(Vec::new()) };
}

/// Sets of line buffers kept per thread, and the largest buffer kept (a server's listing may
/// write a large fragment once; its buffer is not held for ever).
const SPARE_SETS: usize = 4;
const SPARE_CAPACITY: usize = 16 * 1024;

fn take_lines(n: usize) -> Vec<String> {
    let mut lines = SPARE_LINES
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_default();
    lines.resize_with(n, String::new);
    lines
}

fn give_back(mut lines: Vec<String>) {
    for l in &mut lines {
        if l.capacity() > SPARE_CAPACITY {
            *l = String::new();
        }
        l.clear();
    }
    SPARE_LINES.with(|s| {
        let mut spare = s.borrow_mut();
        if spare.len() < SPARE_SETS {
            spare.push(lines);
        }
    });
}

/// Writes the samples of one gateway; the common labels are escaped once. A server gateway writes
/// the series of its discovered instances under their own labels with [`FragmentWriter::scoped`].
pub struct FragmentWriter {
    base_labels: String,
    own: &'static [FamilyDef],
    lines: Vec<String>,
    /// Applied to every label value but the common ones: values from a gateway's answers may
    /// echo its secrets.
    scrub: Option<std::sync::Arc<crate::secret::Scrubber>>,
}

impl FragmentWriter {
    /// A writer for the common families and the provider's own set `own`.
    pub fn new(labels: &[(&str, &str)], own: &'static [FamilyDef]) -> Self {
        Self::with_escaped(escaped_labels(labels), own)
    }

    /// [`FragmentWriter::new`] with labels escaped before, by [`escaped_labels`].
    pub fn with_escaped(base_labels: String, own: &'static [FamilyDef]) -> Self {
        FragmentWriter {
            base_labels,
            own,
            lines: take_lines(COMMON.len() + own.len()),
            scrub: None,
        }
    }

    /// Removes pieces of secrets from every label value written from now on.
    pub fn scrub_labels(mut self, scrub: std::sync::Arc<crate::secret::Scrubber>) -> Self {
        if !scrub.is_empty() {
            self.scrub = Some(scrub);
        }
        self
    }

    /// Runs `f` with `labels` in place of the writer's common labels: a server gateway writes each
    /// discovered instance's series, whose `gateway` label is `<server>/<instance>`, into its own
    /// fragment, in the same families. The labels are escaped once for all the samples of `f`.
    pub fn scoped<R>(&mut self, labels: &[(&str, &str)], f: impl FnOnce(&mut Self) -> R) -> R {
        let mut scoped = String::new();
        write_labels(&mut scoped, labels);
        let common = std::mem::replace(&mut self.base_labels, scoped);
        let r = f(self);
        self.base_labels = common;
        r
    }

    /// Where the lines of a family go; `None` for a family of another provider's set, which a
    /// provider has no business writing (debug builds stop there).
    fn target(&mut self, slot: Slot) -> Option<(Labels<'_>, &mut String)> {
        let i = if std::ptr::eq(slot.set, &COMMON[..]) {
            slot.index
        } else if std::ptr::eq(slot.set, self.own) {
            COMMON.len() + slot.index
        } else {
            debug_assert!(false, "{} is not in this writer's sets", slot.def().name);
            return None;
        };
        let base = Labels {
            base: &self.base_labels,
            scrub: self.scrub.as_deref(),
        };
        Some((base, self.lines.get_mut(i)?))
    }

    /// One sample; `labels` come after the common ones.
    pub fn sample(&mut self, f: impl Into<Slot>, labels: &[(&str, &str)], value: f64) {
        let slot = f.into();
        if let Some((base, out)) = self.target(slot) {
            write_sample(out, slot.def().name, "", base, labels, value);
        }
    }

    pub fn gauge_bool(&mut self, f: impl Into<Slot>, labels: &[(&str, &str)], value: bool) {
        self.sample(f, labels, if value { 1.0 } else { 0.0 });
    }

    /// A state set over a closed set of labels: one series per value, 1 for `current`.
    pub fn states<S: crate::labels::LabelSet>(
        &mut self,
        f: impl Into<Slot>,
        extra: &[(&str, &str)],
        key: &str,
        current: S,
    ) {
        self.state_set(f, extra, key, S::LABELS, current.as_str());
    }

    /// A state set: one series per state, 1 for the current one.
    pub fn state_set(
        &mut self,
        f: impl Into<Slot>,
        extra: &[(&str, &str)],
        key: &str,
        states: &[&str],
        current: &str,
    ) {
        let mut labels: Vec<(&str, &str)> = Vec::with_capacity(extra.len() + 1);
        labels.extend_from_slice(extra);
        labels.push((key, ""));
        let f = f.into();
        for s in states {
            if let Some(last) = labels.last_mut() {
                *last = (key, s);
            }
            self.gauge_bool(f, &labels, *s == current);
        }
    }

    pub fn histogram(&mut self, f: impl Into<Slot>, labels: &[(&str, &str)], h: &Histogram) {
        let slot = f.into();
        let name = slot.def().name;
        let Some((base, out)) = self.target(slot) else {
            return;
        };
        let mut cumulative = 0u64;
        for (i, bound) in h.bounds.iter().enumerate() {
            cumulative += h.counts[i];
            let mut le = String::new();
            write_value(&mut le, *bound);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            write_sample(out, name, "_bucket", base, &with_le, cumulative as f64);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        write_sample(out, name, "_bucket", base, &with_le, h.count as f64);
        write_sample(out, name, "_sum", base, labels, h.sum);
        write_sample(out, name, "_count", base, labels, h.count as f64);
    }

    pub fn finish(mut self) -> Fragment {
        let lines = std::mem::take(&mut self.lines);
        let mut text = String::with_capacity(lines.iter().map(String::len).sum());
        let mut ends = Vec::with_capacity(lines.len());
        for l in &lines {
            text.push_str(l);
            // A fragment is a few KiB, or about 1 KiB per discovered instance of a server (at most
            // 100,000 of them): far below u32::MAX.
            ends.push(text.len() as u32);
        }
        give_back(lines);
        Fragment {
            text,
            own: self.own,
            ends,
        }
    }
}

impl Drop for FragmentWriter {
    fn drop(&mut self) {
        if !self.lines.is_empty() {
            give_back(std::mem::take(&mut self.lines));
        }
    }
}

/// Appends the families of many fragments to `out`, each family under one HELP/TYPE header:
/// the common families first, then each provider set of `sets` in turn.
///
/// `out` may be a gzip encoder: the text is then compressed as it is written, and the whole
/// uncompressed page never sits in memory.
pub fn render<'a, W: std::io::Write>(
    out: &mut W,
    sets: &[&'static [FamilyDef]],
    fragments: impl Iterator<Item = &'a Fragment> + Clone,
) -> std::io::Result<()> {
    for (i, def) in COMMON.iter().enumerate() {
        let lines = fragments.clone().map(|f| f.lines(i));
        write_family(out, def, lines)?;
    }
    for &set in sets {
        for (i, def) in set.iter().enumerate() {
            let lines = fragments
                .clone()
                .filter(|f| std::ptr::eq(f.own, set))
                .map(|f| f.lines(COMMON.len() + i));
            write_family(out, def, lines)?;
        }
    }
    Ok(())
}

/// One family's lines under its header; nothing at all when no gateway has any.
fn write_family<'a, W: std::io::Write>(
    out: &mut W,
    def: &FamilyDef,
    lines: impl Iterator<Item = &'a str>,
) -> std::io::Result<()> {
    let mut header = false;
    for l in lines.filter(|l| !l.is_empty()) {
        if !header {
            header = true;
            writeln!(out, "# HELP {} {}", def.name, def.help)?;
            writeln!(out, "# TYPE {} {}", def.name, def.kind.as_str())?;
        }
        out.write_all(l.as_bytes())?;
    }
    Ok(())
}

/// A histogram kept by hand, for the series rendered here.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    base: Labels<'_>,
    labels: &[(&str, &str)],
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    out.push('{');
    out.push_str(base.base);
    if !labels.is_empty() {
        if !base.base.is_empty() {
            out.push(',');
        }
        match base.scrub {
            None => write_labels(out, labels),
            Some(scrub) => {
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_label(out, k, &scrub.scrub(v));
                }
            }
        }
    }
    out.push_str("} ");
    write_value(out, value);
    out.push('\n');
}

/// Labels as a writer puts them in every series, for a writer made later
/// ([`FragmentWriter::with_escaped`]).
pub fn escaped_labels(labels: &[(&str, &str)]) -> String {
    let mut out = String::new();
    write_labels(&mut out, labels);
    out
}

fn write_labels(out: &mut String, labels: &[(&str, &str)]) {
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_label(out, k, v);
    }
}

fn write_label(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    escape_label_value(out, value);
    out.push('"');
}

/// Escapes a label value as the text format requires.
pub fn escape_label_value(out: &mut String, v: &str) {
    if !v.contains(['\\', '"', '\n']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes a float as Prometheus parses it (`+Inf`, `-Inf`, `NaN`, plain decimals otherwise).
pub fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    families! {
        enum Own in OWN {
            StatusError => "whatsapp_status_error", Gauge, "PlugzAPI/Z-API: the error the status call reports, as a state set.";
        }
    }
    families! {
        enum Other in OTHER {
            Unrelated => "whatsapp_unrelated", Gauge, "Another provider's family.";
        }
    }
    families! {
        enum Delay in DELAY {
            NotificationDelay => "whatsapp_greenapi_notification_delay_seconds", Histogram, "Delay.";
        }
    }

    #[test]
    fn families_render_grouped_with_one_header() {
        let mut a = FragmentWriter::new(&[("gateway", "a"), ("provider", "plugzapi")], &OWN);
        a.sample(Family::Up, &[], 1.0);
        a.state_set(Own::StatusError, &[], "error", &["none", "other"], "none");
        let mut b = FragmentWriter::new(&[("gateway", "b\"x"), ("provider", "zapi")], &OTHER);
        b.sample(Family::Up, &[], 0.0);
        b.sample(Other::Unrelated, &[], 2.0);
        let (a, b) = (a.finish(), b.finish());
        let mut out = Vec::new();
        render(&mut out, &[&OWN, &OTHER], [&a, &b].into_iter()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "# HELP whatsapp_up 1 if the last poll got a valid answer from the gateway API, else 0.\n\
             # TYPE whatsapp_up gauge\n\
             whatsapp_up{gateway=\"a\",provider=\"plugzapi\"} 1\n\
             whatsapp_up{gateway=\"b\\\"x\",provider=\"zapi\"} 0\n\
             # HELP whatsapp_status_error PlugzAPI/Z-API: the error the status call reports, as a state set.\n\
             # TYPE whatsapp_status_error gauge\n\
             whatsapp_status_error{gateway=\"a\",provider=\"plugzapi\",error=\"none\"} 1\n\
             whatsapp_status_error{gateway=\"a\",provider=\"plugzapi\",error=\"other\"} 0\n\
             # HELP whatsapp_unrelated Another provider's family.\n\
             # TYPE whatsapp_unrelated gauge\n\
             whatsapp_unrelated{gateway=\"b\\\"x\",provider=\"zapi\"} 2\n"
        );
        assert_eq!(
            a.family(Other::Unrelated),
            "",
            "a family of another set is not there"
        );
    }

    #[test]
    fn scoped_samples_carry_their_own_labels() {
        let mut w = FragmentWriter::new(&[("gateway", "evo"), ("provider", "evolution")], &OWN);
        w.sample(Family::Up, &[], 1.0);
        w.scoped(
            &[
                ("gateway", "evo/sales"),
                ("provider", "evolution"),
                ("server", "evo"),
            ],
            |w| {
                w.gauge_bool(Family::Connected, &[], true);
                w.state_set(Own::StatusError, &[], "error", &["none"], "none");
            },
        );
        w.sample(Family::Polls, &[], 3.0);
        let f = w.finish();
        assert_eq!(
            f.family(Family::Up),
            "whatsapp_up{gateway=\"evo\",provider=\"evolution\"} 1\n"
        );
        assert_eq!(
            f.family(Family::Connected),
            "whatsapp_connected{gateway=\"evo/sales\",provider=\"evolution\",server=\"evo\"} 1\n"
        );
        assert_eq!(
            f.family(Own::StatusError),
            "whatsapp_status_error{gateway=\"evo/sales\",provider=\"evolution\",server=\"evo\",error=\"none\"} 1\n"
        );
        assert_eq!(
            f.family(Family::Polls),
            "whatsapp_polls_total{gateway=\"evo\",provider=\"evolution\"} 3\n",
            "the common labels are back after the scope"
        );
    }

    #[test]
    fn values_are_written_as_prometheus_reads_them() {
        let mut s = String::new();
        for v in [
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            0.25,
            9223372036853727000.0,
            3.0,
        ] {
            write_value(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "+Inf -Inf NaN 0.25 9223372036853727000 3 ");
    }

    #[test]
    fn histogram_is_cumulative() {
        static B: [f64; 2] = [1.0, 10.0];
        let mut h = Histogram::new(&B);
        for v in [0.5, 2.0, 20.0] {
            h.observe(v);
        }
        let mut w = FragmentWriter::new(&[("gateway", "g")], &DELAY);
        w.histogram(Delay::NotificationDelay, &[], &h);
        let f = w.finish();
        assert_eq!(
            f.family(Delay::NotificationDelay),
            "whatsapp_greenapi_notification_delay_seconds_bucket{gateway=\"g\",le=\"1\"} 1\n\
             whatsapp_greenapi_notification_delay_seconds_bucket{gateway=\"g\",le=\"10\"} 2\n\
             whatsapp_greenapi_notification_delay_seconds_bucket{gateway=\"g\",le=\"+Inf\"} 3\n\
             whatsapp_greenapi_notification_delay_seconds_sum{gateway=\"g\"} 22.5\n\
             whatsapp_greenapi_notification_delay_seconds_count{gateway=\"g\"} 3\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        escape_label_value(&mut s, "a\\b\"c\nd");
        assert_eq!(s, "a\\\\b\\\"c\\nd");
    }
}
