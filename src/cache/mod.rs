//! The Redis read-through cache for stock and movement lookups.
//!
//! Every cached value carries the version of the row it came from, and every
//! write to Redis goes through one compare-and-set script that refuses to
//! replace a newer version with an older one. After a batch commits, the
//! ledger *refreshes* the entries it touched with their new versions (rather
//! than deleting them): a slow reader that loaded the old row before the
//! commit then cannot put the old value back, because its fill carries the
//! older version and loses the comparison.
//!
//! Redis is optional at run time. Any error or an answer slower than the
//! operation timeout marks the cache down: reads go straight to PostgreSQL
//! and refreshes are remembered. A probe task watches Redis, and once it
//! answers again the remembered refreshes are written (or, after too many,
//! every cached entry of this service is dropped) before reads use Redis
//! again, so nothing written during the outage can be served stale.

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Writes `version|payload` for each key unless the cached version is the
/// same or newer. KEYS are cache keys; ARGV[1] is the TTL in seconds, then a
/// (version, payload) pair per key.
const COMPARE_AND_SET: &str = r#"
local ttl = ARGV[1]
local written = 0
for i, key in ipairs(KEYS) do
  local version = tonumber(ARGV[2 * i])
  local current = redis.call('GET', key)
  local newer = true
  if current then
    local sep = string.find(current, '|', 1, true)
    local cached = sep and tonumber(string.sub(current, 1, sep - 1))
    if cached and cached >= version then newer = false end
  end
  if newer then
    redis.call('SET', key, ARGV[2 * i] .. '|' .. ARGV[2 * i + 1], 'EX', ttl)
    written = written + 1
  end
end
return written
"#;

/// How many refreshes to remember during an outage before giving up on
/// them one by one and dropping the whole keyspace on recovery instead.
const MAX_PENDING: usize = 100_000;

/// How often the probe asks a down Redis whether it is back.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// A value to write after a commit: the row's new version and its JSON.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub key: String,
    pub version: i64,
    pub payload: String,
}

#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub url: String,
    /// Prepended to every key, so services (or test databases) sharing one
    /// Redis never see each other's entries.
    pub prefix: String,
    pub ttl_seconds: u64,
    pub op_timeout: Duration,
}

#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    prefix: String,
    ttl_seconds: u64,
    op_timeout: Duration,
    up: AtomicBool,
    pending: Mutex<Pending>,
    script: Script,
}

#[derive(Default)]
struct Pending {
    entries: HashMap<String, (i64, String)>,
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
    pub fn new(settings: &CacheSettings) -> anyhow::Result<Self> {
        let client = redis::Client::open(settings.url.as_str())
            .with_context(|| format!("Failed to parse the Redis URL {}", settings.url))?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_max_delay(settings.op_timeout)
            .set_connection_timeout(Some(settings.op_timeout))
            .set_response_timeout(Some(settings.op_timeout));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .context("Failed to create the Redis connection manager")?;
        Ok(Cache {
            inner: Arc::new(Inner {
                conn,
                prefix: settings.prefix.clone(),
                ttl_seconds: settings.ttl_seconds,
                op_timeout: settings.op_timeout,
                // Up until an operation fails: an instance that starts with
                // its cache off would commit without refreshing, and other
                // instances would serve the entries it left behind.
                up: AtomicBool::new(true),
                pending: Mutex::new(Pending::default()),
                script: Script::new(COMPARE_AND_SET),
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
    /// fills the cache with what it returned. `load` gives the value and the
    /// version of the row it came from; `None` (not found) is not cached.
    pub async fn read_through<T, F, Fut>(
        &self,
        key: &str,
        load: F,
    ) -> anyhow::Result<(Option<T>, CacheResult)>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<(T, i64)>>>,
    {
        let looked_up = self.is_up();
        if looked_up && let Some(raw) = self.get(key).await {
            match decode::<T>(&raw) {
                Some(value) => return Ok((Some(value), CacheResult::Hit)),
                None => tracing::warn!(key, "unreadable cache entry; reading PostgreSQL"),
            }
        }
        let loaded = load().await?;
        let Some((value, version)) = loaded else {
            return Ok((None, CacheResult::Miss));
        };
        self.fill(key, &value, version).await?;
        let result = if looked_up {
            CacheResult::Miss
        } else {
            CacheResult::Bypassed
        };
        Ok((Some(value), result))
    }

    /// Caches `value`, read from a row at `version`, unless the cache already
    /// holds that version or a newer one.
    pub async fn fill<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        version: i64,
    ) -> anyhow::Result<()> {
        let payload = serde_json::to_string(value).context("Failed to encode a cache entry")?;
        self.compare_and_set(&[CacheEntry {
            key: key.to_string(),
            version,
            payload,
        }])
        .await;
        Ok(())
    }

    /// Writes the new versions of rows a committed batch changed. Call it
    /// after the commit and before acknowledging the batch.
    pub async fn refresh(&self, entries: Vec<CacheEntry>) {
        if entries.is_empty() {
            return;
        }
        if !self.is_up() || !self.compare_and_set(&entries).await {
            self.remember(entries);
        }
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
    pub async fn run_probe(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if !self.is_up() && self.ping().await && self.replay_pending().await {
                tracing::info!("Redis is reachable; cache enabled");
                self.inner.up.store(true, Ordering::Release);
            }
            tokio::select! {
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn get(&self, key: &str) -> Option<String> {
        let mut conn = self.inner.conn.clone();
        match tokio::time::timeout(self.inner.op_timeout, conn.get::<_, Option<String>>(key)).await
        {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => {
                self.mark_down(&e.to_string());
                None
            }
            Err(_) => {
                self.mark_down("timed out");
                None
            }
        }
    }

    /// Runs the compare-and-set script while the cache is up; false (and the
    /// cache marked down) if Redis failed or was too slow.
    async fn compare_and_set(&self, entries: &[CacheEntry]) -> bool {
        if !self.is_up() {
            return false;
        }
        match self.run_script(entries).await {
            Ok(()) => true,
            Err(why) => {
                self.mark_down(&why);
                false
            }
        }
    }

    async fn run_script(&self, entries: &[CacheEntry]) -> Result<(), String> {
        let mut invocation = self.inner.script.prepare_invoke();
        invocation.arg(self.inner.ttl_seconds);
        for entry in entries {
            invocation
                .key(&entry.key)
                .arg(entry.version)
                .arg(&entry.payload);
        }
        let mut conn = self.inner.conn.clone();
        match tokio::time::timeout(
            self.inner.op_timeout,
            invocation.invoke_async::<i64>(&mut conn),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    fn mark_down(&self, why: &str) {
        if self.inner.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(error = why, "Redis unavailable; serving from PostgreSQL");
        }
    }

    fn remember(&self, entries: Vec<CacheEntry>) {
        let mut pending = self.inner.pending.lock().expect("cache pending lock");
        if pending.overflowed {
            return;
        }
        for e in entries {
            let keep = pending
                .entries
                .get(&e.key)
                .is_none_or(|(version, _)| *version < e.version);
            if keep {
                pending.entries.insert(e.key, (e.version, e.payload));
            }
        }
        if pending.entries.len() > MAX_PENDING {
            pending.entries.clear();
            pending.overflowed = true;
        }
    }

    /// Writes what was missed during an outage. True when Redis is
    /// consistent again.
    async fn replay_pending(&self) -> bool {
        let (entries, overflowed) = {
            let mut pending = self.inner.pending.lock().expect("cache pending lock");
            (
                std::mem::take(&mut pending.entries),
                std::mem::take(&mut pending.overflowed),
            )
        };
        let ok = if overflowed {
            self.drop_all().await
        } else {
            let entries: Vec<CacheEntry> = entries
                .into_iter()
                .map(|(key, (version, payload))| CacheEntry {
                    key,
                    version,
                    payload,
                })
                .collect();
            let mut ok = true;
            for chunk in entries.chunks(1000) {
                // The cache stays down (reads bypass it) until every chunk
                // is written.
                if self.run_script(chunk).await.is_err() {
                    self.remember(chunk.to_vec());
                    ok = false;
                }
            }
            ok
        };
        if !ok && overflowed {
            self.inner
                .pending
                .lock()
                .expect("cache pending lock")
                .overflowed = true;
        }
        ok
    }

    /// Deletes every key under this service's prefix.
    async fn drop_all(&self) -> bool {
        let mut conn = self.inner.conn.clone();
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

fn decode<T: DeserializeOwned>(raw: &str) -> Option<T> {
    let (_, payload) = raw.split_once('|')?;
    serde_json::from_str(payload).ok()
}
