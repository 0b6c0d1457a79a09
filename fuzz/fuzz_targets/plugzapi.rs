#![no_main]
//! Any bytes as a PlugzAPI/Z-API status answer: an error or a status, never a panic.
use libfuzzer_sys::fuzz_target;
use whatsapp_exporter::exposition::FragmentWriter;
use whatsapp_exporter::providers::{zapi as plugzapi, Observation};

fuzz_target!(|data: &[u8]| {
    if let Ok(status) = plugzapi::parse(data) {
        let mut w = FragmentWriter::new(&[("gateway", "g")], &whatsapp_exporter::providers::zapi::FAMILIES);
        status.write(&mut w);
        let _ = status.summary();
    }
});
