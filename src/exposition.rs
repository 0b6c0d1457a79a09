//! The Prometheus text format for everything labelled by gateway.
//!
//! Each gateway renders its own series once, when its state changes (after a poll, or when its
//! notification queue delivers), into a [`Fragment`] that keeps the lines of each metric family
//! apart. A scrape then only concatenates fragments family by family: its cost does not grow with
//! the work of building metric objects, which matters at 10,000 gateways.

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

macro_rules! families {
    ($($variant:ident => $name:literal, $kind:ident, $help:literal;)*) => {
        /// Every metric family that carries the `gateway` label, in the order they are exposed.
        /// This list is the metric reference: the README's table is checked against it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Family { $($variant),* }

        impl Family {
            pub const ALL: &'static [Family] = &[$(Family::$variant),*];
            pub const COUNT: usize = Family::ALL.len();

            pub fn name(self) -> &'static str {
                match self { $(Family::$variant => $name),* }
            }
            pub fn kind(self) -> Kind {
                match self { $(Family::$variant => Kind::$kind),* }
            }
            pub fn help(self) -> &'static str {
                match self { $(Family::$variant => $help),* }
            }
        }
    };
}

families! {
    Up => "whatsapp_up", Gauge, "1 if the last poll got a valid answer from the gateway API, else 0.";
    Connected => "whatsapp_connected", Gauge, "1 if the WhatsApp number is connected; absent while whatsapp_up is 0.";
    ConnectedChanges => "whatsapp_connected_changes_total", Counter, "Times whatsapp_connected changed value.";
    PollDuration => "whatsapp_poll_duration_seconds", Gauge, "How long the last poll took.";
    LastSuccess => "whatsapp_last_success_timestamp_seconds", Gauge, "Unix time of the last successful poll.";
    Polls => "whatsapp_polls_total", Counter, "Polls made.";
    PollFailures => "whatsapp_poll_failures_total", Counter, "Failed polls by reason.";
    SessionActive => "whatsapp_session_active", Gauge, "PlugzAPI/Z-API: 1 if the instance has an active WhatsApp session.";
    PhoneConnected => "whatsapp_phone_connected", Gauge, "PlugzAPI/Z-API: 1 if the phone is connected to the internet.";
    StatusError => "whatsapp_status_error", Gauge, "PlugzAPI/Z-API: the error the status call reports, as a state set.";
    WabaSocketState => "whatsapp_waba_socket_state", Gauge, "WhatsApp Business API: socket_conn of each node, as a state set.";
    WabaGatewayStatus => "whatsapp_waba_gateway_status", Gauge, "WhatsApp Business API: gateway_status from /v1/health, as a state set.";
    WabaFreeSpace => "whatsapp_waba_free_space_bytes", Gauge, "WhatsApp Business API: bytes free on each volume.";
    WabaBuildExpiry => "whatsapp_waba_build_expiry_timestamp_seconds", Gauge, "WhatsApp Business API: when the client build expires (Unix time).";
    WabaBuildInfo => "whatsapp_waba_build_info", Gauge, "WhatsApp Business API: build information, value 1.";
    WabaNodeInfo => "whatsapp_waba_node_info", Gauge, "WhatsApp Business API: multi-connect node and its role, value 1.";
    WabaShards => "whatsapp_waba_shards", Gauge, "WhatsApp Business API: shards the node owns.";
    WabaTokenExpiry => "whatsapp_waba_token_expiry_timestamp_seconds", Gauge, "WhatsApp Business API: when the login token expires (Unix time).";
    GreenApiState => "whatsapp_greenapi_state", Gauge, "Green API: stateInstance, as a state set.";
    GreenApiNotifications => "whatsapp_greenapi_notifications_total", Counter, "Green API: notifications consumed from the queue, by webhook type.";
    GreenApiMessageStatus => "whatsapp_greenapi_message_status_total", Counter, "Green API: outgoingMessageStatus notifications by status.";
    GreenApiNotificationDelay => "whatsapp_greenapi_notification_delay_seconds", Histogram, "Green API: receipt time minus the notification's timestamp.";
    CloudApiQualityRating => "whatsapp_cloudapi_quality_rating", Gauge, "Cloud API: the number's quality rating, as a state set.";
    CloudApiCanSendMessage => "whatsapp_cloudapi_can_send_message", Gauge, "Cloud API: health_status can_send_message per entity, as a state set.";
    CloudApiMessagingLimit => "whatsapp_cloudapi_messaging_limit", Gauge, "Cloud API: the messaging limit as a number of unique users per 24 hours (+Inf when unlimited).";
    CloudApiThroughputLevel => "whatsapp_cloudapi_throughput_level", Gauge, "Cloud API: the throughput level, as a state set.";
    CloudApiHealthError => "whatsapp_cloudapi_health_error", Gauge, "Cloud API: 1 for each health_status error that stands, by entity and error code.";
    CloudApiNameStatus => "whatsapp_cloudapi_name_status", Gauge, "Cloud API: the display name's review status, as a state set.";
    CloudApiStatus => "whatsapp_cloudapi_status", Gauge, "Cloud API: the phone number's status (CONNECTED, FLAGGED, RESTRICTED...), as a state set.";
}

/// The series of one gateway, rendered, with each family's lines kept apart.
#[derive(Debug, Default)]
pub struct Fragment {
    text: String,
    /// `text[ends[f-1]..ends[f]]` holds the lines of family `f`.
    ends: Vec<u32>,
}

impl Fragment {
    /// The lines of one family, empty when the gateway has none.
    pub fn family(&self, f: Family) -> &str {
        let i = f as usize;
        let (Some(&end), start) = (
            self.ends.get(i),
            i.checked_sub(1).and_then(|p| self.ends.get(p)),
        ) else {
            return "";
        };
        &self.text[start.copied().unwrap_or(0) as usize..end as usize]
    }

    pub fn text_len(&self) -> usize {
        self.text.len()
    }
}

/// Writes the samples of one gateway; the common labels are escaped once.
pub struct FragmentWriter {
    base_labels: String,
    lines: Vec<String>,
}

impl FragmentWriter {
    pub fn new(labels: &[(&str, &str)]) -> Self {
        let mut base_labels = String::new();
        write_labels(&mut base_labels, labels);
        FragmentWriter {
            base_labels,
            lines: vec![String::new(); Family::COUNT],
        }
    }

    /// One sample; `labels` come after the common ones.
    pub fn sample(&mut self, f: Family, labels: &[(&str, &str)], value: f64) {
        let (base, out) = (&self.base_labels, &mut self.lines[f as usize]);
        write_sample(out, f.name(), "", base, labels, value);
    }

    pub fn gauge_bool(&mut self, f: Family, labels: &[(&str, &str)], value: bool) {
        self.sample(f, labels, if value { 1.0 } else { 0.0 });
    }

    /// A state set: one series per state, 1 for the current one.
    pub fn state_set(
        &mut self,
        f: Family,
        extra: &[(&str, &str)],
        key: &str,
        states: &[&str],
        current: &str,
    ) {
        let mut labels: Vec<(&str, &str)> = Vec::with_capacity(extra.len() + 1);
        labels.extend_from_slice(extra);
        labels.push((key, ""));
        for s in states {
            if let Some(last) = labels.last_mut() {
                *last = (key, s);
            }
            self.gauge_bool(f, &labels, *s == current);
        }
    }

    pub fn histogram(&mut self, f: Family, labels: &[(&str, &str)], h: &Histogram) {
        let (base, out) = (&self.base_labels, &mut self.lines[f as usize]);
        let mut cumulative = 0u64;
        for (i, bound) in h.bounds.iter().enumerate() {
            cumulative += h.counts[i];
            let mut le = String::new();
            write_value(&mut le, *bound);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            write_sample(out, f.name(), "_bucket", base, &with_le, cumulative as f64);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        write_sample(out, f.name(), "_bucket", base, &with_le, h.count as f64);
        write_sample(out, f.name(), "_sum", base, labels, h.sum);
        write_sample(out, f.name(), "_count", base, labels, h.count as f64);
    }

    pub fn finish(self) -> Fragment {
        let mut text = String::with_capacity(self.lines.iter().map(String::len).sum());
        let mut ends = Vec::with_capacity(Family::COUNT);
        for l in &self.lines {
            text.push_str(l);
            // A fragment is a few KiB at most, far below u32::MAX.
            ends.push(text.len() as u32);
        }
        Fragment { text, ends }
    }
}

/// Appends the families of many fragments to `out`, each family under one HELP/TYPE header.
///
/// `out` may be a gzip encoder: the text is then compressed as it is written, and the whole
/// uncompressed page never sits in memory.
pub fn render<'a, W: std::io::Write>(
    out: &mut W,
    fragments: impl Iterator<Item = &'a Fragment> + Clone,
) -> std::io::Result<()> {
    for &f in Family::ALL {
        let mut header = false;
        for frag in fragments.clone() {
            let lines = frag.family(f);
            if lines.is_empty() {
                continue;
            }
            if !header {
                header = true;
                writeln!(out, "# HELP {} {}", f.name(), f.help())?;
                writeln!(out, "# TYPE {} {}", f.name(), f.kind().as_str())?;
            }
            out.write_all(lines.as_bytes())?;
        }
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
    base: &str,
    labels: &[(&str, &str)],
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    out.push('{');
    out.push_str(base);
    if !labels.is_empty() {
        if !base.is_empty() {
            out.push(',');
        }
        write_labels(out, labels);
    }
    out.push_str("} ");
    write_value(out, value);
    out.push('\n');
}

fn write_labels(out: &mut String, labels: &[(&str, &str)]) {
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(out, v);
        out.push('"');
    }
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

    #[test]
    fn families_render_grouped_with_one_header() {
        let mut a = FragmentWriter::new(&[("gateway", "a"), ("provider", "plugzapi")]);
        a.sample(Family::Up, &[], 1.0);
        a.state_set(
            Family::StatusError,
            &[],
            "error",
            &["none", "other"],
            "none",
        );
        let mut b = FragmentWriter::new(&[("gateway", "b\"x"), ("provider", "zapi")]);
        b.sample(Family::Up, &[], 0.0);
        let (a, b) = (a.finish(), b.finish());
        let mut out = Vec::new();
        render(&mut out, [&a, &b].into_iter()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "# HELP whatsapp_up 1 if the last poll got a valid answer from the gateway API, else 0.\n\
             # TYPE whatsapp_up gauge\n\
             whatsapp_up{gateway=\"a\",provider=\"plugzapi\"} 1\n\
             whatsapp_up{gateway=\"b\\\"x\",provider=\"zapi\"} 0\n\
             # HELP whatsapp_status_error PlugzAPI/Z-API: the error the status call reports, as a state set.\n\
             # TYPE whatsapp_status_error gauge\n\
             whatsapp_status_error{gateway=\"a\",provider=\"plugzapi\",error=\"none\"} 1\n\
             whatsapp_status_error{gateway=\"a\",provider=\"plugzapi\",error=\"other\"} 0\n"
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
        let mut w = FragmentWriter::new(&[("gateway", "g")]);
        w.histogram(Family::GreenApiNotificationDelay, &[], &h);
        let f = w.finish();
        assert_eq!(
            f.family(Family::GreenApiNotificationDelay),
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
