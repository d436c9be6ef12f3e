//! AWS Signature Version 4 (header signing), implemented here with `hmac` and `sha2` so the
//! guest needs no AWS SDK.
//!
//! The algorithm is the one in AWS's "Create a signed AWS API request" guide: a canonical
//! request (method, canonical URI, canonical query, canonical headers, signed header names,
//! payload hash) is hashed into a string to sign (`AWS4-HMAC-SHA256`, timestamp, credential
//! scope, hash), which is signed with a key derived from the secret access key by four chained
//! HMACs over date, region, service and `aws4_request`.
//!
//! It is checked against the official SigV4 test suite (`tests/sigv4_vectors.rs`), which pins
//! every intermediate value: canonical request, string to sign and signature.
//!
//! Invariants: the secret access key is only ever an HMAC key here — it is never formatted,
//! logged or returned; the signature reveals nothing of it. Headers the signer owns
//! (`X-Amz-Date`, `X-Amz-Security-Token`, `X-Amz-Content-Sha256`, `Authorization`) are
//! replaced, never duplicated, so a caller cannot smuggle a second date past the signature.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// The algorithm name written into the string to sign and the `Authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Static AWS credentials: an access key id, its secret, and the session token that comes
/// with temporary (STS) credentials.
#[derive(Clone)]
pub struct Credentials {
    /// The access key id (`AKIA…` or `ASIA…`); not a secret, it appears in every request.
    pub access_key_id: String,
    /// The secret access key; used only as HMAC key material, zeroed on drop.
    pub secret_access_key: Zeroizing<String>,
    /// The session token of temporary credentials, sent as `X-Amz-Security-Token`.
    pub session_token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Credentials {
    /// Shows only the access key id: the secret and the token are redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// How the canonical URI is built from the request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathEncoding {
    /// The path is taken as it is sent on the wire (already percent-encoded) and only bytes
    /// outside the unreserved set, `/` and `%` are encoded. This is the AWS CRT test suite's
    /// convention and what S3 expects.
    Single,
    /// The wire path is URI-encoded once more (so `%3A` becomes `%253A`). Every AWS service
    /// other than S3 expects this; for Secrets Manager the path is always `/`, so both agree.
    Double,
}

/// Signer settings that differ between services and between the test-suite cases.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Remove `.`/`..` segments and empty segments from the path (RFC 3986 §5.2.4) before
    /// encoding. Every service but S3 wants it.
    pub normalize_path: bool,
    /// See [`PathEncoding`].
    pub path_encoding: PathEncoding,
    /// Add and sign `X-Amz-Content-Sha256` (S3-style). Off for Secrets Manager.
    pub content_sha256_header: bool,
    /// Sign `X-Amz-Security-Token` (the normal case). When false the token is still sent but
    /// added after signing, as a few services (IoT) require; the test suite covers both.
    pub sign_session_token: bool,
}

impl Default for Settings {
    /// The settings for AWS JSON services such as Secrets Manager.
    fn default() -> Self {
        Self {
            normalize_path: true,
            path_encoding: PathEncoding::Double,
            content_sha256_header: false,
            sign_session_token: true,
        }
    }
}

/// A request to sign. `headers` must include `host` (the host computes it from the URL when
/// sending, so the guest signs the same value it knows the host will send).
#[derive(Debug)]
pub struct Request<'a> {
    /// The HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The path as sent on the wire, e.g. `/` (no query).
    pub path: &'a str,
    /// The raw query string without `?`, possibly empty.
    pub query: &'a str,
    /// The headers to sign, names in any case; repeated names are allowed.
    pub headers: &'a [(String, String)],
    /// The body; its SHA-256 is part of the signature.
    pub body: &'a [u8],
}

/// What signing produced: the intermediate values (for tests and debugging — none contains
/// the secret key) and the headers to add to the request.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The canonical request, exactly as hashed.
    pub canonical_request: String,
    /// The string to sign, exactly as signed.
    pub string_to_sign: String,
    /// The hex signature.
    pub signature: String,
    /// Headers to add to the request (the `X-Amz-*` ones and `Authorization`), in order.
    pub headers: Vec<(String, String)>,
}

/// A signing time, kept as the two strings SigV4 uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmzDate {
    /// `YYYYMMDD'T'HHMMSS'Z'`, the `X-Amz-Date` value.
    pub timestamp: String,
    /// `YYYYMMDD`, the date in the credential scope.
    pub date: String,
}

impl AmzDate {
    /// The signing time for `unix_seconds` seconds after 1970-01-01T00:00:00Z (UTC).
    pub fn from_unix(unix_seconds: u64) -> Self {
        let days = unix_seconds / 86_400;
        let secs = unix_seconds % 86_400;
        let (y, m, d) = civil_from_days(days);
        let date = format!("{y:04}{m:02}{d:02}");
        let timestamp = format!("{date}T{:02}{:02}{:02}Z", secs / 3600, (secs % 3600) / 60, secs % 60);
        Self { timestamp, date }
    }

    /// Parses an `X-Amz-Date` value (`20150830T123600Z`). `None` when it is not one.
    pub fn parse(timestamp: &str) -> Option<Self> {
        let b = timestamp.as_bytes();
        let shape_ok = b.len() == 16
            && b[8] == b'T'
            && b[15] == b'Z'
            && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
        shape_ok.then(|| Self { timestamp: timestamp.to_string(), date: timestamp[..8].to_string() })
    }
}

/// Parses an HTTP date (RFC 9110 IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`, what every
/// AWS endpoint sends in `Date`) to seconds since the Unix epoch. `None` for anything else.
pub fn parse_http_date(text: &str) -> Option<u64> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_weekday, day, month, year, clock, "GMT"] = parts[..] else {
        return None;
    };
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = u64::try_from(MONTHS.iter().position(|m| *m == month)? + 1).ok()?;
    let day: u64 = day.parse().ok()?;
    let year: u64 = year.parse().ok()?;
    let hms: Vec<u64> = clock.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, sec] = hms[..] else {
        return None;
    };
    if !(1970..=9999).contains(&year) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since the Unix epoch of a civil date from 1970 on (Howard Hinnant's
/// `days_from_civil`, the inverse of [`civil_from_days`]).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

/// Converts days since the Unix epoch to a (year, month, day) civil date (proleptic
/// Gregorian), by Howard Hinnant's `civil_from_days` algorithm.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a 400-year era.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Signs `req` for `service` in `region` at `time` with `creds`, in the `Authorization` header.
pub fn sign(
    req: &Request<'_>,
    creds: &Credentials,
    region: &str,
    service: &str,
    time: &AmzDate,
    settings: &Settings,
) -> Signed {
    let payload_hash = hex(&Sha256::digest(req.body));

    // The headers that take part in the signature: the caller's, minus the ones the signer
    // owns (replaced below) and the ones that are never signed.
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .filter(|(n, _)| !OWNED_HEADERS.contains(&n.as_str()) && !UNSIGNED_HEADERS.contains(&n.as_str()))
        .collect();
    let mut added: Vec<(String, String)> = vec![("X-Amz-Date".into(), time.timestamp.clone())];
    headers.push(("x-amz-date".into(), time.timestamp.clone()));
    if settings.content_sha256_header {
        added.push(("X-Amz-Content-Sha256".into(), payload_hash.clone()));
        headers.push(("x-amz-content-sha256".into(), payload_hash.clone()));
    }
    let token = creds.session_token.as_ref().map(|t| t.as_str());
    if let (Some(token), true) = (token, settings.sign_session_token) {
        headers.push(("x-amz-security-token".into(), token.to_string()));
    }

    let (canonical_headers, signed_headers) = canonical_headers(&headers);
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.path, settings),
        canonical_query(req.query),
        canonical_headers,
        signed_headers,
        payload_hash
    );

    let scope = format!("{}/{region}/{service}/aws4_request", time.date);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        time.timestamp,
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );

    let key = signing_key(&creds.secret_access_key, &time.date, region, service);
    let signature = hex(&hmac(&key[..], string_to_sign.as_bytes()));

    if let Some(token) = token {
        added.push(("X-Amz-Security-Token".into(), token.to_string()));
    }
    added.push((
        "Authorization".into(),
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            creds.access_key_id
        ),
    ));

    Signed { canonical_request, string_to_sign, signature, headers: added }
}

/// Headers the signer sets itself; a caller's copies are dropped.
const OWNED_HEADERS: &[&str] =
    &["authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"];

/// Headers proxies and clients rewrite, which AWS's own signers leave out of the signature.
const UNSIGNED_HEADERS: &[&str] = &["user-agent", "x-amzn-trace-id", "expect"];

/// The derived signing key: HMAC chains over date, region, service and `aws4_request`,
/// starting from `AWS4` + the secret. Zeroed on drop like the secret it comes from.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Zeroizing<[u8; 32]> {
    let start = Zeroizing::new(format!("AWS4{secret}"));
    let k_date = Zeroizing::new(hmac(start.as_bytes(), date.as_bytes()));
    let k_region = Zeroizing::new(hmac(&k_date[..], region.as_bytes()));
    let k_service = Zeroizing::new(hmac(&k_region[..], service.as_bytes()));
    Zeroizing::new(hmac(&k_service[..], b"aws4_request"))
}

/// HMAC-SHA256 of `msg` under `key`.
fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of every length, so construction cannot fail; the fallback arm only
    // satisfies the type and is unreachable.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// The canonical headers block (each `name:value\n`) and the signed header list
/// (`a;b;c`): names lowercased and sorted, repeated names joined with `,` in the order
/// given, values trimmed with inner whitespace runs collapsed to one space.
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut merged: Vec<(String, String)> = Vec::new();
    let mut sorted: Vec<&(String, String)> = headers.iter().collect();
    // A stable sort keeps repeated headers in their original order.
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, value) in sorted {
        let value = collapse_whitespace(value);
        match merged.last_mut() {
            Some((last, joined)) if last == name => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => merged.push((name.clone(), value)),
        }
    }
    let mut block = String::new();
    for (name, value) in &merged {
        block.push_str(name);
        block.push(':');
        block.push_str(value);
        block.push('\n');
    }
    let names: Vec<&str> = merged.iter().map(|(n, _)| n.as_str()).collect();
    (block, names.join(";"))
}

/// Trims `value` and collapses every run of whitespace (including the line breaks of an
/// obsolete folded header) into one space.
fn collapse_whitespace(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical URI for a wire-form `path` under `settings`.
fn canonical_uri(path: &str, settings: &Settings) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let path = if settings.normalize_path { normalize_path(path) } else { path.to_string() };
    match settings.path_encoding {
        PathEncoding::Single => encode(path.as_bytes(), |b| b == b'/' || b == b'%'),
        PathEncoding::Double => encode(path.as_bytes(), |b| b == b'/'),
    }
}

/// RFC 3986 §5.2.4 dot-segment removal, also dropping empty segments (`//`), keeping a
/// trailing slash. Always returns an absolute path.
fn normalize_path(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut result = format!("/{}", out.join("/"));
    let trailing = ["/", "/.", "/.."].iter().any(|s| path.ends_with(s));
    if trailing && !result.ends_with('/') {
        result.push('/');
    }
    result
}

/// The canonical query: parameters split on `&` and the first `=`, decoded (`+` is a
/// space, as in form encoding) and re-encoded strictly, then sorted by name and value.
fn canonical_query(query: &str) -> String {
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&percent_decode(k), |_| false), encode(&percent_decode(v), |_| false))
        })
        .collect();
    params.sort();
    params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// Decodes `%XX` escapes and `+` in a query component; a malformed escape is kept as text.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = b.get(i + 1).and_then(|c| char::from(*c).to_digit(16));
                let lo = b.get(i + 2).and_then(|c| char::from(*c).to_digit(16));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => {
                        // Two hex digits make at most 0xff.
                        out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'%'));
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Percent-encodes every byte outside RFC 3986's unreserved set (`A-Z a-z 0-9 - _ . ~`)
/// for which `keep` is false, with uppercase hex as SigV4 requires.
pub fn encode(bytes: &[u8], keep: impl Fn(u8) -> bool) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || keep(b) {
            s.push(char::from(b));
        } else {
            s.push('%');
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 0xf)]));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_from_unix_time() {
        // 2015-08-30T12:36:00Z, the test suite's signing time.
        assert_eq!(AmzDate::from_unix(1_440_938_160), AmzDate::parse("20150830T123600Z").expect("valid"));
        assert_eq!(AmzDate::from_unix(0).timestamp, "19700101T000000Z");
        // A leap day and the last second of a year.
        assert_eq!(AmzDate::from_unix(951_782_400).date, "20000229");
        assert_eq!(AmzDate::from_unix(1_704_067_199).timestamp, "20231231T235959Z");
    }

    #[test]
    fn http_dates_parse() {
        // RFC 9110's example, and the suite's signing time.
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        let t = parse_http_date("Sun, 30 Aug 2015 12:36:00 GMT").expect("date");
        assert_eq!(AmzDate::from_unix(t).timestamp, "20150830T123600Z");
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 23:59:59 GMT").map(AmzDate::from_unix).map(|d| d.date),
            Some("20240229".into())
        );
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:00:00 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_timestamps_are_refused() {
        for bad in ["", "20150830", "20150830T123600", "2015083XT123600Z", "20150830 123600Z"] {
            assert!(AmzDate::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%20b+c"), b"a b c");
        assert_eq!(percent_decode("100%"), b"100%");
        assert_eq!(percent_decode("%zz"), b"%zz");
        assert_eq!(percent_decode("%4"), b"%4");
    }

    #[test]
    fn debug_redacts_the_secret() {
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Zeroizing::new("very-secret".into()),
            session_token: Some(Zeroizing::new("token-secret".into())),
        };
        let shown = format!("{creds:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("very-secret") && !shown.contains("token-secret"));
    }
}
