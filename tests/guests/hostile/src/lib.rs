//! A hostile credential backend: `get-value` attacks the sandbox in the way the credential
//! id names. Each attack must be contained: the host keeps serving, the guest gets nothing
//! it was not granted, and the caller sees a precise error.
//!
//! | id | attack |
//! |---|---|
//! | `spin` | an endless loop (CPU budget) |
//! | `grow` | allocates until memory runs out (memory limit) |
//! | `recurse` | unbounded recursion (stack limit) |
//! | `panic` | panics (a trap; the message goes to stderr, i.e. the log) |
//! | `exit` | calls `exit(3)` (WASI 0.2 carries only failure, so the host sees 1) |
//! | `read-file` | opens `/etc/passwd` (fails: nothing is preopened) |
//! | `tcp` | connects a TCP socket to 127.0.0.1 (fails: sockets denied) |
//! | `dns` | resolves `localhost` (fails: name lookup denied) |
//! | `env` | reads the environment, arguments and working directory (all empty) |
//! | `many-requests` | sends requests until the host refuses one |
//! | `huge-url` | passes a 3 MiB URL to the http import (hostcall data limit) |
//! | `huge-log` | passes a 3 MiB log message (hostcall data limit) |
//! | `log-flood` | writes 1000 log lines and 1000 stdout lines (rate limit) |
//! | `big-value` | returns a 2 MiB value (more than a secret may hold) |
//! | `sleep` | sleeps 60 s through WASI clocks (wall-time limit) |
//! | `count` | counts calls in this instance (state between pooled calls) |
//! | `fetch` | sends the request the credential's `locator` describes (see below) |
//!
//! `fetch` reads the locator as a small JSON request description,
//! `{"url": "…", "method": "GET", "headers": [["X-Vault-Token", "mine"]], "body": "…"}`
//! (`method` defaults to `GET`, `headers` to none, `body` to no body), sends it through the
//! `http` import exactly as written, and reports what the guest saw: on a response
//! `status=302 location=URL bytes=N body=TEXT` (`location` is `-` when absent; `body` is
//! the first 256 bytes, lossily decoded), on an `http-error`
//! `Err(unavailable("KIND: MESSAGE"))`, KIND being the WIT case name (`denied`,
//! `too-large`, …). A locator that does not parse is `Err(invalid-config(…))`.
//!
//! `get-values` answers a list whose first id is `wrong-length` with no results at all.
//! `init` fails when the config key `fail_init` is set.

use std::cell::Cell;
use std::hint::black_box;

use airlock::backend::config;
use airlock::backend::http::{self, HttpError, Method, Request};
use airlock::backend::log::{self, Level};
use airlock::backend::types::{BackendError, CredentialRef};
use exports::airlock::backend::backend::Guest;

wit_bindgen::generate!({
    world: "credential-backend",
    path: "../../../wit",
});

thread_local! {
    static CALLS: Cell<u32> = const { Cell::new(0) };
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let below = recurse(black_box(n - 1));
    black_box(below) + 1
}

fn http_error(e: &HttpError) -> String {
    match e {
        HttpError::Denied(m) => format!("denied: {m}"),
        HttpError::Timeout(m) => format!("timeout: {m}"),
        HttpError::Connection(m) => format!("connection: {m}"),
        HttpError::TooLarge(m) => format!("too-large: {m}"),
        HttpError::InvalidRequest(m) => format!("invalid-request: {m}"),
        HttpError::LimitExceeded(m) => format!("limit-exceeded: {m}"),
    }
}

fn get(url: String) -> Request {
    Request {
        method: Method::Get,
        url,
        headers: Vec::new(),
        body: None,
    }
}

/// A JSON value, as much of JSON as a request description needs (booleans and numbers
/// are recognised but carry nothing: no field takes one).
#[derive(Debug)]
enum Json {
    Null,
    Bool,
    Number,
    Text(String),
    List(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// A recursive-descent JSON reader over the locator text.
struct JsonReader<'a> {
    text: &'a [u8],
    at: usize,
}

impl JsonReader<'_> {
    fn parse(text: &str) -> Result<Json, String> {
        let mut reader = JsonReader {
            text: text.as_bytes(),
            at: 0,
        };
        let value = reader.value(0)?;
        reader.skip_space();
        if reader.at != reader.text.len() {
            return Err(format!("trailing text at byte {}", reader.at));
        }
        Ok(value)
    }

    fn skip_space(&mut self) {
        while self.text.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.text.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected `{}` at byte {}", byte as char, self.at))
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, String> {
        if self.text[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(format!("unexpected text at byte {}", self.at))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > 16 {
            return Err("nested too deeply".into());
        }
        match self.peek() {
            Some(b'"') => self.string().map(Json::Text),
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Ok(Json::List(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    if self.peek() == Some(b',') {
                        self.at += 1;
                    } else {
                        self.expect(b']')?;
                        return Ok(Json::List(items));
                    }
                }
            }
            Some(b'{') => {
                self.at += 1;
                let mut fields = Vec::new();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Ok(Json::Object(fields));
                }
                loop {
                    if self.peek() != Some(b'"') {
                        return Err(format!("expected a key at byte {}", self.at));
                    }
                    let key = self.string()?;
                    self.expect(b':')?;
                    fields.push((key, self.value(depth + 1)?));
                    if self.peek() == Some(b',') {
                        self.at += 1;
                    } else {
                        self.expect(b'}')?;
                        return Ok(Json::Object(fields));
                    }
                }
            }
            Some(b't') => self.literal("true", Json::Bool),
            Some(b'f') => self.literal("false", Json::Bool),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.at;
                while self
                    .text
                    .get(self.at)
                    .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    self.at += 1;
                }
                let number = std::str::from_utf8(&self.text[start..self.at]).unwrap_or("");
                number
                    .parse::<f64>()
                    .map(|_| Json::Number)
                    .map_err(|_| format!("bad number at byte {start}"))
            }
            _ => Err(format!("unexpected text at byte {}", self.at)),
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .text
            .get(self.at..self.at + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| format!("bad \\u escape at byte {}", self.at))?;
        self.at += 4;
        Ok(digits)
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let start = self.at;
            while self
                .text
                .get(self.at)
                .is_some_and(|b| *b != b'"' && *b != b'\\')
            {
                self.at += 1;
            }
            out.push_str(
                std::str::from_utf8(&self.text[start..self.at]).map_err(|e| e.to_string())?,
            );
            match self.text.get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let escape = self.text.get(self.at + 1).copied();
                    self.at += 2;
                    match escape {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => {
                            let mut code = self.hex4()?;
                            if (0xd800..0xdc00).contains(&code)
                                && self.text[self.at..].starts_with(b"\\u")
                            {
                                self.at += 2;
                                let low = self.hex4()?;
                                code = 0x10000
                                    + ((code - 0xd800) << 10)
                                    + (low.wrapping_sub(0xdc00) & 0x3ff);
                            }
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                        _ => return Err(format!("bad escape at byte {}", self.at - 1)),
                    }
                }
                _ => return Err("unterminated string".into()),
            }
        }
    }
}

/// The request a `fetch` locator describes.
fn fetch_request(locator: &str) -> Result<Request, String> {
    let Json::Object(fields) = JsonReader::parse(locator)? else {
        return Err("the locator is not a JSON object".into());
    };
    let mut request = get(String::new());
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("url", Json::Text(url)) => request.url = url,
            ("method", Json::Text(method)) => {
                request.method = match method.as_str() {
                    "GET" => Method::Get,
                    "HEAD" => Method::Head,
                    "POST" => Method::Post,
                    "PUT" => Method::Put,
                    "PATCH" => Method::Patch,
                    "DELETE" => Method::Delete,
                    "OPTIONS" => Method::Options,
                    _ => Method::Other(method),
                }
            }
            ("headers", Json::List(headers)) => {
                for header in headers {
                    match header {
                        Json::List(pair) => match <[Json; 2]>::try_from(pair) {
                            Ok([Json::Text(name), Json::Text(value)]) => {
                                request.headers.push((name, value))
                            }
                            _ => return Err("a header is not a [name, value] pair".into()),
                        },
                        _ => return Err("a header is not a [name, value] pair".into()),
                    }
                }
            }
            ("body", Json::Text(body)) => request.body = Some(body.into_bytes()),
            ("body", Json::Null) => request.body = None,
            (other, value) => return Err(format!("unexpected field {other:?}: {value:?}")),
        }
    }
    if request.url.is_empty() {
        return Err("the locator has no url".into());
    }
    Ok(request)
}

/// `fetch`: send the described request and report what came back.
fn fetch(locator: Option<&str>) -> Result<String, BackendError> {
    let request = fetch_request(locator.unwrap_or_default())
        .map_err(|e| BackendError::InvalidConfig(format!("bad fetch locator: {e}")))?;
    match http::send(&request) {
        Ok(response) => {
            let location = response
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("location"))
                .map_or("-", |(_, value)| value.as_str());
            let shown = &response.body[..response.body.len().min(256)];
            Ok(format!(
                "status={} location={location} bytes={} body={}",
                response.status,
                response.body.len(),
                String::from_utf8_lossy(shown)
            ))
        }
        Err(e) => Err(BackendError::Unavailable(http_error(&e))),
    }
}

fn attack(id: &str, locator: Option<&str>) -> Result<String, BackendError> {
    match id {
        "fetch" => fetch(locator),
        "spin" => {
            let mut x: u64 = 0;
            loop {
                x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        "grow" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = vec![0u8; 1 << 20];
                chunk[4096] = 1;
                hoard.push(black_box(chunk));
            }
        }
        "recurse" => Ok(recurse(black_box(u64::MAX)).to_string()),
        "panic" => panic!("hostile guest panicked on purpose"),
        "exit" => std::process::exit(3),
        "read-file" => match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => Ok(text),
            Err(e) => Err(BackendError::Denied(format!(
                "open /etc/passwd failed: {e}"
            ))),
        },
        "tcp" => match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => Ok("connected".into()),
            Err(e) => Err(BackendError::Denied(format!("tcp connect failed: {e}"))),
        },
        "dns" => match std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80)) {
            Ok(addrs) => Ok(format!("resolved {} addresses", addrs.count())),
            Err(e) => Err(BackendError::Denied(format!("name lookup failed: {e}"))),
        },
        "env" => {
            let vars = std::env::vars().count();
            let args = std::env::args().count();
            let cwd = std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| format!("error: {e}"));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() > 0)
                .unwrap_or(false);
            let random = std::collections::hash_map::RandomState::new();
            black_box(random);
            Ok(format!("vars={vars} args={args} cwd={cwd} clock={now}"))
        }
        "many-requests" => {
            let address = config::get("address").unwrap_or_default();
            for i in 1..=1000 {
                if let Err(e) = http::send(&get(format!("{address}/secret/x"))) {
                    return Err(BackendError::Unavailable(format!(
                        "request {i} refused: {}",
                        http_error(&e)
                    )));
                }
            }
            Ok("every request was sent".into())
        }
        "huge-url" => {
            let url = format!("http://127.0.0.1/{}", "a".repeat(3 << 20));
            match http::send(&get(url)) {
                Ok(_) => Ok("sent".into()),
                Err(e) => Err(BackendError::Internal(http_error(&e))),
            }
        }
        "huge-log" => {
            log::log(Level::Info, &"x".repeat(3 << 20));
            Ok("logged".into())
        }
        "log-flood" => {
            for i in 0..1000 {
                log::log(
                    Level::Warn,
                    &format!("flood line {i}\nforged-backend: fake line"),
                );
                println!("stdout line {i}");
            }
            Ok("flooded".into())
        }
        "big-value" => Ok("v".repeat(2 << 20)),
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(60));
            Ok("woke up".into())
        }
        "count" => {
            let n = CALLS.with(|c| {
                c.set(c.get() + 1);
                c.get()
            });
            Ok(format!("call {n}"))
        }
        other => {
            log::log(Level::Debug, &format!("no attack named {other}"));
            Err(BackendError::NotFound)
        }
    }
}

struct Hostile;

impl Guest for Hostile {
    fn init() -> Result<(), BackendError> {
        if config::get("fail_init").is_some() {
            return Err(BackendError::InvalidConfig(
                "init refused on purpose".into(),
            ));
        }
        Ok(())
    }

    fn get_value(cred: CredentialRef) -> Result<String, BackendError> {
        attack(&cred.id, cred.locator.as_deref())
    }

    fn get_values(creds: Vec<CredentialRef>) -> Vec<Result<String, BackendError>> {
        if creds.first().is_some_and(|c| c.id == "wrong-length") {
            return Vec::new();
        }
        creds
            .iter()
            .map(|c| attack(&c.id, c.locator.as_deref()))
            .collect()
    }

    fn store_value(_cred: CredentialRef, _value: String) -> Result<(), BackendError> {
        Err(BackendError::Unsupported(
            "the hostile backend stores nothing".into(),
        ))
    }

    fn delete_value(_cred: CredentialRef) -> Result<(), BackendError> {
        Err(BackendError::Unsupported(
            "the hostile backend deletes nothing".into(),
        ))
    }

    fn health() -> Result<String, BackendError> {
        Ok("hostile and proud".into())
    }
}

export!(Hostile);
