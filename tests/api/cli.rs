use crate::helpers::{drop_database, test_settings};
use sqlx::PgPool;
use std::process::Command;

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warehouse-stock"));
    // Run from an empty directory so no .env is picked up.
    command.current_dir(std::env::temp_dir());
    command
}

#[test]
fn a_bad_setting_exits_with_code_2_and_one_line_naming_the_variable() {
    let output = binary()
        .arg("serve")
        .env("APP_PORT", "eighty")
        .output()
        .unwrap();

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("APP_PORT"), "{stderr}");
}

#[tokio::test]
async fn migrate_creates_the_database_and_its_tables() {
    let settings = test_settings(&[]);
    let url = crate::helpers::database_url(&settings);

    let output = binary()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap();

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pool = PgPool::connect(&url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "change_relay",
            "event_log",
            "open_movements",
            "product_thresholds",
            "stock",
            "stock_thresholds",
            "threshold_history"
        ]
    );
    pool.close().await;
    drop_database(&url).await;
}

#[tokio::test]
async fn verify_passes_on_a_consistent_ledger_and_names_what_was_tampered_with() {
    let app = crate::helpers::spawn_app().await;
    let (w, p, m) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    crate::helpers::stock_up(&app, w, p, 10).await;
    app.post(&crate::helpers::Ev::new(w, p, 4).movement(m).departure())
        .await;
    app.post(&crate::helpers::Ev::new(w, p, 400).departure())
        .await; // rejected
    let verify = || {
        binary()
            .arg("verify")
            .env("DATABASE_URL", &app.database_url)
            .env("LOG_LEVEL", "warn")
            .output()
            .unwrap()
    };

    let clean = verify();
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );

    sqlx::query("UPDATE stock SET quantity = quantity + 1")
        .execute(&app.pool)
        .await
        .unwrap();
    // An arrival of the movement, of another product, written past the
    // ledger (with its stock, so only the movement is wrong).
    let (w2, p2) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    sqlx::query(
        "INSERT INTO event_log (message_id, source, movement_id, event, warehouse_id,
                                product_id, quantity, occurred_at, outcome, received_at,
                                stock_after)
         VALUES ('forged', 'test', $1, 'arrival', $2, $3, 4, now(), 'applied', now(), 4)",
    )
    .bind(m)
    .bind(w2)
    .bind(p2)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO stock (warehouse_id, product_id, quantity) VALUES ($1, $2, 4)")
        .bind(w2)
        .bind(p2)
        .execute(&app.pool)
        .await
        .unwrap();
    // The departure marked as the pair's first change, which it is not.
    let departure: i64 = sqlx::query_scalar(
        "UPDATE event_log SET opens_pair = true
         WHERE warehouse_id = $1 AND event = 'departure' AND outcome = 'applied'
         RETURNING seq",
    )
    .bind(w)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let tampered = verify();

    assert_eq!(tampered.status.code(), Some(1));
    let report = String::from_utf8(tampered.stdout).unwrap();
    assert!(
        report.contains(&format!(
            "stock {w}/{p}: audit log gives 6, stock table has 7"
        )),
        "{report}"
    );
    assert!(report.contains(&format!("movement {m}")), "{report}");
    // The forged arrival closed the movement behind the ledger's back: its
    // row of the movements on the road is now wrong too.
    assert!(
        report.contains(&format!(
            "movement {m}: the audit log has it on the road as not, open_movements as 4 of {p} from {w}"
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "history {w}/{p}: entry {departure} is marked as the pair's first change, and is not"
        )),
        "{report}"
    );
}
