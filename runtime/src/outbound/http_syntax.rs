//! HTTP message syntax the outbound policy enforces: RFC 9110 tokens (methods, field
//! names), field values, and the fields a guest may never set.
//!
//! Pure code. These checks run on guest-supplied text before any of it reaches an HTTP
//! library, so a malformed header is refused by airlock with a clear error rather than
//! being "fixed up", split or smuggled by whatever serialises it.

/// Whether `text` is an RFC 9110 `token` (method names, header field names): one or more
/// of ALPHA, DIGIT and `` !#$%&'*+-.^_`|~ ``. Excludes CR, LF, NUL, space, `:` and every
/// other byte that could end a field or a request line early.
pub fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Whether `text` contains CR, LF or NUL: the bytes that split one header into two
/// (request smuggling, header injection) or truncate it in C-based proxies.
pub fn has_line_break_or_nul(text: &str) -> bool {
    text.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// Why a field value was refused. Never carries the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueProblem {
    /// CR, LF or NUL.
    LineBreakOrNul,
    /// Another control character (only horizontal tab is allowed).
    Control,
}

impl ValueProblem {
    pub fn describe(self) -> &'static str {
        match self {
            ValueProblem::LineBreakOrNul => "contains CR, LF or NUL",
            ValueProblem::Control => "contains a control character",
        }
    }
}

/// Check a field value: visible characters, spaces, horizontal tabs and non-ASCII text
/// (RFC 9110 `field-value` with obs-text). Control characters are refused.
pub fn check_value(value: &str) -> Result<(), ValueProblem> {
    if has_line_break_or_nul(value) {
        return Err(ValueProblem::LineBreakOrNul);
    }
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(ValueProblem::Control);
    }
    Ok(())
}

/// Header fields only the host may set, lower-case. Each one lets a guest change how the
/// message is framed or routed rather than what it says:
/// - `host`: virtual-host confusion — the allow-list matched the URL's host, the upstream
///   would route by this one;
/// - `connection`, `keep-alive`, `te`, `trailer`, `upgrade`: hop-by-hop controls (turning
///   the connection into a tunnel, or stripping headers at a proxy);
/// - `transfer-encoding`, `content-length`: body framing, the core of request smuggling;
///   the host sets the length from the body it actually sends;
/// - `proxy-*` (by prefix, see [`is_forbidden_header`]): credentials or routing for proxies.
pub const FORBIDDEN_HEADERS: [&str; 8] = [
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

/// Whether a guest may not set this header (case-insensitive).
pub fn is_forbidden_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-")
}

/// A guest-supplied name or other text made safe for a message: escaped (no control
/// characters reach a log line) and cut to `max` characters.
pub fn quote(text: &str, max: usize) -> String {
    let mut cut: String = text.chars().take(max).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        for ok in ["GET", "LIST", "x-vault-token", "A1!#$%&'*+-.^_`|~"] {
            assert!(is_token(ok), "{ok}");
        }
        for bad in [
            "",
            "GE T",
            "GET\r\n",
            "X:Y",
            "a\0",
            "caf\u{e9}",
            "(x)",
            "a/b",
            "a\"",
            "{}",
        ] {
            assert!(!is_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn values() {
        assert_eq!(check_value("Bearer abc.def"), Ok(()));
        assert_eq!(check_value("a\tb"), Ok(()));
        assert_eq!(check_value("caf\u{e9}"), Ok(()));
        assert_eq!(check_value(""), Ok(()));
        assert_eq!(
            check_value("a\r\nX-Evil: 1"),
            Err(ValueProblem::LineBreakOrNul)
        );
        assert_eq!(check_value("a\nb"), Err(ValueProblem::LineBreakOrNul));
        assert_eq!(check_value("a\0b"), Err(ValueProblem::LineBreakOrNul));
        assert_eq!(check_value("a\x07b"), Err(ValueProblem::Control));
        assert_eq!(check_value("a\x7fb"), Err(ValueProblem::Control));
    }

    #[test]
    fn forbidden_headers() {
        for name in [
            "Host",
            "CONNECTION",
            "keep-alive",
            "Transfer-Encoding",
            "TE",
            "Trailer",
            "Upgrade",
            "Content-Length",
            "Proxy-Authorization",
            "proxy-connection",
        ] {
            assert!(is_forbidden_header(name), "{name}");
        }
        for name in [
            "Authorization",
            "X-Vault-Token",
            "Content-Type",
            "Hostname",
            "Proxyish",
        ] {
            assert!(!is_forbidden_header(name), "{name}");
        }
    }

    #[test]
    fn quoting_escapes_and_truncates() {
        assert_eq!(quote("a\r\nb", 10), "\"a\\r\\nb\"");
        assert_eq!(quote("abcdef", 3), "\"abc…\"");
    }
}
