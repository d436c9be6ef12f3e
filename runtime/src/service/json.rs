//! Strict JSON request bodies: the right content type, a size cap, valid JSON, no unknown
//! fields — each refused with its own code.
//!
//! Bodies are read only after the caller authenticated, so an anonymous client cannot
//! make the service buffer anything. Error messages quote serde's text only where it names
//! fields (unknown, missing, duplicate) or a syntax position; a type error is described
//! without the offending literal, because that literal might be a value sent to the
//! wrong field.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;

use super::errors::ApiError;

/// Parse the body of a request as JSON of type `T`, reading at most `limit` bytes.
pub async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<T, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            if essence.is_empty() {
                "send the body as JSON with Content-Type: application/json".to_owned()
            } else {
                format!(
                    "Content-Type {:?} is not accepted; send application/json",
                    truncate(essence, 64)
                )
            },
        ));
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the {limit}-byte limit"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(_) => {
            return Err(ApiError::bad_request(
                "unreadable_body",
                "the request body could not be read",
            ));
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "malformed_json",
            "the request body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(&bytes).map_err(classify)
}

fn classify(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::bad_request(
            "malformed_json",
            format!("the request body is not valid JSON: {e}"),
        ),
        Category::Data => {
            let text = e.to_string();
            if text.starts_with("unknown field") {
                ApiError::bad_request("unknown_field", text)
            } else if text.starts_with("missing field")
                || text.starts_with("duplicate field")
                || text.starts_with("field `")
            {
                ApiError::bad_request("invalid_field", text)
            } else {
                ApiError::bad_request(
                    "invalid_field",
                    format!(
                        "a field has the wrong type or value (line {} column {}); see \
                         /openapi.json for the schema",
                        e.line(),
                        e.column()
                    ),
                )
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body1 {
        name: String,
        count: Option<u32>,
    }

    fn headers(ct: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        h
    }

    async fn parse(ct: Option<&str>, body: &str, limit: usize) -> Result<Body1, ApiError> {
        read_json(&headers(ct), Body::from(body.to_owned()), limit).await
    }

    #[tokio::test]
    async fn each_problem_has_its_code() {
        let json = Some("application/json; charset=utf-8");
        assert!(parse(json, r#"{"name":"x"}"#, 100).await.is_ok());
        let cases: &[(Option<&str>, &str, &str, u16)] = &[
            (None, r#"{"name":"x"}"#, "unsupported_media_type", 415),
            (
                Some("text/plain"),
                r#"{"name":"x"}"#,
                "unsupported_media_type",
                415,
            ),
            (json, r#"{"name":"x""#, "malformed_json", 400),
            (json, "", "malformed_json", 400),
            (json, r#"{"name":"x","nmae":1}"#, "unknown_field", 400),
            (json, r#"{}"#, "invalid_field", 400),
            (
                json,
                r#"{"name":"x","count":"SECRET-LITERAL"}"#,
                "invalid_field",
                400,
            ),
            (
                json,
                &format!(r#"{{"name":"{}"}}"#, "a".repeat(200)),
                "payload_too_large",
                413,
            ),
        ];
        for (ct, body, code, status) in cases {
            let err = parse(*ct, body, 100).await.unwrap_err();
            assert_eq!(
                (err.code, err.status.as_u16()),
                (*code, *status),
                "{body}: {err:?}"
            );
            assert!(!err.message.contains("SECRET-LITERAL"), "{}", err.message);
        }
    }
}
