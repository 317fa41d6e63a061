//! The API against its own description, checked by schemathesis: it reads
//! `/openapi.json`, sends the documented examples, boundary values, random
//! schema-valid and schema-invalid requests, and stateful sequences that
//! follow the description's links (a webhook answer to the movement and
//! stock lookups), and checks every answer against the document: status
//! codes, content types, bodies, headers, and that valid input is accepted
//! and invalid input refused. `scripts/setup.sh` installs it.

use crate::helpers::{TestApp, spawn_app_with};
use std::path::PathBuf;
use std::process::Command;

const TOKEN: &str = "schema-check-token-0123456789";

/// Where `scripts/setup.sh` installs schemathesis, unless
/// `SCHEMATHESIS_BIN` says otherwise.
fn schemathesis() -> PathBuf {
    if let Some(bin) = std::env::var_os("SCHEMATHESIS_BIN") {
        return bin.into();
    }
    let home = std::env::var_os("HOME").expect("HOME");
    let cache = std::env::var_os("WAREHOUSE_STOCK_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(home).join(".cache/warehouse-stock"));
    cache.join("schemathesis-4.32.5/bin/schemathesis")
}

/// Runs schemathesis against `app` with every check, and returns its
/// report when it found anything.
async fn run_schemathesis(app: &TestApp, extra: &[&str]) -> Result<(), String> {
    let bin = schemathesis();
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup.sh",
        bin.display()
    );
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/schemathesis.toml");
    let mut command = Command::new(&bin);
    command
        .args(["--config-file", config])
        .arg("run")
        .arg(format!("{}/openapi.json", app.address))
        .args(["--checks", "all"])
        // A fixed seed makes a red run reproducible; SCHEMATHESIS_SEED
        // explores further.
        .arg("--seed")
        .arg(std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261201".into()))
        .args(["--max-examples", "80"])
        // One worker: CPython 3.11 before 3.11.8 fails `ast.parse` with
        // "AST constructor recursion depth mismatch" when two threads parse
        // at once, which Hypothesis does when describing its strategies.
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .args(["--no-color", "--suppress-health-check", "all"])
        .args(["--generation-database", "none"])
        // The feed's long poll holds a request up to 30 s, past the
        // request timeout here, and pinning `wait` to 0 would turn its
        // negative cases into valid ones. tests/api/changes.rs covers its
        // parameters, good and bad, and its waiting.
        .args(["--exclude-path", "/api/v1/stock/changes"])
        .args(extra)
        // Away from any schemathesis.toml of a developer's: only the
        // suite's own (`--config-file`) applies.
        .current_dir(std::env::temp_dir())
        .env("NO_COLOR", "1");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the schemathesis thread")
        .expect("Failed to run schemathesis");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(())
    } else {
        Err(report)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_answer_that_departs_from_the_description() {
    // With ADMIN_TOKEN set, so that an admin write without a token is the
    // 401 the description's security scheme promises; without the setting
    // it is 403 (tests/api/changes.rs).
    let app = spawn_app_with(&[("ADMIN_TOKEN", TOKEN)]).await;
    if let Err(report) = run_schemathesis(&app, &[]).await {
        panic!("schemathesis found failures:\n{report}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_the_webhook_token_enforced_as_described() {
    // With a token set, the bearer scheme is the one in force: every
    // request carries it, and the `ignored_auth` check also sends the
    // webhook's requests without it, and with a wrong one, and wants them
    // refused as described (401).
    // One token for both, so that the admin writes are exercised too.
    let app = spawn_app_with(&[("WEBHOOK_TOKEN", TOKEN), ("ADMIN_TOKEN", TOKEN)]).await;
    let header = format!("Authorization: Bearer {TOKEN}");
    if let Err(report) = run_schemathesis(&app, &["--header", &header]).await {
        panic!("schemathesis found failures:\n{report}");
    }
}
