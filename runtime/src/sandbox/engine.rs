//! The process-wide wasmtime [`Engine`], its linker, and the epoch ticker that drives CPU
//! budgets.
//!
//! Invariants:
//! - One [`SandboxEngine`] per process, shared by every sandboxed backend (`Arc`). Compiled
//!   code, the pooling allocator and the linker are all tied to it; a second engine would
//!   double the reserved address space and defeat the component cache.
//! - The engine is built for untrusted code: component model on, epoch interruption on
//!   (every guest loop has a check), a bounded wasm stack, and the pooling allocator whose
//!   slots bound how many instances and memories can exist at once, whatever the guests do.
//! - The ticker thread increments the epoch every [`EngineConfig::epoch_tick`]; it holds only
//!   a weak reference and stops when the engine is dropped.
//! - The linker defines airlock's world and WASI p2 from `wasmtime-wasi` and nothing else: no
//!   trap stubs for unknown imports (mixing them with real WASI shadows definitions), and
//!   unknown imports are refused by [`super::import_policy`] before linking is attempted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings;
use super::capabilities::{config::ConfigCapability, http::HttpCapability, log::LogCapability};
use super::component_cache::ComponentCache;
use super::error::{SandboxError, error_chain};
use super::host_state::HostState;

/// Linear memories the pool reserves per instance slot. Rust and JS guests have one; a
/// componentize-py guest a few. A component with more memories still instantiates while the
/// pool has free memory slots.
const MEMORIES_PER_INSTANCE_SLOT: u32 = 2;
/// Tables the pool reserves per instance slot (a wit-bindgen component has its main table
/// plus a shim table for indirect lowering).
const TABLES_PER_INSTANCE_SLOT: u32 = 4;
/// Core instances the pool reserves per instance slot.
const CORE_INSTANCES_PER_INSTANCE_SLOT: u32 = 8;
/// Most core instances one component may contain. componentize-py guests link a few dozen
/// shared libraries, each a core instance; a component asking for more is refused at
/// instantiation rather than draining the shared pool.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 128;
/// Most linear memories one component may contain.
const MAX_MEMORIES_PER_COMPONENT: u32 = 16;
/// Most tables one component may contain.
const MAX_TABLES_PER_COMPONENT: u32 = 64;
/// Host-side metadata (`VMContext`s) one component instance may use. Grows with the number
/// of functions and imports; 16 MiB fits an 18 MB componentize-py guest with room to spare,
/// and bounds what a component with millions of declared functions can make the host hold.
const MAX_COMPONENT_INSTANCE_METADATA: usize = 16 << 20;
/// Size of each async fiber stack. Host functions (the HTTP capability, WASI) run on the
/// guest's fiber too, so the stack must exceed `max_wasm_stack` by a margin for them.
const ASYNC_STACK_SIZE: usize = 2 << 20;
/// Bytes at the top of a freed fiber stack that are zeroed with `memset` and stay resident;
/// the rest of the stack is returned to the kernel (`madvise`), which also zeroes it. Small
/// enough that zeroing costs about a microsecond, large enough to cover the frames a
/// typical call touches, so most calls do not page-fault their stack back in.
const STACK_KEEP_RESIDENT: usize = 16 << 10;
/// Headroom [`ASYNC_STACK_SIZE`] keeps above `max_wasm_stack` for host frames.
const HOST_STACK_HEADROOM: usize = 1 << 20;

/// Settings of the process-wide engine. Fixed at start-up: the pooling allocator reserves its
/// slots when the engine is created.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How many component instances may be alive at once, across all backends (the sum of
    /// every backend's `pool_size` should stay below it). Stops many backends, or a backend
    /// with a huge pool, from making the host reserve unbounded memory: instantiation past
    /// this fails with a typed `Unavailable` error. Default 256.
    pub max_instances: u32,
    /// The largest linear-memory limit any backend may configure, in bytes; each memory slot
    /// of the pool is sized for it. Default 256 MiB.
    pub max_memory_bytes: usize,
    /// Native stack a guest may use, in bytes (`Config::max_wasm_stack`). Stops unbounded
    /// recursion from overflowing the host thread's stack: the guest traps with a `stack`
    /// limit error instead. Engine-wide because wasmtime fixes it per engine. Default 512 KiB.
    pub max_wasm_stack: usize,
    /// How often the epoch advances. It is the granularity of every CPU budget and the
    /// longest a guest runs before yielding its tokio worker to other tasks. Default 1 ms.
    pub epoch_tick: Duration,
    /// Where compiled components are cached (e.g. `DATA_DIR/cache/components`). `None`
    /// compiles every component at every start.
    pub cache_dir: Option<PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_instances: 256,
            max_memory_bytes: 256 << 20,
            max_wasm_stack: 512 << 10,
            epoch_tick: Duration::from_millis(1),
            cache_dir: None,
        }
    }
}

/// The one wasmtime engine of the process, with the linker every backend instantiates
/// through and the on-disk component cache.
pub struct SandboxEngine {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ComponentCache,
    config: EngineConfig,
}

impl std::fmt::Debug for SandboxEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxEngine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SandboxEngine {
    /// Build the engine, its linker and cache, and start the epoch ticker. Create one per
    /// process and share the `Arc`.
    pub fn new(config: EngineConfig) -> Result<Arc<SandboxEngine>, SandboxError> {
        if config.max_instances == 0 {
            return Err(SandboxError::Engine(
                "max_instances must be at least 1".into(),
            ));
        }
        if config.epoch_tick.is_zero() {
            return Err(SandboxError::Engine("epoch_tick must be positive".into()));
        }
        if config.max_wasm_stack == 0
            || config.max_wasm_stack > ASYNC_STACK_SIZE - HOST_STACK_HEADROOM
        {
            return Err(SandboxError::Engine(format!(
                "max_wasm_stack must be between 1 and {} bytes",
                ASYNC_STACK_SIZE - HOST_STACK_HEADROOM
            )));
        }

        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances * CORE_INSTANCES_PER_INSTANCE_SLOT)
            .total_memories(config.max_instances * MEMORIES_PER_INSTANCE_SLOT)
            .total_tables(config.max_instances * TABLES_PER_INSTANCE_SLOT)
            .total_stacks(config.max_instances)
            .max_memory_size(config.max_memory_bytes)
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
            .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
            .max_component_instance_size(MAX_COMPONENT_INSTANCE_METADATA)
            .async_stack_keep_resident(STACK_KEEP_RESIDENT);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_wasm_stack)
            .async_stack_size(ASYNC_STACK_SIZE)
            // Freed fiber stacks are zeroed so one call's (or one backend's) stack contents
            // never show up in another's uninitialised stack memory.
            .async_stack_zeroing(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(|e| SandboxError::Engine(error_chain(&e)))?;

        let linker = build_linker(&engine)?;
        let cache = ComponentCache::new(config.cache_dir.clone(), &engine);
        start_epoch_ticker(&engine, config.epoch_tick)?;
        Ok(Arc::new(SandboxEngine {
            engine,
            linker,
            cache,
            config,
        }))
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The settings this engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The component cache (compiled artifacts on disk).
    pub fn cache(&self) -> &ComponentCache {
        &self.cache
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }
}

/// airlock's world plus WASI p2, every import async.
fn build_linker(engine: &Engine) -> Result<Linker<HostState>, SandboxError> {
    let link = |e: wasmtime::Error| SandboxError::Engine(format!("linker: {}", error_chain(&e)));
    let mut linker = Linker::<HostState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link)?;
    bindings::http::add_to_linker::<HostState, HasSelf<HttpCapability>>(&mut linker, |s| {
        &mut s.http
    })
    .map_err(link)?;
    bindings::config::add_to_linker::<HostState, HasSelf<ConfigCapability>>(&mut linker, |s| {
        &mut s.config
    })
    .map_err(link)?;
    bindings::log::add_to_linker::<HostState, HasSelf<LogCapability>>(&mut linker, |s| &mut s.log)
        .map_err(link)?;
    Ok(linker)
}

/// A background thread advancing the engine's epoch every `tick`. It keeps only a weak
/// reference, so it ends when the engine is dropped (tests create several engines).
fn start_epoch_ticker(engine: &Engine, tick: Duration) -> Result<(), SandboxError> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("airlock-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map(|_| ())
        .map_err(|e| SandboxError::Engine(format!("cannot start the epoch ticker thread: {e}")))
}
