#![no_main]
//! Any JSON as a PlugChat webhook payload: attendance and Z-API callbacks.
use libfuzzer_sys::fuzz_target;
use whatsapp_exporter::webhooks::plugchat::{payload, sanitise};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let a = payload::attendance(&v);
        let _ = payload::callbacks(&v);
        let _ = payload::millis(v.get("momment"));
        let _ = a;
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = sanitise(s);
    }
});
