//! What PlugChat's webhooks say, read leniently: every field optional, unknown fields ignored,
//! numbers accepted as JSON strings too. Only what the metrics need is kept; names, phones, message
//! ids, operators and texts are never read out of the payload.
//!
//! Two shapes arrive:
//! - attendances (`startAttendance`, `finishAttendance`): `{"attendance": {...}, "chat": {ID: callback}}`
//!   as in the seed, with `attendanceCategory` (one object) and/or `attendanceCategories` (a list);
//! - message and connection events: Z-API callbacks (`ReceivedCallback`, `MessageStatusCallback`,
//!   `DeliveryCallback`, `DisconnectedCallback`), either bare, a list of them, or as the values of
//!   a `chat` map keyed by message id.

use serde_json::Value;

/// Timestamps below this are seconds, not milliseconds: 1e11 ms is 1973, 1e11 s is the year 5138.
/// Z-API's own DisconnectedCallback example carries seconds where everything else has milliseconds.
const SECONDS_BELOW: i64 = 100_000_000_000;

/// An attendance (a support conversation), from `startAttendance` or `finishAttendance`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Attendance {
    /// `attendanceNumber`, as text: how a finish is matched with its start.
    pub number: Option<String>,
    /// `departament` (sic, as PlugChat spells it) or `department`; raw, not yet a label.
    pub department: Option<String>,
    /// `attendanceCategory.name` and each `attendanceCategories[].categoryName`, without repeats.
    pub categories: Vec<String>,
    pub request_ms: Option<i64>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
}

impl Attendance {
    /// Seconds from the customer's request until an operator took it.
    pub fn wait_seconds(&self) -> Option<f64> {
        span(self.request_ms, self.start_ms)
    }

    /// Seconds from the start of the attendance to its end.
    pub fn duration_seconds(&self) -> Option<f64> {
        span(self.start_ms, self.end_ms)
    }
}

/// The span between two times in seconds. PlugChat's clocks disagree by a little (the seed itself
/// starts 0.8 s before the request), so a negative span counts as 0 rather than being lost.
fn span(from: Option<i64>, to: Option<i64>) -> Option<f64> {
    let ms = to?.saturating_sub(from?).max(0);
    Some(ms as f64 / 1000.0)
}

crate::labels::closed_set! {
    /// A message status as WhatsApp (through Z-API) reports it.
    pub enum MessageStatus {
        Sent => "sent",
        Received => "received",
        Delivered => "delivered",
        Read => "read",
        ReadByMe => "read_by_me",
        Played => "played",
        Other => "other",
    }
    catch_all = Other;
}

impl MessageStatus {
    /// Every label value, in the order they are initialised.
    pub const ALL: &'static [MessageStatus] = <MessageStatus as crate::labels::LabelSet>::ALL;

    /// `READ_BY_ME` as Z-API writes it, in any case.
    pub fn parse(s: &str) -> MessageStatus {
        MessageStatus::from_label(&s.trim().to_ascii_lowercase())
    }

    pub fn label(self) -> &'static str {
        self.as_str()
    }
}

/// One Z-API callback, reduced to what is counted.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Callback {
    pub status: Option<MessageStatus>,
    /// The messages it is about: a MessageStatusCallback lists several in `ids`.
    pub messages: u64,
    /// `momment` (sic), in milliseconds.
    pub moment_ms: Option<i64>,
}

/// The attendance of a start or finish webhook; a bare attendance object is accepted too.
pub fn attendance(payload: &Value) -> Attendance {
    let a = payload.get("attendance").unwrap_or(payload);
    Attendance {
        number: a.get("attendanceNumber").and_then(identifier),
        department: text(a.get("departament")).or_else(|| text(a.get("department"))),
        categories: categories(a),
        request_ms: millis(a.get("requestTime")),
        start_ms: millis(a.get("startTime")),
        end_ms: millis(a.get("endTime")),
    }
}

fn categories(a: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |v: Option<String>| {
        if let Some(name) = v {
            if !out.contains(&name) {
                out.push(name);
            }
        }
    };
    match a.get("attendanceCategory") {
        Some(Value::Object(c)) => add(text(c.get("name")).or_else(|| text(c.get("categoryName")))),
        other => add(text(other)),
    }
    if let Some(Value::Array(list)) = a.get("attendanceCategories") {
        for c in list {
            add(text(c.get("categoryName")).or_else(|| text(c.get("name"))));
        }
    }
    out
}

/// The callbacks in a message or connection webhook.
pub fn callbacks(payload: &Value) -> Vec<Callback> {
    callback_values(payload)
        .into_iter()
        .filter_map(callback)
        .collect()
}

/// The callback objects of a message or connection webhook, as they came.
pub fn callback_values(payload: &Value) -> Vec<&Value> {
    let list: Vec<&Value> = match payload {
        Value::Array(list) => list.iter().collect(),
        Value::Object(o) if !is_callback(payload) => match o.get("chat") {
            Some(Value::Object(chat)) => chat.values().collect(),
            Some(Value::Array(chat)) => chat.iter().collect(),
            _ => vec![payload],
        },
        _ => vec![payload],
    };
    list.into_iter().filter(|v| v.is_object()).collect()
}

fn is_callback(v: &Value) -> bool {
    ["type", "status", "ids", "momment", "messageId", "zaapId"]
        .iter()
        .any(|k| v.get(k).is_some())
}

fn callback(v: &Value) -> Option<Callback> {
    let o = v.as_object()?;
    let messages = match o.get("ids") {
        Some(Value::Array(ids)) if !ids.is_empty() => ids.len() as u64,
        _ => 1,
    };
    Some(Callback {
        status: text(o.get("status")).map(|s| MessageStatus::parse(&s)),
        messages,
        moment_ms: millis(o.get("momment")).or_else(|| millis(o.get("moment"))),
    })
}

/// A timestamp in milliseconds, from a number or a numeric string; seconds are scaled up.
pub fn millis(v: Option<&Value>) -> Option<i64> {
    let n = match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?,
        Value::String(s) => s.trim().parse::<f64>().ok()? as i64,
        _ => return None,
    };
    match n {
        n if n <= 0 => None,
        n if n < SECONDS_BELOW => n.checked_mul(1000),
        n => Some(n),
    }
}

/// A non-empty, trimmed string.
fn text(v: Option<&Value>) -> Option<String> {
    let s = v?.as_str()?.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// An identifier given as a number or a string (never a label; kept only to match start and finish).
fn identifier(v: &Value) -> Option<String> {
    let id = match v {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => (f as i64).to_string(),
            _ => n.to_string(),
        },
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    // Bounded so that a hostile number cannot make the open-attendance table large.
    (!id.is_empty()).then(|| id.chars().take(64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's finishAttendance, Exemplo-1 (the chat map repeats its key, as in the seed).
    const FINISH_1: &str = r##"{
"attendance": {
"attendanceCategory": {"color": "#DDDD", "id": "id da categoria", "name": "nome da categoria"},
"attendanceNumber": 1492,
"customer": {"name": "nome", "phone": "554499999999"},
"departament": "Nome do departamento",
"endTime": 1651065481865,
"finishBy": "Nome do operador",
"operatorReport ": "Relato do operador",
"ratingObservation": "Observação do cliente",
"requestTime": 1651065472000,
"startTime": 1651065471166,
"status": "FINISH"
},
"chat": {
"ID_DA_MENSAGEM": {"broadcast": false, "chatName": "nome", "fromMe": false, "messageId": "ID_DA_MENSAGEM",
 "momment": 1651065478000, "phone": "554499999999", "status": "RECEIVED", "text": {"message": "mensagem enviada"},
 "type": "ReceivedCallback", "waitingMessage": false},
"ID_DA_MENSAGEM": {"fromMe": true, "isAutomaticMessage": true, "messageId": "ID_DA_MENSAGEM",
 "momment": 1651065479380, "phone": "554499999999", "status": "READ", "text": {"message": "só um momento"}}
}
}"##;

    const FINISH_2_CATEGORIES: &str = r#"{"attendance": {"attendanceCategories": [
        {"categoryId": "id_categoria", "categoryName": "Padrão", "color": "cor", "itemId": "i", "itemName": "Nome do item"},
        {"categoryId": "id_categoria", "categoryName": "nome_categoria", "color": "cor", "itemId": "i", "itemName": "Nome do item"},
        {"categoryId": "id_categoria", "categoryName": "Padrão"}],
        "attendanceNumber": 1492, "departament": "Nome do departamento",
        "endTime": 1651065481865, "requestTime": 1651065472000, "startTime": 1651065471166, "status": "FINISH"}}"#;

    fn json(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn seed_finish_attendance() {
        let a = attendance(&json(FINISH_1));
        assert_eq!(a.number.as_deref(), Some("1492"));
        assert_eq!(a.department.as_deref(), Some("Nome do departamento"));
        assert_eq!(a.categories, vec!["nome da categoria"]);
        assert_eq!(a.duration_seconds(), Some(10.699));
        // The seed's operator took the attendance before it was requested: clamped, not negative.
        assert_eq!(a.wait_seconds(), Some(0.0));
    }

    #[test]
    fn category_list_and_both_forms() {
        let a = attendance(&json(FINISH_2_CATEGORIES));
        assert_eq!(a.categories, vec!["Padrão", "nome_categoria"]);
        let both = json(
            r#"{"attendance":{"attendanceCategory":{"name":"Vendas"},"attendanceCategories":[{"categoryName":"Vendas"},{"categoryName":"Trocas"}]}}"#,
        );
        assert_eq!(attendance(&both).categories, vec!["Vendas", "Trocas"]);
    }

    #[test]
    fn seed_start_attendance_has_no_request_time() {
        let a = attendance(&json(
            r#"{"attendance":{"attendanceNumber":1492,"customer":{"name":"nome","phone":"554499999999"},
            "departament":"Nome do departamento","operator":"Nome do operador","momment":1651065472000,
            "startTime":1651065471166,"status":"PROGRESS"},"chat":{}}"#,
        ));
        assert_eq!(a.number.as_deref(), Some("1492"));
        assert_eq!(a.start_ms, Some(1651065471166));
        assert_eq!(a.wait_seconds(), None);
        assert_eq!(a.duration_seconds(), None);
    }

    #[test]
    fn lenient_types_and_missing_fields() {
        let a = attendance(&json(
            r#"{"attendance":{"attendanceNumber":" A-77 ","department":"Suporte","startTime":"1651065471000","endTime":1651065531000.0,"attendanceCategory":null,"attendanceCategories":"x"}}"#,
        ));
        assert_eq!(a.number.as_deref(), Some("A-77"));
        assert_eq!(a.department.as_deref(), Some("Suporte"));
        assert_eq!(a.duration_seconds(), Some(60.0));
        assert!(a.categories.is_empty());
        assert_eq!(attendance(&json("[]")), Attendance::default());
        assert_eq!(
            attendance(&json(r#"{"attendance":7}"#)),
            Attendance::default()
        );
    }

    #[test]
    fn times_in_seconds_are_scaled() {
        assert_eq!(millis(Some(&json("1580163342"))), Some(1_580_163_342_000));
        assert_eq!(
            millis(Some(&json("1632234645000"))),
            Some(1_632_234_645_000)
        );
        assert_eq!(millis(Some(&json("0"))), None);
        assert_eq!(millis(Some(&json("-5"))), None);
        assert_eq!(millis(Some(&json("\"soon\""))), None);
        assert_eq!(millis(Some(&json("1e300"))), Some(i64::MAX));
    }

    #[test]
    fn message_status_callback_counts_every_id() {
        let cbs = callbacks(&json(
            r#"{"status":"READ","ids":["a","b","c"],"momment":1632234645000,"phone":"5544999999999","type":"MessageStatusCallback","instanceId":"i"}"#,
        ));
        assert_eq!(
            cbs,
            vec![Callback {
                status: Some(MessageStatus::Read),
                messages: 3,
                moment_ms: Some(1632234645000)
            }]
        );
    }

    #[test]
    fn callbacks_in_a_list_or_a_chat_map() {
        let list = callbacks(&json(
            r#"[{"status":"played","ids":[]},{"status":"READ_BY_ME"},7,{"type":"DeliveryCallback"}]"#,
        ));
        let statuses: Vec<_> = list.iter().map(|c| c.status).collect();
        assert_eq!(
            statuses,
            vec![
                Some(MessageStatus::Played),
                Some(MessageStatus::ReadByMe),
                None
            ]
        );
        let chat = callbacks(&json(FINISH_1));
        // serde_json keeps the last of a repeated key, as PlugChat's own parser would.
        assert_eq!(chat.len(), 1);
        assert_eq!(chat[0].status, Some(MessageStatus::Read));
        assert_eq!(MessageStatus::parse("DELIVERY_ACK"), MessageStatus::Other);
    }

    #[test]
    fn disconnected_callback() {
        let cbs = callbacks(&json(
            r#"{"momment":1580163342,"error":"Device has been disconnected","disconnected":true,"type":"DisconnectedCallback","instanceId":"instance.id"}"#,
        ));
        assert_eq!(cbs[0].moment_ms, Some(1_580_163_342_000));
        assert_eq!(cbs[0].status, None);
        assert!(callbacks(&json("null")).is_empty());
        assert_eq!(callbacks(&json("{}")).len(), 1);
    }
}
