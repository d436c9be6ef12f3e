//! The official AWS SigV4 test suite (see `tests/data/sigv4/README.md` for its origin):
//! for every header-signing case, the canonical request, the string to sign, the signature
//! and the `Authorization` header must match the published files byte for byte.

use std::fs;
use std::path::{Path, PathBuf};

use aws_secrets_manager::sigv4::{self, AmzDate, Credentials, PathEncoding, Request, Settings};
use serde_json::Value;
use zeroize::Zeroizing;

/// A request parsed from a suite's `request.txt`.
struct ParsedRequest {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sigv4")
}

fn read(case: &str, file: &str) -> String {
    let path = data_dir().join(case).join(file);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Parses the suite's HTTP/1.1 request files: a request line whose target may contain a raw
/// space (`get-space-unnormalized`), `Name:value` headers, continuation lines that start with
/// whitespace (`get-header-value-multiline`), then a blank line and the body.
fn parse_request(text: &str) -> ParsedRequest {
    let (head, body) = match text.split_once("\n\n") {
        Some((h, b)) => (h, b.as_bytes().to_vec()),
        None => (text.trim_end_matches('\n'), Vec::new()),
    };
    let mut lines = head.lines();
    let request_line = lines.next().expect("request line");
    let (method, rest) = request_line.split_once(' ').expect("method");
    let target = rest.strip_suffix(" HTTP/1.1").unwrap_or(rest);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let last = headers.last_mut().expect("continuation after a header");
            last.1.push('\n');
            last.1.push_str(line);
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    ParsedRequest {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body,
    }
}

fn credentials(ctx: &Value) -> Credentials {
    let c = &ctx["credentials"];
    Credentials {
        access_key_id: c["access_key_id"].as_str().expect("key id").to_string(),
        secret_access_key: Zeroizing::new(c["secret_access_key"].as_str().expect("secret").into()),
        session_token: c["token"].as_str().map(|t| Zeroizing::new(t.to_string())),
    }
}

/// The `Authorization` value in a suite's `header-signed-request.txt`.
fn expected_authorization(case: &str) -> String {
    read(case, "header-signed-request.txt")
        .lines()
        .find_map(|l| l.strip_prefix("Authorization:"))
        .expect("Authorization line")
        .trim()
        .to_string()
}

/// Runs one case described by a `context.json`, returning its name for the summary.
fn run_case(case: &str) {
    let ctx: Value = serde_json::from_str(&read(case, "context.json")).expect("context.json");
    let req = parse_request(&read(case, "request.txt"));
    let settings = Settings {
        normalize_path: ctx["normalize"].as_bool().expect("normalize"),
        path_encoding: PathEncoding::Single,
        content_sha256_header: ctx["sign_body"].as_bool().unwrap_or(false),
        sign_session_token: !ctx["omit_session_token"].as_bool().unwrap_or(false),
    };
    let ts = ctx["timestamp"].as_str().expect("timestamp").replace(['-', ':'], "");
    let time = AmzDate::parse(&ts).expect("timestamp shape");
    let signed = sigv4::sign(
        &Request {
            method: &req.method,
            path: &req.path,
            query: &req.query,
            headers: &req.headers,
            body: &req.body,
        },
        &credentials(&ctx),
        ctx["region"].as_str().expect("region"),
        ctx["service"].as_str().expect("service"),
        &time,
        &settings,
    );
    assert_eq!(
        signed.canonical_request,
        read(case, "header-canonical-request.txt"),
        "{case}: canonical request"
    );
    assert_eq!(signed.string_to_sign, read(case, "header-string-to-sign.txt"), "{case}: string to sign");
    assert_eq!(signed.signature, read(case, "header-signature.txt").trim(), "{case}: signature");
    let auth = signed
        .headers
        .iter()
        .find(|(n, _)| n == "Authorization")
        .map(|(_, v)| v.clone())
        .expect("Authorization added");
    assert_eq!(auth, expected_authorization(case), "{case}: Authorization header");
    if let Some(token) = ctx["credentials"]["token"].as_str() {
        assert!(
            signed.headers.iter().any(|(n, v)| n == "X-Amz-Security-Token" && v == token),
            "{case}: the session token is sent"
        );
    }
}

#[test]
fn every_header_signing_case_of_the_suite_matches() {
    let mut cases: Vec<String> = fs::read_dir(data_dir())
        .expect("data dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("context.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    // The suite's 38 context-described cases; a missing file must not shrink the test.
    assert_eq!(cases.len(), 38, "{cases:?}");
    for case in &cases {
        run_case(case);
    }
}

#[test]
fn session_token_cases_sign_or_omit_the_token() {
    run_case("get-vanilla-with-session-token");
    run_case("post-sts-header-before");
    run_case("post-sts-header-after");
}

/// `double-url-encode` has no context.json: the suite's README says it was migrated from the
/// old format, where the parameters are those of its own files — Lambda in us-east-2 at
/// 2021-05-11T15:40:45Z with the suite's example key. This is the encoding every non-S3
/// service, Secrets Manager included, uses.
#[test]
fn double_url_encoding_matches_the_migrated_case() {
    let case = "double-url-encode";
    let req = parse_request(&read(case, "request.txt"));
    let creds = Credentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: Zeroizing::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
        session_token: None,
    };
    let time = AmzDate::parse("20210511T154045Z").expect("time");
    let signed = sigv4::sign(
        &Request {
            method: &req.method,
            path: &req.path,
            query: &req.query,
            headers: &req.headers,
            body: &req.body,
        },
        &creds,
        "us-east-2",
        "lambda",
        &time,
        &Settings::default(),
    );
    assert_eq!(signed.canonical_request, read(case, "header-canonical-request.txt"));
    assert_eq!(signed.string_to_sign, read(case, "header-string-to-sign.txt").trim_end());
    let expected = read(case, "header-signed-request.txt");
    let expected_sig = expected.split("Signature=").nth(1).expect("signature in the signed request").trim();
    assert_eq!(signed.signature, expected_sig);
}

/// `double-encode-path`'s canonical request file carries another case's date, so only its
/// signature is a usable vector: `aws-sigv4`'s `test_sign_url_escape` signs it with the test
/// credentials of `aws-credential-types` (`ANOTREAL` / `notrealrnrELgWzOk3IfjzDKtFBhDby`) at
/// the request's own `X-amz-date` and expects the signature in its `header-signed-request.txt`.
#[test]
fn double_encoded_path_signature_matches() {
    let case = "double-encode-path";
    let req = parse_request(&read(case, "request.txt"));
    let creds = Credentials {
        access_key_id: "ANOTREAL".into(),
        secret_access_key: Zeroizing::new("notrealrnrELgWzOk3IfjzDKtFBhDby".into()),
        session_token: None,
    };
    let time = AmzDate::parse("20150830T123600Z").expect("time");
    let signed = sigv4::sign(
        &Request {
            method: &req.method,
            path: &req.path,
            query: &req.query,
            headers: &req.headers,
            body: &req.body,
        },
        &creds,
        "us-east-1",
        "service",
        &time,
        &Settings::default(),
    );
    assert!(
        signed.canonical_request.starts_with("POST\n/test/%40connections/JBDvjfGEIAMCERw%253D\n"),
        "{}",
        signed.canonical_request
    );
    let auth = read(case, "header-signed-request.txt")
        .lines()
        .find_map(|l| l.strip_prefix("Authorization:"))
        .expect("Authorization")
        .trim()
        .to_string();
    let expected_sig = auth.split("Signature=").nth(1).expect("signature");
    assert_eq!(signed.signature, expected_sig);
    assert_eq!(
        signed.headers.iter().find(|(n, _)| n == "Authorization").map(|(_, v)| v.as_str()),
        Some(auth.as_str())
    );
}
