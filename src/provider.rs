//! The single list of providers. The configuration names them, and dispatch, the demo, the metric
//! families and the docs derive from this list (`match` arms the compiler checks), so adding a
//! provider starts with one line here.

use serde::Deserialize;

crate::labels::closed_set! {
    /// A gateway API the exporter can poll; the `provider` label and the name in the configuration.
    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Provider {
        #[serde(rename = "plugzapi")]
        PlugzApi => "plugzapi",
        #[serde(rename = "zapi")]
        ZApi => "zapi",
        Waba => "waba",
        #[serde(rename = "greenapi")]
        GreenApi => "greenapi",
        #[serde(rename = "cloudapi")]
        CloudApi => "cloudapi",
        Evolution => "evolution",
        Waha => "waha",
    }
}

impl Provider {
    pub const ALL: &'static [Provider] = <Provider as crate::labels::LabelSet>::ALL;

    /// The base URL used when the configuration gives none; empty for self-hosted and on-premises
    /// deployments.
    pub fn default_url(self) -> &'static str {
        match self {
            Provider::PlugzApi => "https://api.plugzapi.com.br",
            Provider::ZApi => "https://api.z-api.io",
            Provider::Waba => "",
            Provider::GreenApi => "https://api.green-api.com",
            Provider::CloudApi => "https://graph.facebook.com",
            Provider::Evolution | Provider::Waha => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_from_the_configuration() {
        for p in Provider::ALL {
            let read: Provider = serde_yaml_ng::from_str(p.as_str()).unwrap();
            assert_eq!(read, *p);
        }
    }
}
