//! Helpers for the end-to-end backend tests (`backends_e2e.rs`): finding tools and guest
//! components (skip or fail), starting a real or fake upstream on a free 127.0.0.1 port with a
//! bounded readiness wait (killed on drop), and [`Session`]: the real `airlock` binary with a
//! real config file, every run checked for leaked secrets.
#![allow(dead_code)]

pub mod http;
pub mod servers;

use std::fs::File;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Airlock, Run, finish, repo_root};

/// Print a skip notice past libtest's output capture, so it shows in a plain `cargo test`.
pub fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIP: {test}: {why}");
}

fn env_is_1(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v == "1")
}

/// `tool` on PATH, or `None` after a SKIP line; a panic instead under
/// `AIRLOCK_REQUIRE_TOOLS=1`.
pub fn tool(test: &str, tool: &str, hint: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            !env_is_1("AIRLOCK_REQUIRE_TOOLS"),
            "{test}: `{tool}` is not on PATH and AIRLOCK_REQUIRE_TOOLS=1 ({hint})"
        );
        skip(test, &format!("`{tool}` is not on PATH ({hint})"));
    }
    found
}

/// The directory the guest backends are built into.
pub fn dist_dir() -> PathBuf {
    repo_root().join("guest-backends/dist")
}

/// `guest-backends/dist/NAME.wasm`, or `None` after a SKIP line; a panic instead under
/// `AIRLOCK_REQUIRE_GUESTS=1`.
pub fn guest(test: &str, name: &str) -> Option<PathBuf> {
    let path = dist_dir().join(format!("{name}.wasm"));
    if path.is_file() {
        return Some(path);
    }
    assert!(
        !env_is_1("AIRLOCK_REQUIRE_GUESTS"),
        "{test}: {} is missing and AIRLOCK_REQUIRE_GUESTS=1 (run guest-backends/build.sh)",
        path.display()
    );
    skip(
        test,
        &format!(
            "{} is not built (run guest-backends/build.sh; AIRLOCK_REQUIRE_GUESTS=1 fails instead)",
            path.display()
        ),
    );
    None
}

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port on 127.0.0.1 (free when asked; the caller retries if it is taken meanwhile).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A port `p` with `p + 1` also free (OpenBao's dev server binds its cluster listener there).
pub fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let Ok(a) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = a.local_addr().map(|s| s.port()) else {
            continue;
        };
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free pair of loopback ports");
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A server process on 127.0.0.1, its output in a log file, killed when dropped.
pub struct Server {
    child: ChildGuard,
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Start `cmd` (stdout and stderr to a log file) and wait up to `timeout` for `ready`.
    /// `Err` carries the log when the process exits or the wait runs out.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        port: u16,
        timeout: Duration,
        ready: impl Fn(&str) -> bool,
    ) -> Result<Server, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join(format!("{}.log", name.replace('/', "_")));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let mut server = Server {
            child: ChildGuard(child),
            port,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = server.child.0.try_wait() {
                return Err(format!("{name} exited ({status}):\n{}", server.output()));
            }
            if ready(&server.url) {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{name} not ready within {timeout:?}:\n{}",
                    server.output()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the server printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The real `airlock` binary over a private data directory, optionally with a config file,
/// `AIRLOCK_LOG=debug`, and leak checks on every run: no registered secret in any stderr or in
/// any stdout except `get-value --reveal`'s; no registered token anywhere.
pub struct Session {
    pub airlock: Airlock,
    config: Option<PathBuf>,
    env: Vec<(String, String)>,
    secrets: Vec<String>,
    tokens: Vec<String>,
}

/// Variables from the test's own environment that would change what airlock does.
const SCRUBBED: &[&str] = &[
    "JENTIC_BITWARDEN_URL",
    "JENTIC_BITWARDEN_TOKEN",
    "AIRLOCK_COMPONENT_DIR",
    "VAULT_TOKEN",
    "VAULT_ADDR",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

impl Session {
    /// A session whose `airlock.toml` (in the temp dir, passed with `--config`) is `toml`.
    pub fn with_config(toml: &str) -> Session {
        let airlock = Airlock::new();
        let path = airlock.dir.path().join("airlock.toml");
        std::fs::write(&path, toml).expect("write airlock.toml");
        Session {
            airlock,
            config: Some(path),
            env: Vec::new(),
            secrets: Vec::new(),
            tokens: Vec::new(),
        }
    }

    /// A session with no config file at all (the working directory has no airlock.toml).
    pub fn without_config() -> Session {
        Session {
            airlock: Airlock::new(),
            config: None,
            env: Vec::new(),
            secrets: Vec::new(),
            tokens: Vec::new(),
        }
    }

    pub fn env(mut self, name: &str, value: &str) -> Session {
        self.env.push((name.into(), value.into()));
        self
    }

    /// A value that may appear only in `get-value --reveal`'s stdout.
    pub fn secret(&mut self, value: &str) {
        self.secrets.push(value.to_owned());
    }

    /// A token or key that may appear in no output at all.
    pub fn token(&mut self, value: &str) {
        self.tokens.push(value.to_owned());
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut all: Vec<&str> = Vec::new();
        if let Some(config) = &self.config {
            all.push("--config");
            all.push(config.to_str().expect("UTF-8 temp path"));
        }
        all.extend_from_slice(args);
        let mut cmd = self.airlock.command(&all);
        for var in SCRUBBED {
            cmd.env_remove(var);
        }
        cmd.env(
            "AIRLOCK_LOG",
            std::env::var("AIRLOCK_E2E_LOG").unwrap_or("debug".into()),
        );
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn exec(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("airlock starts");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin)
            .expect("write stdin");
        let run = finish(child.wait_with_output().expect("airlock runs"));
        let revealing = args.first() == Some(&"credentials")
            && args.get(1) == Some(&"get-value")
            && args.contains(&"--reveal");
        let shown = args.join(" ");
        for s in self.secrets.iter().chain(&self.tokens) {
            assert!(
                !run.stderr.contains(s.as_str()),
                "`airlock {shown}` leaked a secret to stderr:\n{}",
                run.stderr
            );
        }
        for s in &self.tokens {
            assert!(
                !run.stdout.contains(s.as_str()),
                "`airlock {shown}` leaked a token to stdout:\n{}",
                run.stdout
            );
        }
        if !revealing {
            for s in &self.secrets {
                assert!(
                    !run.stdout.contains(s.as_str()),
                    "`airlock {shown}` printed a secret value without --reveal:\n{}",
                    run.stdout
                );
            }
        }
        assert!(
            !run.stderr.contains("panicked"),
            "`airlock {shown}` panicked:\n{}",
            run.stderr
        );
        run
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.exec(args, b"")
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        self.exec(args, stdin)
    }

    /// `credentials add --id ID --label … --auth-type bearer [--backend B] --locator L`.
    #[track_caller]
    pub fn add(&self, id: &str, backend: Option<&str>, locator: &str) -> Run {
        let label = format!("e2e {id}");
        let mut args = vec![
            "credentials",
            "add",
            "--id",
            id,
            "--label",
            &label,
            "--auth-type",
            "bearer",
            "--locator",
            locator,
        ];
        if let Some(b) = backend {
            args.extend(["--backend", b]);
        }
        self.run(&args).ok()
    }

    /// `credentials get-value ID --reveal`'s stdout without its newline.
    #[track_caller]
    pub fn reveal(&self, id: &str) -> String {
        let run = self.run(&["credentials", "get-value", id, "--reveal"]).ok();
        run.stdout
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("--reveal output ends with a newline: {:?}", run.stdout))
            .to_owned()
    }

    /// `credentials set-value ID` with `value` on stdin.
    #[track_caller]
    pub fn set_value(&self, id: &str, value: &str) -> Run {
        self.run_with_stdin(&["credentials", "set-value", id], value.as_bytes())
            .ok()
    }

    /// `get-value` without `--reveal` succeeds and reports the length, not the value.
    #[track_caller]
    pub fn assert_resolves_quietly(&self, id: &str, value: &str) {
        let run = self.run(&["credentials", "get-value", id]).ok();
        assert!(
            run.stdout.contains(&format!("{}-byte value", value.len())),
            "{}",
            run.stdout
        );
    }

    /// No registered secret or token in any file of the data directory (database, WAL, key
    /// file, component cache): values of sandboxed backends live upstream only.
    #[track_caller]
    pub fn assert_data_dir_clean(&self) {
        let mut files = Vec::new();
        collect_files(&self.airlock.data_dir(), &mut files);
        assert!(
            files.iter().any(|f| f.ends_with("airlock.db")),
            "no database in {}",
            self.airlock.data_dir().display()
        );
        for file in files {
            let bytes = std::fs::read(&file).unwrap_or_default();
            for s in self.secrets.iter().chain(&self.tokens) {
                assert!(
                    !contains(&bytes, s.as_bytes()),
                    "{} holds a secret value or token",
                    file.display()
                );
            }
        }
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A TOML basic string for `s` (quotes and backslashes escaped).
pub fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A value unique to this process and moment, so no two runs share a secret.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}
