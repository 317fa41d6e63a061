//! The child processes tests start: servers of a test's own (Redis,
//! PostgreSQL, the broker) that it may stop, freeze and restart, and the
//! service binary itself. Each is stopped when its value is dropped, pass or
//! fail. [`child_env`] is the one way settings become a child's environment.

use crate::helpers::eventually;
use reqwest::StatusCode;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use uuid::Uuid;
use warehouse_stock::config::{AppMode, LogFormat, Settings};

/// A port nothing listens on right now, for a server a test starts.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until a server a test started accepts connections on `port`.
pub fn wait_for_port(port: u16, what: &str) {
    for _ in 0..250 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not start on port {port}");
}

/// A Redis server of the test's own, which the test may stop and restart.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let port = free_port();
        let mut redis = PrivateRedis { port, child: None };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        self.child = Some(child);
        wait_for_port(self.port, "private redis-server");
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it keeps its data but answers nothing,
    /// like a Redis behind a partition. [`PrivateRedis::resume`] thaws it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL server of the test's own, which it may stop and start.
pub struct PrivatePostgres {
    dir: std::path::PathBuf,
    port: u16,
}

impl PrivatePostgres {
    fn bin(tool: &str) -> String {
        let version = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries (.ci/run installs them)")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
            .unwrap();
        format!("/usr/lib/postgresql/{version}/bin/{tool}")
    }

    /// PostgreSQL refuses to run as root, so as root the server runs as the
    /// `postgres` user.
    fn command(tool: &str) -> Command {
        let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &Self::bin(tool)]);
            c
        } else {
            Command::new(Self::bin(tool))
        }
    }

    pub fn start_new() -> Self {
        let dir = std::env::temp_dir().join(format!("ws-pg-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = Command::new("chown")
            .args(["postgres:postgres", dir.to_str().unwrap()])
            .status();
        let port = free_port();
        let status = Self::command("initdb")
            .args(["-D", dir.join("data").to_str().unwrap()])
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "initdb failed");
        let pg = PrivatePostgres { dir, port };
        pg.start();
        pg
    }

    pub fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let status = Self::command("pg_ctl")
            .args(["-D", self.dir.join("data").to_str().unwrap()])
            .args(["-o", &options, "-l", self.dir.join("log").to_str().unwrap()])
            .args(["-w", "start"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl start failed");
    }

    pub fn stop(&self) {
        let status = Self::command("pg_ctl")
            .args(["-D", self.dir.join("data").to_str().unwrap()])
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl stop failed");
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/ws_fault", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Self::command("pg_ctl")
            .args(["-D", self.dir.join("data").to_str().unwrap()])
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A nisshi broker of the test's own on a free port, in memory.
pub struct PrivateBroker {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateBroker {
    fn binary() -> String {
        std::env::var("NISSHI_BIN").unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap();
            format!("{home}/.cache/warehouse-stock/nisshi-0.8.1/bin/nisshi")
        })
    }

    pub fn start() -> Self {
        let port = free_port();
        let mut broker = PrivateBroker { port, child: None };
        broker.restart();
        broker
    }

    pub fn restart(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(Self::binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://nisshi/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the nisshi broker (scripts/broker.sh builds it)");
        self.child = Some(child);
        wait_for_port(self.port, "private broker");
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The environment that makes the service binary run with `settings`,
/// listening on `port`. A secret the settings hide (the webhook token) is
/// passed by the caller as an extra variable.
pub fn child_env(settings: &Settings, port: u16) -> Vec<(&'static str, String)> {
    let k = &settings.kafka;
    vec![
        ("APP_MODE", settings.mode.as_str().to_string()),
        ("APP_HOST", settings.host.to_string()),
        ("APP_PORT", port.to_string()),
        ("DATABASE_URL", crate::helpers::database_url(settings)),
        (
            "DATABASE_POOL_SIZE",
            settings.database_pool_size.to_string(),
        ),
        ("REDIS_URL", settings.cache.url.clone()),
        ("CACHE_PREFIX", settings.cache.prefix.clone()),
        ("LOG_LEVEL", settings.log_level.clone()),
        (
            "LOG_FORMAT",
            match settings.log_format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }
            .to_string(),
        ),
        ("KAFKA_BOOTSTRAP_SERVERS", k.bootstrap_servers.clone()),
        ("KAFKA_TOPIC", k.topic.clone()),
        ("KAFKA_DLQ_TOPIC", k.dlq_topic.clone()),
        ("KAFKA_GROUP_ID", k.group_id.clone()),
        (
            "KAFKA_GROUP_INSTANCE_ID",
            k.group_instance_id.clone().unwrap_or_default(),
        ),
        ("KAFKA_TOPIC_PARTITIONS", k.topic_partitions.to_string()),
        ("KAFKA_BATCH_SIZE", k.batch_size.to_string()),
        (
            "STOCK_CHANGES_TOPIC",
            settings.stock_changes_topic.clone().unwrap_or_default(),
        ),
    ]
}

/// The built service binary as a child process, so it can be killed.
pub struct ServiceProcess {
    child: Child,
    pub address: String,
    /// Where its log goes, when a test reads it.
    log: Option<PathBuf>,
}

impl ServiceProcess {
    /// Starts the service with `settings` and waits until it is ready (in
    /// kafka mode: until its consumer is connected).
    pub async fn start(settings: &Settings) -> Self {
        Self::start_with(settings, &[], None).await
    }

    /// Starts the service with `settings` and the `extra` variables, its
    /// log written to a file of its own (see [`ServiceProcess::stop`]).
    pub async fn start_logged(settings: &Settings, extra: &[(&str, &str)]) -> Self {
        let log = std::env::temp_dir().join(format!("ws-log-{}.txt", Uuid::new_v4().simple()));
        Self::start_with(settings, extra, Some(log)).await
    }

    async fn start_with(settings: &Settings, extra: &[(&str, &str)], log: Option<PathBuf>) -> Self {
        let port = free_port();
        let stderr = match &log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::inherit(),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_warehouse-stock"))
            .arg("serve")
            .current_dir(std::env::temp_dir())
            .envs(child_env(settings, port))
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("Failed to start the service binary");
        let service = ServiceProcess {
            child,
            address: format!("http://127.0.0.1:{port}"),
            log,
        };
        let kafka = settings.mode == AppMode::Kafka;
        let client = reqwest::Client::new();
        let url = format!("{}/health/ready", service.address);
        eventually("the service process to be ready", || {
            let request = client.get(&url).send();
            async move {
                match request.await {
                    Ok(r) if r.status() == StatusCode::OK => r
                        .json::<serde_json::Value>()
                        .await
                        .is_ok_and(|b| !kafka || b["components"]["kafka"] == "ok"),
                    _ => false,
                }
            }
        })
        .await;
        service
    }

    /// The process id, to look at its threads.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and waits for the exit; `None` if it took over 10 s.
    pub fn terminate(mut self) -> Option<std::process::ExitStatus> {
        self.signal_term();
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        None
    }

    /// Stops the service (SIGTERM) and returns its log lines as JSON; it
    /// must have been started by [`ServiceProcess::start_logged`] with
    /// `LOG_FORMAT=json`.
    pub fn stop(mut self) -> Vec<serde_json::Value> {
        self.signal_term();
        self.child.wait().unwrap();
        let log = self.log.take().expect("a service started with a log");
        let text = std::fs::read_to_string(&log).unwrap();
        let _ = std::fs::remove_file(&log);
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
            .collect()
    }

    fn signal_term(&self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(log) = &self.log {
            let _ = std::fs::remove_file(log);
        }
    }
}
