//! Value cache and single-flight in front of a backend (used for every backend but the
//! native Fernet vault, whose lookups are local and cheap).
//!
//! Invariants:
//! - **Single-flight, always.** Concurrent lookups of the same credential (same id and
//!   locator) share one backend call, whether or not caching is on: a hundred agents
//!   starting at once cost the upstream vault one request, not a hundred.
//! - **The call is detached from its callers.** It runs in its own task, so a caller that
//!   times out or disconnects cancels nothing for the others, and the answer still lands in
//!   the cache. Every flight is always answered: a backend that panics or is cancelled
//!   answers its waiters with an error (a drop guard), and one that hangs is cut off after
//!   [`FLIGHT_TIMEOUT`], so no lookup can join a flight that never lands.
//! - **Values are held as [`Secret`]** (zeroed when evicted), for at most `ttl`, and never
//!   longer than `ttl + stale_if_error`.
//! - **Writes invalidate.** `store_value`/`delete_value` (and [`CachedBackend::invalidate`],
//!   which the runtime calls when a credential is removed) drop the cached value and detach
//!   any call in flight for that credential, so a lookup that started before the write can
//!   never put the old value back into the cache.
//! - **Stale only on transient failure.** With `stale_if_error`, a value past its TTL may
//!   be served when the backend is unavailable or stopped at a limit — never when it answers
//!   "not found" or "denied", which are authoritative (a revocation upstream must win).
//! - **Bounded.** At most `max_entries` values per backend; when full (after dropping
//!   expired entries) new values are not cached, and that is counted (`full`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::backend::{BackendError, CredentialBackend, CredentialRef};
use crate::metrics::Metrics;
use crate::secret::Secret;

/// Longest a single backend call may hold a flight. A backstop only: sandboxed backends
/// have their own (shorter) wall-time limit. Without it, a backend that never answers
/// would make every later lookup of that credential wait forever on the same flight.
pub const FLIGHT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default cap on cached values per backend: bounds memory at a few MiB even with large
/// values, whatever an attacker with a toolkit key requests.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// How a backend's values are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long a value is served from memory; zero turns caching off (single-flight stays).
    pub ttl: Duration,
    /// How much longer past `ttl` a value may be served when the backend fails
    /// transiently; zero turns it off. Requires `ttl > 0`.
    pub stale_if_error: Duration,
    pub max_entries: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            ttl: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

impl CacheSettings {
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }
}

type Answer = Result<Secret, BackendError>;

/// One backend call in progress; every lookup that joins it gets its answer.
struct Flight {
    answer: watch::Sender<Option<Answer>>,
}

impl Flight {
    fn new() -> Arc<Flight> {
        Arc::new(Flight {
            answer: watch::channel(None).0,
        })
    }

    async fn wait(&self) -> Answer {
        let mut rx = self.answer.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(answer) => match answer.as_ref() {
                Some(a) => a.clone(),
                None => Err(no_answer()),
            },
            // The sender lives in this Flight, which the caller holds: cannot close.
            Err(_) => Err(no_answer()),
        }
    }
}

fn no_answer() -> BackendError {
    BackendError::Internal("the backend call ended without an answer".into())
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct FlightKey {
    id: String,
    locator: Option<String>,
}

impl FlightKey {
    fn of(cred: &CredentialRef) -> FlightKey {
        FlightKey {
            id: cred.id.clone(),
            locator: cred.locator.clone(),
        }
    }
}

struct Entry {
    locator: Option<String>,
    value: Secret,
    fetched: Instant,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    flights: HashMap<FlightKey, Arc<Flight>>,
}

struct Core {
    inner: Arc<dyn CredentialBackend>,
    name: String,
    settings: CacheSettings,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
}

/// A backend wrapped with single-flight and (optionally) a value cache.
pub struct CachedBackend {
    core: Arc<Core>,
}

impl CachedBackend {
    pub fn new(
        inner: Arc<dyn CredentialBackend>,
        settings: CacheSettings,
        metrics: Arc<Metrics>,
    ) -> CachedBackend {
        CachedBackend {
            core: Arc::new(Core {
                name: inner.name().to_owned(),
                inner,
                settings,
                metrics,
                state: Mutex::new(State::default()),
            }),
        }
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.core.settings
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn CredentialBackend> {
        &self.core.inner
    }

    /// Forget the cached value of `credential_id` and detach calls in flight for it.
    pub fn invalidate(&self, credential_id: &str) {
        self.core.invalidate(credential_id);
    }

    /// Number of values held (for tests and status).
    pub fn cached_len(&self) -> usize {
        self.core.lock().entries.len()
    }

    async fn lookup(&self, creds: &[CredentialRef]) -> Vec<Answer> {
        let core = &self.core;
        let now = Instant::now();
        let mut answers: Vec<Option<Answer>> = vec![None; creds.len()];
        // (index, flight, stale value usable on a transient failure)
        let mut waits: Vec<(usize, Arc<Flight>, Option<Secret>)> = Vec::new();
        let mut lead: Vec<(FlightKey, Arc<Flight>, CredentialRef)> = Vec::new();
        let (mut hits, mut misses, mut joined) = (0, 0, 0);
        {
            let mut state = core.lock();
            for (i, cred) in creds.iter().enumerate() {
                let mut stale = None;
                if core.settings.enabled()
                    && let Some(entry) = state.entries.get(&cred.id)
                    && entry.locator == cred.locator
                {
                    let age = now.saturating_duration_since(entry.fetched);
                    if age < core.settings.ttl {
                        answers[i] = Some(Ok(entry.value.clone()));
                        hits += 1;
                        continue;
                    }
                    if age < core.settings.ttl + core.settings.stale_if_error {
                        stale = Some(entry.value.clone());
                    }
                }
                let key = FlightKey::of(cred);
                if let Some(flight) = state.flights.get(&key) {
                    waits.push((i, flight.clone(), stale));
                    joined += 1;
                    continue;
                }
                let flight = Flight::new();
                state.flights.insert(key.clone(), flight.clone());
                lead.push((key, flight.clone(), cred.clone()));
                waits.push((i, flight, stale));
                misses += 1;
            }
        }
        core.metrics.cache_event(&core.name, "hit", hits);
        core.metrics.cache_event(&core.name, "miss", misses);
        core.metrics.cache_event(&core.name, "coalesced", joined);
        if !lead.is_empty() {
            tokio::spawn(Core::fly(core.clone(), lead));
        }
        for (i, flight, stale) in waits {
            let answer = match (flight.wait().await, stale) {
                (Err(e), Some(stale)) if e.is_transient() => {
                    core.metrics.cache_event(&core.name, "stale", 1);
                    tracing::warn!(
                        backend = %core.name,
                        credential = %creds[i].id,
                        error = %e,
                        "backend failed transiently; serving the cached value past its TTL"
                    );
                    Ok(stale)
                }
                (answer, _) => answer,
            };
            answers[i] = Some(answer);
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(no_answer())))
            .collect()
    }
}

impl Core {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // State stays consistent at every await-free step, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn invalidate(&self, credential_id: &str) {
        let mut state = self.lock();
        let had = state.entries.remove(credential_id).is_some();
        // Detached flights still answer their waiters but no longer fill the cache.
        state.flights.retain(|k, _| k.id != credential_id);
        drop(state);
        if had {
            self.metrics.cache_event(&self.name, "invalidated", 1);
        }
    }

    /// Lead the calls for `items`: one backend call (batched when there are several),
    /// then answer each flight and cache what may be cached.
    async fn fly(core: Arc<Core>, items: Vec<(FlightKey, Arc<Flight>, CredentialRef)>) {
        let mut guard = LeaderGuard {
            core: core.clone(),
            items: items
                .iter()
                .map(|(k, f, _)| (k.clone(), f.clone()))
                .collect(),
        };
        let refs: Vec<CredentialRef> = items.into_iter().map(|(_, _, r)| r).collect();
        let call = async {
            if let [one] = refs.as_slice() {
                vec![core.inner.get_value(one).await]
            } else {
                core.inner.get_values(&refs).await
            }
        };
        let answers = match tokio::time::timeout(FLIGHT_TIMEOUT, call).await {
            Ok(answers) if answers.len() == refs.len() => answers,
            Ok(answers) => {
                let e = BackendError::Internal(format!(
                    "returned {} results for {} credentials",
                    answers.len(),
                    refs.len()
                ));
                refs.iter().map(|_| Err(e.clone())).collect()
            }
            Err(_) => {
                let e = BackendError::Unavailable(format!(
                    "no answer within {} s",
                    FLIGHT_TIMEOUT.as_secs()
                ));
                refs.iter().map(|_| Err(e.clone())).collect()
            }
        };
        let operation = if refs.len() == 1 {
            "get_value"
        } else {
            "get_values"
        };
        for answer in &answers {
            let outcome = match answer {
                Ok(_) => "ok",
                Err(e) => e.code(),
            };
            core.metrics.backend_call(&core.name, operation, outcome);
        }
        guard.finish(answers);
    }

    /// Answer `flight`; cache the value if the flight is still the registered one (no
    /// write invalidated it meanwhile).
    fn land(&self, state: &mut State, key: FlightKey, flight: &Arc<Flight>, answer: Answer) {
        let current = state
            .flights
            .get(&key)
            .is_some_and(|f| Arc::ptr_eq(f, flight));
        if current {
            state.flights.remove(&key);
            if let (true, Ok(value)) = (self.settings.enabled(), &answer) {
                self.cache(state, key, value.clone());
            }
        }
        flight.answer.send_replace(Some(answer));
    }

    fn cache(&self, state: &mut State, key: FlightKey, value: Secret) {
        let now = Instant::now();
        if state.entries.len() >= self.settings.max_entries && !state.entries.contains_key(&key.id)
        {
            let keep = self.settings.ttl + self.settings.stale_if_error;
            state
                .entries
                .retain(|_, e| now.saturating_duration_since(e.fetched) < keep);
            if state.entries.len() >= self.settings.max_entries {
                self.metrics.cache_event(&self.name, "full", 1);
                return;
            }
        }
        state.entries.insert(
            key.id,
            Entry {
                locator: key.locator,
                value,
                fetched: now,
            },
        );
    }
}

/// Answers every flight a leader took on, even if the leader panics or is cancelled.
struct LeaderGuard {
    core: Arc<Core>,
    items: Vec<(FlightKey, Arc<Flight>)>,
}

impl LeaderGuard {
    fn finish(&mut self, answers: Vec<Answer>) {
        let items = std::mem::take(&mut self.items);
        let mut state = self.core.lock();
        for ((key, flight), answer) in items.into_iter().zip(answers) {
            self.core.land(&mut state, key, &flight, answer);
        }
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        if self.items.is_empty() {
            return;
        }
        let items = std::mem::take(&mut self.items);
        let mut state = self.core.lock();
        for (key, flight) in items {
            let e = BackendError::Internal("the backend call was aborted".into());
            // Never cache an error; `land` only caches values.
            self.core.land(&mut state, key, &flight, Err(e));
        }
    }
}

#[async_trait]
impl CredentialBackend for CachedBackend {
    fn name(&self) -> &str {
        &self.core.name
    }

    fn kind(&self) -> &'static str {
        self.core.inner.kind()
    }

    async fn init(&self) -> Result<(), BackendError> {
        self.core.inner.init().await
    }

    async fn get_value(&self, cred: &CredentialRef) -> Result<Secret, BackendError> {
        let mut answers = self.lookup(std::slice::from_ref(cred)).await;
        answers.pop().unwrap_or_else(|| Err(no_answer()))
    }

    async fn get_values(&self, creds: &[CredentialRef]) -> Vec<Result<Secret, BackendError>> {
        self.lookup(creds).await
    }

    async fn store_value(&self, cred: &CredentialRef, value: &Secret) -> Result<(), BackendError> {
        let result = self.core.inner.store_value(cred, value).await;
        // Invalidate whatever the outcome: a failed write may still have changed upstream.
        self.core.invalidate(&cred.id);
        let outcome = result.as_ref().map_or_else(|e| e.code(), |_| "ok");
        self.core
            .metrics
            .backend_call(&self.core.name, "store_value", outcome);
        result
    }

    async fn delete_value(&self, cred: &CredentialRef) -> Result<(), BackendError> {
        let result = self.core.inner.delete_value(cred).await;
        self.core.invalidate(&cred.id);
        let outcome = result.as_ref().map_or_else(|e| e.code(), |_| "ok");
        self.core
            .metrics
            .backend_call(&self.core.name, "delete_value", outcome);
        result
    }

    async fn health(&self) -> Result<String, BackendError> {
        self.core.inner.health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A backend that counts calls, answers after a delay, and can be told to fail.
    struct Fake {
        calls: AtomicUsize,
        batch_calls: AtomicUsize,
        value: Mutex<String>,
        fail: Mutex<Option<BackendError>>,
        delay: Duration,
        panic: AtomicBool,
    }

    impl Fake {
        fn new(delay: Duration) -> Arc<Fake> {
            Arc::new(Fake {
                calls: AtomicUsize::new(0),
                batch_calls: AtomicUsize::new(0),
                value: Mutex::new("v1".into()),
                fail: Mutex::new(None),
                delay,
                panic: AtomicBool::new(false),
            })
        }
    }

    #[async_trait]
    impl CredentialBackend for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        fn kind(&self) -> &'static str {
            "fake"
        }
        async fn get_value(&self, cred: &CredentialRef) -> Result<Secret, BackendError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            assert!(!self.panic.load(Ordering::SeqCst), "fake backend panics");
            if let Some(e) = self.fail.lock().unwrap().clone() {
                return Err(e);
            }
            let v = self.value.lock().unwrap().clone();
            Ok(Secret::new(format!("{v}:{}", cred.id)).unwrap())
        }
        async fn get_values(&self, creds: &[CredentialRef]) -> Vec<Result<Secret, BackendError>> {
            self.batch_calls.fetch_add(1, Ordering::SeqCst);
            let mut out = Vec::new();
            for c in creds {
                out.push(self.get_value(c).await);
            }
            out
        }
        async fn store_value(&self, _: &CredentialRef, value: &Secret) -> Result<(), BackendError> {
            *self.value.lock().unwrap() = value.expose().to_owned();
            Ok(())
        }
        async fn delete_value(&self, _: &CredentialRef) -> Result<(), BackendError> {
            Ok(())
        }
        async fn health(&self) -> Result<String, BackendError> {
            Ok("fine".into())
        }
    }

    fn cref(id: &str) -> CredentialRef {
        CredentialRef {
            id: id.into(),
            label: id.into(),
            api_id: None,
            auth_type: "bearer".into(),
            locator: None,
        }
    }

    fn cached(fake: &Arc<Fake>, ttl_ms: u64, stale_ms: u64) -> Arc<CachedBackend> {
        Arc::new(CachedBackend::new(
            fake.clone(),
            CacheSettings {
                ttl: Duration::from_millis(ttl_ms),
                stale_if_error: Duration::from_millis(stale_ms),
                max_entries: 3,
            },
            Arc::new(Metrics::new()),
        ))
    }

    async fn concurrent(b: &Arc<CachedBackend>, id: &str, n: usize) -> Vec<Answer> {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let b = b.clone();
            let id = id.to_owned();
            set.spawn(async move { b.get_value(&cref(&id)).await });
        }
        set.join_all().await
    }

    #[tokio::test]
    async fn hundred_concurrent_identical_lookups_make_one_call_even_without_cache() {
        let fake = Fake::new(Duration::from_millis(50));
        let b = cached(&fake, 0, 0);
        let answers = concurrent(&b, "x", 100).await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().unwrap().expose() == "v1:x")
        );
        // Cache off: the next lookup is a new call.
        b.get_value(&cref("x")).await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        assert_eq!(b.cached_len(), 0);
    }

    #[tokio::test]
    async fn cache_hits_expire_and_writes_invalidate() {
        let fake = Fake::new(Duration::ZERO);
        let b = cached(&fake, 150, 0);
        assert_eq!(b.get_value(&cref("x")).await.unwrap().expose(), "v1:x");
        assert_eq!(b.get_value(&cref("x")).await.unwrap().expose(), "v1:x");
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            1,
            "second lookup is a hit"
        );
        b.store_value(&cref("x"), &Secret::new("v2".into()).unwrap())
            .await
            .unwrap();
        assert_eq!(b.get_value(&cref("x")).await.unwrap().expose(), "v2:x");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2, "store invalidated");
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.get_value(&cref("x")).await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 3, "ttl expired");
        b.delete_value(&cref("x")).await.unwrap();
        b.get_value(&cref("x")).await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 4, "delete invalidated");
        // A different locator is a different value.
        let mut other = cref("x");
        other.locator = Some("kv/other".into());
        b.get_value(&other).await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_write_during_a_lookup_keeps_the_old_value_out_of_the_cache() {
        let fake = Fake::new(Duration::from_millis(100));
        let b = cached(&fake, 60_000, 0);
        let b2 = b.clone();
        let slow = tokio::spawn(async move { b2.get_value(&cref("x")).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        b.store_value(&cref("x"), &Secret::new("v2".into()).unwrap())
            .await
            .unwrap();
        // The lookup that started before the write may answer either value, but must
        // not cache it: the next lookup asks the backend again.
        slow.await.unwrap().unwrap();
        assert_eq!(b.get_value(&cref("x")).await.unwrap().expose(), "v2:x");
        assert!(fake.calls.load(Ordering::SeqCst) >= 2);
    }

    #[tokio::test]
    async fn stale_values_only_on_transient_errors() {
        let fake = Fake::new(Duration::ZERO);
        let b = cached(&fake, 50, 10_000);
        b.get_value(&cref("x")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        *fake.fail.lock().unwrap() = Some(BackendError::Unavailable("down".into()));
        assert_eq!(b.get_value(&cref("x")).await.unwrap().expose(), "v1:x");
        *fake.fail.lock().unwrap() = Some(BackendError::Denied("revoked".into()));
        assert_eq!(
            b.get_value(&cref("x")).await.unwrap_err(),
            BackendError::Denied("revoked".into())
        );
        // Errors are never cached.
        *fake.fail.lock().unwrap() = None;
        assert!(b.get_value(&cref("x")).await.is_ok());
    }

    #[tokio::test]
    async fn a_panicking_backend_answers_every_waiter_and_frees_the_flight() {
        let fake = Fake::new(Duration::from_millis(20));
        fake.panic.store(true, Ordering::SeqCst);
        let b = cached(&fake, 1000, 0);
        let answers = concurrent(&b, "x", 10).await;
        assert!(
            answers
                .iter()
                .all(|a| matches!(a, Err(BackendError::Internal(_))))
        );
        fake.panic.store(false, Ordering::SeqCst);
        assert!(b.get_value(&cref("x")).await.is_ok());
    }

    #[tokio::test]
    async fn cancelled_callers_do_not_cancel_the_call() {
        let fake = Fake::new(Duration::from_millis(80));
        let b = cached(&fake, 60_000, 0);
        let r = tokio::time::timeout(Duration::from_millis(10), b.get_value(&cref("x"))).await;
        assert!(r.is_err(), "the caller gave up");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(b.get_value(&cref("x")).await.unwrap().expose(), "v1:x");
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            1,
            "the call landed in the cache"
        );
    }

    #[tokio::test]
    async fn batches_use_the_cache_and_one_batch_call_for_the_misses() {
        let fake = Fake::new(Duration::ZERO);
        let b = cached(&fake, 60_000, 0);
        b.get_value(&cref("a")).await.unwrap();
        let got = b
            .get_values(&[cref("a"), cref("b"), cref("c"), cref("b")])
            .await;
        let got: Vec<String> = got
            .into_iter()
            .map(|r| r.unwrap().expose().into())
            .collect();
        assert_eq!(got, ["v1:a", "v1:b", "v1:c", "v1:b"]);
        assert_eq!(fake.batch_calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            3,
            "a was a hit; b asked once"
        );
        // max_entries = 3: a fourth value is served but not cached.
        b.get_value(&cref("d")).await.unwrap();
        assert_eq!(b.cached_len(), 3);
    }
}
