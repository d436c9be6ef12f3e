//! Instances of one backend: created from its `InstancePre`, reused or not according to
//! its isolation, and thrown away after any failure.
//!
//! Invariants:
//! - An instance belongs to one backend and is used by one call at a time (it is moved out
//!   of the idle list for the call), so concurrent calls run in parallel on separate
//!   instances, never interleaved in one.
//! - At most `pool_size` instances of a backend exist at once (a semaphore); further calls
//!   wait for one, within their wall-time limit.
//! - A fresh instance runs the guest's `init` exactly once, before its first call; an
//!   instance whose `init` fails is dropped, and the next call tries a fresh one.
//! - An instance goes back to the idle list only after a call that returned normally (the
//!   guest's own error results included) and only under `Isolation::Pooled`. After a trap,
//!   a limit hit, an `exit`, or a wall-time cancellation it is dropped: its memory may be
//!   inconsistent, and a guest must not get a second chance at a state it broke.
//! - Every call starts with a full CPU budget and request budget.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Semaphore;
use wasmtime::component::InstancePre;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::bindings::{self, CredentialBackend as Bindings, CredentialBackendPre};
use super::capabilities::log::sanitize;
use super::error::error_chain;
use super::host_state::{HostState, InstanceTemplate};
use super::limits::LimitHit;
use crate::backend::BackendError;

/// Longest error message taken from a guest or from wasmtime, in bytes. Error strings go
/// to callers and logs; the cap stops a guest from returning megabytes in one.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// Whether instances are reused between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Instances are reused: a guest may keep state (a login token) between calls.
    #[default]
    Pooled,
    /// A fresh instance for every call: no state survives a call.
    PerCall,
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isolation::Pooled => "pooled",
            Isolation::PerCall => "per-call",
        })
    }
}

impl std::str::FromStr for Isolation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pooled" => Ok(Isolation::Pooled),
            "per-call" => Ok(Isolation::PerCall),
            other => Err(format!(
                "unknown isolation `{other}`: expected `pooled` or `per-call`"
            )),
        }
    }
}

/// Counters of one backend's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Instances created (each ran `init` once).
    pub created: u64,
    /// Instances dropped after a failure (trap, limit, failed `init`, wall time).
    pub discarded: u64,
    /// Instances waiting in the idle list now.
    pub idle: usize,
    /// Calls that ended in a trap that was not a limit: a guest bug or attack (an
    /// `unreachable`, a bad memory access, `exit`), each one a discarded instance.
    pub traps: u64,
    /// Calls stopped at each sandbox limit, indexed as [`LimitHit::NAMES`].
    pub limit_hits: [u64; LimitHit::NAMES.len()],
}

impl PoolStats {
    /// `(limit name, calls stopped at it)` for every limit.
    pub fn limit_hits(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        LimitHit::NAMES.iter().copied().zip(self.limit_hits)
    }
}

/// What ended a failed call, for [`PoolStats`].
enum FailureKind {
    Limit(usize),
    Trap,
    Other,
}

/// One operation on the guest's `backend` export.
pub(crate) enum Op<'a> {
    GetValue(&'a bindings::types::CredentialRef),
    GetValues(&'a [bindings::types::CredentialRef]),
    StoreValue(&'a bindings::types::CredentialRef, &'a str),
    DeleteValue(&'a bindings::types::CredentialRef),
    Health,
}

/// What the guest returned for an [`Op`].
pub(crate) enum Outcome {
    Unit(Result<(), bindings::types::BackendError>),
    Text(Result<String, bindings::types::BackendError>),
    Texts(Vec<Result<String, bindings::types::BackendError>>),
}

/// A live instance and its store.
struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
}

impl Instance {
    async fn invoke(&mut self, op: Op<'_>) -> wasmtime::Result<Outcome> {
        self.store.set_epoch_deadline(1);
        let guest = self.bindings.airlock_backend_backend();
        let store = &mut self.store;
        Ok(match op {
            Op::GetValue(cred) => Outcome::Text(guest.call_get_value(store, cred).await?),
            Op::GetValues(creds) => Outcome::Texts(guest.call_get_values(store, creds).await?),
            Op::StoreValue(cred, value) => {
                Outcome::Unit(guest.call_store_value(store, cred, value).await?)
            }
            Op::DeleteValue(cred) => Outcome::Unit(guest.call_delete_value(store, cred).await?),
            Op::Health => Outcome::Text(guest.call_health(store).await?),
        })
    }
}

/// The instances of one backend.
pub(crate) struct InstancePool {
    engine: Engine,
    pre: CredentialBackendPre<HostState>,
    template: InstanceTemplate,
    isolation: Isolation,
    max_wasm_stack: usize,
    idle: Mutex<Vec<Instance>>,
    permits: Semaphore,
    created: AtomicU64,
    discarded: AtomicU64,
    traps: AtomicU64,
    limit_hits: [AtomicU64; LimitHit::NAMES.len()],
}

impl InstancePool {
    pub(crate) fn new(
        engine: Engine,
        pre: InstancePre<HostState>,
        template: InstanceTemplate,
        isolation: Isolation,
        pool_size: usize,
        max_wasm_stack: usize,
    ) -> wasmtime::Result<Self> {
        Ok(InstancePool {
            engine,
            pre: CredentialBackendPre::new(pre)?,
            template,
            isolation,
            max_wasm_stack,
            idle: Mutex::new(Vec::with_capacity(pool_size)),
            permits: Semaphore::new(pool_size),
            created: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            traps: AtomicU64::new(0),
            limit_hits: Default::default(),
        })
    }

    pub(crate) fn stats(&self) -> PoolStats {
        PoolStats {
            created: self.created.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
            idle: self.lock_idle().len(),
            traps: self.traps.load(Ordering::Relaxed),
            limit_hits: std::array::from_fn(|i| self.limit_hits[i].load(Ordering::Relaxed)),
        }
    }

    /// The idle list. A poisoned lock means a panic while pushing or popping, which leaves
    /// the `Vec` valid, so the list is still used.
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `op` on an instance, within the backend's wall-time limit.
    pub(crate) async fn call(&self, op: Op<'_>) -> Result<Outcome, BackendError> {
        self.with_wall_time(async {
            let mut lease = self.checkout().await?;
            let result = lease.instance_mut().invoke(op).await;
            match result {
                Ok(outcome) => {
                    lease.release();
                    Ok(outcome)
                }
                Err(e) => Err(self.classify_failure(&e, lease.instance_mut().store.data())),
            }
        })
        .await
    }

    /// Make sure an instance can be created and initialised; under `Pooled` keep it for the
    /// next call.
    pub(crate) async fn warm(&self) -> Result<(), BackendError> {
        self.with_wall_time(async {
            self.checkout().await?.release();
            Ok(())
        })
        .await
    }

    /// Run `work` holding one of the pool's permits; waiting for the permit counts against
    /// the wall-time limit too, so a saturated pool cannot queue callers forever.
    async fn with_wall_time<R>(
        &self,
        work: impl Future<Output = Result<R, BackendError>>,
    ) -> Result<R, BackendError> {
        let limit = self.template.limits.wall_time;
        let bounded = async {
            let Ok(_permit) = self.permits.acquire().await else {
                return Err(BackendError::Unavailable("backend is shutting down".into()));
            };
            work.await
        };
        match tokio::time::timeout(limit, bounded).await {
            Ok(result) => result,
            // A checked-out instance was dropped with the future (its lease counts it).
            Err(_) => {
                let hit = LimitHit::WallTime { limit };
                self.limit_hits[hit.index()].fetch_add(1, Ordering::Relaxed);
                Err(hit.into())
            }
        }
    }

    /// An idle instance with a fresh call budget, or a new initialised one.
    async fn checkout(&self) -> Result<Lease<'_>, BackendError> {
        let idle = self.lock_idle().pop();
        let instance = match idle {
            Some(mut instance) => {
                instance.store.data_mut().begin_call();
                instance
            }
            None => self.create().await?,
        };
        Ok(Lease {
            pool: self,
            instance: Some(instance),
        })
    }

    /// A new instance whose `init` succeeded. Instantiation and `init` count against the
    /// budget of the call that needed the instance.
    async fn create(&self) -> Result<Instance, BackendError> {
        let mut store = Store::new(&self.engine, HostState::new(&self.template));
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|mut ctx| match ctx.data_mut().cpu.charge_tick() {
            Ok(()) => Ok(UpdateDeadline::Yield(1)),
            Err(hit) => Err(hit.into()),
        });
        store.data_mut().begin_call();
        store.set_epoch_deadline(1);
        self.created.fetch_add(1, Ordering::Relaxed);
        // Counts the instance as discarded unless it comes out initialised, including when
        // a wall-time timeout drops this future half-way.
        let mut pending = Pending {
            discarded: &self.discarded,
            done: false,
        };
        let bindings = match self.pre.instantiate_async(&mut store).await {
            Ok(bindings) => bindings,
            Err(e) => return Err(self.classify_failure(&e, store.data())),
        };
        let init = bindings
            .airlock_backend_backend()
            .call_init(&mut store)
            .await;
        match init {
            Ok(Ok(())) => {
                pending.done = true;
                Ok(Instance { store, bindings })
            }
            Ok(Err(guest_error)) => Err(from_guest_error(guest_error)),
            Err(e) => Err(self.classify_failure(&e, store.data())),
        }
    }

    /// Say why a call into an instance failed (the instance is then dropped).
    fn classify_failure(&self, error: &wasmtime::Error, state: &HostState) -> BackendError {
        let (classified, kind) = classify(error, state, self.max_wasm_stack);
        match kind {
            FailureKind::Limit(i) => {
                self.limit_hits[i].fetch_add(1, Ordering::Relaxed);
            }
            FailureKind::Trap => {
                self.traps.fetch_add(1, Ordering::Relaxed);
            }
            FailureKind::Other => {}
        }
        tracing::debug!(backend = %self.template.backend, error = %classified,
            "backend instance discarded");
        classified
    }
}

/// An instance checked out for one call. Dropping a lease without [`Lease::release`] —
/// after a failure, or when a wall-time timeout drops the call's future — drops the
/// instance and counts it as discarded.
struct Lease<'a> {
    pool: &'a InstancePool,
    instance: Option<Instance>,
}

impl Lease<'_> {
    fn instance_mut(&mut self) -> &mut Instance {
        // Invariant: `instance` is `Some` until `release` or `drop` takes it.
        self.instance
            .as_mut()
            .unwrap_or_else(|| unreachable!("a lease holds its instance until released"))
    }

    /// The call went well: return the instance to the idle list (`Pooled`) or drop it
    /// (`PerCall`) without counting it as discarded.
    fn release(mut self) {
        if let Some(instance) = self.instance.take()
            && self.pool.isolation == Isolation::Pooled
        {
            self.pool.lock_idle().push(instance);
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.instance.take().is_some() {
            self.pool.discarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An instance being created: counted as discarded if creation does not finish.
struct Pending<'a> {
    discarded: &'a AtomicU64,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.discarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The caller-visible error for a failed call into the guest, and what ended it.
fn classify(
    error: &wasmtime::Error,
    state: &HostState,
    max_wasm_stack: usize,
) -> (BackendError, FailureKind) {
    let limit = |hit: &LimitHit| (hit.clone().into(), FailureKind::Limit(hit.index()));
    if let Some(hit) = error.downcast_ref::<LimitHit>() {
        return limit(hit);
    }
    if let Some(hit) = &state.limiter.hit {
        return limit(hit);
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::StackOverflow => limit(&LimitHit::Stack {
                max_bytes: max_wasm_stack,
            }),
            other => {
                let text = other.to_string();
                let text = text.strip_prefix("wasm trap: ").unwrap_or(&text);
                (
                    BackendError::Internal(format!("backend trapped: {text}")),
                    FailureKind::Trap,
                )
            }
        };
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return (
            BackendError::Internal(format!("backend called exit({})", exit.0)),
            FailureKind::Trap,
        );
    }
    if error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return (
            BackendError::Unavailable(format!(
                "sandbox: no free instance slot: {}",
                sanitize(&error_chain(error), MAX_ERROR_MESSAGE_BYTES, 0)
            )),
            FailureKind::Other,
        );
    }
    (
        BackendError::Internal(format!(
            "sandbox: {}",
            sanitize(&error_chain(error), MAX_ERROR_MESSAGE_BYTES, 0)
        )),
        FailureKind::Trap,
    )
}

/// The host's error for a guest's `backend-error`, its message sanitised and capped.
pub(crate) fn from_guest_error(error: bindings::types::BackendError) -> BackendError {
    use bindings::types::BackendError as G;
    let clean = |m: String| sanitize(&m, MAX_ERROR_MESSAGE_BYTES, 0);
    match error {
        G::NotFound => BackendError::NotFound,
        G::Denied(m) => BackendError::Denied(clean(m)),
        G::Unavailable(m) => BackendError::Unavailable(clean(m)),
        G::InvalidConfig(m) => BackendError::InvalidConfig(clean(m)),
        G::Unsupported(m) => BackendError::Unsupported(clean(m)),
        G::Internal(m) => BackendError::Internal(clean(m)),
    }
}
