//! Reading JSON from gateways leniently, the one way every provider does it: booleans and numbers
//! that arrive as strings, fields of unexpected types taken as absent, lists whose broken items are
//! skipped, and parse errors told without quoting the input.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A boolean that some gateways send as a string (`"true"`, `"1"`) or a number.
pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.as_ref().and_then(boolean))
}

/// A field of an unexpected type is absent rather than a failed poll.
pub fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.and_then(|v| T::deserialize(v).ok()))
}

/// A list whose malformed items are skipped; anything but a list is an empty one.
pub fn lenient_list<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Array(items)) => items
            .into_iter()
            .filter_map(|v| T::deserialize(v).ok())
            .collect(),
        _ => Vec::new(),
    })
}

/// `true`, `1`, `"true"`, `"1"` (and their opposites); anything else says nothing.
pub fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A finite number, or a number written as a string.
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

/// An integer, or an integer written as a string.
pub fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A JSON error told by position and category only: serde's own message can quote the input,
/// and the input may hold a phone number or a token.
pub fn describe_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "JSON of an unexpected shape",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn booleans_in_every_spelling() {
        for (v, want) in [
            (json!(true), Some(true)),
            (json!(0), Some(false)),
            (json!(" TRUE "), Some(true)),
            (json!("0"), Some(false)),
            (json!("maybe"), None),
            (json!(null), None),
            (json!([]), None),
        ] {
            assert_eq!(boolean(&v), want, "{v}");
        }
    }

    #[test]
    fn numbers_as_strings() {
        assert_eq!(number(&json!("14269902848")), Some(14269902848.0));
        assert_eq!(
            number(&json!(9223372036853727000u64)),
            Some(9.223372036853727e18)
        );
        assert_eq!(number(&json!("NaN")), None);
        assert_eq!(integer(&json!(" 190 ")), Some(190));
    }

    #[test]
    fn errors_never_quote_the_input() {
        let e = serde_json::from_str::<bool>("\"5511999998888\"").unwrap_err();
        assert!(
            e.to_string().contains("5511999998888"),
            "serde quotes input"
        );
        assert!(!describe_error(&e).contains("5511999998888"));
    }
}
