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
            // The labels Prometheus's own exporters carry (`goversion` becomes `rustversion`).
            &["version", "revision", "branch", "rustversion"],
        )?;
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                env!("WHATSAPP_EXPORTER_REVISION"),
                env!("WHATSAPP_EXPORTER_BRANCH"),
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
        registry.register(Box::new(process::Process::new()?))?;
        Ok(Metrics {
            registry,
            family_sets: {
                let mut sets = crate::providers::family_sets();
                sets.push(&crate::canary::FAMILIES);
                sets
            },
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

/// The `process_*` metrics, with `process_cpu_seconds_total` to the microsecond: the prometheus
/// crate counts it in whole seconds (rust-prometheus #451), which `rate()` over a minute reads as
/// 0 or 1.7 % for an exporter that idles at a few milliseconds a minute.
#[cfg(target_os = "linux")]
mod process {
    use prometheus::core::{Collector, Desc};
    use prometheus::process_collector::ProcessCollector;
    use prometheus::proto::MetricFamily;
    use prometheus::Counter;

    const CPU: &str = "process_cpu_seconds_total";

    pub struct Process {
        inner: ProcessCollector,
        cpu: Counter,
        descs: Vec<Desc>,
    }

    impl Process {
        pub fn new() -> Result<Self, prometheus::Error> {
            let inner = ProcessCollector::for_self();
            let cpu = Counter::new(CPU, "Total user and system CPU time spent in seconds.")?;
            let descs = inner
                .desc()
                .into_iter()
                .filter(|d| d.fq_name != CPU)
                .chain(cpu.desc())
                .cloned()
                .collect();
            Ok(Process { inner, cpu, descs })
        }
    }

    impl Collector for Process {
        fn desc(&self) -> Vec<&Desc> {
            self.descs.iter().collect()
        }

        fn collect(&self) -> Vec<MetricFamily> {
            if let Some(total) = cpu_seconds() {
                // A counter only goes up; two scrapes at once both add what is new.
                let delta = total - self.cpu.get();
                if delta > 0.0 {
                    self.cpu.inc_by(delta);
                }
            }
            let mut families: Vec<MetricFamily> = self
                .inner
                .collect()
                .into_iter()
                .filter(|f| f.name() != CPU)
                .collect();
            families.extend(self.cpu.collect());
            families
        }
    }

    /// User plus system time of the whole process.
    fn cpu_seconds() -> Option<f64> {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage writes a whole `rusage` into the pointer it is given, which points at
        // one; the value is read only when the call reports success.
        let usage = unsafe {
            if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
                return None;
            }
            usage.assume_init()
        };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Some(secs(usage.ru_utime) + secs(usage.ru_stime))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn cpu_time_has_sub_second_precision() {
            let p = Process::new().unwrap();
            // Burn a little CPU: the counter moves by less than a second, and is not 0.
            let mut x = 0u64;
            for i in 0..20_000_000u64 {
                x = x.wrapping_add(i * i);
            }
            std::hint::black_box(x);
            let families = p.collect();
            let cpu = families.iter().find(|f| f.name() == CPU).unwrap();
            let v = cpu.get_metric()[0].get_counter().get_value();
            assert!(v > 0.0 && v.fract() != 0.0, "{v}");
            assert!(families
                .iter()
                .any(|f| f.name() == "process_resident_memory_bytes"));
        }
    }
}
