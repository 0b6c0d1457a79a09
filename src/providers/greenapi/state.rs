//! The instance state, as `getStateInstance` and `stateInstanceChanged` tell it, and what an
//! answer that is not a state says went wrong.

use serde::Deserialize;

use super::GreenApiFamily;
use crate::error::PollError;
use crate::exposition::FragmentWriter;
use crate::http::Answer;
use crate::number_state::{Problem, Problems};
use crate::providers::shape::Observation;

crate::labels::closed_set! {
    /// The instance state, as `getStateInstance` and `stateInstanceChanged` tell it: the values
    /// of Green API's documentation and of its SDKs' `InstanceState` (`suspended` is the
    /// temporary restriction that replaces the deprecated `yellowCard`).
    pub enum InstanceState {
        Authorized => "authorized",
        NotAuthorized => "notAuthorized",
        Blocked => "blocked",
        SleepMode => "sleepMode",
        Starting => "starting",
        YellowCard => "yellowCard",
        Suspended => "suspended",
        Unknown => "unknown",
    }
}

impl InstanceState {
    /// In any case; what the list does not know is `unknown`.
    pub fn from_text(s: &str) -> Self {
        crate::labels::find_ignoring_case(s.trim()).unwrap_or(InstanceState::Unknown)
    }

    /// Authorized, but sending is restricted for a while (spam suspected).
    pub fn is_restricted(self) -> bool {
        matches!(self, InstanceState::YellowCard | InstanceState::Suspended)
    }
}

/// The text of Green API's common error for an instance that was deleted (HTTP 400).
const DELETED: &str = "instance is deleted";

/// What a `getStateInstance` answer means: the state, or why the poll failed. A deleted instance
/// is told by a 400 whose body says so; it is `not_found`, not a passing HTTP failure.
pub fn judge(answer: &Answer) -> Result<Status, PollError> {
    let code = answer.status.as_u16();
    if (400..500).contains(&code) && code != 429 && says_deleted(&answer.body) {
        return Err(PollError::NotFound(code, ", the instance is deleted"));
    }
    answer.check_status()?;
    parse(&answer.body)
}

/// Whether a body (text or JSON, read in its first kilobytes only) tells a deleted instance.
fn says_deleted(body: &[u8]) -> bool {
    let head = &body[..body.len().min(4096)];
    String::from_utf8_lossy(head)
        .to_lowercase()
        .contains(DELETED)
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

    /// A yellow card, a block or a suspension limits a number that is still authorized (its
    /// state says which); not authorized wants a QR code; sleep mode is the phone offline.
    fn number_evidence(&self) -> (bool, Problems) {
        use InstanceState as S;
        match self.state {
            S::Authorized => (true, Problems::default()),
            S::YellowCard | S::Blocked | S::Suspended => {
                (true, Problems::default().with(Problem::SendLimited))
            }
            S::NotAuthorized => (false, Problems::default().with(Problem::LoggedOut)),
            S::SleepMode => (false, Problems::default().with(Problem::PhoneOffline)),
            S::Starting | S::Unknown => (false, Problems::default().with(Problem::SocketDown)),
        }
    }

    fn write(&self, w: &mut FragmentWriter) {
        w.states(GreenApiFamily::State, &[], "state", self.state);
    }

    fn summary(&self) -> String {
        if self.state.is_restricted() {
            format!(
                "state {} (sending suspended for a while)",
                self.state.as_str()
            )
        } else {
            format!("state {}", self.state.as_str())
        }
    }
}
