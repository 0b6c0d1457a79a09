//! An instance's connection state: `GET /instance/connectionState/{instance}` for one instance,
//! and the `connectionStatus` of every row of `GET /instance/fetchInstances` for a server.

use serde::Deserialize;

use super::EvolutionFamily;
use crate::error::PollError;
use crate::exposition::FragmentWriter;
use crate::json::lenient;
use crate::number_state::{Problem, Problems};
use crate::providers::shape::Observation;

crate::labels::closed_set! {
    /// The connection state of an instance. `open`, `connecting` and `close` are what the API
    /// reports (the Baileys socket's state, and the database column `connectionStatus`);
    /// `refused` is the state the connection.update event tells after the QR code limit.
    pub enum State {
        Open => "open",
        Close => "close",
        Connecting => "connecting",
        Refused => "refused",
        Unknown => "unknown",
    }
}

impl State {
    /// In any case; what the list does not know, or no state at all, is `unknown`.
    pub fn from_text(s: Option<&str>) -> Self {
        s.and_then(|s| crate::labels::find_ignoring_case(s.trim()))
            .unwrap_or(State::Unknown)
    }
}

/// The state of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub state: State,
}

impl Observation for Status {
    fn connected(&self) -> bool {
        self.state == State::Open
    }

    /// Closed (a logout, Baileys' 401) or refused wants a QR code; connecting is the socket down.
    fn number_evidence(&self) -> (bool, Problems) {
        let problem = match self.state {
            State::Open => return (true, Problems::default()),
            State::Close | State::Refused => Problem::LoggedOut,
            State::Connecting | State::Unknown => Problem::SocketDown,
        };
        (false, Problems::default().with(problem))
    }

    fn write(&self, w: &mut FragmentWriter) {
        w.states(EvolutionFamily::State, &[], "state", self.state);
    }

    fn summary(&self) -> String {
        format!("state {}", self.state)
    }
}

#[derive(Deserialize)]
struct StateAnswer {
    #[serde(default, deserialize_with = "lenient")]
    instance: Option<StateInner>,
}

#[derive(Deserialize)]
struct StateInner {
    #[serde(default, deserialize_with = "lenient")]
    state: Option<String>,
}

/// Parses a `connectionState` answer, `{"instance": {"instanceName": .., "state": ..}}`. An
/// instance that exists but is not loaded has no `state`: it is `unknown` (not connected).
pub fn parse(body: &[u8]) -> Result<Status, PollError> {
    let r: Option<StateAnswer> =
        serde_json::from_slice(body).map_err(|e| PollError::from_json(&e))?;
    let inner = r
        .and_then(|r| r.instance)
        .ok_or_else(|| PollError::InvalidResponse("the answer has no `instance` object".into()))?;
    Ok(Status {
        state: State::from_text(inner.state.as_deref()),
    })
}

/// A row of `fetchInstances`. Evolution API 2 lists its database rows (`name`,
/// `connectionStatus`); the documentation's example has the shape of version 1
/// (`instance.instanceName`, `instance.status`). Only these fields are read: the rows also carry
/// each instance's token and phone number.
#[derive(Debug, Default, Deserialize)]
pub struct Row {
    #[serde(default, deserialize_with = "lenient")]
    name: Option<String>,
    #[serde(default, rename = "connectionStatus", deserialize_with = "lenient")]
    connection_status: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    instance: Option<RowV1>,
}

#[derive(Debug, Default, Deserialize)]
struct RowV1 {
    #[serde(default, rename = "instanceName", deserialize_with = "lenient")]
    instance_name: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    status: Option<String>,
}

impl Row {
    /// The instance's name (if it has one) and its state.
    pub fn into_status(self) -> (Option<String>, Status) {
        let (v1_name, v1_status) = self
            .instance
            .map(|i| (i.instance_name, i.status))
            .unwrap_or_default();
        let state = State::from_text(self.connection_status.or(v1_status).as_deref());
        (self.name.or(v1_name), Status { state })
    }
}

/// Parses a `fetchInstances` answer: every instance of the server with its state.
pub fn parse_listing(body: &[u8]) -> Result<Vec<(Option<String>, Status)>, PollError> {
    Ok(crate::providers::discovery::listing::<Row>(body)?
        .into_iter()
        .map(Row::into_status)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::LabelSet;

    /// The answer a fixture of `tests/fixtures/real/evolution/` gives for `path`.
    fn fixture(text: &str, path: &str) -> (u16, Vec<u8>) {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let a = &v["answers"][path];
        (
            a["status"].as_u64().unwrap() as u16,
            serde_json::to_vec(&a["body"]).unwrap(),
        )
    }

    const PATH: &str = "/instance/connectionState/my-instance";

    #[test]
    fn connection_states_of_the_fixtures() {
        for (text, want) in [
            (
                include_str!("../../../tests/fixtures/real/evolution/connection_state_open.json"),
                State::Open,
            ),
            (
                include_str!("../../../tests/fixtures/real/evolution/connection_state_close.json"),
                State::Close,
            ),
            (
                include_str!(
                    "../../../tests/fixtures/real/evolution/connection_state_connecting.json"
                ),
                State::Connecting,
            ),
            (
                include_str!(
                    "../../../tests/fixtures/real/evolution/connection_state_not_loaded.json"
                ),
                State::Unknown,
            ),
        ] {
            let (code, body) = fixture(text, PATH);
            assert_eq!(code, 200);
            let st = parse(&body).unwrap();
            assert_eq!(st.state, want);
            assert_eq!(st.connected(), want == State::Open);
        }
    }

    #[test]
    fn error_answers_are_no_state() {
        let (code, body) = fixture(
            include_str!("../../../tests/fixtures/real/evolution/connection_state_unknown.json"),
            "/instance/connectionState/no-such-instance",
        );
        assert_eq!(code, 404);
        assert_eq!(parse(&body).unwrap_err().reason(), "invalid_response");
        let (code, body) = fixture(
            include_str!("../../../tests/fixtures/real/evolution/connection_state_bad_apikey.json"),
            PATH,
        );
        assert_eq!(code, 401);
        assert!(parse(&body).is_err());
    }

    #[test]
    fn every_state_and_the_rest() {
        for s in State::LABELS {
            let body = format!(r#"{{"instance":{{"instanceName":"x","state":"{s}"}}}}"#);
            assert_eq!(parse(body.as_bytes()).unwrap().state.as_str(), *s);
        }
        for (body, want) in [
            (&br#"{"instance":{"state":"OPEN"}}"#[..], State::Open),
            (br#"{"instance":{"state":"qr"}}"#, State::Unknown),
            (br#"{"instance":{"state":7}}"#, State::Unknown),
            (br#"{"instance":{}}"#, State::Unknown),
        ] {
            assert_eq!(parse(body).unwrap().state, want);
        }
        for body in [
            &b"null"[..],
            b"{}",
            b"[]",
            b"",
            b"{\"instance\":",
            b"<html>",
        ] {
            assert_eq!(parse(body).unwrap_err().reason(), "invalid_response");
        }
    }

    #[test]
    fn the_listing_of_the_source_and_of_the_docs() {
        let text = include_str!("../../../tests/fixtures/real/evolution/fetch_instances.json");
        let (_, body) = fixture(text, "/instance/fetchInstances");
        let rows = parse_listing(&body).unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|(n, s)| (n.as_deref().unwrap(), s.state))
            .collect();
        assert_eq!(
            got,
            [
                ("sales", State::Open),
                ("support", State::Connecting),
                ("ops", State::Close)
            ]
        );
        let kept = format!("{rows:?}");
        for private in ["B3844804", "5511999999999", "Sales"] {
            assert!(!kept.contains(private), "{private} kept: {kept}");
        }
        let text = include_str!(
            "../../../tests/fixtures/real/evolution/fetch_instances_docs_v1_shape.json"
        );
        let (_, body) = fixture(text, "/instance/fetchInstances");
        let got: Vec<_> = parse_listing(&body)
            .unwrap()
            .into_iter()
            .map(|(n, s)| (n.unwrap(), s.state))
            .collect();
        assert_eq!(
            got,
            [
                ("example-name".to_string(), State::Open),
                ("teste-docs".to_string(), State::Close)
            ]
        );
    }

    #[test]
    fn a_state_is_a_state_set() {
        let mut w = FragmentWriter::new(&[], &super::super::FAMILIES);
        Status {
            state: State::Connecting,
        }
        .write(&mut w);
        let f = w.finish();
        let lines = f.family(EvolutionFamily::State);
        assert!(lines.contains("whatsapp_evolution_state{state=\"connecting\"} 1\n"));
        assert!(lines.contains("whatsapp_evolution_state{state=\"open\"} 0\n"));
        assert_eq!(lines.lines().count(), State::COUNT);
    }
}
