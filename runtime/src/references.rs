//! `${env:NAME}` and `${file:PATH}` references in configuration values, resolved by the
//! host so an operator can keep a bootstrap secret out of `airlock.toml`, and a sandboxed
//! backend never learns where it came from (it cannot name a variable or a file itself).
//!
//! Syntax: a reference may stand alone or inside text (`"Bearer ${env:TOKEN}"`); `$${`
//! writes a literal `${`. A file's contents lose one trailing newline. Resolution is pure:
//! the caller passes the lookups, so tests need neither the environment nor files.

use std::path::Path;

/// Largest file a `${file:…}` reference may pull in. Secrets and tokens are small; the cap
/// stops a mistaken reference (`${file:/dev/zero}`, a log file) from reading without end.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    #[error("cannot read {path}: {reason}")]
    File { path: String, reason: String },
    #[error("unterminated reference starting at byte {0} (expected `}}`)")]
    Unterminated(usize),
    #[error("unknown reference kind `{0}` (use ${{env:NAME}} or ${{file:PATH}})")]
    UnknownKind(String),
    #[error("empty name in reference `{0}`")]
    Empty(String),
}

/// Resolve every reference in `text`. `env` looks up variables; `file` reads a path.
pub fn resolve(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    file: &dyn Fn(&str) -> Result<String, String>,
) -> Result<String, ReferenceError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut offset = 0;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            offset += pos + 3;
            continue;
        }
        if !after.starts_with("${") {
            out.push('$');
            rest = &after[1..];
            offset += pos + 1;
            continue;
        }
        let end = after
            .find('}')
            .ok_or(ReferenceError::Unterminated(offset + pos))?;
        let inner = &after[2..end];
        let (kind, name) = inner
            .split_once(':')
            .ok_or_else(|| ReferenceError::UnknownKind(inner.to_owned()))?;
        if name.is_empty() {
            return Err(ReferenceError::Empty(inner.to_owned()));
        }
        match kind {
            "env" => {
                out.push_str(&env(name).ok_or_else(|| ReferenceError::MissingEnv(name.into()))?)
            }
            "file" => {
                let mut content = file(name).map_err(|reason| ReferenceError::File {
                    path: name.to_owned(),
                    reason,
                })?;
                if content.ends_with('\n') {
                    content.pop();
                    if content.ends_with('\r') {
                        content.pop();
                    }
                }
                out.push_str(&content);
            }
            other => return Err(ReferenceError::UnknownKind(other.to_owned())),
        }
        rest = &after[end + 1..];
        offset += pos + end + 1;
    }
    out.push_str(rest);
    Ok(out)
}

/// Read a referenced file: relative paths are relative to `base` (the config file's
/// directory); at most [`MAX_FILE_BYTES`]; must be UTF-8.
pub fn read_file_under(base: &Path, path: &str) -> Result<String, String> {
    use std::io::Read;
    let full = base.join(path);
    let file = std::fs::File::open(&full).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    String::from_utf8(buf).map_err(|_| "not UTF-8 text".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s.abc".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn file(path: &str) -> Result<String, String> {
        match path {
            "/run/secret" => Ok("from-file\n".into()),
            _ => Err("No such file or directory (os error 2)".into()),
        }
    }

    #[test]
    fn table() {
        let ok: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("${env:TOKEN}", "s.abc"),
            ("Bearer ${env:TOKEN}!", "Bearer s.abc!"),
            ("${file:/run/secret}", "from-file"),
            ("a${env:TOKEN}b${file:/run/secret}c", "as.abcbfrom-filec"),
            ("cost: $5", "cost: $5"),
            ("$${env:TOKEN}", "${env:TOKEN}"),
            ("${env:EMPTY}", ""),
            ("trailing $", "trailing $"),
        ];
        for (input, want) in ok {
            assert_eq!(resolve(input, &env, &file).as_deref(), Ok(*want), "{input}");
        }
        let bad: &[(&str, ReferenceError)] = &[
            ("${env:NOPE}", ReferenceError::MissingEnv("NOPE".into())),
            ("x ${env:TOKEN", ReferenceError::Unterminated(2)),
            ("${vault:x}", ReferenceError::UnknownKind("vault".into())),
            ("${TOKEN}", ReferenceError::UnknownKind("TOKEN".into())),
            ("${env:}", ReferenceError::Empty("env:".into())),
            (
                "${file:/nope}",
                ReferenceError::File {
                    path: "/nope".into(),
                    reason: "No such file or directory (os error 2)".into(),
                },
            ),
        ];
        for (input, want) in bad {
            assert_eq!(resolve(input, &env, &file).as_ref(), Err(want), "{input}");
        }
    }

    #[test]
    fn files_are_capped_and_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "t0k\n").unwrap();
        assert_eq!(read_file_under(dir.path(), "tok").unwrap(), "t0k\n");
        std::fs::write(
            dir.path().join("big"),
            vec![b'a'; MAX_FILE_BYTES as usize + 1],
        )
        .unwrap();
        assert!(
            read_file_under(dir.path(), "big")
                .unwrap_err()
                .contains("larger than")
        );
        std::fs::write(dir.path().join("bin"), [0xff, 0xfe]).unwrap();
        assert_eq!(
            read_file_under(dir.path(), "bin").unwrap_err(),
            "not UTF-8 text"
        );
    }
}
