#![no_main]
//! Any two bodies as /v1/support and /v1/health (split at the first NUL), and as a login answer.
use libfuzzer_sys::fuzz_target;
use whatsapp_exporter::exposition::FragmentWriter;
use whatsapp_exporter::providers::{waba, Observation};

fuzz_target!(|data: &[u8]| {
    let (support, health) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{\"health\":{\"gateway_status\":\"connected\"}}"[..]),
    };
    if let Ok(status) = waba::parse(support, health) {
        let mut w = FragmentWriter::new(&[("gateway", "g")], &whatsapp_exporter::providers::waba::FAMILIES);
        status.write(&mut w);
        let _ = status.summary();
    }
    let _ = waba::parse_login(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = waba::parse_utc(s);
    }
});
