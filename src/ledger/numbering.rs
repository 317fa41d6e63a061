//! The ledger's numbering: the one sequence that gives every audit entry
//! its `seq`, and gives a number to any other record that must sort among
//! the changes (a level change, migration 18).
//!
//! The [`super::horizon`] is sound only if every transaction takes its id
//! before it takes a number: then a reading of the running transactions,
//! made after the sequence was read, holds every transaction that holds a
//! number not yet visible. The ledger's own write statement keeps that
//! order, and [`take`] is the only other door to the sequence, so the
//! horizon need not know who else numbers records.

use sqlx::{PgConnection, PgExecutor};

/// Takes the next number for a record committed in `tx`, after giving the
/// transaction its id. One statement: the filter on the series' one row
/// runs before the row's `nextval`, as in the batch write
/// ([`super::apply`]'s plan), so the id is held first.
pub async fn take(tx: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT nextval('event_log_seq_seq') AS "seq!"
           FROM generate_series(1, 1)
           WHERE pg_current_xact_id() IS NOT NULL"#
    )
    .fetch_one(tx)
    .await
}

/// The last number PostgreSQL has handed out, 0 before the first. Below a
/// reader's position only after a failover to a replica that had not
/// received every entry that reader saw.
pub async fn handed_out(conn: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS "last!"
           FROM event_log_seq_seq"#
    )
    .fetch_one(conn)
    .await
}
