//! The locator syntax: `path[?version=N][#field]`, URL-like.
//!
//! - `path` is the full Vault path including the mount, e.g. `secret/team/app`;
//! - `?version=N` (KV v2 only) reads version `N` instead of the latest; on a write it pins
//!   the version the secret must still be at (explicit check-and-set);
//! - `#field` names the key inside the secret; without it the secret must hold one key.
//!
//! `?` and `#` cannot occur inside a Vault path that is addressed over HTTP, so the split is
//! unambiguous; everything after `#` is the field name, verbatim.
//!
//! Invariant: an accepted path has no empty, `.` or `..` segment, so no locator can address
//! anything outside the mount it names (the path is percent-encoded per segment and `.` is
//! an unreserved character, so `..` would otherwise reach e.g. `sys/seal`).

use airlock_guest::BackendError;

/// A parsed locator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locator {
    /// The full path, mount included, with no leading or trailing `/`.
    pub path: String,
    /// The key inside the secret, if named.
    pub field: Option<String>,
    /// The KV v2 version, if pinned (≥ 1).
    pub version: Option<u64>,
}

/// Parses `s`; every problem is `invalid-config` (an operator must fix the locator).
pub fn parse(s: &str) -> Result<Locator, BackendError> {
    let bad = |why: &str| BackendError::invalid_config(format!("Vault locator `{s}`: {why}"));
    let (rest, field) = match s.split_once('#') {
        Some((_, "")) => return Err(bad("empty field after `#`")),
        Some((rest, field)) => (rest, Some(field.to_string())),
        None => (s, None),
    };
    let (path, version) = match rest.split_once('?') {
        None => (rest, None),
        Some((path, query)) => {
            let n = query
                .strip_prefix("version=")
                .ok_or_else(|| bad("the only query parameter is `version=N`"))?;
            let n: u64 = n.parse().map_err(|_| bad("`version` must be a positive integer"))?;
            if n == 0 {
                return Err(bad("`version` must be a positive integer"));
            }
            (path, Some(n))
        }
    };
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Err(bad("no path"));
    }
    if path.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return Err(bad("empty, `.` or `..` path segments are not allowed"));
    }
    if path.chars().any(|c| c.is_control()) {
        return Err(bad("control characters are not allowed"));
    }
    Ok(Locator { path: path.to_string(), field, version })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(path: &str, field: Option<&str>, version: Option<u64>) -> Locator {
        Locator { path: path.into(), field: field.map(Into::into), version }
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(parse("secret/app").ok(), Some(loc("secret/app", None, None)));
        assert_eq!(parse("secret/app#password").ok(), Some(loc("secret/app", Some("password"), None)));
        assert_eq!(
            parse("/secret/team/app/?version=3#db pass").ok(),
            Some(loc("secret/team/app", Some("db pass"), Some(3)))
        );
        assert_eq!(parse("kv/a?version=12").ok(), Some(loc("kv/a", None, Some(12))));
        assert_eq!(
            parse("kv/a#f#g").ok(),
            Some(loc("kv/a", Some("f#g"), None)),
            "field is verbatim after the first #"
        );
    }

    #[test]
    fn rejected_forms() {
        for bad in [
            "",
            "/",
            "#f",
            "secret/app#",
            "a/../sys/seal",
            "a/./b",
            "a//b",
            "a?v=1",
            "a?version=0",
            "a?version=x",
            "a\nb",
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.kind(), "invalid-config", "{bad}");
        }
    }
}
