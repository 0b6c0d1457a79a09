//! Placeholder until the register command lands.
use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_config: &Path, _args: Args) -> Result<(), String> {
    Err("not available in this build".into())
}
