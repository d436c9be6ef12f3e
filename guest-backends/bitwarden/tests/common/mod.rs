//! Starting the Python fakes under `tests/fakes/` for the native tests: a free loopback port,
//! a bounded readiness wait, and the process killed when the fixture is dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use airlock_guest::native::{ChildGuard, free_port, require_tool, wait_for};

/// A running fake server.
pub struct Fake {
    _child: ChildGuard,
    pub url: String,
}

/// A path under the crate directory.
pub fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Starts `tests/fakes/<script>` with `--port <free port>` and `args`; `None` (after a
/// `SKIP:` line) when python3 is missing and tools are not required.
pub fn start(test: &str, script: &str, args: &[&str]) -> Option<Fake> {
    let python = require_tool("python3", test, "install Python 3")?;
    let port = free_port().expect("free port");
    let child = Command::new(python)
        .arg(crate_path(&format!("tests/fakes/{script}")))
        .args(["--port", &port.to_string(), "--lifetime", "120"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("fake starts");
    let child = ChildGuard(child);
    let addr = format!("127.0.0.1:{port}");
    wait_for(Duration::from_secs(20), Duration::from_millis(50), || TcpStream::connect(&addr).ok().map(drop))
        .expect("fake listens within 20 s");
    Some(Fake { _child: child, url: format!("http://{addr}") })
}
