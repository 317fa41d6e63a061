//! Low-stock levels: a pair's own, or its product's default, which the
//! alerts compare every change against. The API reads and sets them; the
//! relay looks up the ones in force for the changes of a round.
//!
//! Every write also records the level in `threshold_history` under a
//! number of the audit log's sequence (migration 18): a change is compared
//! against the level numbered last before it, whenever the relay
//! publishes it.

use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

/// A low-stock level and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub low: i64,
    /// Whether it is the pair's own (or its product's default).
    pub own: bool,
}

/// The levels in PostgreSQL.
#[derive(Clone)]
pub struct Levels {
    pool: PgPool,
}

impl Levels {
    pub fn new(pool: PgPool) -> Self {
        Levels { pool }
    }

    /// The level in effect for a pair: its own, else its product's.
    pub async fn level(
        &self,
        warehouse_id: Uuid,
        product_id: Uuid,
    ) -> Result<Option<Level>, sqlx::Error> {
        let row = sqlx::query!(
            r#"SELECT (SELECT low FROM stock_thresholds WHERE product_id = $2 AND warehouse_id = $1) AS own,
                      (SELECT low FROM product_thresholds WHERE product_id = $2) AS product"#,
            warehouse_id,
            product_id,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(match (row.own, row.product) {
            (Some(low), _) => Some(Level { low, own: true }),
            (None, Some(low)) => Some(Level { low, own: false }),
            (None, None) => None,
        })
    }

    /// The level in force for each change `(seq, warehouse_id,
    /// product_id)`, by `seq`, where any is: the pair's own numbered last
    /// before the change, else its product's. One question when no level
    /// was ever set (the common case), two otherwise.
    pub async fn in_force_at(
        &self,
        changes: impl IntoIterator<Item = (i64, Uuid, Uuid)>,
    ) -> Result<HashMap<i64, i64>, sqlx::Error> {
        let any_level =
            sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM threshold_history) AS "any!""#)
                .fetch_one(&self.pool)
                .await?;
        if !any_level {
            return Ok(HashMap::new());
        }
        let (mut seqs, mut warehouses, mut products) = (Vec::new(), Vec::new(), Vec::new());
        for (seq, w, p) in changes {
            seqs.push(seq);
            warehouses.push(w);
            products.push(p);
        }
        Ok(sqlx::query!(
            r#"SELECT u.s AS "seq!",
                      COALESCE((SELECT h.low FROM threshold_history h
                                WHERE h.product_id = u.p AND h.warehouse_id = u.w
                                  AND h.from_seq < u.s
                                ORDER BY h.from_seq DESC LIMIT 1),
                               (SELECT h.low FROM threshold_history h
                                WHERE h.product_id = u.p AND h.warehouse_id IS NULL
                                  AND h.from_seq < u.s
                                ORDER BY h.from_seq DESC LIMIT 1)) AS low
               FROM unnest($1::int8[], $2::uuid[], $3::uuid[]) AS u(s, w, p)"#,
            &seqs,
            &warehouses,
            &products,
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .filter_map(|r| Some((r.seq, r.low?)))
        .collect())
    }

    /// Records a level change of a pair (or, without `warehouse_id`, of a
    /// product) under the next number, in `tx`. The transaction takes its
    /// id before the number, as a batch does, so the feed's horizon
    /// passes no change numbered after it before it commits.
    async fn record(
        tx: &mut sqlx::PgConnection,
        product_id: Uuid,
        warehouse_id: Option<Uuid>,
        low: Option<i64>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!("SELECT pg_current_xact_id()::text AS xid")
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query!(
            "INSERT INTO threshold_history (product_id, warehouse_id, low, from_seq)
             VALUES ($1, $2, $3, nextval('event_log_seq_seq'))",
            product_id,
            warehouse_id,
            low,
        )
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    pub async fn set_pair(
        &self,
        warehouse_id: Uuid,
        product_id: Uuid,
        low: i64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        Self::record(&mut tx, product_id, Some(warehouse_id), Some(low)).await?;
        sqlx::query!(
            "INSERT INTO stock_thresholds (warehouse_id, product_id, low) VALUES ($1, $2, $3)
             ON CONFLICT (product_id, warehouse_id) DO UPDATE SET low = excluded.low, updated_at = now()",
            warehouse_id,
            product_id,
            low,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Removes a pair's own level; `false` when it had none.
    pub async fn delete_pair(
        &self,
        warehouse_id: Uuid,
        product_id: Uuid,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query!(
            "DELETE FROM stock_thresholds WHERE product_id = $2 AND warehouse_id = $1",
            warehouse_id,
            product_id,
        )
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        Self::record(&mut tx, product_id, Some(warehouse_id), None).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn product(&self, product_id: Uuid) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar!(
            "SELECT low FROM product_thresholds WHERE product_id = $1",
            product_id
        )
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn set_product(&self, product_id: Uuid, low: i64) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        Self::record(&mut tx, product_id, None, Some(low)).await?;
        sqlx::query!(
            "INSERT INTO product_thresholds (product_id, low) VALUES ($1, $2)
             ON CONFLICT (product_id) DO UPDATE SET low = excluded.low, updated_at = now()",
            product_id,
            low,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Removes a product's default level; `false` when it had none.
    pub async fn delete_product(&self, product_id: Uuid) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query!(
            "DELETE FROM product_thresholds WHERE product_id = $1",
            product_id
        )
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        Self::record(&mut tx, product_id, None, None).await?;
        tx.commit().await?;
        Ok(true)
    }
}
