#![no_main]
//! Any bytes as a Graph API answer: the phone number, or a Graph error.
use libfuzzer_sys::fuzz_target;
use whatsapp_exporter::exposition::FragmentWriter;
use whatsapp_exporter::providers::{cloudapi, Observation};

fuzz_target!(|data: &[u8]| {
    if let Ok(status) = cloudapi::parse(data) {
        let mut w = FragmentWriter::new(&[("gateway", "g")], &whatsapp_exporter::providers::cloudapi::FAMILIES);
        status.write(&mut w);
        let _ = status.summary();
    }
    let _ = cloudapi::graph_error(data);
});
