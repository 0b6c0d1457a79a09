//! The instance state, as `getStateInstance` and `stateInstanceChanged` tell it.

use serde::Deserialize;

use super::GreenApiFamily;
use crate::error::PollError;
use crate::exposition::FragmentWriter;
use crate::providers::shape::Observation;

crate::labels::closed_set! {
    /// The instance state, as `getStateInstance` and `stateInstanceChanged` tell it.
    pub enum InstanceState {
        Authorized => "authorized",
        NotAuthorized => "notAuthorized",
        Blocked => "blocked",
        SleepMode => "sleepMode",
        Starting => "starting",
        YellowCard => "yellowCard",
        Unknown => "unknown",
    }
}

impl InstanceState {
    /// In any case; what the list does not know is `unknown`.
    pub fn from_text(s: &str) -> Self {
        crate::labels::find_ignoring_case(s.trim()).unwrap_or(InstanceState::Unknown)
    }
}

/// The answer of `getStateInstance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub state: InstanceState,
}

#[derive(Debug, Deserialize)]
struct StateResponse {
    #[serde(default, rename = "stateInstance")]
    state_instance: Option<String>,
}

/// Parses a `getStateInstance` answer; one without `stateInstance` is not a state.
pub fn parse(body: &[u8]) -> Result<Status, PollError> {
    let r: Option<StateResponse> =
        serde_json::from_slice(body).map_err(|e| PollError::from_json(&e))?;
    let state = r.and_then(|r| r.state_instance).ok_or_else(|| {
        PollError::InvalidResponse("the answer has no `stateInstance` field".into())
    })?;
    Ok(Status {
        state: InstanceState::from_text(&state),
    })
}

impl Observation for Status {
    fn connected(&self) -> bool {
        self.state == InstanceState::Authorized
    }

    fn write(&self, w: &mut FragmentWriter) {
        w.states(GreenApiFamily::State, &[], "state", self.state);
    }

    fn summary(&self) -> String {
        format!("state {}", self.state.as_str())
    }
}
