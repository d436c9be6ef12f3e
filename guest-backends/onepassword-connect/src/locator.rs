//! The locator syntax: 1Password secret references, `op://vault/item/field` or
//! `op://vault/item/section/field`.
//!
//! Each part is a name or an id (26 lowercase letters and digits, as 1Password prints them).
//! Names are taken verbatim (spaces allowed); a name containing `/` cannot be written, use
//! the id. Query attributes of the 1Password CLI (`?attribute=otp`, `?ssh-format=...`) are
//! not supported and are refused rather than silently ignored.

use airlock_guest::BackendError;

/// A parsed secret reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locator {
    pub vault: String,
    pub item: String,
    /// The section (label or id) the field must be in, if given.
    pub section: Option<String>,
    /// The field: id, label, or purpose keyword (`password`, `username`, `notes`).
    pub field: String,
}

/// Parses `s`; every problem is `invalid-config`.
pub fn parse(s: &str) -> Result<Locator, BackendError> {
    let bad = |why: &str| BackendError::invalid_config(format!("1Password locator `{s}`: {why}"));
    let rest = s.strip_prefix("op://").ok_or_else(|| bad("must start with `op://`"))?;
    if rest.contains('?') {
        return Err(bad("query attributes (`?attribute=...`) are not supported"));
    }
    if rest.chars().any(char::is_control) {
        return Err(bad("control characters are not allowed"));
    }
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad("empty part"));
    }
    match parts.as_slice() {
        [vault, item, field] => Ok(Locator {
            vault: vault.to_string(),
            item: item.to_string(),
            section: None,
            field: field.to_string(),
        }),
        [vault, item, section, field] => Ok(Locator {
            vault: vault.to_string(),
            item: item.to_string(),
            section: Some(section.to_string()),
            field: field.to_string(),
        }),
        _ => Err(bad("expected op://vault/item/field or op://vault/item/section/field")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let l = parse("op://Production/Database/password").expect("3 parts");
        assert_eq!(
            (l.vault.as_str(), l.item.as_str(), l.section, l.field.as_str()),
            ("Production", "Database", None, "password")
        );
        let l = parse("op://My Vault/Say \"hi\"/Replica/host name").expect("4 parts");
        assert_eq!(
            (l.item.as_str(), l.section.as_deref(), l.field.as_str()),
            ("Say \"hi\"", Some("Replica"), "host name")
        );
    }

    #[test]
    fn rejected_forms() {
        for s in [
            "Production/Database/password",
            "op://a/b",
            "op://a/b/c/d/e",
            "op://a//c",
            "op://a/b/c?attribute=otp",
            "op://a/b/c\n",
            "op://a/b/",
        ] {
            assert_eq!(parse(s).expect_err(s).kind(), "invalid-config", "{s}");
        }
    }
}
