//! Webhooks pushed to the exporter: PlugChat's receiver, and the commands that register webhooks
//! (PlugChat's, and the gateways' own).

pub mod gateways;
pub mod plugchat;
pub mod register;
pub mod routes;
