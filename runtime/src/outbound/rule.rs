//! One `allowed_outbound` entry: its syntax, and whether a request's destination matches it.
//!
//! Syntax, in the spirit of Spin's `allowed_outbound_hosts`:
//!
//! ```text
//! [METHOD[,METHOD...] ]scheme://host[:port][/path/prefix]
//! ```
//!
//! - `scheme`: `http` or `https`.
//! - `host`: a DNS name (`vault.internal`); a suffix wildcard `*.example.com` (matches
//!   `a.example.com` and `a.b.example.com`, never `example.com` itself nor
//!   `evilexample.com`); an IPv4 address (`127.0.0.1`); an IPv6 address in brackets
//!   (`[::1]`); a CIDR network (`10.1.0.0/16`, `[fd00::]/8` or `[fd00::/8]`). After an IPv4
//!   address, `/digits` is always read as a CIDR prefix: write the port to give a path
//!   (`http://10.0.0.1:80/16/`).
//! - `port`: a number 1–65535 or `*` for any; omitted means the scheme's default (80/443).
//! - methods: RFC 9110 tokens, upper-cased; omitted means any method.
//! - path prefix: matched on segment boundaries after the same normalisation the request
//!   URL gets (`/v1/secret/` matches `/v1/secret` and `/v1/secret/a`, not `/v1/secretx`,
//!   and `/v1/secret/../sys` is `/v1/sys`).
//!
//! Refused: userinfo, query, fragment, other schemes, an empty host, a bad CIDR, port 0,
//! wildcards anywhere but a leading `*.`. Every error names the entry and the problem.
//!
//! Pure code. Invariant: host names are compared in the exact form the `url` crate gives
//! request URLs (lower-case, IDNA-mapped, IPv4 numbers normalised, one trailing dot
//! removed), because both sides go through the same parser.

use std::fmt;
use std::net::IpAddr;

use url::Url;

use super::address::{IpNet, canonical};
use super::http_syntax::is_token;

/// A refused entry: the text as written and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?}: {problem}")]
pub struct RuleError {
    pub entry: String,
    pub problem: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn parse(text: &str) -> Option<Scheme> {
        match text.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The host part of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// A DNS name, lower-case, without a trailing dot.
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    Suffix(String),
    /// One address, canonical (IPv4-mapped IPv6 stored as IPv4).
    Ip(IpAddr),
    Cidr(IpNet),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortPattern {
    Exact(u16),
    Any,
}

/// A request's host after normalisation: what a rule is matched against and what the
/// host connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// Lower-case DNS name without a trailing dot.
    Domain(String),
    /// Canonical address.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ip(IpAddr::V4(v4)) => write!(f, "{v4}"),
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
        }
    }
}

/// Everything about a request a rule looks at.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub scheme: Scheme,
    pub host: &'a Host,
    pub port: u16,
    pub method: &'a str,
    /// The normalised path (percent-encoded as the `url` crate serialises it).
    pub path: &'a str,
}

/// A parsed `allowed_outbound` entry.
#[derive(Debug, Clone)]
pub struct AllowRule {
    text: String,
    methods: Option<Vec<String>>,
    scheme: Scheme,
    host: HostPattern,
    port: PortPattern,
    /// Normalised, no trailing `/`; `None` means any path.
    path_prefix: Option<String>,
}

impl AllowRule {
    /// Parse one entry.
    pub fn parse(entry: &str) -> Result<AllowRule, RuleError> {
        parse(entry).map_err(|problem| RuleError {
            entry: entry.to_owned(),
            problem,
        })
    }

    /// The entry as the operator wrote it.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn host(&self) -> &HostPattern {
        &self.host
    }

    pub fn port(&self) -> PortPattern {
        self.port
    }

    pub fn methods(&self) -> Option<&[String]> {
        self.methods.as_deref()
    }

    pub fn path_prefix(&self) -> Option<&str> {
        self.path_prefix.as_deref()
    }

    /// Whether two entries grant the same thing (however they were spelled).
    pub fn same_grant(&self, other: &AllowRule) -> bool {
        self.methods == other.methods
            && self.scheme == other.scheme
            && self.host == other.host
            && self.port == other.port
            && self.path_prefix == other.path_prefix
    }

    /// Whether the request's destination is covered by this entry.
    pub fn matches(&self, dest: &Destination<'_>) -> bool {
        self.matches_except_host(dest) && self.host_matches(dest.host)
    }

    /// Everything but the host: scheme, port, method and path.
    pub fn matches_except_host(&self, dest: &Destination<'_>) -> bool {
        self.scheme == dest.scheme
            && match self.port {
                PortPattern::Any => true,
                PortPattern::Exact(p) => p == dest.port,
            }
            && self
                .methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| m == dest.method))
            && self.path_prefix.as_deref().is_none_or(|prefix| {
                !is_ambiguous_path(dest.path) && path_has_prefix(dest.path, prefix)
            })
    }

    /// Whether the host part matches.
    pub fn host_matches(&self, host: &Host) -> bool {
        match (&self.host, host) {
            (HostPattern::Exact(name), Host::Domain(d)) => name == d,
            (HostPattern::Suffix(suffix), Host::Domain(d)) => {
                d.len() > suffix.len() && d.ends_with(suffix.as_str())
            }
            (HostPattern::Ip(_) | HostPattern::Cidr(_), Host::Ip(ip)) => self.names_address(*ip),
            _ => false,
        }
    }

    /// Whether this entry's host is an address or network that contains `ip`: the
    /// operator named that address, so it is granted even if it is loopback or private.
    pub fn names_address(&self, ip: IpAddr) -> bool {
        match &self.host {
            HostPattern::Ip(a) => *a == canonical(ip),
            HostPattern::Cidr(net) => net.contains(ip),
            _ => false,
        }
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

/// Whether `path` is `prefix` or lies below it (segment boundary).
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

/// Whether a normalised path still holds something an upstream may decode into a
/// different path than the one matched: an encoded `/`, `\` or `.`, or a dot segment
/// with `;parameters` (`..;/`, which some servers strip to `..`). Path-restricted entries
/// never match such a path; the request would otherwise escape its prefix upstream.
pub fn is_ambiguous_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%2e") {
        return true;
    }
    path.split('/').any(|seg| {
        let base = seg.split(';').next().unwrap_or(seg);
        seg.contains(';') && (base == "." || base == "..")
    })
}

/// Normalise a path the way request URLs are normalised (dot segments resolved, percent
/// encoding as the `url` crate writes it) and drop a trailing `/`. `None`: any path.
pub fn normalise_path_prefix(path: &str) -> Result<Option<String>, String> {
    let url = Url::parse(&format!("http://h{path}"))
        .map_err(|e| format!("the path `{path}` is not valid: {e}"))?;
    let normalised = url.path().trim_end_matches('/');
    if normalised.is_empty() {
        Ok(None)
    } else {
        Ok(Some(normalised.to_owned()))
    }
}

fn parse(entry: &str) -> Result<AllowRule, String> {
    let trimmed = entry.trim();
    if trimmed.is_empty() {
        return Err("the entry is empty".into());
    }
    if trimmed.chars().any(char::is_control) {
        return Err("the entry contains a control character".into());
    }
    let (methods, url) = match trimmed.split_once(' ') {
        Some((before, _)) if before.contains("://") => {
            return Err("a space is not allowed in the URL".into());
        }
        Some((methods, url)) => (Some(parse_methods(methods)?), url),
        None => (None, trimmed),
    };
    if url.contains(char::is_whitespace) {
        return Err("expected `METHODS URL` with one space between them".into());
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("expected `http://host` or `https://host`")?;
    let scheme = Scheme::parse(scheme)
        .ok_or_else(|| format!("scheme `{scheme}` is not allowed; use http or https"))?;
    if rest.contains('?') {
        return Err("a query string is not allowed".into());
    }
    if rest.contains('#') {
        return Err("a fragment is not allowed".into());
    }
    let authority_end = rest.find('/').unwrap_or(rest.len());
    if rest[..authority_end].contains('@') {
        return Err("userinfo (`user@`) is not allowed".into());
    }
    let (host, rest) = parse_host(rest)?;
    let (port, rest) = match rest.strip_prefix(':') {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            (parse_port(&after[..end])?, &after[end..])
        }
        None => (PortPattern::Exact(scheme.default_port()), rest),
    };
    let path_prefix = match rest {
        "" => None,
        p if p.starts_with('/') => normalise_path_prefix(p)?,
        p => return Err(format!("unexpected `{p}` after the host")),
    };
    Ok(AllowRule {
        text: entry.to_owned(),
        methods,
        scheme,
        host,
        port,
        path_prefix,
    })
}

fn parse_methods(text: &str) -> Result<Vec<String>, String> {
    let mut methods: Vec<String> = Vec::new();
    for m in text.split(',') {
        if !is_token(m) {
            return Err(format!("`{m}` is not a valid HTTP method"));
        }
        let upper = m.to_ascii_uppercase();
        if !methods.contains(&upper) {
            methods.push(upper);
        }
    }
    Ok(methods)
}

fn parse_port(text: &str) -> Result<PortPattern, String> {
    if text == "*" {
        return Ok(PortPattern::Any);
    }
    if text.is_empty() {
        return Err("the port is empty".into());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port `{text}` is not a number or `*`"));
    }
    match text.parse::<u16>() {
        Ok(0) => Err("port 0 is not allowed".into()),
        Ok(p) => Ok(PortPattern::Exact(p)),
        Err(_) => Err(format!("port `{text}` is larger than 65535")),
    }
}

/// Parse the host (and a CIDR prefix) from the start of `rest`; returns what follows.
fn parse_host(rest: &str) -> Result<(HostPattern, &str), String> {
    if let Some(inner) = rest.strip_prefix('[') {
        let close = inner
            .find(']')
            .ok_or("an IPv6 address is missing its `]`")?;
        let (addr, after) = (&inner[..close], &inner[close + 1..]);
        if addr.contains('/') {
            return Ok((cidr(addr)?, after));
        }
        let ip = ip_literal(&format!("[{addr}]"))?;
        if let Some((prefix, after)) = cidr_suffix(after) {
            return Ok((cidr(&format!("{addr}/{prefix}"))?, after));
        }
        return Ok((HostPattern::Ip(ip), after));
    }
    let end = rest.find([':', '/']).unwrap_or(rest.len());
    let (name, after) = (&rest[..end], &rest[end..]);
    if name.is_empty() {
        return Err("the host is empty".into());
    }
    if let Some(suffix) = name.strip_prefix("*.") {
        if suffix.is_empty() || suffix == "." {
            return Err("a wildcard needs a domain after `*.`".into());
        }
        if suffix.contains('*') {
            return Err("only one leading `*.` wildcard is allowed".into());
        }
        return match url::Host::parse(suffix) {
            Ok(url::Host::Domain(d)) => {
                let d = d.strip_suffix('.').unwrap_or(&d);
                if d.is_empty() {
                    Err("a wildcard needs a domain after `*.`".into())
                } else {
                    Ok((HostPattern::Suffix(format!(".{d}")), after))
                }
            }
            Ok(_) => Err(format!(
                "`*.{suffix}`: a wildcard suffix must be a domain name"
            )),
            Err(e) => Err(format!("`{suffix}` is not a valid host: {e}")),
        };
    }
    if name.contains('*') {
        return Err(format!(
            "`{name}`: a wildcard host must be `*.` followed by a domain"
        ));
    }
    match url::Host::parse(name) {
        Ok(url::Host::Domain(d)) => {
            let d = d.strip_suffix('.').unwrap_or(&d);
            if d.is_empty() {
                return Err("the host is empty".into());
            }
            Ok((HostPattern::Exact(d.to_owned()), after))
        }
        Ok(url::Host::Ipv4(v4)) => match cidr_suffix(after) {
            Some((prefix, after)) => Ok((cidr(&format!("{v4}/{prefix}"))?, after)),
            None => Ok((HostPattern::Ip(IpAddr::V4(v4)), after)),
        },
        Ok(url::Host::Ipv6(v6)) => Ok((HostPattern::Ip(canonical(IpAddr::V6(v6))), after)),
        Err(e) => Err(format!("`{name}` is not a valid host: {e}")),
    }
}

/// `/digits` followed by the end, `:` or `/`: a CIDR prefix.
fn cidr_suffix(after: &str) -> Option<(&str, &str)> {
    let digits = after.strip_prefix('/')?;
    let end = digits.find([':', '/']).unwrap_or(digits.len());
    let prefix = &digits[..end];
    (!prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit()))
        .then_some((prefix, &digits[end..]))
}

fn cidr(text: &str) -> Result<HostPattern, String> {
    IpNet::parse(text)
        .map(HostPattern::Cidr)
        .map_err(|e| format!("bad CIDR `{text}`: {e}"))
}

fn ip_literal(bracketed: &str) -> Result<IpAddr, String> {
    match url::Host::parse(bracketed) {
        Ok(url::Host::Ipv6(v6)) => Ok(canonical(IpAddr::V6(v6))),
        _ => Err(format!("`{bracketed}` is not a valid IPv6 address")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> AllowRule {
        AllowRule::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn dom(d: &str) -> Host {
        Host::Domain(d.into())
    }

    fn ip(s: &str) -> Host {
        Host::Ip(canonical(s.parse().unwrap()))
    }

    fn dest<'a>(
        scheme: Scheme,
        host: &'a Host,
        port: u16,
        method: &'a str,
        path: &'a str,
    ) -> Destination<'a> {
        Destination {
            scheme,
            host,
            port,
            method,
            path,
        }
    }

    #[test]
    fn parses_the_documented_forms() {
        use HostPattern::*;
        let cases: Vec<(&str, Scheme, HostPattern, PortPattern)> = vec![
            (
                "https://vault.internal:8200",
                Scheme::Https,
                Exact("vault.internal".into()),
                PortPattern::Exact(8200),
            ),
            (
                "https://Vault.Internal.",
                Scheme::Https,
                Exact("vault.internal".into()),
                PortPattern::Exact(443),
            ),
            (
                "HTTP://vault",
                Scheme::Http,
                Exact("vault".into()),
                PortPattern::Exact(80),
            ),
            (
                "https://*.example.com",
                Scheme::Https,
                Suffix(".example.com".into()),
                PortPattern::Exact(443),
            ),
            (
                "https://*.example.com.:*",
                Scheme::Https,
                Suffix(".example.com".into()),
                PortPattern::Any,
            ),
            (
                "http://10.1.0.0/16:8200",
                Scheme::Http,
                Cidr(IpNet::parse("10.1.0.0/16").unwrap()),
                PortPattern::Exact(8200),
            ),
            (
                "http://10.0.0.0/8",
                Scheme::Http,
                Cidr(IpNet::parse("10.0.0.0/8").unwrap()),
                PortPattern::Exact(80),
            ),
            (
                "http://127.0.0.1:8080",
                Scheme::Http,
                Ip("127.0.0.1".parse().unwrap()),
                PortPattern::Exact(8080),
            ),
            (
                "https://[::1]:8443",
                Scheme::Https,
                Ip("::1".parse().unwrap()),
                PortPattern::Exact(8443),
            ),
            (
                "https://[::ffff:10.0.0.1]",
                Scheme::Https,
                Ip("10.0.0.1".parse().unwrap()),
                PortPattern::Exact(443),
            ),
            (
                "https://[fd00::]/8:443",
                Scheme::Https,
                Cidr(IpNet::parse("fd00::/8").unwrap()),
                PortPattern::Exact(443),
            ),
            (
                "https://[fd00::/8]:*",
                Scheme::Https,
                Cidr(IpNet::parse("fd00::/8").unwrap()),
                PortPattern::Any,
            ),
            (
                "http://2130706433:80",
                Scheme::Http,
                Ip("127.0.0.1".parse().unwrap()),
                PortPattern::Exact(80),
            ),
            (
                "https://b\u{fc}cher.example",
                Scheme::Https,
                Exact("xn--bcher-kva.example".into()),
                PortPattern::Exact(443),
            ),
        ];
        for (text, scheme, host, port) in cases {
            let r = rule(text);
            assert_eq!(r.scheme(), scheme, "{text}");
            assert_eq!(r.host(), &host, "{text}");
            assert_eq!(r.port(), port, "{text}");
            assert_eq!(r.methods(), None, "{text}");
            assert_eq!(r.path_prefix(), None, "{text}");
            assert_eq!(r.text(), text);
        }
    }

    #[test]
    fn parses_methods_and_path_prefix() {
        let r = rule("GET,put https://vault.internal:8200/v1/secret/");
        assert_eq!(
            r.methods(),
            Some(&["GET".to_string(), "PUT".to_string()][..])
        );
        assert_eq!(r.path_prefix(), Some("/v1/secret"));
        assert_eq!(
            rule("LIST https://v/a/./b/../c").path_prefix(),
            Some("/a/c")
        );
        assert_eq!(rule("https://v/").path_prefix(), None);
        assert_eq!(rule("http://10.0.0.1:80/16/").path_prefix(), Some("/16"));
        assert_eq!(rule("http://10.0.0.0/8:80/v1").path_prefix(), Some("/v1"));
        assert_eq!(
            rule("https://v/a b".replace(' ', "%20").as_str()).path_prefix(),
            Some("/a%20b")
        );
        assert_eq!(
            rule("GET,GET https://v").methods(),
            Some(&["GET".to_string()][..])
        );
    }

    #[test]
    fn refuses_bad_entries_naming_entry_and_problem() {
        for (text, problem) in [
            ("", "empty"),
            ("   ", "empty"),
            ("vault.internal", "expected `http://host`"),
            ("ftp://vault", "scheme `ftp` is not allowed"),
            ("file:///etc/passwd", "scheme `file` is not allowed"),
            ("https://user:pw@vault", "userinfo"),
            ("https://user@vault/x", "userinfo"),
            ("https://[::1]@vault", "userinfo"),
            ("https://vault?x=1", "query"),
            ("https://vault/#frag", "fragment"),
            ("https://", "host is empty"),
            ("https://:8200", "host is empty"),
            ("https:///path", "host is empty"),
            ("http://10.1.2.3/16", "host bits set"),
            ("http://10.0.0.0/33", "longer than the address"),
            ("http://[fd00::]/200", "bad CIDR"),
            ("http://[fd00::", "missing its `]`"),
            ("http://[not-v6]", "not a valid IPv6"),
            ("http://vault:0", "port 0"),
            ("http://vault:", "port is empty"),
            ("http://vault:65536", "larger than 65535"),
            ("http://vault:80x", "not a number"),
            ("https://*", "wildcard host must be"),
            ("https://a.*.com", "wildcard host must be"),
            ("https://*.*.com", "only one leading"),
            ("https://*.", "needs a domain"),
            ("https://*.10.0.0.1", "must be a domain name"),
            ("GET https://v extra", "one space"),
            ("GE:T https://v", "not a valid HTTP method"),
            ("GET, https://v", "not a valid HTTP method"),
            ("https://v\u{7}", "control character"),
            ("https://exa mple.com", "space is not allowed"),
            ("https://ex<ample.com", "not a valid host"),
            ("https://v]x", "not a valid host"),
            ("https://[::1]x", "unexpected `x`"),
        ] {
            let err = AllowRule::parse(text).expect_err(text);
            assert_eq!(err.entry, text);
            assert!(
                err.to_string().contains(problem),
                "{text}: expected {problem:?} in {err}"
            );
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
    }

    #[test]
    fn host_matching_table() {
        let exact = rule("https://vault.internal:8200");
        let wild = rule("https://*.example.com");
        let cidr = rule("http://10.1.0.0/16:8200");
        let lo = rule("http://127.0.0.1:8080");
        let v6 = rule("https://[::1]:8443");
        let v6net = rule("https://[fd00::]/8:*");
        let cases: Vec<(&AllowRule, Host, bool)> = vec![
            (&exact, dom("vault.internal"), true),
            (&exact, dom("vault.internal.evil"), false),
            (&exact, dom("evil.vault.internal"), false),
            (&wild, dom("a.example.com"), true),
            (&wild, dom("a.b.example.com"), true),
            (&wild, dom("example.com"), false),
            (&wild, dom("evilexample.com"), false),
            (&wild, dom("example.com.evil"), false),
            (&wild, dom(".example.com"), false),
            (&cidr, ip("10.1.2.3"), true),
            (&cidr, ip("::ffff:10.1.2.3"), true),
            (&cidr, ip("10.2.0.1"), false),
            (&cidr, dom("10.1.2.3.nip.io"), false),
            (&lo, ip("127.0.0.1"), true),
            (&lo, ip("::ffff:127.0.0.1"), true),
            (&lo, ip("127.0.0.2"), false),
            (&lo, dom("localhost"), false),
            (&v6, ip("::1"), true),
            (&v6, ip("127.0.0.1"), false),
            (&v6net, ip("fd12::1"), true),
            (&v6net, ip("fe80::1"), false),
        ];
        for (r, host, expected) in cases {
            assert_eq!(r.host_matches(&host), expected, "{} vs {host}", r.text());
        }
    }

    #[test]
    fn scheme_port_method_path_matching() {
        let host = dom("vault.internal");
        let r = rule("GET,PUT https://vault.internal:8200/v1/secret/");
        let ok = |scheme, port, method, path| r.matches(&dest(scheme, &host, port, method, path));
        assert!(ok(Scheme::Https, 8200, "GET", "/v1/secret/foo"));
        assert!(ok(Scheme::Https, 8200, "PUT", "/v1/secret/a/b"));
        assert!(ok(Scheme::Https, 8200, "GET", "/v1/secret"));
        assert!(ok(Scheme::Https, 8200, "GET", "/v1/secret/"));
        assert!(!ok(Scheme::Https, 8200, "DELETE", "/v1/secret/foo"));
        assert!(!ok(Scheme::Https, 8200, "get", "/v1/secret/foo"));
        assert!(!ok(Scheme::Http, 8200, "GET", "/v1/secret/foo"));
        assert!(!ok(Scheme::Https, 443, "GET", "/v1/secret/foo"));
        assert!(!ok(Scheme::Https, 8200, "GET", "/v1/secretx"));
        assert!(!ok(Scheme::Https, 8200, "GET", "/v1/sys"));
        assert!(!ok(Scheme::Https, 8200, "GET", "/v1/secret%2f..%2fsys"));
        assert!(!ok(Scheme::Https, 8200, "GET", "/v1/secret/%2E%2E/sys"));
        assert!(!ok(Scheme::Https, 8200, "GET", "/v1/secret/..;/sys"));
        assert!(!ok(
            Scheme::Https,
            8200,
            "GET",
            "/v1/secret/a%5c..%5c..%5csys"
        ));
        assert!(!ok(Scheme::Https, 8200, "GET", "/"));

        let default_port = rule("https://vault.internal");
        assert!(default_port.matches(&dest(Scheme::Https, &host, 443, "DELETE", "/")));
        assert!(!default_port.matches(&dest(Scheme::Https, &host, 8443, "GET", "/")));
        let any_port = rule("http://vault.internal:*");
        assert!(any_port.matches(&dest(Scheme::Http, &host, 1, "GET", "/a%2fb")));
        assert!(any_port.matches(&dest(Scheme::Http, &host, 65535, "GET", "/")));
        let root = rule("https://vault.internal/");
        assert!(root.matches(&dest(Scheme::Https, &host, 443, "GET", "/anything")));
    }

    #[test]
    fn path_prefix_boundaries() {
        assert!(path_has_prefix("/v1/secret", "/v1/secret"));
        assert!(path_has_prefix("/v1/secret/x", "/v1/secret"));
        assert!(!path_has_prefix("/v1/secretx", "/v1/secret"));
        assert!(!path_has_prefix("/v1", "/v1/secret"));
        assert!(is_ambiguous_path("/a%2Fb"));
        assert!(is_ambiguous_path("/a/..;x/b"));
        assert!(is_ambiguous_path("/a/.;/b"));
        assert!(!is_ambiguous_path("/a;b/c"));
        assert!(!is_ambiguous_path("/a/b..c/d"));
    }

    #[test]
    fn same_grant_ignores_spelling() {
        assert!(rule("https://Vault.internal:443/").same_grant(&rule("https://vault.internal")));
        assert!(!rule("https://vault.internal").same_grant(&rule("https://vault.internal:8200")));
        assert!(!rule("GET https://v").same_grant(&rule("https://v")));
    }

    #[test]
    fn names_address_only_for_ip_and_cidr_hosts() {
        let addr = "10.1.2.3".parse().unwrap();
        assert!(rule("http://10.1.0.0/16").names_address(addr));
        assert!(rule("http://10.1.2.3").names_address(addr));
        assert!(!rule("http://10.1.2.4").names_address(addr));
        assert!(!rule("http://vault.internal").names_address(addr));
    }
}
