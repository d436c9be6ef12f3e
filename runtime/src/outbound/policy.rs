//! The outbound policy of one backend: which requests it may send, to which addresses, and
//! which headers the host adds for it. Pure code — no I/O, no clock, no logging — so every
//! decision is table-tested; `client` carries the decisions out.
//!
//! Invariants:
//! - A request URL is parsed exactly once, by the `url` crate (the WHATWG parser), and the
//!   URL that is matched is the URL that is sent ([`Checked::url`]): no second parser can
//!   read `http://2852039166/` or `http://a@b/` differently from the one that decided.
//! - Every address the host may connect to goes through [`OutboundPolicy::check_address`]:
//!   cloud metadata and link-local are refused whatever the configuration says; loopback,
//!   private and other non-public ranges only when `allow_private_networks` is set or an
//!   allow-list entry names the address.
//! - Denial messages name the rule or reason and the destination (scheme, host, port,
//!   path), never a header value, a query string or userinfo.

use std::net::IpAddr;
use std::sync::Arc;

use url::Url;

use super::OutboundError;
use super::OutboundRequest;
use super::address::{AddressClass, canonical, classify};
use super::config::{OutboundConfig, OutboundConfigError};
use super::http_syntax::{
    check_value, has_line_break_or_nul, is_forbidden_header, is_token, quote,
};
use super::rule::{AllowRule, Destination, Host, Scheme, is_ambiguous_path};
use crate::secret::Secret;

/// Longest request URL accepted. Real API URLs are far shorter; the cap keeps a guest from
/// making the host parse, log and send megabyte URLs.
pub const MAX_URL_BYTES: usize = 8 * 1024;

/// Methods refused whatever the allow-list says. `TRACE` (and IIS's `TRACK`) make the
/// upstream echo the request back — injected headers included — so a guest would read
/// the secret the host added for it; `CONNECT` asks for a raw tunnel past every check.
pub const FORBIDDEN_METHODS: [&str; 3] = ["CONNECT", "TRACE", "TRACK"];

/// Limits on what a guest hands over, checked before anything is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Request body bytes. Stops a guest from using the host as a bulk exfiltration pipe
    /// or from pinning host memory.
    pub max_body_bytes: usize,
    /// Number of guest headers.
    pub max_headers: usize,
    /// Total bytes of guest header names and values.
    pub max_header_bytes: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_body_bytes: super::config::DEFAULT_MAX_REQUEST_BYTES,
            max_headers: super::config::DEFAULT_MAX_REQUEST_HEADERS,
            max_header_bytes: super::config::DEFAULT_MAX_REQUEST_HEADER_BYTES,
        }
    }
}

/// A header the host adds to requests for one allowed destination. The guest never sees
/// the value and may not send a header of the same name to that destination.
#[derive(Debug, Clone)]
pub struct HeaderInjection {
    destination: AllowRule,
    name: String,
    value: Secret,
}

impl HeaderInjection {
    /// Validate an injection. `destination` uses the allow-list syntax. Errors never
    /// include the value.
    pub fn new(
        destination: AllowRule,
        name: &str,
        value: Secret,
    ) -> Result<HeaderInjection, String> {
        if !is_token(name) {
            return Err(format!(
                "header name {} is not a valid token",
                quote(name, 64)
            ));
        }
        if is_forbidden_header(name) {
            return Err(format!(
                "header {name} may not be injected: it controls framing or routing"
            ));
        }
        if let Err(problem) = check_value(value.expose()) {
            return Err(format!("the value of {name} {}", problem.describe()));
        }
        Ok(HeaderInjection {
            destination,
            name: name.to_owned(),
            value,
        })
    }

    pub fn destination(&self) -> &AllowRule {
        &self.destination
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn value(&self) -> &Secret {
        &self.value
    }
}

/// A request that passed [`OutboundPolicy::check_request`]: everything the sender needs,
/// normalised. Only the policy makes one.
#[derive(Debug, Clone)]
pub struct Checked {
    url: Url,
    scheme: Scheme,
    host: Host,
    port: u16,
    method: String,
    headers: Vec<(String, String)>,
    injected: Vec<(String, Secret)>,
    rule: Arc<AllowRule>,
}

impl Checked {
    /// The URL to send: the one that was matched (fragment removed, a trailing dot on a
    /// DNS name removed). Contains the query: do not log it, use [`Checked::display_url`].
    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host to connect to: a DNS name to resolve, or an address.
    pub fn host(&self) -> &Host {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    /// The guest's headers, validated, as given.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Headers the host adds for this destination.
    pub fn injected(&self) -> &[(String, Secret)] {
        &self.injected
    }

    /// The allow-list entry that matched.
    pub fn rule(&self) -> &AllowRule {
        &self.rule
    }

    /// `scheme://host:port/path`, for logs and messages: no userinfo, query or fragment.
    pub fn display_url(&self) -> String {
        format!(
            "{}://{}:{}{}",
            self.scheme.as_str(),
            self.host,
            self.port,
            cut(self.url.path(), 256)
        )
    }

    fn destination(&self) -> Destination<'_> {
        Destination {
            scheme: self.scheme,
            host: &self.host,
            port: self.port,
            method: &self.method,
            path: self.url.path(),
        }
    }
}

/// One backend's outbound policy.
#[derive(Debug, Clone)]
pub struct OutboundPolicy {
    rules: Vec<Arc<AllowRule>>,
    allow_private_networks: bool,
    injections: Vec<HeaderInjection>,
    limits: RequestLimits,
}

impl OutboundPolicy {
    /// A policy from parts. Every injection's destination must grant exactly what one of
    /// the `rules` grants, so a secret is only ever attached to a destination the operator
    /// allowed on purpose; two injections of one header name for one destination are an
    /// error.
    pub fn new(
        rules: Vec<AllowRule>,
        allow_private_networks: bool,
        injections: Vec<HeaderInjection>,
        limits: RequestLimits,
    ) -> Result<OutboundPolicy, OutboundConfigError> {
        for (i, inj) in injections.iter().enumerate() {
            let destination = inj.destination.text().to_owned();
            if !rules.iter().any(|r| r.same_grant(&inj.destination)) {
                return Err(OutboundConfigError::InjectHeader {
                    destination,
                    problem: "the destination is not one of the allowed_outbound entries".into(),
                });
            }
            let duplicate = injections[..i].iter().any(|other| {
                other.destination.same_grant(&inj.destination)
                    && other.name.eq_ignore_ascii_case(&inj.name)
            });
            if duplicate {
                return Err(OutboundConfigError::InjectHeader {
                    destination,
                    problem: format!("header {} is injected twice", inj.name),
                });
            }
        }
        for (field, value) in [
            ("max_request_bytes", limits.max_body_bytes),
            ("max_request_headers", limits.max_headers),
            ("max_request_header_bytes", limits.max_header_bytes),
        ] {
            if value == 0 {
                return Err(OutboundConfigError::Zero { field });
            }
        }
        Ok(OutboundPolicy {
            rules: rules.into_iter().map(Arc::new).collect(),
            allow_private_networks,
            injections,
            limits,
        })
    }

    /// Build the policy part of a backend's configuration. Errors name the entry.
    pub fn from_config(config: &OutboundConfig) -> Result<OutboundPolicy, OutboundConfigError> {
        let rules = config
            .allowed_outbound
            .iter()
            .map(|e| AllowRule::parse(e).map_err(OutboundConfigError::Rule))
            .collect::<Result<Vec<_>, _>>()?;
        let injections = config
            .inject_headers
            .iter()
            .map(|inj| {
                let destination =
                    AllowRule::parse(&inj.destination).map_err(OutboundConfigError::Destination)?;
                HeaderInjection::new(destination, &inj.name, inj.value.clone()).map_err(|problem| {
                    OutboundConfigError::InjectHeader {
                        destination: inj.destination.clone(),
                        problem,
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let limits = RequestLimits {
            max_body_bytes: config.max_request_bytes,
            max_headers: config.max_request_headers,
            max_header_bytes: config.max_request_header_bytes,
        };
        OutboundPolicy::new(rules, config.allow_private_networks, injections, limits)
    }

    pub fn rules(&self) -> impl Iterator<Item = &AllowRule> {
        self.rules.iter().map(|r| r.as_ref())
    }

    pub fn allow_private_networks(&self) -> bool {
        self.allow_private_networks
    }

    pub fn injections(&self) -> &[HeaderInjection] {
        &self.injections
    }

    pub fn limits(&self) -> RequestLimits {
        self.limits
    }

    /// Decide whether a request may be sent, before any DNS lookup or connection.
    ///
    /// Syntax problems are `InvalidRequest` (bad method, bad URL, userinfo, CR/LF/NUL or
    /// other bad bytes in headers); size problems `TooLarge`; policy refusals `Denied`
    /// (scheme, forbidden method or header, no matching entry, an injected header set by
    /// the guest, an IP literal in a blocked range).
    pub fn check_request(&self, request: &OutboundRequest) -> Result<Checked, OutboundError> {
        let checked = self.check_destination(request)?;
        if let Host::Ip(ip) = checked.host {
            self.check_address(&checked, ip)?;
        }
        Ok(checked)
    }

    /// [`Self::check_request`] without the address check of IP-literal URLs: for a sender
    /// that runs [`Self::check_address`] itself on every address it will connect to,
    /// literal or resolved (and counts address denials apart).
    pub fn check_destination(&self, request: &OutboundRequest) -> Result<Checked, OutboundError> {
        let method = check_method(&request.method)?;
        let (mut url, scheme) = parse_url(&request.url)?;
        let host = match url.host() {
            Some(url::Host::Domain(d)) => Host::Domain(d.strip_suffix('.').unwrap_or(d).to_owned()),
            Some(url::Host::Ipv4(v4)) => Host::Ip(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Host::Ip(canonical(IpAddr::V6(v6))),
            None => return Err(invalid("the URL has no host")),
        };
        if let Host::Domain(d) = &host {
            if d.is_empty() {
                return Err(invalid("the URL has an empty host"));
            }
            if url.host_str() != Some(d.as_str()) {
                url.set_host(Some(d))
                    .map_err(|e| invalid(format!("the URL host cannot be normalised: {e}")))?;
            }
        }
        url.set_fragment(None);
        let port = url
            .port_or_known_default()
            .unwrap_or_else(|| scheme.default_port());
        check_headers(&request.headers, self.limits)?;
        if let Some(body) = &request.body
            && body.len() > self.limits.max_body_bytes
        {
            return Err(OutboundError::TooLarge(format!(
                "the request body is {} bytes, more than the {}-byte limit",
                body.len(),
                self.limits.max_body_bytes
            )));
        }

        if FORBIDDEN_METHODS.contains(&method.as_str()) {
            return Err(OutboundError::Denied(format!(
                "method {method} is never allowed"
            )));
        }
        if let Some((name, _)) = request.headers.iter().find(|(n, _)| is_forbidden_header(n)) {
            return Err(OutboundError::Denied(format!(
                "header {name} may only be set by the host"
            )));
        }
        let dest = Destination {
            scheme,
            host: &host,
            port,
            method: &method,
            path: url.path(),
        };
        let Some(rule) = self.rules.iter().find(|r| r.matches(&dest)) else {
            let mut msg = format!(
                "no allowed_outbound entry matches {method} {}://{host}:{port}{}",
                scheme.as_str(),
                cut(url.path(), 256)
            );
            if is_ambiguous_path(url.path()) {
                msg.push_str(
                    " (the path holds an encoded `/`, `\\` or `.` or a `;` dot segment, \
                     which path-restricted entries never match)",
                );
            }
            return Err(OutboundError::Denied(msg));
        };

        let mut injected: Vec<(String, Secret)> = Vec::new();
        for inj in self
            .injections
            .iter()
            .filter(|i| i.destination.matches(&dest))
        {
            if injected
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(&inj.name))
            {
                continue;
            }
            if let Some((name, _)) = request
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&inj.name))
            {
                return Err(OutboundError::Denied(format!(
                    "header {name} is set by the host for {}; the backend may not set it",
                    inj.destination
                )));
            }
            injected.push((inj.name.clone(), inj.value.clone()));
        }

        Ok(Checked {
            scheme,
            host,
            port,
            method,
            headers: request.headers.clone(),
            injected,
            rule: Arc::clone(rule),
            url,
        })
    }

    /// Decide whether the host may connect to `ip` for a checked request (the address of an
    /// IP-literal URL, or each address its DNS name resolved to).
    ///
    /// Cloud metadata and link-local addresses are refused always. Other non-public
    /// addresses (loopback, private, CGNAT, ULA, unspecified, multicast, broadcast,
    /// documentation, reserved) are allowed only when `allow_private_networks` is set, or
    /// the matching entry names the address (`http://127.0.0.1:8080`, `http://10.1.0.0/16`),
    /// or — for a DNS name — an entry with an address or network host would allow this same
    /// request sent straight to `ip` (so reaching it by name grants nothing new). This is
    /// what stops a DNS name from pointing the host at its own loopback services or the
    /// internal network (SSRF, DNS rebinding).
    pub fn check_address(&self, checked: &Checked, ip: IpAddr) -> Result<(), OutboundError> {
        let ip = canonical(ip);
        let class = classify(ip);
        let what = match &checked.host {
            Host::Ip(_) => format!("address {}", Host::Ip(ip)),
            Host::Domain(d) => format!("{d} resolves to {}, which", Host::Ip(ip)),
        };
        if class.always_blocked() {
            return Err(OutboundError::Denied(format!(
                "{what} is {}: always blocked",
                class.describe()
            )));
        }
        if class == AddressClass::Public || self.allow_private_networks {
            return Ok(());
        }
        if checked.rule.names_address(ip) {
            return Ok(());
        }
        if matches!(checked.host, Host::Domain(_)) {
            let direct = Host::Ip(ip);
            let dest = Destination {
                host: &direct,
                ..checked.destination()
            };
            if self
                .rules
                .iter()
                .any(|r| r.names_address(ip) && r.matches(&dest))
            {
                return Ok(());
            }
        }
        Err(OutboundError::Denied(format!(
            "{what} is {}: blocked unless allow_private_networks = true or an allowed_outbound \
             entry names that address",
            class.describe()
        )))
    }
}

/// A URL as it may appear in a log line: cut at `?` or `#`, userinfo masked, control
/// characters escaped, at most 256 characters. Plain string work — it does not parse (the
/// one parser decides; this only has to be harmless to print).
pub fn loggable_url(raw: &str) -> String {
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    let mut url = raw[..end].to_owned();
    if let Some(start) = url.find("://").map(|i| i + 3) {
        let authority_end = url[start..]
            .find(['/', '\\'])
            .map_or(url.len(), |i| start + i);
        if let Some(at) = url[start..authority_end].rfind('@') {
            url.replace_range(start..start + at + 1, "***@");
        }
    }
    let quoted = quote(&url, 256);
    quoted[1..quoted.len() - 1].to_owned()
}

fn invalid(msg: impl Into<String>) -> OutboundError {
    OutboundError::InvalidRequest(msg.into())
}

fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn check_method(method: &str) -> Result<String, OutboundError> {
    if method.len() > 32 || !is_token(method) {
        return Err(invalid(format!(
            "method {} is not a valid RFC 9110 token",
            quote(method, 32)
        )));
    }
    Ok(method.to_owned())
}

fn parse_url(raw: &str) -> Result<(Url, Scheme), OutboundError> {
    if raw.len() > MAX_URL_BYTES {
        return Err(invalid(format!(
            "the URL is {} bytes, more than the {MAX_URL_BYTES}-byte limit",
            raw.len()
        )));
    }
    // The WHATWG parser silently drops tabs and newlines and trims spaces and controls;
    // refuse them instead, so what the guest wrote is what was checked.
    if raw.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(invalid(
            "the URL contains whitespace or a control character",
        ));
    }
    let url = Url::parse(raw).map_err(|e| invalid(format!("not a valid absolute URL: {e}")))?;
    let Some(scheme) = Scheme::parse(url.scheme()) else {
        return Err(OutboundError::Denied(format!(
            "scheme {} is not allowed: only http and https",
            quote(url.scheme(), 32)
        )));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("userinfo (`user@`) is not allowed in URLs"));
    }
    Ok((url, scheme))
}

fn check_headers(headers: &[(String, String)], limits: RequestLimits) -> Result<(), OutboundError> {
    if headers.len() > limits.max_headers {
        return Err(OutboundError::TooLarge(format!(
            "{} headers, more than the limit of {}",
            headers.len(),
            limits.max_headers
        )));
    }
    let bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if bytes > limits.max_header_bytes {
        return Err(OutboundError::TooLarge(format!(
            "headers total {bytes} bytes, more than the {}-byte limit",
            limits.max_header_bytes
        )));
    }
    for (name, value) in headers {
        if has_line_break_or_nul(name) {
            return Err(invalid(format!(
                "header name {} contains CR, LF or NUL",
                quote(name, 64)
            )));
        }
        if !is_token(name) {
            return Err(invalid(format!(
                "header name {} is not a valid RFC 9110 token",
                quote(name, 64)
            )));
        }
        if let Err(problem) = check_value(value) {
            return Err(invalid(format!(
                "the value of header {name} {}",
                problem.describe()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::config::InjectHeader;

    const TOKEN: &str = "s.hunter2-bootstrap-token";

    fn config(rules: &[&str]) -> OutboundConfig {
        OutboundConfig {
            allowed_outbound: rules.iter().map(|s| s.to_string()).collect(),
            ..OutboundConfig::default()
        }
    }

    fn policy(rules: &[&str]) -> OutboundPolicy {
        OutboundPolicy::from_config(&config(rules)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn req(method: &str, url: &str) -> OutboundRequest {
        OutboundRequest {
            method: method.into(),
            url: url.into(),
            headers: vec![],
            body: None,
        }
    }

    fn with_headers(mut r: OutboundRequest, headers: &[(&str, &str)]) -> OutboundRequest {
        r.headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        r
    }

    fn get(url: &str) -> OutboundRequest {
        req("GET", url)
    }

    fn denied(r: Result<Checked, OutboundError>) -> String {
        match r {
            Err(OutboundError::Denied(m)) => m,
            other => panic!("expected Denied, got {other:?}"),
        }
    }

    fn invalid_req(r: Result<Checked, OutboundError>) -> String {
        match r {
            Err(OutboundError::InvalidRequest(m)) => m,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    fn addr(p: &OutboundPolicy, url: &str, ip: &str) -> Result<(), OutboundError> {
        let checked = p
            .check_request(&get(url))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        p.check_address(&checked, ip.parse().unwrap())
    }

    /// The `url` crate normalises every classic alternative spelling of the metadata
    /// address to 169.254.169.254, and the policy then refuses it even when a rule names
    /// the spelling (or the address) outright.
    #[test]
    fn metadata_address_in_every_spelling_is_denied() {
        let p = policy(&[
            "http://169.254.169.254",
            "http://2852039166",
            "http://0.0.0.0/0:*",
            "http://[::]/0:*",
        ]);
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://2852039166/",
            "http://0xa9fea9fe/",
            "http://0xA9.0xFE.0xA9.0xFE/",
            "http://0251.0376.0251.0376/",
            "http://169.254.43518/",
            "http://169.16689662/",
            "http://169.254.169.254./",
            "http://%31%36%39.254.169.254/",
            "http://169\u{3002}254\u{3002}169\u{3002}254/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[::169.254.169.254]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[fd00:ec2::254]/",
            "http://169.254.169.254:80/",
        ] {
            let msg = denied(p.check_request(&get(url)));
            assert!(msg.contains("always blocked"), "{url}: {msg}");
            assert!(msg.contains("metadata"), "{url}: {msg}");
        }
    }

    #[test]
    fn url_crate_normalises_alternative_ipv4_spellings() {
        for spelled in [
            "http://2852039166/",
            "http://0xa9fea9fe/",
            "http://0251.0376.0251.0376/",
            "http://169.254.169.254./",
        ] {
            let url = Url::parse(spelled).unwrap();
            assert_eq!(
                url.host(),
                Some(url::Host::Ipv4("169.254.169.254".parse().unwrap())),
                "{spelled}"
            );
        }
        let url = Url::parse("http://[::ffff:169.254.169.254]/").unwrap();
        let Some(url::Host::Ipv6(v6)) = url.host() else {
            panic!("expected an IPv6 host");
        };
        assert_eq!(
            canonical(IpAddr::V6(v6)),
            "169.254.169.254".parse::<IpAddr>().unwrap()
        );
        // A trailing dot on a DNS name is kept by the parser; the policy strips it.
        assert_eq!(
            Url::parse("http://vault.internal./").unwrap().host_str(),
            Some("vault.internal.")
        );
    }

    #[test]
    fn link_local_is_always_blocked_even_when_named() {
        let p = OutboundPolicy::from_config(&OutboundConfig {
            allow_private_networks: true,
            ..config(&[
                "http://169.254.0.0/16:*",
                "http://[fe80::]/10:*",
                "http://metadata.internal",
            ])
        })
        .unwrap();
        for url in ["http://169.254.1.1:8080/", "http://[fe80::1]:8080/"] {
            assert!(
                denied(p.check_request(&get(url))).contains("link-local"),
                "{url}"
            );
        }
        let err = addr(&p, "http://metadata.internal/", "169.254.169.254").unwrap_err();
        assert_eq!(
            err,
            OutboundError::Denied(
                "metadata.internal resolves to 169.254.169.254, which is a cloud metadata \
                 address: always blocked"
                    .into()
            )
        );
        assert!(addr(&p, "http://metadata.internal/", "fe80::1").is_err());
        assert!(addr(&p, "http://metadata.internal/", "::ffff:169.254.1.2").is_err());
    }

    #[test]
    fn allow_list_matching_table() {
        let p = policy(&[
            "https://vault.internal:8200",
            "https://*.example.com",
            "http://10.1.0.0/16:8200",
            "http://127.0.0.1:8080",
            "https://[::1]:8443",
            "https://[fd00::]/8:*",
            "GET,PUT https://api.internal/v1/secret/",
            "LIST https://api.internal/v1/secret/metadata/",
        ]);
        let cases: &[(&str, &str, bool)] = &[
            ("GET", "https://vault.internal:8200/v1/x", true),
            ("GET", "https://VAULT.Internal:8200/v1/x", true),
            ("GET", "https://vault.internal.:8200/v1/x", true),
            ("GET", "https://vault.internal:8201/", false),
            ("GET", "https://vault.internal/", false),
            ("GET", "http://vault.internal:8200/", false),
            ("GET", "https://a.example.com/", true),
            ("GET", "https://a.b.example.com./", true),
            ("GET", "https://example.com/", false),
            ("GET", "https://evilexample.com/", false),
            ("GET", "https://a.example.com:444/", false),
            ("GET", "http://10.1.2.3:8200/", true),
            ("GET", "http://10.1.2.3/", false),
            ("GET", "http://10.2.0.1:8200/", false),
            ("GET", "http://167838211:8200/", true),
            ("GET", "http://127.0.0.1:8080/", true),
            ("GET", "http://[::ffff:127.0.0.1]:8080/", true),
            ("GET", "http://localhost:8080/", false),
            ("GET", "https://[::1]:8443/", true),
            ("GET", "https://[fd12::1]:9/", true),
            ("GET", "https://api.internal/v1/secret/foo", true),
            ("PUT", "https://api.internal/v1/secret/foo", true),
            ("DELETE", "https://api.internal/v1/secret/foo", false),
            ("GET", "https://api.internal/v1/secret/../sys/seal", false),
            ("GET", "https://api.internal/v1/secret/%2e%2e/sys", false),
            ("GET", "https://api.internal/v1/secret/.%2E/sys", false),
            ("GET", "https://api.internal/v1/secret%2f..%2fsys", false),
            ("GET", "https://api.internal/v1/secret\\..\\sys", false),
            ("GET", "https://api.internal/v1/secretx", false),
            ("GET", "https://api.internal/v1/secret/./a", true),
            ("LIST", "https://api.internal/v1/secret/metadata/x", true),
            ("LIST", "https://api.internal/v1/secret/data/x", false),
            ("GET", "https://other.internal/", false),
        ];
        for (method, url, allowed) in cases {
            let r = p.check_request(&req(method, url));
            match (allowed, r) {
                (true, Ok(_)) => {}
                (false, Err(OutboundError::Denied(m))) => {
                    assert!(!m.contains('?'), "{m}");
                }
                (_, other) => panic!("{method} {url}: expected allowed={allowed}, got {other:?}"),
            }
        }
    }

    #[test]
    fn checked_request_is_normalised() {
        let p = policy(&["https://vault.internal:8200", "https://*.example.com"]);
        let c = p
            .check_request(&get("https://Vault.Internal.:8200/v1/a/../b?x=secret#frag"))
            .unwrap();
        assert_eq!(
            c.url().as_str(),
            "https://vault.internal:8200/v1/b?x=secret"
        );
        assert_eq!(c.host(), &Host::Domain("vault.internal".into()));
        assert_eq!(c.port(), 8200);
        assert_eq!(c.scheme(), Scheme::Https);
        assert_eq!(c.method(), "GET");
        assert_eq!(c.rule().text(), "https://vault.internal:8200");
        assert_eq!(c.display_url(), "https://vault.internal:8200/v1/b");
        let c = p.check_request(&get("https://a.example.com./")).unwrap();
        assert_eq!(c.url().as_str(), "https://a.example.com/");
        assert_eq!(c.port(), 443);
    }

    #[test]
    fn private_addresses_need_permission() {
        let p = policy(&[
            "http://vault.internal:8200",
            "http://localhost:8080",
            "http://10.1.0.0/16:8200",
            "http://127.0.0.1:9000",
        ]);
        // Public resolution is fine.
        assert_eq!(
            addr(&p, "http://vault.internal:8200/", "93.184.216.34"),
            Ok(())
        );
        assert_eq!(
            addr(&p, "http://vault.internal:8200/", "2606:4700::1"),
            Ok(())
        );
        // A name pointing into a network an entry names for the same port: nothing new.
        assert_eq!(addr(&p, "http://vault.internal:8200/", "10.1.9.9"), Ok(()));
        assert_eq!(
            addr(&p, "http://vault.internal:8200/", "::ffff:10.1.9.9"),
            Ok(())
        );
        // ... but not for another port, and not outside the network.
        let err = addr(&p, "http://localhost:8080/", "10.1.9.9").unwrap_err();
        assert!(err.to_string().contains("private network"), "{err}");
        for ip in [
            "127.0.0.1",
            "::1",
            "10.2.0.1",
            "172.16.0.1",
            "192.168.0.1",
            "100.64.0.1",
            "fd00::1",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "240.0.0.1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            let err = addr(&p, "http://localhost:8080/", ip).unwrap_err();
            let OutboundError::Denied(m) = err else {
                panic!("{ip}: {err:?}")
            };
            assert!(m.contains("allow_private_networks"), "{ip}: {m}");
            assert!(m.starts_with("localhost resolves to "), "{ip}: {m}");
        }
        // 127.0.0.1 on 9000 is named, on 8080 it is not.
        let named = p.check_request(&get("http://127.0.0.1:9000/")).unwrap();
        assert_eq!(
            p.check_address(&named, "127.0.0.1".parse().unwrap()),
            Ok(())
        );
        // IP literal outside a named range but matched by nothing: denied before that.
        assert!(
            denied(p.check_request(&get("http://127.0.0.2:9000/"))).contains("no allowed_outbound")
        );

        let open = OutboundPolicy::from_config(&OutboundConfig {
            allow_private_networks: true,
            ..config(&["http://localhost:8080", "http://*.internal:*"])
        })
        .unwrap();
        for ip in ["127.0.0.1", "::1", "10.0.0.1", "fd00::1", "100.64.0.1"] {
            assert_eq!(addr(&open, "http://localhost:8080/", ip), Ok(()), "{ip}");
        }
        assert!(addr(&open, "http://localhost:8080/", "169.254.169.254").is_err());
        assert!(addr(&open, "http://a.internal/", "fd00:ec2::254").is_err());
    }

    #[test]
    fn ip_literals_are_checked_at_request_time() {
        let p = policy(&["http://[::]/0:*", "http://0.0.0.0/0:*"]);
        // Named by an entry (the whole space): loopback allowed, metadata never.
        assert!(p.check_request(&get("http://127.0.0.1:1/")).is_ok());
        assert!(p.check_request(&get("http://[::1]:1/")).is_ok());
        let p = policy(&["http://example.net:*"]);
        assert!(denied(p.check_request(&get("http://127.0.0.1/"))).contains("no allowed_outbound"));
    }

    #[test]
    fn check_destination_leaves_the_address_to_the_caller() {
        let p = policy(&["http://0.0.0.0/0:*"]);
        let request = get("http://169.254.169.254/");
        let checked = p.check_destination(&request).unwrap();
        assert_eq!(
            checked.host(),
            &Host::Ip("169.254.169.254".parse().unwrap())
        );
        assert!(
            p.check_address(&checked, "169.254.169.254".parse().unwrap())
                .is_err()
        );
        assert!(p.check_request(&request).is_err());
    }

    #[test]
    fn url_syntax_is_refused_as_invalid_request() {
        let p = policy(&["https://vault.internal:8200"]);
        for (url, problem) in [
            ("vault.internal/v1", "not a valid absolute URL"),
            ("/v1/secret", "not a valid absolute URL"),
            ("https://", "not a valid absolute URL"),
            ("https://vault.internal:8200/a b", "whitespace"),
            ("https://vault.internal:8200/\ta", "whitespace"),
            ("https://vault\n.internal:8200/", "whitespace"),
            ("https://vault.internal:8200/\r\nX: y", "whitespace"),
            (" https://vault.internal:8200/", "whitespace"),
            ("https://vault.internal:8200/\u{0}", "control"),
            ("https://user:pw@vault.internal:8200/", "userinfo"),
            ("https://user@vault.internal:8200/", "userinfo"),
            ("https://:pw@vault.internal:8200/", "userinfo"),
            ("https://vault.internal:99999/", "not a valid absolute URL"),
            ("https://[::1/", "not a valid absolute URL"),
            ("https://[fe80::1%25eth0]/", "not a valid absolute URL"),
        ] {
            let m = invalid_req(p.check_request(&get(url)));
            assert!(m.contains(problem), "{url:?}: {m}");
            assert!(!m.contains("pw"), "{m}");
        }
        let long = format!("https://vault.internal:8200/{}", "a".repeat(MAX_URL_BYTES));
        assert!(invalid_req(p.check_request(&get(&long))).contains("limit"));
    }

    #[test]
    fn other_schemes_are_denied() {
        let p = policy(&["https://vault.internal:8200"]);
        for url in [
            "file:///etc/passwd",
            "ftp://vault.internal/",
            "gopher://vault.internal:8200/_",
            "ws://vault.internal:8200/",
            "data:text/plain,hi",
            "unix:/var/run/docker.sock",
        ] {
            assert!(
                denied(p.check_request(&get(url))).contains("only http and https"),
                "{url}"
            );
        }
    }

    #[test]
    fn methods_must_be_tokens_and_some_are_never_allowed() {
        let p = policy(&["https://vault.internal:8200"]);
        for m in [
            "",
            "GET /x HTTP/1.1\r\nHost: evil",
            "GE T",
            "G\0T",
            "caf\u{e9}",
            &"A".repeat(33),
        ] {
            assert!(
                invalid_req(p.check_request(&req(m, "https://vault.internal:8200/")))
                    .contains("method")
            );
        }
        for m in ["LIST", "GET", "PATCH", "X-CUSTOM"] {
            assert!(
                p.check_request(&req(m, "https://vault.internal:8200/"))
                    .is_ok(),
                "{m}"
            );
        }
        for m in ["TRACE", "TRACK", "CONNECT"] {
            assert!(
                denied(p.check_request(&req(m, "https://vault.internal:8200/")))
                    .contains("never allowed")
            );
        }
    }

    #[test]
    fn header_syntax_is_refused_as_invalid_request() {
        let p = policy(&["https://vault.internal:8200"]);
        let url = "https://vault.internal:8200/";
        for (name, value, problem) in [
            ("X-A\r\nX-Injected", "v", "CR, LF or NUL"),
            ("X-A\n", "v", "CR, LF or NUL"),
            ("X-A\0", "v", "CR, LF or NUL"),
            ("X-A", "v\r\nX-Injected: 1", "CR, LF or NUL"),
            ("X-A", "v\nx", "CR, LF or NUL"),
            ("X-A", "v\0", "CR, LF or NUL"),
            ("X-A", "v\x08", "control character"),
            ("", "v", "not a valid RFC 9110 token"),
            ("X A", "v", "not a valid RFC 9110 token"),
            ("X-A:", "v", "not a valid RFC 9110 token"),
            ("X-\u{e9}", "v", "not a valid RFC 9110 token"),
        ] {
            let m = invalid_req(p.check_request(&with_headers(get(url), &[(name, value)])));
            assert!(m.contains(problem), "{name:?}: {m}");
            assert!(!m.contains("Injected: 1"), "value leaked: {m}");
        }
    }

    #[test]
    fn forbidden_headers_are_denied() {
        let p = policy(&["https://vault.internal:8200"]);
        let url = "https://vault.internal:8200/";
        for name in [
            "Host",
            "host",
            "Connection",
            "Keep-Alive",
            "Transfer-Encoding",
            "TE",
            "Trailer",
            "Upgrade",
            "Proxy-Authorization",
            "Proxy-Connection",
            "Content-Length",
        ] {
            let m = denied(p.check_request(&with_headers(get(url), &[(name, "evil.example")])));
            assert!(m.contains("may only be set by the host"), "{name}: {m}");
            assert!(!m.contains("evil.example"), "{m}");
        }
        let ok = with_headers(
            get(url),
            &[("Authorization", "Bearer x"), ("Content-Type", "a/b")],
        );
        assert_eq!(p.check_request(&ok).unwrap().headers().len(), 2);
    }

    #[test]
    fn request_sizes_are_capped() {
        let p = OutboundPolicy::from_config(&OutboundConfig {
            max_request_bytes: 10,
            max_request_headers: 2,
            max_request_header_bytes: 20,
            ..config(&["https://vault.internal:8200"])
        })
        .unwrap();
        let url = "https://vault.internal:8200/";
        let mut r = get(url);
        r.body = Some(vec![0; 10]);
        assert!(p.check_request(&r).is_ok());
        r.body = Some(vec![0; 11]);
        assert!(
            matches!(p.check_request(&r), Err(OutboundError::TooLarge(m)) if m.contains("body"))
        );
        let r = with_headers(get(url), &[("a", "1"), ("b", "2"), ("c", "3")]);
        assert!(matches!(
            p.check_request(&r),
            Err(OutboundError::TooLarge(_))
        ));
        let r = with_headers(get(url), &[("a", &"x".repeat(20))]);
        assert!(matches!(
            p.check_request(&r),
            Err(OutboundError::TooLarge(_))
        ));
    }

    fn inject(destination: &str, name: &str) -> InjectHeader {
        InjectHeader {
            destination: destination.into(),
            name: name.into(),
            value: Secret::new(TOKEN.into()).unwrap(),
        }
    }

    #[test]
    fn injected_headers_are_added_for_their_destination_only() {
        let p = OutboundPolicy::from_config(&OutboundConfig {
            inject_headers: vec![
                inject("https://vault.internal:8200/", "X-Vault-Token"),
                inject("https://*.example.com", "Authorization"),
            ],
            ..config(&[
                "https://vault.internal:8200",
                "https://*.example.com",
                "https://other.internal",
            ])
        })
        .unwrap();
        let c = p
            .check_request(&get("https://vault.internal:8200/v1/secret/x"))
            .unwrap();
        assert_eq!(c.injected().len(), 1);
        assert_eq!(c.injected()[0].0, "X-Vault-Token");
        assert_eq!(c.injected()[0].1.expose(), TOKEN);
        let c = p.check_request(&get("https://a.example.com/")).unwrap();
        assert_eq!(c.injected()[0].0, "Authorization");
        let c = p.check_request(&get("https://other.internal/")).unwrap();
        assert!(c.injected().is_empty());
        // The guest may send the same name elsewhere...
        let elsewhere = with_headers(get("https://other.internal/"), &[("x-vault-token", "mine")]);
        assert!(p.check_request(&elsewhere).is_ok());
        // ...but not to the destination the host injects it for, in any case.
        for name in ["X-Vault-Token", "x-vault-token", "X-VAULT-TOKEN"] {
            let r = with_headers(get("https://vault.internal:8200/v1/x"), &[(name, "guess")]);
            let m = denied(p.check_request(&r));
            assert!(m.contains("set by the host"), "{m}");
            assert!(!m.contains("guess") && !m.contains(TOKEN), "{m}");
        }
        // Nothing in Debug output of a checked request shows the value.
        let c = p
            .check_request(&get("https://vault.internal:8200/"))
            .unwrap();
        assert!(!format!("{c:?}").contains(TOKEN));
        assert!(!format!("{p:?}").contains(TOKEN));
    }

    #[test]
    fn injection_config_errors_name_the_destination_and_never_the_value() {
        let cases: Vec<(Vec<InjectHeader>, &str)> = vec![
            (
                vec![inject("https://elsewhere.internal", "X-T")],
                "not one of the allowed_outbound",
            ),
            (
                vec![inject("https://vault.internal:8201", "X-T")],
                "not one of the allowed_outbound",
            ),
            (vec![inject("ftp://vault.internal", "X-T")], "scheme `ftp`"),
            (
                vec![inject("https://vault.internal:8200", "X T")],
                "not a valid token",
            ),
            (
                vec![inject("https://vault.internal:8200", "Host")],
                "may not be injected",
            ),
            (
                vec![
                    inject("https://vault.internal:8200", "X-T"),
                    inject("https://vault.internal:8200/", "x-t"),
                ],
                "injected twice",
            ),
        ];
        for (injections, problem) in cases {
            let err = OutboundPolicy::from_config(&OutboundConfig {
                inject_headers: injections,
                ..config(&["https://vault.internal:8200"])
            })
            .unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(problem), "{msg}");
            assert!(!msg.contains(TOKEN), "{msg}");
        }
        let mut bad = inject("https://vault.internal:8200", "X-T");
        bad.value = Secret::new(format!("{TOKEN}\r\nX-Evil: 1")).unwrap();
        let err = OutboundPolicy::from_config(&OutboundConfig {
            inject_headers: vec![bad],
            ..config(&["https://vault.internal:8200"])
        })
        .unwrap_err();
        assert!(err.to_string().contains("CR, LF or NUL"), "{err}");
        assert!(!err.to_string().contains(TOKEN), "{err}");
    }

    #[test]
    fn config_errors_name_the_entry() {
        let err = OutboundPolicy::from_config(&config(&[
            "https://ok.internal",
            "https://u@bad.internal",
        ]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "allowed_outbound entry \"https://u@bad.internal\": userinfo (`user@`) is not allowed"
        );
        let err = OutboundPolicy::from_config(&OutboundConfig {
            max_request_bytes: 0,
            ..config(&[])
        })
        .unwrap_err();
        assert!(err.to_string().contains("max_request_bytes"), "{err}");
    }

    #[test]
    fn empty_allow_list_denies_everything() {
        let p = policy(&[]);
        assert!(
            denied(p.check_request(&get("https://vault.internal/")))
                .contains("no allowed_outbound")
        );
    }

    #[test]
    fn denial_messages_never_carry_query_or_values() {
        let p = policy(&["https://vault.internal:8200"]);
        let m = denied(p.check_request(&get("https://elsewhere.internal/p?token=s3cr3t")));
        assert_eq!(
            m,
            "no allowed_outbound entry matches GET https://elsewhere.internal:443/p"
        );
    }

    #[test]
    fn loggable_urls_drop_query_fragment_and_userinfo() {
        for (raw, logged) in [
            ("https://v.internal/a?token=x", "https://v.internal/a"),
            ("https://v.internal/a#frag", "https://v.internal/a"),
            ("https://user:pw@v.internal/a", "https://***@v.internal/a"),
            ("https://a@b@v.internal", "https://***@v.internal"),
            ("https://v.internal/x@y", "https://v.internal/x@y"),
            ("http://v/\r\nX: y", "http://v/\\r\\nX: y"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(loggable_url(raw), logged, "{raw:?}");
        }
        assert!(loggable_url(&"a".repeat(1000)).len() < 300);
    }
}
