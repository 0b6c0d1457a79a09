//! `whatsapp_exporter`: a Prometheus exporter for the health of WhatsApp gateway APIs.
//!
//! The modules stand in layers, and a module imports only from layers below its own
//! (`docs/architecture.md` draws them; `tests/architecture.rs` checks it):
//!
//! 1. Leaves, which import nothing of the crate but other leaves:
//!    [`provider`] (the single list of providers), [`config`] (the YAML file, with one typed
//!    block per provider; errors name the gateway and key), [`error`] (why a poll failed, with a
//!    fixed `reason`), [`exposition`] (the text format and metric families), [`labels`] (closed
//!    sets of label values, payload strings made fit for labels), [`json`] (lenient readers),
//!    [`secret`], [`clock`], [`sync`], [`tls`], [`respond`] (plain HTTP answers), [`logging`],
//!    [`shard`], [`web_config`], [`fdlimit`] (the soft limit of open files raised at start),
//!    [`flow`] (what a pushed event says, the same for every provider), [`flow_state`] (the
//!    message-flow counters and the sent→delivered table), [`inbound`] (capped webhook bodies,
//!    secrets compared in constant time), [`number_state`] (is this number working: the evidence
//!    folded into one steady state with its problems).
//! 2. [`http`]: the shared HTTP client and capped reads of answers.
//! 3. [`providers`]: one folder per provider, each with its response types and pure `parse`, its
//!    poll (and login), its series, its pure webhook parser and its demo simulator; and
//!    [`webhooks`]: the PlugChat receiver and the command that registers webhooks.
//! 4. The runtime: [`gateway`] (a configured gateway's state and rendered series), [`scheduler`]
//!    (one poll schedule per gateway), [`canary`] (real messages between two gateways, timed end to
//!    end), [`consumer`] (the Green API queue), [`receiver`] (every
//!    polled provider's webhooks, routed, authenticated and counted), [`metrics`] (the
//!    exporter's own registry and `/metrics`), [`exporter`] (all of it, reloadable).
//! 5. The edge: [`server`], [`probe`] and [`status_page`] (the HTTP endpoints), [`conns`] (the
//!    server's connections, admitted so that a flood cannot keep a scrape out), [`demo`]
//!    (`--demo`), [`app`] (the exporter and its server started as one), [`cli`] (flags and
//!    subcommands). `main.rs` holds only what parses them and runs.

pub mod app;
pub mod canary;
pub mod cli;
pub mod clock;
pub mod config;
pub mod conns;
pub mod consumer;
pub mod demo;
pub mod error;
pub mod exporter;
pub mod exposition;
pub mod fdlimit;
pub mod flow;
pub mod flow_state;
pub mod gateway;
pub mod http;
pub mod inbound;
pub mod json;
pub mod labels;
pub mod logging;
pub mod metrics;
pub mod number_state;
pub mod probe;
pub mod provider;
pub mod providers;
pub mod receiver;
pub mod respond;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod shard;
pub mod status_page;
pub mod sync;
pub mod tls;
pub mod web_config;
pub mod webhooks;

pub use app::{listen_addr, run, start, RunOptions, Running};
pub use exporter::{ConfigSource, Exporter, Polling, StartupError, SHUTDOWN_GRACE};
pub use tls::install_crypto_provider;
