//! Shared helpers for airlock's integration tests: a temp data dir, running the real
//! binary, snapshotting the database, and finding external tools.
#![allow(dead_code)]

pub mod http;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Path of the `airlock` binary cargo built for these tests.
pub fn airlock_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_airlock"))
}

/// The repository root (for fixtures under `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `make test` sets this: a test that needs a tool must then fail, not skip.
pub fn tools_required() -> bool {
    std::env::var_os("AIRLOCK_REQUIRE_TOOLS").is_some_and(|v| v == "1")
}

/// Whether python3 with `cryptography` is available. Outside `make test` a missing tool
/// makes the calling test skip (saying so); under `make test` it is a failure.
pub fn python_with_cryptography() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import cryptography.fernet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !tools_required(),
            "python3 with the `cryptography` package is required (run `make setup`)"
        );
        eprintln!("SKIP: python3 with `cryptography` not found; run `make setup` or `make test`");
    }
    ok
}

/// Run python3 with `script` (via -c) and args; panics with stderr on failure.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A private airlock installation in a temp dir.
pub struct Airlock {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

/// The result of one CLI run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success; stderr: {}", self.stderr);
        self
    }

    #[track_caller]
    pub fn fails_with(self, needle: &str) -> Run {
        assert_ne!(self.code, 0, "expected failure; stdout: {}", self.stdout);
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "airlock panicked: {}",
            self.stderr
        );
        self
    }
}

impl Airlock {
    pub fn new() -> Airlock {
        Airlock {
            dir: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("airlock.db")
    }

    pub fn with_env(mut self, name: &str, value: &str) -> Airlock {
        self.env.push((name.into(), value.into()));
        self
    }

    /// A command for the binary, run in the temp dir with a clean airlock environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(airlock_bin());
        cmd.current_dir(self.dir.path())
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args);
        for var in [
            "AIRLOCK_VAULT_KEYS",
            "AIRLOCK_VAULT_KEY",
            "JENTIC_VAULT_KEY",
            "AIRLOCK_CONFIG",
            "AIRLOCK_DATA_DIR",
            "JENTIC_CREDENTIAL_BACKEND",
            "AIRLOCK_ADMIN_TOKEN",
            "AIRLOCK_LISTEN",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("AIRLOCK_LOG", "trace");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Run with `stdin` bytes as standard input.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        finish(child.wait_with_output().unwrap())
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, b"")
    }

    /// Add a bearer credential and set its value.
    pub fn add_with_value(&self, id: &str, api: &str, value: &str) {
        self.run(&[
            "credentials",
            "add",
            "--id",
            id,
            "--label",
            &format!("Label {id}"),
            "--api-id",
            api,
            "--auth-type",
            "bearer",
        ])
        .ok();
        self.run_with_stdin(&["credentials", "set-value", id], value.as_bytes())
            .ok();
    }

    pub fn reveal(&self, id: &str) -> String {
        let out = self.run(&["credentials", "get-value", id, "--reveal"]).ok();
        out.stdout.strip_suffix('\n').unwrap().to_owned()
    }

    /// Every row of every table, as text: equal snapshots mean an unchanged database.
    pub fn snapshot(&self) -> String {
        snapshot(&self.db_path())
    }
}

pub fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A textual dump of a SQLite database (schema and rows, in a stable order).
pub fn snapshot(db: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut out = String::new();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for table in tables {
        out.push_str(&format!("## {table}\n"));
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{table}\" ORDER BY 1, 2"))
            .or_else(|_| conn.prepare(&format!("SELECT * FROM \"{table}\" ORDER BY 1")))
            .unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let mut cells = Vec::new();
                for i in 0..n {
                    let v: rusqlite::types::Value = r.get(i)?;
                    cells.push(format!("{v:?}"));
                }
                Ok(cells.join(" | "))
            })
            .unwrap();
        for row in rows {
            out.push_str(&row.unwrap());
            out.push('\n');
        }
    }
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    out.push_str(&format!("user_version {version}\n"));
    out
}
