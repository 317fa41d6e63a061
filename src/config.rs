//! Settings from the environment (and `.env`), with the variable names of
//! the service this one replaces, so existing deployments keep working.
//!
//! Every value is validated here, once, at start: a bad value is reported
//! with the name of its variable instead of failing later somewhere deep.

use sqlx::postgres::PgConnectOptions;
use std::fmt;
use std::net::IpAddr;
use std::num::{NonZeroU16, NonZeroU32, NonZeroU64, NonZeroUsize};
use std::str::FromStr;
use std::time::Duration;

/// Whether the service consumes Kafka or only takes events over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppMode {
    WebhookOnly,
    Kafka,
}

impl AppMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AppMode::WebhookOnly => "webhook_only",
            AppMode::Kafka => "kafka",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: AppMode,
    pub host: IpAddr,
    pub port: u16,
    pub database: PgConnectOptions,
    pub database_pool_size: NonZeroU32,
    /// The lookups' own pool (`DATABASE_READ_POOL_SIZE`), apart from the
    /// ledger's, so that readers can never hold the connections writes
    /// need; its statements stop after `REQUEST_TIMEOUT_MS`.
    pub database_read_pool_size: NonZeroU32,
    /// The most audit entries one lookup examines (`READ_SCAN_LIMIT`): a
    /// filtered page or feed read that finds too few matches within it
    /// answers what it found and where to go on, and a past figure that
    /// lies further back is refused. Unauthenticated callers pay with
    /// requests, never with one unbounded scan.
    pub read_scan_limit: NonZeroU32,
    /// How long `serve` and `migrate` keep trying to reach PostgreSQL at
    /// start, so the service can start before its database does.
    pub startup_timeout: Duration,
    pub cache: CacheSettings,
    /// The most webhook events committed together in one transaction.
    pub webhook_batch_max: NonZeroUsize,
    pub log_level: String,
    pub log_format: LogFormat,
    pub http: HttpSettings,
    pub kafka: KafkaSettings,
    /// Where the relay publishes stock changes; `None` turns it off.
    pub stock_changes_topic: Option<String>,
    /// How long the feed's horizon waits for a transaction of another
    /// application (`FEED_FOREIGN_WAIT_SECONDS`); `None`: as long as it
    /// runs. Safe only where no other application writes the ledger.
    pub feed_foreign_wait: Option<Duration>,
}

/// The `application_name` of every session of the service: the feed's
/// horizon tells the ledger's own transactions from others' by it.
pub const APPLICATION_NAME: &str = "warehouse-stock";

/// Where the read-through cache lives and how it behaves.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub url: String,
    /// Prepended to every key; defaults to one derived from the database
    /// name, so that services (or test databases) sharing one Redis never
    /// see each other's entries.
    pub prefix: String,
    /// Lifetime of an entry, at least 1.
    pub ttl_seconds: u64,
    /// A slower Redis call counts as Redis down.
    pub op_timeout: Duration,
}

/// What protects the HTTP server from callers and from itself.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// When set, the webhook requires `Authorization: Bearer <token>`.
    pub webhook_token: Option<BearerToken>,
    /// The token of the admin writes (low-stock levels); without it they
    /// are refused with 403.
    pub admin_token: Option<BearerToken>,
    /// The longest a request may take before it is answered 503 `timeout`.
    pub request_timeout: Duration,
    /// Lookups served at once; more get 503 `overloaded`.
    pub max_concurrent_requests: NonZeroUsize,
    /// Writes (the webhook, corrections, admin writes) served at once,
    /// apart from the lookups, so readers cannot starve them.
    pub max_concurrent_writes: NonZeroUsize,
    /// Long polls of the feed held at once, apart from both: a poll holds
    /// its place for up to its `wait`.
    pub max_concurrent_polls: NonZeroUsize,
}

/// A shared secret callers present as `Authorization: Bearer <token>`: the
/// webhook's and the admin's. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let token = raw.trim();
        if token.len() < 16 {
            return Err("must be at least 16 characters".into());
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be printable ASCII without spaces".into());
        }
        Ok(BearerToken(token.to_string()))
    }

    /// Compares in constant time, so response timing reveals nothing about
    /// how much of a guess was right.
    pub fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

/// Where and how the consumer reads (and the producer tool writes).
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    pub topic: String,
    pub group_id: String,
    /// Static group membership (`group.instance.id`), unique per instance.
    pub group_instance_id: Option<String>,
    pub dlq_topic: String,
    /// The most messages applied in one transaction.
    pub batch_size: NonZeroUsize,
    /// How long a batch may wait to fill up once it has its first message.
    pub batch_max_wait: Duration,
    /// Partitions of the topics the service creates when they are missing.
    pub topic_partitions: i32,
    /// Replicas of each partition of the topics the service creates. One
    /// suits a single test broker; production clusters want three.
    pub topic_replication_factor: i32,
    /// How long a batch may keep failing before readiness reports the
    /// consumer `stuck`.
    pub stuck_after: Duration,
}

/// A variable with a value the service cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.variable, self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process
    /// environment. Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let mode = match get("APP_MODE").as_deref().map(str::trim) {
            None | Some("webhook_only") => AppMode::WebhookOnly,
            Some("kafka") => AppMode::Kafka,
            Some(other) => {
                return Err(error(
                    "APP_MODE",
                    format!("expected webhook_only or kafka, got {other:?}"),
                ));
            }
        };
        let database = database_options(&get, &lookup)?;
        let database_name = database.get_database().unwrap_or("postgres").to_string();

        let log_level = get("LOG_LEVEL").unwrap_or_else(|| "info".into());
        tracing_subscriber::EnvFilter::try_new(&log_level)
            .map_err(|e| error("LOG_LEVEL", e.to_string()))?;
        let log_format = match get("LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(error(
                    "LOG_FORMAT",
                    format!("expected text or json, got {other:?}"),
                ));
            }
        };

        Ok(Settings {
            mode,
            host: parse_or(&get, "APP_HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: parse_or(&get, "APP_PORT", 8000u16)?,
            database,
            database_pool_size: parse_or(&get, "DATABASE_POOL_SIZE", NonZeroU32::new(16).unwrap())?,
            database_read_pool_size: parse_or(
                &get,
                "DATABASE_READ_POOL_SIZE",
                NonZeroU32::new(8).unwrap(),
            )?,
            read_scan_limit: parse_or(&get, "READ_SCAN_LIMIT", NonZeroU32::new(100_000).unwrap())?,
            startup_timeout: Duration::from_secs(parse_or(&get, "STARTUP_TIMEOUT_SECONDS", 60u64)?),
            cache: CacheSettings::from_lookup(&get, &database_name)?,
            webhook_batch_max: parse_or(
                &get,
                "WEBHOOK_BATCH_MAX",
                NonZeroUsize::new(512).unwrap(),
            )?,
            log_level,
            log_format,
            http: HttpSettings::from_lookup(&get)?,
            stock_changes_topic: stock_changes_topic(mode, &lookup)?,
            feed_foreign_wait: get("FEED_FOREIGN_WAIT_SECONDS")
                .map(|raw| {
                    raw.parse::<NonZeroU64>()
                        .map(|s| Duration::from_secs(s.get()))
                        .map_err(|_| {
                            error(
                                "FEED_FOREIGN_WAIT_SECONDS",
                                format!("must be a whole number of seconds above 0, got {raw:?}"),
                            )
                        })
                })
                .transpose()?,
            kafka: KafkaSettings::from_lookup(&get)?,
        })
    }

    /// The effective configuration as one line for the startup log, with the
    /// password masked.
    pub fn describe(&self) -> String {
        let db = &self.database;
        format!(
            "mode={} listen={}:{} postgres={}@{}:{}/{} pool={}/{} read_scan={} redis={} cache_ttl={}s cache_prefix={} log={} webhook_token={} request_timeout={}ms max_concurrent_requests={}/{}/{} kafka={} topic={} dlq={} group={} batch={}/{}ms partitions={} replication={} stock_changes={} feed_foreign_wait={} admin_token={} startup_timeout={}s",
            self.mode.as_str(),
            self.host,
            self.port,
            db.get_username(),
            db.get_host(),
            db.get_port(),
            db.get_database().unwrap_or(""),
            self.database_pool_size,
            self.database_read_pool_size,
            self.read_scan_limit,
            mask_url_password(&self.cache.url),
            self.cache.ttl_seconds,
            self.cache.prefix,
            self.log_level,
            if self.http.webhook_token.is_some() {
                "***"
            } else {
                "none"
            },
            self.http.request_timeout.as_millis(),
            self.http.max_concurrent_requests,
            self.http.max_concurrent_writes,
            self.http.max_concurrent_polls,
            self.kafka.bootstrap_servers,
            self.kafka.topic,
            self.kafka.dlq_topic,
            self.kafka.group_id,
            self.kafka.batch_size,
            self.kafka.batch_max_wait.as_millis(),
            self.kafka.topic_partitions,
            self.kafka.topic_replication_factor,
            self.stock_changes_topic.as_deref().unwrap_or("off"),
            self.feed_foreign_wait
                .map_or("none".to_string(), |w| format!("{}s", w.as_secs())),
            if self.http.admin_token.is_some() {
                "***"
            } else {
                "none"
            },
            self.startup_timeout.as_secs(),
        )
    }
}

/// `STOCK_CHANGES_TOPIC`: in kafka mode it defaults to
/// `warehouse_stock.changes`, and an empty value turns the relay off; in
/// webhook_only mode the relay runs only when a topic is set.
fn stock_changes_topic(
    mode: AppMode,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    match lookup("STOCK_CHANGES_TOPIC").map(|t| t.trim().to_string()) {
        None if mode == AppMode::Kafka => Ok(Some("warehouse_stock.changes".into())),
        None => Ok(None),
        Some(t) if t.is_empty() => Ok(None),
        Some(t)
            if t.len() > 249
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
        {
            Err(error(
                "STOCK_CHANGES_TOPIC",
                format!("{t:?} is not a Kafka topic name (up to 249 of a-z A-Z 0-9 . _ -)"),
            ))
        }
        Some(t) => Ok(Some(t)),
    }
}

/// PostgreSQL: `DATABASE_URL`, or the `POSTGRES_*` parts.
fn database_options(
    get: &impl Fn(&str) -> Option<String>,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<PgConnectOptions, ConfigError> {
    if let Some(url) = get("DATABASE_URL") {
        return PgConnectOptions::from_str(&url)
            .map(|o| o.application_name(APPLICATION_NAME))
            .map_err(|e| error("DATABASE_URL", e.to_string()));
    }
    let mut options = PgConnectOptions::new_without_pgpass()
        .host(&get("POSTGRES_HOST").unwrap_or_else(|| "127.0.0.1".into()))
        .port(parse_or(get, "POSTGRES_PORT", 5432u16)?)
        .username(&get("POSTGRES_USER").unwrap_or_else(|| "postgres".into()))
        .database(&get("POSTGRES_DB").unwrap_or_else(|| "warehouse".into()))
        .application_name(APPLICATION_NAME);
    // An empty password is a real value here (trust auth).
    if let Some(password) = lookup("POSTGRES_PASSWORD").filter(|p| !p.is_empty()) {
        options = options.password(&password);
    }
    Ok(options)
}

impl CacheSettings {
    /// `REDIS_URL`, or the `REDIS_*` parts, and the cache's own settings.
    fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
        database_name: &str,
    ) -> Result<Self, ConfigError> {
        let (url, variable) = match get("REDIS_URL") {
            Some(url) => (url, "REDIS_URL"),
            None => (
                format!(
                    "redis://{}:{}/{}",
                    get("REDIS_HOST").unwrap_or_else(|| "127.0.0.1".into()),
                    parse_or(get, "REDIS_PORT", 6379u16)?,
                    parse_or(get, "REDIS_DB", 0u32)?
                ),
                "REDIS_HOST",
            ),
        };
        redis::Client::open(url.as_str()).map_err(|e| error(variable, e.to_string()))?;
        Ok(CacheSettings {
            url,
            prefix: get("CACHE_PREFIX")
                .unwrap_or_else(|| format!("warehouse-stock:{database_name}:")),
            ttl_seconds: parse_or(get, "CACHE_TTL_SECONDS", NonZeroU64::new(300).unwrap())?.get(),
            op_timeout: Duration::from_millis(parse_or(get, "REDIS_TIMEOUT_MS", 50u64)?),
        })
    }
}

impl HttpSettings {
    fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let reads = parse_or(
            get,
            "MAX_CONCURRENT_REQUESTS",
            NonZeroUsize::new(1024).unwrap(),
        )?;
        Ok(HttpSettings {
            webhook_token: get("WEBHOOK_TOKEN")
                .map(|raw| BearerToken::parse(&raw).map_err(|e| error("WEBHOOK_TOKEN", e)))
                .transpose()?,
            admin_token: get("ADMIN_TOKEN")
                .map(|raw| BearerToken::parse(&raw).map_err(|e| error("ADMIN_TOKEN", e)))
                .transpose()?,
            request_timeout: Duration::from_millis(
                parse_or(get, "REQUEST_TIMEOUT_MS", NonZeroU64::new(10_000).unwrap())?.get(),
            ),
            max_concurrent_requests: reads,
            max_concurrent_writes: parse_or(get, "MAX_CONCURRENT_WRITES", reads)?,
            max_concurrent_polls: parse_or(
                get,
                "MAX_CONCURRENT_POLLS",
                NonZeroUsize::new(reads.get().div_ceil(4)).unwrap_or(NonZeroUsize::MIN),
            )?,
        })
    }
}

impl KafkaSettings {
    fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let kafka = KafkaSettings {
            bootstrap_servers: get("KAFKA_BOOTSTRAP_SERVERS")
                .unwrap_or_else(|| "127.0.0.1:9092".into()),
            topic: get("KAFKA_TOPIC").unwrap_or_else(|| "warehouse_movements".into()),
            group_id: get("KAFKA_GROUP_ID").unwrap_or_else(|| "warehouse-service-group".into()),
            group_instance_id: get("KAFKA_GROUP_INSTANCE_ID"),
            dlq_topic: get("KAFKA_DLQ_TOPIC").unwrap_or_else(|| "warehouse_movements.dlq".into()),
            batch_size: parse_or(get, "KAFKA_BATCH_SIZE", NonZeroUsize::new(1000).unwrap())?,
            batch_max_wait: Duration::from_millis(parse_or(get, "KAFKA_BATCH_MAX_WAIT_MS", 50u64)?),
            topic_partitions: parse_or(get, "KAFKA_TOPIC_PARTITIONS", NonZeroU16::new(3).unwrap())?
                .get()
                .into(),
            topic_replication_factor: parse_or(
                get,
                "KAFKA_TOPIC_REPLICATION_FACTOR",
                NonZeroU16::new(1).unwrap(),
            )?
            .get()
            .into(),
            stuck_after: Duration::from_secs(
                parse_or(
                    get,
                    "KAFKA_STUCK_AFTER_SECONDS",
                    NonZeroU64::new(60).unwrap(),
                )?
                .get(),
            ),
        };
        if kafka.topic == kafka.dlq_topic {
            return Err(error("KAFKA_DLQ_TOPIC", "must differ from KAFKA_TOPIC"));
        }
        Ok(kafka)
    }
}

fn parse_or<T: FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match get(variable) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| error(variable, format!("{raw:?}: {e}"))),
    }
}

fn error(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

/// `redis://user:secret@host` → `redis://user:***@host`.
fn mask_url_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn no_configuration_means_local_postgres_and_redis() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.mode, AppMode::WebhookOnly);
        assert_eq!(s.port, 8000);
        assert_eq!(s.database.get_host(), "127.0.0.1");
        assert_eq!(s.database.get_database(), Some("warehouse"));
        assert_eq!(s.database.get_username(), "postgres");
        assert_eq!(s.cache.url, "redis://127.0.0.1:6379/0");
        assert_eq!(s.cache.ttl_seconds, 300);
        assert_eq!(s.cache.prefix, "warehouse-stock:warehouse:");
        assert_eq!(s.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(s.kafka.topic, "warehouse_movements");
        assert_eq!(s.kafka.group_id, "warehouse-service-group");
        assert_eq!(s.kafka.dlq_topic, "warehouse_movements.dlq");
        assert_eq!(s.kafka.topic_replication_factor, 1);
        assert_eq!(s.startup_timeout, Duration::from_secs(60));
    }

    #[test]
    fn the_seed_variables_are_honoured() {
        let s = settings(&[
            ("APP_MODE", "kafka"),
            ("APP_PORT", "9000"),
            ("POSTGRES_HOST", "db"),
            ("POSTGRES_DB", "stock"),
            ("REDIS_HOST", "cache"),
            ("REDIS_PORT", "6380"),
            ("REDIS_DB", "2"),
            ("CACHE_TTL_SECONDS", "60"),
        ])
        .unwrap();
        assert_eq!(s.mode, AppMode::Kafka);
        assert_eq!(s.port, 9000);
        assert_eq!(s.database.get_host(), "db");
        assert_eq!(s.cache.url, "redis://cache:6380/2");
        assert_eq!(s.cache.ttl_seconds, 60);
    }

    #[test]
    fn database_url_wins_over_the_parts() {
        let s = settings(&[
            ("DATABASE_URL", "postgres://u:p@h:5433/d"),
            ("POSTGRES_HOST", "ignored"),
        ])
        .unwrap();
        assert_eq!(s.database.get_host(), "h");
        assert_eq!(s.database.get_port(), 5433);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (var, value) in [
            ("APP_MODE", "batch"),
            ("APP_PORT", "eighty"),
            ("APP_PORT", "70000"),
            ("APP_HOST", "not an ip"),
            ("CACHE_TTL_SECONDS", "-1"),
            ("CACHE_TTL_SECONDS", "0"),
            ("POSTGRES_PORT", "x"),
            ("REDIS_URL", "http://nope"),
            ("LOG_FORMAT", "xml"),
            ("KAFKA_BATCH_SIZE", "0"),
            ("KAFKA_BATCH_MAX_WAIT_MS", "soon"),
            ("KAFKA_DLQ_TOPIC", "warehouse_movements"),
            ("KAFKA_TOPIC_PARTITIONS", "0"),
            ("KAFKA_TOPIC_REPLICATION_FACTOR", "0"),
            ("KAFKA_STUCK_AFTER_SECONDS", "0"),
            ("DATABASE_POOL_SIZE", "0"),
            ("WEBHOOK_BATCH_MAX", "0"),
            ("REQUEST_TIMEOUT_MS", "0"),
            ("MAX_CONCURRENT_REQUESTS", "0"),
            ("MAX_CONCURRENT_WRITES", "0"),
            ("MAX_CONCURRENT_POLLS", "0"),
            ("STARTUP_TIMEOUT_SECONDS", "-5"),
        ] {
            let err = settings(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, var, "{var}={value}");
        }
    }

    #[test]
    fn the_stock_change_feed_is_on_in_kafka_mode_and_off_when_set_empty() {
        assert_eq!(
            settings(&[("APP_MODE", "kafka")])
                .unwrap()
                .stock_changes_topic
                .as_deref(),
            Some("warehouse_stock.changes")
        );
        assert_eq!(
            settings(&[("APP_MODE", "kafka"), ("STOCK_CHANGES_TOPIC", "")])
                .unwrap()
                .stock_changes_topic,
            None
        );
        assert_eq!(settings(&[]).unwrap().stock_changes_topic, None);
        assert_eq!(
            settings(&[("STOCK_CHANGES_TOPIC", "changes")])
                .unwrap()
                .stock_changes_topic
                .as_deref(),
            Some("changes")
        );
        assert_eq!(
            settings(&[("STOCK_CHANGES_TOPIC", "no spaces")])
                .unwrap_err()
                .variable,
            "STOCK_CHANGES_TOPIC"
        );
    }

    #[test]
    fn the_admin_token_is_validated_and_masked_like_the_webhook_token() {
        assert_eq!(
            settings(&[("ADMIN_TOKEN", "short")]).unwrap_err().variable,
            "ADMIN_TOKEN"
        );
        let s = settings(&[("ADMIN_TOKEN", "an-admin-secret-123")]).unwrap();
        assert!(s.describe().contains("admin_token=***"));
        assert!(!s.describe().contains("an-admin-secret-123"));
    }

    #[test]
    fn the_description_masks_passwords() {
        let s = settings(&[
            ("POSTGRES_PASSWORD", "pg-secret"),
            ("REDIS_URL", "redis://user:redis-secret@h:6379/0"),
        ])
        .unwrap();
        let line = s.describe();
        assert!(!line.contains("pg-secret"), "{line}");
        assert!(!line.contains("redis-secret"), "{line}");
        assert!(line.contains("redis://user:***@h:6379/0"), "{line}");
    }

    #[test]
    fn the_webhook_token_is_masked_in_the_description_and_in_debug_output() {
        let s = settings(&[("WEBHOOK_TOKEN", "a-long-enough-secret")]).unwrap();
        assert!(s.describe().contains("webhook_token=***"));
        assert!(!s.describe().contains("a-long-enough-secret"));
        assert!(!format!("{s:?}").contains("a-long-enough-secret"));
    }

    #[test]
    fn the_webhook_token_matches_only_itself() {
        let token = BearerToken::parse("a-long-enough-secret").unwrap();
        assert!(token.matches("a-long-enough-secret"));
        assert!(!token.matches("a-long-enough-secreT"));
        assert!(!token.matches("a-long-enough-secret2"));
        assert!(!token.matches(""));
    }

    #[test]
    fn a_short_or_spaced_webhook_token_is_refused() {
        assert_eq!(
            settings(&[("WEBHOOK_TOKEN", "short")])
                .unwrap_err()
                .variable,
            "WEBHOOK_TOKEN"
        );
        assert!(settings(&[("WEBHOOK_TOKEN", "has a space inside it")]).is_err());
        assert!(settings(&[("REQUEST_TIMEOUT_MS", "0")]).is_err());
        assert!(settings(&[("MAX_CONCURRENT_REQUESTS", "0")]).is_err());
    }
}
