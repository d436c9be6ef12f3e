//! The locator syntax: `secret-id[?stage=LABEL|?version=ID][#json-key]`.
//!
//! - `secret-id` is a secret name (`prod/payments/stripe`) or its ARN, exactly as
//!   `GetSecretValue` takes it. Secret names only use `A-Z a-z 0-9 / _ + = . @ -` and ARNs add
//!   `:`, so `?` and `#` can never be part of one and are free to act as separators.
//! - `?stage=AWSPREVIOUS` reads the version carrying that staging label; `?version=<id>`
//!   reads that version id; both may be given (`?stage=X&version=Y`), as `GetSecretValue`
//!   allows, and must then name the same version. Without either, `AWSCURRENT` is read.
//! - `#json-key` picks one top-level key of a `SecretString` holding a JSON object (the
//!   console's key/value secrets); without it the whole `SecretString` is returned.
//!
//! When a credential has no locator, its airlock id is the secret id (ids may contain `/` and
//! `.`, which secret names allow).

use airlock_guest::BackendError;

/// The longest secret id `GetSecretValue` accepts (a full ARN), in bytes.
pub const MAX_SECRET_ID_LEN: usize = 2048;

/// A parsed locator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locator {
    /// The secret's name or ARN.
    pub secret_id: String,
    /// `VersionStage` to read, when the locator names one.
    pub version_stage: Option<String>,
    /// `VersionId` to read, when the locator names one.
    pub version_id: Option<String>,
    /// The JSON key to extract from the `SecretString`, when the locator names one.
    pub json_key: Option<String>,
}

impl Locator {
    /// Whether the locator pins a version (stage or id) rather than reading `AWSCURRENT`.
    pub fn pins_version(&self) -> bool {
        self.version_stage.is_some() || self.version_id.is_some()
    }

    /// Parses `text`. Errors are `invalid-config` and quote the locator (it names a secret,
    /// it is not one).
    pub fn parse(text: &str) -> Result<Self, BackendError> {
        let bad = |why: &str| BackendError::invalid_config(format!("locator `{text}`: {why}"));
        let (head, json_key) = match text.split_once('#') {
            Some((_, "")) => return Err(bad("nothing after `#` (expected a JSON key)")),
            Some((head, key)) => (head, Some(key.to_string())),
            None => (text, None),
        };
        let (secret_id, query) = match head.split_once('?') {
            Some((id, q)) => (id, Some(q)),
            None => (head, None),
        };
        let secret_id = secret_id.trim();
        if secret_id.is_empty() {
            return Err(bad("no secret id"));
        }
        if secret_id.len() > MAX_SECRET_ID_LEN {
            return Err(bad("the secret id is longer than 2048 bytes"));
        }
        if secret_id.chars().any(char::is_control) {
            return Err(bad("the secret id contains a control character"));
        }
        let mut version_stage = None;
        let mut version_id = None;
        for param in query.into_iter().flat_map(|q| q.split('&')) {
            let (name, value) = param
                .split_once('=')
                .ok_or_else(|| bad("expected `?stage=LABEL` or `?version=ID` after `?`"))?;
            if value.is_empty() {
                return Err(bad("an empty `stage` or `version`"));
            }
            let slot = match name {
                "stage" => &mut version_stage,
                "version" => &mut version_id,
                _ => return Err(bad("unknown parameter (known: `stage`, `version`)")),
            };
            if slot.replace(value.to_string()).is_some() {
                return Err(bad("a parameter is given twice"));
            }
        }
        Ok(Self { secret_id: secret_id.to_string(), version_stage, version_id, json_key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Locator {
        Locator::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn plain_ids_and_arns() {
        assert_eq!(
            p("prod/db"),
            Locator { secret_id: "prod/db".into(), version_stage: None, version_id: None, json_key: None }
        );
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf";
        assert_eq!(p(arn).secret_id, arn);
        assert_eq!(p("a+b=c.d@e_f-g").secret_id, "a+b=c.d@e_f-g");
    }

    #[test]
    fn json_keys_and_versions() {
        let l = p("prod/db#password");
        assert_eq!(l.json_key.as_deref(), Some("password"));
        assert!(!l.pins_version());
        let l = p("prod/db?stage=AWSPREVIOUS#password");
        assert_eq!(l.version_stage.as_deref(), Some("AWSPREVIOUS"));
        assert_eq!(l.json_key.as_deref(), Some("password"));
        let l = p("prod/db?version=0123-abcd&stage=AWSCURRENT");
        assert_eq!(l.version_id.as_deref(), Some("0123-abcd"));
        assert_eq!(l.version_stage.as_deref(), Some("AWSCURRENT"));
        assert!(l.pins_version());
        // Everything after the first `#` is the key, `#` and `?` included.
        assert_eq!(p("x#a#b?c").json_key.as_deref(), Some("a#b?c"));
    }

    #[test]
    fn malformed_locators_are_invalid_config() {
        for bad in [
            "",
            "  ",
            "#key",
            "x#",
            "?stage=A",
            "x?stage",
            "x?stage=",
            "x?label=A",
            "x?stage=A&stage=B",
            "x\ny",
        ] {
            let e = Locator::parse(bad).expect_err(bad);
            assert_eq!(e.kind(), "invalid-config", "{bad}");
        }
        assert!(Locator::parse(&"a".repeat(2049)).is_err());
    }
}
