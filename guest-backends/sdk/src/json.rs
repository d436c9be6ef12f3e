//! JSON helpers that never leak the document into an error.
//!
//! serde_json's error messages quote the offending data (`invalid type: string "hunter2",
//! expected u64`); the document is often a secret, so every error here keeps only the
//! category and position of the failure.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::BackendError;

/// Parses `body` as JSON into `T`. On failure: `internal`, naming `what`, the error category
/// (syntax, data, eof) and line/column — never the content.
pub fn parse<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, BackendError> {
    serde_json::from_slice(body).map_err(|e| {
        let category = match e.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "not valid JSON",
            serde_json::error::Category::Data => "unexpected JSON shape",
            serde_json::error::Category::Eof => "truncated JSON",
        };
        BackendError::internal(format!("{what}: {category} at line {} column {}", e.line(), e.column()))
    })
}

/// Converts an already parsed `value` into `T`, with the same no-leak error as [`parse`].
pub fn from_value<T: DeserializeOwned>(value: Value, what: &str) -> Result<T, BackendError> {
    serde_json::from_value(value).map_err(|e| {
        let category = match e.classify() {
            serde_json::error::Category::Data => "unexpected JSON shape",
            _ => "invalid JSON",
        };
        BackendError::internal(format!("{what}: {category}"))
    })
}

/// The value at JSON Pointer `pointer` (RFC 6901, e.g. `/data/data`), or `internal` naming
/// `what` and the pointer when it is absent.
pub fn pointer<'a>(value: &'a Value, pointer: &str, what: &str) -> Result<&'a Value, BackendError> {
    value
        .pointer(pointer)
        .ok_or_else(|| BackendError::internal(format!("{what}: no `{pointer}` in the response")))
}

/// A JSON value as the text a credential value is returned as: strings as they are, numbers
/// and booleans in their JSON form, objects and arrays as compact JSON (documented per
/// backend), `null` as `not-found` (a key set to null holds no value).
pub fn value_to_text(value: &Value) -> Result<String, BackendError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Err(BackendError::NotFound),
        Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_) => Ok(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_do_not_quote_the_document() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct S {
            n: u64,
        }
        let err = parse::<S>(br#"{"n":"hunter2"}"#, "doc").expect_err("shape");
        assert!(!err.message().contains("hunter2"), "{err}");
        assert!(err.message().starts_with("doc: unexpected JSON shape"), "{err}");
        let err = parse::<Value>(b"{\"hunter2", "doc").expect_err("eof");
        assert!(!err.message().contains("hunter2"), "{err}");
        let err = from_value::<S>(serde_json::json!({"n": "hunter2"}), "doc").expect_err("shape");
        assert!(!err.message().contains("hunter2"), "{err}");
    }

    #[test]
    fn values_become_text() {
        assert_eq!(value_to_text(&serde_json::json!("a")).ok().as_deref(), Some("a"));
        assert_eq!(value_to_text(&serde_json::json!(12)).ok().as_deref(), Some("12"));
        assert_eq!(value_to_text(&serde_json::json!({"a":1})).ok().as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(value_to_text(&Value::Null), Err(BackendError::NotFound));
    }

    #[test]
    fn pointer_names_what_is_missing() {
        let v = serde_json::json!({"data": {"x": 1}});
        assert!(pointer(&v, "/data/x", "w").is_ok());
        assert_eq!(
            pointer(&v, "/data/y", "w").expect_err("missing").message(),
            "w: no `/data/y` in the response"
        );
    }
}
