//! Building and running the service: database (created and migrated if
//! needed), cache, committer, HTTP listener, and an orderly shutdown.

use crate::api::{self, AppState};
use crate::backoff::Backoff;
use crate::cache::Cache;
use crate::config::{AppMode, HttpSettings, KafkaSettings, Settings};
use crate::feed::levels::Levels;
use crate::feed::relay::{Relay, RelayStatus};
use crate::ingest::GroupCommit;
use crate::ingest::kafka::{self, KafkaStatus};
use crate::ledger::{Foreign, Ledger};
use crate::tasks::Tasks;
use crate::telemetry::Metrics;
use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub struct Application {
    listener: TcpListener,
    state: AppState,
    http: HttpSettings,
    /// Set in kafka mode: what the consumer reads.
    kafka: Option<KafkaSettings>,
    /// Set when the stock-change relay runs.
    relay: Option<Relay>,
    cache: Cache,
    /// Stops every background task.
    stop: CancellationToken,
    /// Every background task, started before serving or when it begins.
    tasks: Tasks,
}

impl Application {
    /// Prepares everything the service needs and binds its port, without
    /// serving yet. Port 0 picks a free port (see [`Application::port`]).
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let pool = connect_database(settings).await?;
        let metrics = Metrics::new();
        let cache = Cache::new(&settings.cache, metrics.clone())?;
        let reads = read_pool(settings);
        let ledger = Ledger::new(pool.clone(), cache.clone(), metrics.clone())
            .with_reads(reads.clone(), settings.read_scan_limit.get());
        let stop = CancellationToken::new();
        let mut tasks = Tasks::default();
        let foreign = Foreign {
            wait: settings.feed_foreign_wait,
        };
        let (changes, horizon) = ledger.open_change_log(foreign, stop.clone());
        let relay_status = RelayStatus::default();
        let relay = settings.stock_changes_topic.clone().map(|topic| Relay {
            topic,
            kafka: settings.kafka.clone(),
            database: settings.database.clone(),
            // Its own pool (see `Relay::spawn`): a read and the lag count.
            pool: pool_options(2),
            log: changes.clone(),
            metrics: metrics.clone(),
            status: relay_status.clone(),
        });
        let (commits, committer) = GroupCommit::spawn(
            ledger.clone(),
            metrics.clone(),
            settings.webhook_batch_max.get(),
        );
        // The committer first: it drains what the last requests queued.
        tasks.spawned("committer", committer);
        tasks.spawned("feed's horizon", horizon);
        let listener = TcpListener::bind((settings.host, settings.port))
            .await
            .with_context(|| format!("Failed to bind {}:{}", settings.host, settings.port))?;
        let (kafka, kafka_status) = match settings.mode {
            AppMode::Kafka => (
                Some(settings.kafka.clone()),
                KafkaStatus::enabled(settings.kafka.stuck_after),
            ),
            AppMode::WebhookOnly => (None, KafkaStatus::default()),
        };
        Ok(Application {
            listener,
            state: AppState {
                ledger,
                commits,
                kafka: kafka_status,
                // The feed's pages are lookups too: through the lookups'
                // pool, so long polls never hold the connections writes need.
                changes: changes.through(reads),
                levels: Levels::new(pool),
                relay: relay_status,
                metrics,
            },
            http: settings.http.clone(),
            kafka,
            relay,
            cache,
            stop,
            tasks,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves (and consumes, in kafka mode) until `shutdown` resolves. Then
    /// it stops taking requests and fetching records, lets in-flight
    /// requests and the in-flight batch commit, commits offsets, and
    /// returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // One token stops everything; the consumer derives its own from it.
        let stop = self.stop;
        tokio::spawn({
            let stop = stop.clone();
            async move {
                shutdown.await;
                stop.cancel();
            }
        });
        let mut tasks = self.tasks;
        tasks.spawned(
            "cache probe",
            tokio::spawn(self.cache.run_probe(stop.clone())),
        );
        if let Some(settings) = self.kafka {
            let consumer = kafka::run(
                settings,
                self.state.ledger.clone(),
                self.state.metrics.clone(),
                self.state.kafka.clone(),
                stop.clone(),
            );
            tasks.spawned("consumer", tokio::spawn(consumer));
        }
        if let Some(relay) = self.relay {
            tasks.elsewhere("stock-change relay", relay.spawn(stop.clone())?);
        }
        tracing::info!(address = %self.listener.local_addr()?, "serving HTTP");

        let app = api::router(self.state, &self.http);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .context("Failed to serve HTTP")?;
        // The router (and with it every committer handle) is gone, so the
        // committer drains its queue and stops; the rest stop on `stop`.
        tasks.stopped().await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Creates the database if it does not exist, connects, and applies pending
/// migrations.
///
/// PostgreSQL may not accept connections yet (a container starting beside
/// it, a failover), so a refused or interrupted first connection is retried
/// for up to `settings.startup_timeout`. Anything else (a wrong password, a
/// missing role, a failed migration) fails at once: waiting cannot fix it.
/// This is the only wait at start. Redis and the broker need none: lookups
/// answer from PostgreSQL while Redis is away, and the consumer reconnects.
pub async fn connect_database(settings: &Settings) -> anyhow::Result<PgPool> {
    let deadline = tokio::time::Instant::now() + settings.startup_timeout;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        match try_connect_database(settings).await {
            Ok(pool) => return Ok(pool),
            Err(e) if is_unreachable(&e) => {
                let pause = backoff.next_delay();
                if tokio::time::Instant::now() + pause >= deadline {
                    return Err(e);
                }
                tracing::warn!(error = %format!("{e:#}"), "PostgreSQL is not reachable yet; retrying");
                tokio::time::sleep(pause).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How every pool of the service connects: `size` connections at most,
/// and an acquire that fails after 5 s rather than queueing forever.
fn pool_options(size: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(5))
}

/// The lookups' pool: its own connections, so readers never hold the ones
/// the ledger writes with, and a statement that runs past the request's
/// time limit is stopped by PostgreSQL itself rather than left running
/// after its request has been answered. It connects on first use: the
/// ledger's pool has already checked that PostgreSQL answers.
pub fn read_pool(settings: &Settings) -> PgPool {
    let timeout = format!("{}", settings.http.request_timeout.as_millis().max(1));
    pool_options(settings.database_read_pool_size.get()).connect_lazy_with(
        settings
            .database
            .clone()
            .options([("statement_timeout", timeout)]),
    )
}

async fn try_connect_database(settings: &Settings) -> anyhow::Result<PgPool> {
    create_database_if_missing(&settings.database).await?;
    let pool = pool_options(settings.database_pool_size.get())
        .connect_with(settings.database.clone())
        .await
        .context("Failed to connect to PostgreSQL")?;
    migrate(&pool).await?;
    warn_without_autovacuum(&pool).await;
    Ok(pool)
}

/// Whether the server could not be reached or is still starting, as opposed
/// to having answered with a refusal that a retry would only repeat.
fn is_unreachable(error: &anyhow::Error) -> bool {
    match error.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) => true,
        // 57P03 cannot_connect_now: starting up, shutting down, in recovery.
        Some(sqlx::Error::Database(db)) => db.code().as_deref() == Some("57P03"),
        _ => false,
    }
}

/// Without autovacuum the tables are never analyzed, and PostgreSQL keeps
/// planning the ledger's statements as if they were still empty: ingest slows
/// several times over as they grow. Say so once, where operators look.
async fn warn_without_autovacuum(pool: &PgPool) {
    let setting: Result<String, _> = sqlx::query_scalar("SHOW autovacuum").fetch_one(pool).await;
    if setting.is_ok_and(|s| s == "off") {
        tracing::warn!(
            "PostgreSQL runs with autovacuum off: the ledger's tables are never analyzed, \
             so ingest slows as they grow; turn it on or ANALYZE them regularly"
        );
    }
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("./migrations")
        .run(pool)
        .await
        .context("Failed to apply database migrations")
}

async fn create_database_if_missing(options: &PgConnectOptions) -> anyhow::Result<()> {
    let Some(name) = options.get_database().map(str::to_string) else {
        return Ok(());
    };
    let mut conn = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .context("Failed to connect to PostgreSQL to check that the database exists")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .context("Failed to look up the database")?;
    if !exists {
        let quoted = name.replace('"', "\"\"");
        match sqlx::query(&format!("CREATE DATABASE \"{quoted}\""))
            .execute(&mut conn)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another instance created it at the same moment.
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P04") => {}
            Err(e) => return Err(e).context(format!("Failed to create database {name}")),
        }
    }
    conn.close().await.ok();
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested");
}
