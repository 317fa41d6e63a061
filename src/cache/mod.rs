//! The Redis read-through cache for stock and movement lookups.
//!
//! Stale entries are prevented with a generation counter. After a batch
//! commits, and before it is acknowledged, the ledger atomically increments
//! the generation and deletes the entries of every row the batch touched.
//! A reader notes the generation *before* it reads PostgreSQL and fills the
//! cache only if the generation is still the same (checked and written in
//! one script). So a slow reader that loaded a row before a commit cannot
//! put the old value back after it: the commit changed the generation. A
//! plain delete after commit would leave exactly that window open.
//!
//! Redis is optional at run time. Any error or an answer slower than the
//! operation timeout marks the cache down: reads go straight to PostgreSQL
//! and invalidations are remembered. A probe task watches Redis, and once it
//! answers again the remembered invalidations are applied (or, after too
//! many, every entry of this service is dropped) before reads use Redis
//! again, so nothing written during the outage can be served stale.

use crate::telemetry::Metrics;
use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Fills KEYS[1] with ARGV[2] (TTL ARGV[3] seconds) only if the generation
/// in KEYS[2] is still ARGV[1], the one the reader saw before it read
/// PostgreSQL.
const FILL_IF_CURRENT: &str = r#"
local generation = redis.call('GET', KEYS[2]) or '0'
if generation ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"#;

/// How many invalidations to remember during an outage before giving up on
/// them one by one and dropping the whole keyspace on recovery instead.
const MAX_PENDING: usize = 100_000;

/// How often the probe asks a down Redis whether it is back.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

pub use crate::config::CacheSettings;

#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    prefix: String,
    generation_key: String,
    ttl_seconds: u64,
    op_timeout: Duration,
    up: AtomicBool,
    pending: Mutex<Pending>,
    script: Script,
    metrics: Metrics,
}

#[derive(Default)]
struct Pending {
    keys: HashSet<String>,
    overflowed: bool,
}

/// What a lookup found in the cache, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    Bypassed,
}

/// A cached value, or `None` when there is none or it cannot be read (an
/// entry of an older format, say): the caller loads it and fills it again.
fn decode<T: DeserializeOwned>(key: &str, raw: Option<String>) -> Option<T> {
    let raw = raw?;
    match serde_json::from_str(&raw) {
        Ok(value) => Some(value),
        Err(_) => {
            tracing::warn!(key, "unreadable cache entry; reading PostgreSQL");
            None
        }
    }
}

/// A value as its cache entry; `None` (logged, not cached) if it cannot be
/// encoded.
fn encode<T: Serialize>(key: &str, value: &T) -> Option<String> {
    serde_json::to_string(value)
        .inspect_err(
            |e| tracing::warn!(key, error = %e, "could not encode a cache entry; not cached"),
        )
        .ok()
}

impl Cache {
    /// Creates the cache without connecting: Redis may be down at start.
    pub fn new(settings: &CacheSettings, metrics: Metrics) -> anyhow::Result<Self> {
        let client = redis::Client::open(settings.url.as_str())
            .with_context(|| format!("Failed to parse the Redis URL {}", settings.url))?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_max_delay(settings.op_timeout)
            .set_connection_timeout(Some(settings.op_timeout))
            .set_response_timeout(Some(settings.op_timeout));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .context("Failed to create the Redis connection manager")?;
        metrics.cache_enabled(true);
        Ok(Cache {
            inner: Arc::new(Inner {
                conn,
                prefix: settings.prefix.clone(),
                generation_key: format!("{}generation", settings.prefix),
                ttl_seconds: settings.ttl_seconds,
                op_timeout: settings.op_timeout,
                // Up until an operation fails: an instance that starts with
                // its cache off would commit without refreshing, and other
                // instances would serve the entries it left behind.
                up: AtomicBool::new(true),
                pending: Mutex::new(Pending::default()),
                script: Script::new(FILL_IF_CURRENT),
                metrics,
            }),
        })
    }

    pub fn stock_key(&self, warehouse_id: Uuid, product_id: Uuid) -> String {
        format!("{}stock:{warehouse_id}:{product_id}", self.inner.prefix)
    }

    pub fn movement_key(&self, movement_id: Uuid) -> String {
        format!("{}movement:{movement_id}", self.inner.prefix)
    }

    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    /// Reads `key` from Redis, or calls `load` (PostgreSQL) on a miss and
    /// fills the cache with what it returned, unless a commit happened
    /// meanwhile. `None` (not found) is not cached. Redis never fails a
    /// read: the only error is the loader's own.
    pub async fn read_through<T, E, F, Fut>(
        &self,
        key: &str,
        load: F,
    ) -> Result<(Option<T>, CacheResult), E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let (value, result) = self.lookup(key, load).await?;
        self.count(result, 1);
        Ok((value, result))
    }

    async fn lookup<T, E, F, Fut>(&self, key: &str, load: F) -> Result<(Option<T>, CacheResult), E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let keys = [key.to_string()];
        let seen = match self.get_many_with_generation(&keys).await {
            Some((mut values, generation)) => match decode::<T>(key, values.pop().flatten()) {
                Some(value) => return Ok((Some(value), CacheResult::Hit)),
                None => Some(generation),
            },
            None => None,
        };
        let Some(value) = load().await? else {
            return Ok((None, CacheResult::Miss));
        };
        match seen {
            Some(generation) => {
                self.fill_many(&[(key, &value)], &generation).await;
                Ok((Some(value), CacheResult::Miss))
            }
            None => Ok((Some(value), CacheResult::Bypassed)),
        }
    }

    /// [`Cache::read_through`] for many keys at once: one Redis round trip
    /// reads them all (and the generation), `load` is called once with the
    /// indexes of the keys that missed and answers their values in that
    /// order, and one more round trip fills the ones `keep` accepts, each
    /// under the same generation check as a single fill. Duplicate keys
    /// are allowed. (`keep` is what stops a caller who asks for many keys
    /// that hold nothing from filling the cache with them.)
    pub async fn read_many<T, E, F, Fut>(
        &self,
        keys: &[String],
        keep: fn(&T) -> bool,
        load: F,
    ) -> Result<Vec<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Vec<usize>) -> Fut,
        Fut: Future<Output = Result<Vec<T>, E>>,
    {
        let (mut found, seen): (Vec<Option<T>>, _) = match self.get_many_with_generation(keys).await
        {
            Some((values, generation)) => (
                keys.iter()
                    .zip(values)
                    .map(|(key, raw)| decode(key, raw))
                    .collect(),
                Some(generation),
            ),
            None => (keys.iter().map(|_| None).collect(), None),
        };
        let missed: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
        let hits = keys.len() - missed.len();
        self.count(CacheResult::Hit, hits);
        if !missed.is_empty() {
            let loaded = load(missed.clone()).await?;
            debug_assert_eq!(loaded.len(), missed.len(), "one value per missed key");
            match &seen {
                Some(generation) => {
                    self.count(CacheResult::Miss, missed.len());
                    let entries: Vec<(&str, &T)> = missed
                        .iter()
                        .zip(&loaded)
                        .filter(|(_, value)| keep(value))
                        .map(|(&i, value)| (keys[i].as_str(), value))
                        .collect();
                    self.fill_many(&entries, generation).await;
                }
                None => self.count(CacheResult::Bypassed, missed.len()),
            }
            for (i, value) in missed.into_iter().zip(loaded) {
                found[i] = Some(value);
            }
        }
        Ok(found.into_iter().flatten().collect())
    }

    fn count(&self, result: CacheResult, n: usize) {
        let label = match result {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Bypassed => "error",
        };
        self.inner.metrics.cache_many(label, n as u64);
    }

    /// Caches each value unless the generation is no longer `generation`,
    /// the one seen before the values were read from PostgreSQL: one
    /// script call per entry, all in one pipeline. A failure only marks the
    /// cache down; the read still answers.
    async fn fill_many<T: Serialize>(&self, entries: &[(&str, &T)], generation: &str) {
        if !self.is_up() || entries.is_empty() {
            return;
        }
        if let [(key, value)] = entries {
            return self.fill_one(key, *value, generation).await;
        }
        let mut pipe = redis::pipe();
        // The fills call the script by its hash, which a restarted (or
        // flushed) Redis does not know: loading it first, in the same round
        // trip, makes that impossible.
        pipe.cmd("SCRIPT").arg("LOAD").arg(FILL_IF_CURRENT).ignore();
        for (key, value) in entries {
            let Some(payload) = encode(key, *value) else {
                continue;
            };
            pipe.invoke_script(
                self.inner
                    .script
                    .key(*key)
                    .key(&self.inner.generation_key)
                    .arg(generation)
                    .arg(payload)
                    .arg(self.inner.ttl_seconds),
            )
            .ignore();
        }
        let mut conn = self.inner.conn.clone();
        if let Err(why) = self.bounded(pipe.query_async::<()>(&mut conn)).await {
            self.mark_down(&why);
        }
    }

    /// Drops the entries of rows a batch committed. Call it after the
    /// commit and before acknowledging the batch.
    pub async fn invalidate(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        if !self.is_up() {
            self.remember(keys);
            return;
        }
        if let Err(why) = self.invalidate_now(&keys).await {
            self.mark_down(&why);
            self.remember(keys);
        }
    }

    /// Increments the generation and deletes `keys`, atomically.
    async fn invalidate_now(&self, keys: &[String]) -> Result<(), String> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .incr(&self.inner.generation_key, 1)
            .ignore()
            .del(keys)
            .ignore();
        let mut conn = self.inner.conn.clone();
        self.bounded(pipe.query_async::<()>(&mut conn)).await
    }

    /// Whether Redis answers a PING within the operation timeout.
    pub async fn ping(&self) -> bool {
        let mut conn = self.inner.conn.clone();
        matches!(
            tokio::time::timeout(
                self.inner.op_timeout,
                redis::cmd("PING").query_async::<String>(&mut conn)
            )
            .await,
            Ok(Ok(_))
        )
    }

    /// Watches Redis while it is down and brings the cache back once the
    /// refreshes missed during the outage are written. Runs until `shutdown`.
    pub async fn run_probe(self, shutdown: CancellationToken) {
        loop {
            if !self.is_up() && self.ping().await && self.replay_pending().await {
                tracing::info!("Redis is reachable; cache enabled");
                self.inner.up.store(true, Ordering::Release);
                self.inner.metrics.cache_enabled(true);
            }
            tokio::select! {
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One fill: the script by its hash, loaded and run again by the
    /// client if Redis does not know it (the common case, a single lookup,
    /// sends no script body).
    async fn fill_one<T: Serialize>(&self, key: &str, value: &T, generation: &str) {
        let Some(payload) = encode(key, value) else {
            return;
        };
        let mut invocation = self.inner.script.prepare_invoke();
        invocation
            .key(key)
            .key(&self.inner.generation_key)
            .arg(generation)
            .arg(payload)
            .arg(self.inner.ttl_seconds);
        let mut conn = self.inner.conn.clone();
        let call = invocation.invoke_async::<i64>(&mut conn);
        if let Err(why) = self.bounded(call).await {
            self.mark_down(&why);
        }
    }

    /// The entries of `keys` and the current generation, in one MGET; `None`
    /// if the cache is down or Redis failed.
    async fn get_many_with_generation(
        &self,
        keys: &[String],
    ) -> Option<(Vec<Option<String>>, String)> {
        if !self.is_up() {
            return None;
        }
        let mut conn = self.inner.conn.clone();
        let mut all: Vec<&str> = keys.iter().map(String::as_str).collect();
        all.push(self.inner.generation_key.as_str());
        // A one-key MGET answers a bulk string, not an array: ask with MGET
        // explicitly so the reply is always an array.
        let mut mget = redis::cmd("MGET");
        mget.arg(&all);
        let call = mget.query_async::<Vec<Option<String>>>(&mut conn);
        match self.bounded(call).await {
            Ok(mut values) => {
                let generation = values.pop().flatten().unwrap_or_else(|| "0".into());
                Some((values, generation))
            }
            Err(why) => {
                self.mark_down(&why);
                None
            }
        }
    }

    /// Runs a Redis call within the operation timeout.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.inner.op_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    fn mark_down(&self, why: &str) {
        if self.inner.up.swap(false, Ordering::AcqRel) {
            self.inner.metrics.cache_enabled(false);
            tracing::warn!(error = why, "Redis unavailable; serving from PostgreSQL");
        }
    }

    fn remember(&self, keys: Vec<String>) {
        let mut pending = self.inner.pending.lock().expect("cache pending lock");
        if pending.overflowed {
            return;
        }
        pending.keys.extend(keys);
        if pending.keys.len() > MAX_PENDING {
            pending.keys.clear();
            pending.overflowed = true;
        }
    }

    /// Applies what was missed during an outage. True when Redis holds
    /// nothing older than PostgreSQL again.
    async fn replay_pending(&self) -> bool {
        let (keys, overflowed) = {
            let mut pending = self.inner.pending.lock().expect("cache pending lock");
            (
                std::mem::take(&mut pending.keys),
                std::mem::take(&mut pending.overflowed),
            )
        };
        if overflowed {
            let ok = self.drop_all().await;
            if !ok {
                self.inner
                    .pending
                    .lock()
                    .expect("cache pending lock")
                    .overflowed = true;
            }
            return ok;
        }
        let keys: Vec<String> = keys.into_iter().collect();
        let mut ok = true;
        // The cache stays down (reads bypass it) until every chunk is done.
        for chunk in keys.chunks(1000) {
            if self.invalidate_now(chunk).await.is_err() {
                self.remember(chunk.to_vec());
                ok = false;
            }
        }
        ok
    }

    /// Deletes every key under this service's prefix (the generation first
    /// moves on, so no fill begun before can land afterwards).
    async fn drop_all(&self) -> bool {
        let mut conn = self.inner.conn.clone();
        let bump = conn.incr::<_, _, i64>(&self.inner.generation_key, 1);
        if self.bounded(bump).await.is_err() {
            return false;
        }
        let pattern = format!("{}*", self.inner.prefix);
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let step = scan.query_async::<(u64, Vec<String>)>(&mut conn);
            let Ok(Ok((next, keys))) = tokio::time::timeout(Duration::from_secs(5), step).await
            else {
                return false;
            };
            if !keys.is_empty() {
                let mut unlink = redis::cmd("UNLINK");
                unlink.arg(&keys);
                let del = unlink.query_async::<i64>(&mut conn);
                if !matches!(
                    tokio::time::timeout(Duration::from_secs(5), del).await,
                    Ok(Ok(_))
                ) {
                    return false;
                }
            }
            if next == 0 {
                return true;
            }
            cursor = next;
        }
    }
}
