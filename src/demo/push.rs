//! One push of the demo, and where it goes: shared by the story (`pushes`), the Evolution API
//! and WAHA servers' part of it (`servers`) and the canary relay (`relay`).

use serde_json::Value;

/// Where a push goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Zapi(&'static str),
    Cloud,
    /// An instance of the Evolution API server `evo`.
    Evolution(&'static str),
    /// A session of the WAHA server `waha`.
    Waha(&'static str),
}

/// Milliseconds since the Unix epoch: the time every push is due at and carries; a clock before
/// 1970 reads 0.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One push, due at `due_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub due_ms: i64,
    pub target: Target,
    pub body: Value,
}
