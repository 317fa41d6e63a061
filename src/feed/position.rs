//! The relay's position per topic (`change_relay`): every change at or
//! below it has been acknowledged by the broker.

use sqlx::PgExecutor;

/// The relay's position for `topic`, created at 0 the first time.
pub async fn read(conn: impl PgExecutor<'_>, topic: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"WITH created AS (
               INSERT INTO change_relay (topic) VALUES ($1)
               ON CONFLICT (topic) DO NOTHING RETURNING position)
           SELECT position AS "position!" FROM created
           UNION ALL
           SELECT position FROM change_relay WHERE topic = $1"#,
        topic,
    )
    .fetch_one(conn)
    .await
}

/// Moves the position forward to `position` (never back).
pub async fn advance(
    conn: impl PgExecutor<'_>,
    topic: &str,
    position: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE change_relay SET position = $2, updated_at = now()
         WHERE topic = $1 AND position < $2",
        topic,
        position,
    )
    .execute(conn)
    .await?;
    Ok(())
}
