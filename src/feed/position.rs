//! The relay's position per topic (`change_relay`): every change at or
//! below it has been acknowledged by the broker; and its lease, which the
//! leader renews and a standby may end once it has expired.

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

/// Makes this connection's session the holder of `topic`'s lease, or
/// renews it. False if another session has taken the lease meanwhile:
/// this one has lost the lead.
pub async fn renew(
    conn: impl PgExecutor<'_>,
    topic: &str,
    claim: bool,
) -> Result<bool, sqlx::Error> {
    let renewed = sqlx::query!(
        "UPDATE change_relay SET leader_pid = pg_backend_pid(), renewed_at = now()
         WHERE topic = $1 AND ($2 OR leader_pid = pg_backend_pid())",
        topic,
        claim,
    )
    .execute(conn)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// Ends the session of a leader of `topic` whose lease is older than
/// `lease` and which still holds the relay's lock (`class`, and the
/// topic's hash): a frozen leader. True if one was ended; its lock goes
/// with its session.
pub async fn end_expired(
    conn: impl PgExecutor<'_>,
    topic: &str,
    class: i32,
    lease: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    let ended = sqlx::query_scalar!(
        r#"SELECT pg_terminate_backend(r.leader_pid) AS "ended!"
           FROM change_relay r
           JOIN pg_locks k ON k.pid = r.leader_pid AND k.locktype = 'advisory' AND k.granted
                AND k.classid = $2::int4::oid AND k.objid = hashtext($1)::oid AND k.objsubid = 2
           WHERE r.topic = $1 AND r.renewed_at < now() - make_interval(secs => $3)"#,
        topic,
        class,
        lease.as_secs_f64(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(ended.unwrap_or(false))
}
