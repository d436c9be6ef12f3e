//! Per-backend resource limits, and the host-side meters that enforce them.
//!
//! Every limit has a safe default and says which attack or failure it stops. A limit hit
//! during a call ends that call with `BackendError::LimitExceeded("sandbox limit: …")` naming
//! the limit (`cpu budget`, `memory`, `wall time`, `stack`, `hostcall data`, `table`), and
//! the instance that hit it is discarded; the request budget is the exception: running out
//! is reported to the guest as `http-error::limit-exceeded` so it can fail gracefully.

use std::time::Duration;

use crate::backend::BackendError;

/// Limits applied to every call into one backend. Construct with `Limits::default()` and
/// override fields; [`Limits::validate`] runs when a backend is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Total linear memory one instance may hold, in bytes (all its memories together).
    /// Stops a guest from exhausting host memory by growing its heap: the `memory.grow` that
    /// would pass the limit traps and the call fails with a `memory` limit error. Must not
    /// exceed the engine's `max_memory_bytes`. Default 64 MiB.
    pub max_memory_bytes: usize,
    /// Elements one table may hold. Each costs the host a pointer; stops `table.grow` from
    /// being used to exhaust host memory outside linear memory. Default 100 000.
    pub max_table_elements: usize,
    /// CPU time a guest may spend in one call (including instantiation and `init` for a
    /// fresh instance), measured in epoch ticks while guest code runs. Stops a spinning
    /// guest: it is trapped when the budget is spent, and it yields its tokio worker at every
    /// tick before that, so other backends keep answering. Default 200 ms.
    pub cpu_budget: Duration,
    /// Wall-clock time one call may take, waiting for the network included. Stops a guest
    /// (or an upstream dripping bytes) from holding a caller and an instance forever; the
    /// instance is dropped mid-call when it passes. Default 5 s.
    pub wall_time: Duration,
    /// HTTP requests a guest may make in one call. Stops a guest from using the host as a
    /// request amplifier against an allowed destination; request number `max + 1` gets
    /// `http-error::limit-exceeded` without anything being sent. Default 8.
    pub max_requests_per_call: u32,
    /// Largest request body a guest may send, in bytes. Enforced here before the request
    /// reaches the outbound capability (which applies the same number while sending): stops
    /// a guest from uploading large payloads (exfiltration volume, upstream abuse).
    /// Default 1 MiB.
    pub max_request_bytes: usize,
    /// Largest response body handed back to a guest, in bytes. The outbound capability caps
    /// it while streaming; the sandbox checks again so a sender bug cannot push an unbounded
    /// body into guest memory. Default 1 MiB.
    pub max_response_bytes: usize,
    /// Most bytes a guest may pass to the host in one host call (an HTTP request's URL,
    /// headers and body together; a log message; a config key). The guest's strings are
    /// copied out of its memory before the host sees them, so this does not bound that copy
    /// (the memory limit does); it stops the host from doing further work (parsing, policy
    /// checks, formatting, forwarding) on oversized data. A call over it traps with a
    /// `hostcall data` limit error. Must be at least `max_request_bytes`. Default 2 MiB.
    pub max_hostcall_bytes: usize,
    /// Longest log line kept, in bytes; longer lines (from the `log` import or the guest's
    /// stdout/stderr) are cut and marked. Stops a guest from flooding the host's log storage
    /// one line at a time. Default 1 KiB.
    pub max_log_line_bytes: usize,
    /// Log lines an instance may emit per second, sustained. Stops a guest from drowning
    /// the operator's logs (and other backends' lines) in noise; excess lines are dropped
    /// and counted. Default 20.
    pub log_lines_per_second: u32,
    /// Log lines an instance may emit in a burst above the sustained rate. Default 100.
    pub log_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_bytes: 64 << 20,
            max_table_elements: 100_000,
            cpu_budget: Duration::from_millis(200),
            wall_time: Duration::from_secs(5),
            max_requests_per_call: 8,
            max_request_bytes: 1 << 20,
            max_response_bytes: 1 << 20,
            max_hostcall_bytes: 2 << 20,
            max_log_line_bytes: 1024,
            log_lines_per_second: 20,
            log_burst: 100,
        }
    }
}

/// Smallest memory limit accepted: below one 64 KiB wasm page nothing instantiates.
const MIN_MEMORY_BYTES: usize = 64 << 10;
/// Smallest log line kept; shorter limits would cut even the truncation marker.
const MIN_LOG_LINE_BYTES: usize = 64;

impl Limits {
    /// Check that the limits are usable with an engine whose pool slots hold
    /// `engine_max_memory` bytes. Errors say which field is wrong and why.
    pub fn validate(&self, engine_max_memory: usize) -> Result<(), String> {
        if self.max_memory_bytes < MIN_MEMORY_BYTES {
            return Err(format!(
                "max_memory_bytes {} is below one wasm page ({MIN_MEMORY_BYTES} bytes)",
                self.max_memory_bytes
            ));
        }
        if self.max_memory_bytes > engine_max_memory {
            return Err(format!(
                "max_memory_bytes {} exceeds the engine's max_memory_bytes {engine_max_memory}",
                self.max_memory_bytes
            ));
        }
        if self.cpu_budget.is_zero() {
            return Err("cpu_budget must be positive".into());
        }
        if self.wall_time.is_zero() {
            return Err("wall_time must be positive".into());
        }
        if self.max_hostcall_bytes < self.max_request_bytes {
            return Err(format!(
                "max_hostcall_bytes {} is smaller than max_request_bytes {}",
                self.max_hostcall_bytes, self.max_request_bytes
            ));
        }
        if self.max_log_line_bytes < MIN_LOG_LINE_BYTES {
            return Err(format!(
                "max_log_line_bytes {} is below the minimum of {MIN_LOG_LINE_BYTES}",
                self.max_log_line_bytes
            ));
        }
        if self.log_lines_per_second == 0 || self.log_burst == 0 {
            return Err("log_lines_per_second and log_burst must be at least 1".into());
        }
        Ok(())
    }
}

/// A sandbox limit that ended a call. Its `Display` names the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitHit {
    #[error("cpu budget {} ms exhausted", .budget.as_millis())]
    CpuBudget { budget: Duration },
    #[error("memory limit {} exceeded", fmt_bytes(*.max_bytes))]
    Memory { max_bytes: usize },
    #[error("wall time {} ms exceeded", .limit.as_millis())]
    WallTime { limit: Duration },
    #[error("stack limit {} exhausted (recursion too deep)", fmt_bytes(*.max_bytes))]
    Stack { max_bytes: usize },
    #[error("hostcall data limit: {call} was passed {bytes} bytes, more than {max}")]
    HostcallData {
        call: &'static str,
        bytes: usize,
        max: usize,
    },
    #[error("table limit {max} elements exceeded")]
    TableElements { max: usize },
}

impl LimitHit {
    /// Every limit's name, in [`LimitHit::index`] order: the `limit` label of
    /// `airlock_sandbox_limit_hits_total`.
    pub const NAMES: [&'static str; 6] = [
        "cpu",
        "memory",
        "wall_time",
        "stack",
        "hostcall_data",
        "table",
    ];

    /// Position of this limit in [`LimitHit::NAMES`].
    pub fn index(&self) -> usize {
        match self {
            LimitHit::CpuBudget { .. } => 0,
            LimitHit::Memory { .. } => 1,
            LimitHit::WallTime { .. } => 2,
            LimitHit::Stack { .. } => 3,
            LimitHit::HostcallData { .. } => 4,
            LimitHit::TableElements { .. } => 5,
        }
    }

    /// The limit's short name (`cpu`, `memory`, `wall_time`, …).
    pub fn name(&self) -> &'static str {
        Self::NAMES[self.index()]
    }
}

/// A limit hit is the host stopping the guest, not the guest failing: the service answers
/// it as `sandbox_limit` (504), apart from an unavailable upstream.
impl From<LimitHit> for BackendError {
    fn from(hit: LimitHit) -> Self {
        BackendError::LimitExceeded(format!("sandbox limit: {hit}"))
    }
}

/// `64 MiB`, `512 KiB`, `1000 bytes`.
pub(crate) fn fmt_bytes(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// Core instances, tables and memories one store (one backend instance) may create. These
/// bound per-instance host bookkeeping; the pooling allocator bounds the totals.
const MAX_INSTANCES_PER_STORE: usize = 256;
const MAX_TABLES_PER_STORE: usize = 256;
const MAX_MEMORIES_PER_STORE: usize = 32;

/// Enforces the memory and table limits of one instance (wasmtime's `ResourceLimiter`).
///
/// Invariant: `memory_bytes` is the sum of the current sizes of every linear memory of the
/// instance (memories never shrink), so the limit applies to the instance as a whole, not
/// per memory.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    max_memory_bytes: usize,
    max_table_elements: usize,
    memory_bytes: usize,
    /// The limit that was hit, kept so that the call's error can be classified even when
    /// the guest's own code turned the failure into a different trap.
    pub(crate) hit: Option<LimitHit>,
}

impl MemoryLimiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        MemoryLimiter {
            max_memory_bytes: limits.max_memory_bytes,
            max_table_elements: limits.max_table_elements,
            memory_bytes: 0,
            hit: None,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .memory_bytes
            .saturating_sub(current)
            .saturating_add(desired);
        if total > self.max_memory_bytes {
            let hit = LimitHit::Memory {
                max_bytes: self.max_memory_bytes,
            };
            self.hit = Some(hit.clone());
            return Err(hit.into());
        }
        self.memory_bytes = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            let hit = LimitHit::TableElements {
                max: self.max_table_elements,
            };
            self.hit = Some(hit.clone());
            return Err(hit.into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES_PER_STORE
    }

    fn tables(&self) -> usize {
        MAX_TABLES_PER_STORE
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES_PER_STORE
    }
}

/// Counts the epoch ticks a guest runs through during one call.
///
/// The epoch deadline is one tick ahead whenever guest code runs; each time it passes, the
/// deadline callback charges one tick and yields to the executor. Time the guest spends
/// suspended in a host call (waiting for HTTP) costs at most one tick, so the meter
/// approximates CPU time, not wall time, at a granularity of one tick.
#[derive(Debug)]
pub(crate) struct CpuMeter {
    budget: Duration,
    budget_ticks: u64,
    used_ticks: u64,
}

impl CpuMeter {
    pub(crate) fn new(budget: Duration, tick: Duration) -> Self {
        let ticks = budget.as_nanos().div_ceil(tick.as_nanos().max(1));
        CpuMeter {
            budget,
            budget_ticks: u64::try_from(ticks).unwrap_or(u64::MAX).max(1),
            used_ticks: 0,
        }
    }

    /// Start a new call with a full budget.
    pub(crate) fn reset(&mut self) {
        self.used_ticks = 0;
    }

    /// Charge one tick. `Err` once the budget is spent.
    pub(crate) fn charge_tick(&mut self) -> Result<(), LimitHit> {
        self.used_ticks += 1;
        if self.used_ticks >= self.budget_ticks {
            Err(LimitHit::CpuBudget {
                budget: self.budget,
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn defaults_are_valid_and_named_in_messages() {
        let limits = Limits::default();
        assert_eq!(limits.validate(256 << 20), Ok(()));
        assert_eq!(
            BackendError::from(LimitHit::CpuBudget {
                budget: limits.cpu_budget
            })
            .to_string(),
            "backend stopped at a limit: sandbox limit: cpu budget 200 ms exhausted"
        );
        assert_eq!(
            LimitHit::Memory {
                max_bytes: limits.max_memory_bytes
            }
            .to_string(),
            "memory limit 64 MiB exceeded"
        );
        assert_eq!(
            LimitHit::Stack {
                max_bytes: 512 << 10
            }
            .to_string(),
            "stack limit 512 KiB exhausted (recursion too deep)"
        );
    }

    #[test]
    fn validate_names_the_bad_field() {
        let limits = Limits {
            max_memory_bytes: 512 << 20,
            ..Limits::default()
        };
        let err = limits.validate(256 << 20).unwrap_err();
        assert!(err.contains("max_memory_bytes"), "{err}");
        let limits = Limits {
            max_hostcall_bytes: 10,
            ..Limits::default()
        };
        assert!(
            limits
                .validate(256 << 20)
                .unwrap_err()
                .contains("max_hostcall_bytes")
        );
        let limits = Limits {
            cpu_budget: Duration::ZERO,
            ..Limits::default()
        };
        assert!(
            limits
                .validate(256 << 20)
                .unwrap_err()
                .contains("cpu_budget")
        );
    }

    #[test]
    fn memory_limit_counts_all_memories_together() {
        let mut limiter = MemoryLimiter::new(&Limits {
            max_memory_bytes: 4 << 20,
            ..Limits::default()
        });
        assert!(limiter.memory_growing(0, 2 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, 2 << 20, None).unwrap());
        let err = limiter
            .memory_growing(2 << 20, (2 << 20) + 65536, None)
            .unwrap_err();
        assert_eq!(
            err.downcast_ref::<LimitHit>(),
            Some(&LimitHit::Memory { max_bytes: 4 << 20 })
        );
        assert_eq!(limiter.hit, Some(LimitHit::Memory { max_bytes: 4 << 20 }));
    }

    #[test]
    fn cpu_meter_spends_the_budget_in_ticks() {
        let mut meter = CpuMeter::new(Duration::from_millis(3), Duration::from_millis(1));
        assert!(meter.charge_tick().is_ok());
        assert!(meter.charge_tick().is_ok());
        assert!(meter.charge_tick().is_err());
        meter.reset();
        assert!(meter.charge_tick().is_ok());
    }
}
