#![no_main]
//! Any text as a configuration file: a config or a list of errors, never a panic.
use libfuzzer_sys::fuzz_target;
use whatsapp_exporter::config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = config::parse(text, &|_| Some("x".into()));
    }
});
