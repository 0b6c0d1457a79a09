//! Every provider of `Provider::ALL` goes the whole way, with nothing listed by hand here: its
//! configuration block parses, its poller is built, the demo simulates it, its metric families
//! exist, and the configuration reference tells how to configure it.

use whatsapp_exporter::config;
use whatsapp_exporter::demo::demo_config;
use whatsapp_exporter::http::Clients;
use whatsapp_exporter::provider::Provider;
use whatsapp_exporter::providers::{families, simulator, Source};

#[test]
fn every_provider_is_configured_built_simulated_and_documented() {
    whatsapp_exporter::install_crypto_provider();
    let cfg = config::parse(&demo_config("127.0.0.1:9".parse().unwrap()), &|_| None)
        .expect("the demo configuration is valid");
    let clients = Clients::new().unwrap();
    let docs: String = ["README.md", "docs/configuration.md"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    for p in Provider::ALL {
        let gw = cfg
            .gateways
            .iter()
            .find(|g| g.provider == *p)
            .unwrap_or_else(|| panic!("the demo has no {p} gateway"));
        assert!(
            Source::new(gw, &clients).is_ok(),
            "{p}: no poller from a valid block"
        );
        assert!(!families(*p).is_empty(), "{p}: no metric families");
        let demo = (simulator(*p).gateways)("127.0.0.1:9".parse().unwrap());
        assert!(
            demo.contains(&format!("provider: {p}\n")),
            "{p}: its simulator does not name it"
        );
        assert!(
            docs.contains(&format!("provider: {p}")),
            "{p}: the configuration reference has no example"
        );
    }
}
