//! `webhooks-routes`: the routing that sends each webhook path to the replica that owns it, for N
//! replicas started with `--shard i/N`, as an nginx configuration or as Kubernetes Services and an
//! Ingress. The owner of a path is the shard of its name by the same hash as `--shard`
//! ([`crate::shard::owner`]), so a gateway's pushes reach the replica that polls it and keeps its
//! sent→delivered table:
//!
//! | path | owner |
//! | --- | --- |
//! | `/webhooks/<gateway>` (Z-API, PlugzAPI, Green API, Evolution API, WAHA with `webhooks:`) | the gateway's shard; a server's instances are its own, so its path carries them to it |
//! | `/webhooks/plugchat/<account>/...` | the account's shard |
//! | `/webhooks/cloudapi/<app>` | the app's shard answers; nginx mirrors every push to the other replicas too |
//!
//! A Meta app's one path carries the statuses of numbers that other replicas own: a replica routes
//! only its own numbers' events to their gateways, so the nginx routing copies the app's pushes to
//! every replica (`mirror`) and each measures its own numbers. An Ingress cannot copy a request:
//! there the app's owner alone receives them (see docs/deployment.md).
//!
//! Only names are printed: no URL of a gateway, no secret.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::{self, Config};
use crate::shard::owner;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The number of replicas, each started with --shard i/N for i in 0..N.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shards: u32,

    /// Replica i's address, with {shard} standing for i, e.g.
    /// http://exporter-{shard}.exporter:10070 (the pods of a StatefulSet `exporter` behind a
    /// headless Service `exporter`; Kubernetes: the pod is the first label of the host).
    #[arg(long, value_name = "URL")]
    pub upstream: String,

    /// What to print.
    #[arg(long, value_enum, default_value = "nginx")]
    pub format: Format,

    /// nginx: the address its server block listens on.
    #[arg(long, value_name = "ADDR", default_value = "80")]
    pub listen: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An nginx configuration for an http {} block: upstreams, a server with exact locations.
    Nginx,
    /// Kubernetes: one Service per StatefulSet pod, and an Ingress with one path per gateway.
    Kubernetes,
}

/// One routed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub path: String,
    /// The path whole (`= path`), else every path under it.
    pub exact: bool,
    pub shard: u32,
    /// Copied to every other replica as well (a Meta app's path).
    pub mirrored: bool,
}

/// Replica i's address, split once from the `--upstream` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    scheme: String,
    /// `host:port` with `{shard}` in it.
    authority: String,
    port: u16,
}

impl Upstream {
    pub fn parse(template: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("--upstream {template:?}: {why}");
        let (scheme, rest) = template
            .split_once("://")
            .ok_or_else(|| bad("write http://HOST:PORT with {shard} in it"))?;
        if scheme != "http" && scheme != "https" {
            return Err(bad("the scheme is http or https"));
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if !authority.contains("{shard}") {
            return Err(bad("{shard} must stand where the replica's number goes"));
        }
        let plain = authority.replace("{shard}", "0");
        if plain.is_empty()
            || !plain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        {
            return Err(bad("only a host and a port, no path, user or query"));
        }
        let port = match plain.rsplit_once(':') {
            Some((_, p)) if !plain.ends_with(']') => {
                p.parse().map_err(|_| bad("the port is not a number"))?
            }
            _ if scheme == "https" => 443,
            _ => 80,
        };
        Ok(Upstream {
            scheme: scheme.to_string(),
            authority: authority.to_string(),
            port,
        })
    }

    fn authority(&self, shard: u32) -> String {
        self.authority.replace("{shard}", &shard.to_string())
    }

    /// The StatefulSet pod of replica i: the first label of its host.
    fn pod(&self, shard: u32) -> String {
        let host = self.authority(shard);
        let host = host.split(':').next().unwrap_or("");
        host.split('.').next().unwrap_or("").to_string()
    }
}

/// Every webhook path of the configuration and its owner among `shards` replicas, sorted by path.
pub fn routes(cfg: &Config, shards: u32) -> Vec<Route> {
    let mut out = Vec::new();
    for g in cfg.gateways.iter().filter(|g| g.webhook_auth().is_some()) {
        out.push(Route {
            path: format!("/webhooks/{}", g.name),
            exact: true,
            shard: owner(&g.name, shards),
            mirrored: false,
        });
    }
    for a in &cfg.cloudapi_apps {
        out.push(Route {
            path: format!("/webhooks/cloudapi/{}", a.app),
            exact: true,
            shard: owner(&a.app, shards),
            mirrored: shards > 1,
        });
    }
    for p in &cfg.plugchat {
        out.push(Route {
            path: format!("/webhooks/plugchat/{}/", p.account),
            exact: false,
            shard: owner(&p.account, shards),
            mirrored: false,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Names become nginx and YAML words unquoted: the configuration allows no other characters, and
/// a name with one is refused here rather than printed into a configuration.
fn check_paths(routes: &[Route]) -> Result<(), String> {
    let plain = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b))
    };
    match routes.iter().find(|r| !plain(&r.path)) {
        Some(r) => Err(format!(
            "{:?}: a name must match [A-Za-z0-9_.-]+ to be routed",
            r.path
        )),
        None => Ok(()),
    }
}

fn upstream_name(shard: u32) -> String {
    format!("whatsapp_exporter_shard_{shard}")
}

/// An nginx configuration for an `http {}` block.
pub fn nginx(routes: &[Route], shards: u32, up: &Upstream, listen: &str) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# whatsapp_exporter webhooks-routes --shards {shards} --format nginx: each webhook path to the\n\
         # replica that --shard i/{shards} makes its owner. Include it in an http {{}} block.\n"
    );
    for i in 0..shards {
        let _ = writeln!(
            c,
            "upstream {} {{\n    server {};\n    keepalive 16;\n}}\n",
            upstream_name(i),
            up.authority(i)
        );
    }
    let _ = writeln!(
        c,
        "server {{\n    listen {listen};\n    proxy_http_version 1.1;\n    proxy_set_header Connection \"\";\n    proxy_set_header Host $host;\n    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
    );
    let mirrored = routes.iter().any(|r| r.mirrored);
    for r in routes {
        let (op, target) = if r.exact { ("=", "") } else { ("^~", "") };
        let _ = write!(c, "    location {op} {}{target} {{ ", r.path);
        if r.mirrored {
            for i in (0..shards).filter(|i| *i != r.shard) {
                let _ = write!(c, "mirror /_whatsapp_exporter_mirror_{i}; ");
            }
        }
        let _ = writeln!(
            c,
            "proxy_pass {}://{}; }}",
            up.scheme,
            upstream_name(r.shard)
        );
    }
    if mirrored {
        let _ = writeln!(
            c,
            "\n    # A Meta app's pushes, copied to every replica: each measures the numbers it owns."
        );
        for i in 0..shards {
            let _ = writeln!(
                c,
                "    location = /_whatsapp_exporter_mirror_{i} {{ internal; proxy_pass {}://{}$request_uri; }}",
                up.scheme,
                upstream_name(i)
            );
        }
    }
    let _ = writeln!(
        c,
        "\n    # A path of no configured gateway: refused here, as the exporter would.\n    location /webhooks/ {{ return 404; }}\n}}"
    );
    c
}

/// One Service per StatefulSet pod and an Ingress with one rule per path.
pub fn kubernetes(routes: &[Route], shards: u32, up: &Upstream) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# whatsapp_exporter webhooks-routes --shards {shards} --format kubernetes: each webhook path to\n\
         # the StatefulSet pod that --shard i/{shards} makes its owner (pod i runs --shard i/{shards})."
    );
    if routes
        .iter()
        .any(|r| r.exact && r.path.starts_with("/webhooks/cloudapi/"))
        && shards > 1
    {
        let _ = writeln!(
            c,
            "# A Meta app's path goes to the app's pod alone: an Ingress cannot copy a push to every\n\
             # pod, so numbers of the app that other pods own are not measured (docs/deployment.md)."
        );
    }
    for i in 0..shards {
        let pod = up.pod(i);
        let _ = writeln!(
            c,
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {pod}\n  labels:\n    app.kubernetes.io/name: whatsapp-exporter\nspec:\n  selector:\n    statefulset.kubernetes.io/pod-name: {pod}\n  ports:\n    - name: http\n      port: {port}\n      targetPort: {port}",
            port = up.port
        );
    }
    let _ = writeln!(
        c,
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: whatsapp-exporter-webhooks\nspec:\n  rules:\n    - http:\n        paths:"
    );
    for r in routes {
        let kind = if r.exact { "Exact" } else { "Prefix" };
        let path = if r.exact {
            r.path.as_str()
        } else {
            r.path.trim_end_matches('/')
        };
        let _ = writeln!(
            c,
            "          - path: {path}\n            pathType: {kind}\n            backend:\n              service:\n                name: {}\n                port:\n                  number: {}",
            up.pod(r.shard),
            up.port
        );
    }
    c
}

/// The command: reads the configuration (its secrets are not needed) and prints the routing.
pub fn run(config_path: &Path, args: Args) -> Result<(), String> {
    let up = Upstream::parse(&args.upstream)?;
    let cfg = config::load_without_secrets(config_path)
        .map_err(|e| format!("{}: invalid configuration:\n{e}", config_path.display()))?;
    let routes = routes(&cfg, args.shards);
    check_paths(&routes)?;
    if routes.is_empty() {
        return Err(format!(
            "{}: no gateway receives webhooks (no webhooks: block, no webhooks.cloudapi app, no PlugChat account)",
            config_path.display()
        ));
    }
    let out = match args.format {
        Format::Nginx => nginx(&routes, args.shards, &up, &args.listen),
        Format::Kubernetes => kubernetes(&routes, args.shards, &up),
    };
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let text = r#"
gateways:
  - name: sales
    provider: zapi
    instance: A
    token: t
    webhooks:
      secret: "0123456789abcdef-sales"
  - name: evo
    provider: evolution
    url: https://evolution.example.com
    token: t
    instances: all
    webhooks:
      secret: "0123456789abcdef-evo"
  - name: polled
    provider: zapi
    instance: B
    token: t
  - name: brand
    provider: cloudapi
    phone_number_id: "1065"
    token: t
webhooks:
  cloudapi:
    - app: main
      app_secret: "0123456789abcdef-app"
      verify_token: "0123456789abcdef-verify"
  plugchat:
    - account: store
      secret: "0123456789abcdef-plugchat"
"#;
        config::parse(text, &|_| None).unwrap()
    }

    fn up() -> Upstream {
        Upstream::parse("http://exporter-{shard}.exporter:10070").unwrap()
    }

    #[test]
    fn every_webhook_path_goes_to_the_shard_of_its_name() {
        let routes = routes(&config(), 3);
        let got: Vec<(&str, bool, u32)> = routes
            .iter()
            .map(|r| (r.path.as_str(), r.exact, r.shard))
            .collect();
        assert_eq!(
            got,
            [
                ("/webhooks/cloudapi/main", true, owner("main", 3)),
                ("/webhooks/evo", true, owner("evo", 3)),
                ("/webhooks/plugchat/store/", false, owner("store", 3)),
                ("/webhooks/sales", true, owner("sales", 3)),
            ],
            "polled-only gateways and Cloud API numbers have no path of their own"
        );
        for name in ["sales", "evo", "main", "store"] {
            let s = crate::shard::Shard {
                index: owner(name, 3),
                count: 3,
            };
            assert!(s.owns(name), "the route and --shard agree on {name}");
        }
        assert!(routes
            .iter()
            .all(|r| r.mirrored == r.path.contains("cloudapi")));
    }

    #[test]
    fn nginx_has_an_upstream_per_replica_and_an_exact_location_per_gateway() {
        let conf = nginx(&routes(&config(), 3), 3, &up(), "8080");
        for i in 0..3 {
            assert!(conf.contains(&format!(
                "upstream whatsapp_exporter_shard_{i} {{\n    server exporter-{i}.exporter:10070;"
            )));
        }
        let sales = owner("sales", 3);
        assert!(conf.contains(&format!(
            "location = /webhooks/sales {{ proxy_pass http://whatsapp_exporter_shard_{sales}; }}"
        )));
        assert!(conf.contains("location ^~ /webhooks/plugchat/store/ {"));
        assert!(conf.contains("listen 8080;"));
        // The app's pushes reach its owner and are copied to the two others.
        let app = owner("main", 3);
        let line = conf
            .lines()
            .find(|l| l.contains("location = /webhooks/cloudapi/main"))
            .unwrap();
        assert!(line.ends_with(&format!(
            "proxy_pass http://whatsapp_exporter_shard_{app}; }}"
        )));
        assert_eq!(line.matches("mirror ").count(), 2);
        assert!(!conf.contains("0123456789abcdef"), "no secret is printed");
    }

    #[test]
    fn kubernetes_has_a_service_per_pod_and_an_exact_path_per_gateway() {
        let yaml = kubernetes(&routes(&config(), 3), 3, &up());
        for i in 0..3 {
            assert!(yaml.contains(&format!("kind: Service\nmetadata:\n  name: exporter-{i}\n")));
            assert!(yaml.contains(&format!(
                "statefulset.kubernetes.io/pod-name: exporter-{i}\n"
            )));
        }
        let sales = owner("sales", 3);
        assert!(yaml.contains(&format!(
            "- path: /webhooks/sales\n            pathType: Exact\n            backend:\n              service:\n                name: exporter-{sales}\n                port:\n                  number: 10070\n"
        )));
        assert!(yaml.contains("- path: /webhooks/plugchat/store\n            pathType: Prefix\n"));
        assert!(!yaml.contains("0123456789abcdef"), "no secret is printed");
    }

    #[test]
    fn the_upstream_is_a_host_and_port_with_the_shard_in_it() {
        let u = up();
        assert_eq!(
            (u.authority(2), u.pod(2), u.port),
            (
                "exporter-2.exporter:10070".into(),
                "exporter-2".into(),
                10070
            )
        );
        assert_eq!(Upstream::parse("https://x-{shard}.svc").unwrap().port, 443);
        for bad in [
            "exporter-0:10070",
            "http://exporter:10070",
            "ftp://x-{shard}:1",
            "http://x-{shard}:1/path",
            "http://u@x-{shard}:1",
            "http://x-{shard}:port",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_name_that_is_not_plain_is_refused() {
        let r = |p: &str| Route {
            path: p.into(),
            exact: true,
            shard: 0,
            mirrored: false,
        };
        assert!(check_paths(&[r("/webhooks/a-b_c.d")]).is_ok());
        assert!(check_paths(&[r("/webhooks/a;b")]).is_err());
        assert!(check_paths(&[r("/webhooks/a b")]).is_err());
    }
}
