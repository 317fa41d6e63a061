//! The deployment files as a deployment uses them: the image's entry point.

use crate::fixtures::{PrivatePostgres, free_port};
use crate::helpers::eventually;
use crate::helpers::redis_url;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use uuid::Uuid;

/// A child process that is killed when the test ends, pass or fail.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The container runs `docker-entrypoint.sh serve` with whatever the
/// deployment sets. Here only the URLs name the real servers, and the
/// `*_HOST` parts point at a loopback port nothing listens on: the URLs must
/// win, as the README says. PostgreSQL starts only after the service, which
/// must wait for it rather than exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entrypoint_follows_the_urls_over_the_host_parts_and_waits_for_postgresql() {
    let postgres = PrivatePostgres::start_new();
    postgres.stop();
    let closed = free_port().to_string();
    let port = free_port();
    let binary = Path::new(env!("CARGO_BIN_EXE_warehouse-stock"));
    let path = format!(
        "{}:{}",
        binary.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = std::env::temp_dir().join(format!("ws-entrypoint-{}.log", Uuid::new_v4().simple()));
    let entrypoint = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-entrypoint.sh");
    let child = Command::new("sh")
        .arg(&entrypoint)
        .arg("serve")
        .current_dir(std::env::temp_dir())
        .env("PATH", path)
        .env("APP_HOST", "127.0.0.1")
        .env("APP_PORT", port.to_string())
        .env("DATABASE_URL", postgres.url())
        .env("REDIS_URL", redis_url())
        .env(
            "CACHE_PREFIX",
            format!("ws-entrypoint-{}:", Uuid::new_v4().simple()),
        )
        .env("POSTGRES_HOST", "127.0.0.1")
        .env("POSTGRES_PORT", &closed)
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", &closed)
        .env("LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("Failed to run docker-entrypoint.sh");
    let mut service = Killed(child);
    let logged = |needle: &'static str| {
        let log = log.clone();
        move || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            async move { text.contains(needle) }
        }
    };

    eventually(
        "the service to retry the stopped PostgreSQL",
        logged("PostgreSQL is not reachable yet"),
    )
    .await;
    assert!(
        service.0.try_wait().unwrap().is_none(),
        "the service waits instead of exiting"
    );
    postgres.start();

    let client = reqwest::Client::new();
    let address = format!("http://127.0.0.1:{port}");
    eventually("the service to be ready", || {
        let request = client.get(format!("{address}/health/ready")).send();
        async move { request.await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let arrival = crate::helpers::Ev::new(w, p, 7).arrival();
    let posted = client
        .post(format!("{address}/api/v1/kafka/webhook"))
        .json(&arrival)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), reqwest::StatusCode::OK);

    // The event landed in the database DATABASE_URL names, migrated once by
    // the service itself.
    let pool = sqlx::PgPool::connect(&postgres.url()).await.unwrap();
    let stock: i64 = sqlx::query_scalar(
        "SELECT quantity::bigint FROM stock WHERE warehouse_id = $1 AND product_id = $2",
    )
    .bind(w)
    .bind(p)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stock, 7);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains(&format!(":{closed}")),
        "nothing went to the *_HOST parts:\n{text}"
    );
    let _ = std::fs::remove_file(&log);
}
