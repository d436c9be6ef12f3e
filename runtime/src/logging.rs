//! Structured logging to stderr via `tracing`.
//!
//! The filter comes from `AIRLOCK_LOG` (e.g. `info`, `airlock=debug`), default `warn`, so
//! command output on stdout stays clean. Nothing logged anywhere in airlock carries a
//! secret value: values are `Secret`, which prints as `[REDACTED]`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Environment variable holding the log filter.
pub const ENV_LOG: &str = "AIRLOCK_LOG";

/// Install the global subscriber. Safe to call once per process.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_env(ENV_LOG).unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: escape codes in a log file break every grep.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
