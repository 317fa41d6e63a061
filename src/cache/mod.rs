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
    /// meanwhile. `None` (not found) is not cached.
    pub async fn read_through<T, F, Fut>(
        &self,
        key: &str,
        load: F,
    ) -> anyhow::Result<(Option<T>, CacheResult)>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<T>>>,
    {
        let (value, result) = self.lookup(key, load).await?;
        self.inner.metrics.cache(match result {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Bypassed => "error",
        });
        Ok((value, result))
    }

    async fn lookup<T, F, Fut>(
        &self,
        key: &str,
        load: F,
    ) -> anyhow::Result<(Option<T>, CacheResult)>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<T>>>,
    {
        let seen = if self.is_up() {
            match self.get_with_generation(key).await {
                Some((Some(raw), _)) => match serde_json::from_str::<T>(&raw) {
                    Ok(value) => return Ok((Some(value), CacheResult::Hit)),
                    Err(_) => {
                        tracing::warn!(key, "unreadable cache entry; reading PostgreSQL");
                        None
                    }
                },
                Some((None, generation)) => Some(generation),
                None => None,
            }
        } else {
            None
        };
        let Some(value) = load().await? else {
            return Ok((None, CacheResult::Miss));
        };
        match seen {
            Some(generation) => {
                self.fill(key, &value, &generation).await?;
                Ok((Some(value), CacheResult::Miss))
            }
            None => Ok((Some(value), CacheResult::Bypassed)),
        }
    }

    /// Caches `value` unless the generation is no longer `generation`, the
    /// one seen before `value` was read from PostgreSQL.
    pub async fn fill<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        generation: &str,
    ) -> anyhow::Result<()> {
        if !self.is_up() {
            return Ok(());
        }
        let payload = serde_json::to_string(value).context("Failed to encode a cache entry")?;
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
        Ok(())
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

    /// The entry and the current generation, or `None` if Redis failed.
    async fn get_with_generation(&self, key: &str) -> Option<(Option<String>, String)> {
        let mut conn = self.inner.conn.clone();
        let keys = [key, self.inner.generation_key.as_str()];
        let call = conn.mget::<_, (Option<String>, Option<String>)>(&keys);
        match self.bounded(call).await {
            Ok((value, generation)) => Some((value, generation.unwrap_or_else(|| "0".into()))),
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
