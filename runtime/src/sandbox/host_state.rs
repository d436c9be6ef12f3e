//! The data of one backend instance's `Store`: its capabilities, its WASI context and its
//! limit meters.
//!
//! Invariant: one `HostState` belongs to exactly one instance of exactly one backend; every
//! capability in it was built from that backend's configuration ([`InstanceTemplate`]), so
//! nothing a guest does through it can read or affect another backend or another instance.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::capabilities::config::ConfigCapability;
use super::capabilities::http::HttpCapability;
use super::capabilities::log::{LogCapability, LogGate, LogSink};
use super::capabilities::wasi::deny_all_context;
use super::limits::{CpuMeter, Limits, MemoryLimiter};
use crate::outbound::HttpSender;

/// Most WASI resource handles (streams, pollables, sockets…) one instance may hold at once.
/// Each costs host memory outside the guest's linear memory, so an unbounded count would
/// let a guest grow host memory past its memory limit (wasmtime's default is a million).
pub const MAX_RESOURCE_HANDLES: usize = 10_000;

/// Everything needed to build a fresh instance's state for one backend.
pub(crate) struct InstanceTemplate {
    pub(crate) backend: Arc<str>,
    pub(crate) limits: Limits,
    pub(crate) config: Arc<BTreeMap<String, String>>,
    pub(crate) http: Arc<dyn HttpSender>,
    pub(crate) log_sink: Arc<dyn LogSink>,
    pub(crate) epoch_tick: Duration,
}

/// The `T` of `Store<T>` for a backend instance.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) http: HttpCapability,
    pub(crate) config: ConfigCapability,
    pub(crate) log: LogCapability,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) cpu: CpuMeter,
}

impl HostState {
    pub(crate) fn new(t: &InstanceTemplate) -> Self {
        let gate = Arc::new(Mutex::new(LogGate::new(
            t.backend.clone(),
            t.log_sink.clone(),
            &t.limits,
        )));
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCE_HANDLES);
        HostState {
            wasi: deny_all_context(&gate, t.limits.max_log_line_bytes),
            table,
            http: HttpCapability::new(t.http.clone(), &t.limits),
            config: ConfigCapability::new(t.config.clone(), t.limits.max_hostcall_bytes),
            log: LogCapability::new(gate, t.limits.max_hostcall_bytes),
            limiter: MemoryLimiter::new(&t.limits),
            cpu: CpuMeter::new(t.limits.cpu_budget, t.epoch_tick),
        }
    }

    /// Start a new call: full CPU and request budgets.
    pub(crate) fn begin_call(&mut self) {
        self.http.begin_call();
        self.cpu.reset();
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
