//! Structured logging to stderr via `tracing`.
//!
//! The filter comes from `AIRLOCK_LOG`, default `warn`, so command output on stdout stays
//! clean. A bare level (`AIRLOCK_LOG=debug`) sets airlock's own level and keeps every
//! dependency at `warn`: wasmtime and cranelift log tens of thousands of lines while
//! compiling one component at `debug`/`trace`, which would bury airlock's lines and slow a
//! start-up to a crawl. Anything else is a full `tracing` directive list, used as written
//! (`AIRLOCK_LOG=info,wasmtime=debug` to see the engine's too). Nothing logged anywhere in
//! airlock carries a secret value: values are `Secret`, which prints as `[REDACTED]`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Environment variable holding the log filter.
pub const ENV_LOG: &str = "AIRLOCK_LOG";

/// Levels, most verbose first.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// The `tracing` directives for an `AIRLOCK_LOG` value: a bare level applies to airlock's
/// own targets, with dependencies at `warn` (or quieter, if the level is quieter).
pub fn directives(value: &str) -> String {
    let value = value.trim();
    let lower = value.to_ascii_lowercase();
    match LEVELS.iter().position(|l| *l == lower) {
        Some(i) if i < 3 => format!("airlock={lower},warn"),
        Some(_) => lower,
        None => value.to_owned(),
    }
}

/// Install the global subscriber. Safe to call once per process. An unparsable
/// `AIRLOCK_LOG` is reported on stderr and the default used, rather than logging nothing.
pub fn init(default_filter: &str) {
    let filter = match std::env::var(ENV_LOG) {
        Ok(value) if !value.trim().is_empty() => EnvFilter::try_new(directives(&value))
            .unwrap_or_else(|e| {
                eprintln!("airlock: ignoring {ENV_LOG}={value:?}: {e}; using {default_filter:?}");
                EnvFilter::new(default_filter)
            }),
        _ => EnvFilter::new(default_filter),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: escape codes in a log file break every grep.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::directives;

    #[test]
    fn bare_levels_apply_to_airlock_and_keep_dependencies_quiet() {
        for (value, expected) in [
            ("trace", "airlock=trace,warn"),
            ("DEBUG", "airlock=debug,warn"),
            (" info ", "airlock=info,warn"),
            ("warn", "warn"),
            ("error", "error"),
            ("off", "off"),
            ("airlock=debug", "airlock=debug"),
            ("info,wasmtime=trace", "info,wasmtime=trace"),
        ] {
            assert_eq!(directives(value), expected, "{value:?}");
        }
    }
}
