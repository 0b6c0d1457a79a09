//! Webhooks pushed to the exporter: PlugChat's receiver, and the command that registers it.

pub mod plugchat;
pub mod register;
