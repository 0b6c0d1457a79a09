#![no_main]
//! Any bytes as a Green API state, notification or delete answer.
use libfuzzer_sys::fuzz_target;
use whatsapp_exporter::exposition::FragmentWriter;
use whatsapp_exporter::providers::{greenapi, Observation};

fuzz_target!(|data: &[u8]| {
    if let Ok(status) = greenapi::parse(data) {
        let mut w = FragmentWriter::new(&[("gateway", "g")], &whatsapp_exporter::providers::greenapi::FAMILIES);
        status.write(&mut w);
    }
    let _ = greenapi::parse_notification(data);
    let _ = greenapi::parse_delete(data);
});
