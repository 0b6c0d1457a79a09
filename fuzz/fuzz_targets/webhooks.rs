#![no_main]
//! Any bytes as a pushed webhook of Z-API/PlugzAPI, Green API, the Cloud API, Evolution API or
//! WAHA: parsed entry by entry, then counted into a gateway's message-flow state and its
//! sent→delivered table; WAHA's HMAC check runs on them too.
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use whatsapp_exporter::flow::Event;
use whatsapp_exporter::flow_state::{FlowState, Limits, Owner, Tracker};
use whatsapp_exporter::providers::{cloudapi, evolution, greenapi, waha, zapi};

fn count(spec: &'static whatsapp_exporter::flow::FlowSpec, events: &[Event], tracker: &Tracker) {
    let mut state = FlowState::new(spec, Owner::new(7));
    for e in events {
        state.apply(e, 1_700_000_000.0, tracker);
    }
}

fuzz_target!(|data: &[u8]| {
    let tracker = Tracker::new(Limits {
        max_tracked: 64,
        max_age: Duration::from_secs(60),
    });
    if let Ok(batch) = zapi::webhook::parse(data) {
        count(&zapi::webhook::SPEC, &batch.items, &tracker);
    }
    if let Ok(batch) = greenapi::webhook::parse(data) {
        count(&greenapi::webhook::SPEC, &batch.items, &tracker);
    }
    if let Ok(parsed) = cloudapi::webhook::parse(data) {
        let events: Vec<Event> = parsed.batch.items.into_iter().map(|r| r.event).collect();
        count(&cloudapi::webhook::SPEC, &events, &tracker);
    }
    if let Ok(batch) = evolution::webhook::parse(data) {
        let events: Vec<Event> = batch.items.into_iter().map(|p| p.event).collect();
        count(&evolution::webhook::SPEC, &events, &tracker);
    }
    if let Ok(batch) = waha::webhook::parse(data) {
        let events: Vec<Event> = batch.items.into_iter().map(|p| p.event).collect();
        count(&waha::webhook::SPEC, &events, &tracker);
    }
    let _ = cloudapi::webhook::signature_matches(b"secret", data, Some(data));
    let _ = waha::webhook::hmac_matches(b"secret", data, Some(data), None);
});
