//! The exporter's own metrics, in a registry this struct owns (no globals), and the rendering of
//! `/metrics`: the gateway fragments first, then the registry.

use prometheus::{Encoder, Gauge, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::exposition::{self, FamilyDef, Fragment};

pub struct Metrics {
    pub registry: Registry,
    /// The providers' metric families, in the order they are exposed.
    family_sets: Vec<&'static [FamilyDef]>,
    pub reload_successful: IntGauge,
    pub reload_success_timestamp: Gauge,
    /// Follows `logging::lines_dropped` at every scrape.
    log_lines_dropped: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new(
                "whatsapp_exporter_build_info",
                "Build information of whatsapp_exporter, value 1.",
            ),
            &["version", "revision", "rustc_version"],
        )?;
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                env!("WHATSAPP_EXPORTER_REVISION"),
                env!("WHATSAPP_EXPORTER_RUSTC"),
            ])
            .set(1);
        let reload_successful = IntGauge::new(
            "whatsapp_exporter_config_last_reload_successful",
            "1 if the last configuration load succeeded.",
        )?;
        let reload_success_timestamp = Gauge::new(
            "whatsapp_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.",
        )?;
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(reload_successful.clone()))?;
        registry.register(Box::new(reload_success_timestamp.clone()))?;
        let log_lines_dropped = IntCounter::new(
            "whatsapp_exporter_log_lines_dropped_total",
            "Log lines not written because their call site repeated too fast (a flood of refused webhooks, failed accepts).",
        )?;
        registry.register(Box::new(log_lines_dropped.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            family_sets: crate::providers::family_sets(),
            reload_successful,
            reload_success_timestamp,
            log_lines_dropped,
        })
    }

    /// The whole `/metrics` text.
    /// The whole `/metrics` body, gzip-compressed while it is written when `gzip` is set.
    pub fn render(&self, fragments: &[std::sync::Arc<Fragment>], gzip: bool) -> Vec<u8> {
        let size: usize = fragments.iter().map(|f| f.text_len()).sum::<usize>() + 16 * 1024;
        let result = if gzip {
            // Metric text compresses about tenfold; the fast level keeps a 10,000-gateway page
            // within a few tens of milliseconds.
            let enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(size / 8),
                flate2::Compression::fast(),
            );
            // The encoder works best on large blocks; fragments come in pieces of a few lines.
            let mut buf = std::io::BufWriter::with_capacity(256 * 1024, enc);
            self.render_into(&mut buf, fragments)
                .and_then(|()| buf.into_inner().map_err(|e| e.into_error()))
                .and_then(|enc| enc.finish())
        } else {
            let mut out = Vec::with_capacity(size);
            self.render_into(&mut out, fragments).map(|()| out)
        };
        // Writing into memory fails only if allocation does, which aborts first.
        result.unwrap_or_default()
    }

    fn render_into<W: std::io::Write>(
        &self,
        out: &mut W,
        fragments: &[std::sync::Arc<Fragment>],
    ) -> std::io::Result<()> {
        exposition::render(out, &self.family_sets, fragments.iter().map(|f| &**f))?;
        out.write_all(self.render_registry().as_bytes())
    }

    pub fn render_registry(&self) -> String {
        let dropped = crate::logging::lines_dropped();
        let counted = self.log_lines_dropped.get();
        if dropped > counted {
            self.log_lines_dropped.inc_by(dropped - counted);
        }
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for I/O, and the metric families are well formed.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode the exporter's own metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
