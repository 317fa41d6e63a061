//! Low-stock levels: a pair's own, or its product's default, which the
//! alerts compare every change against. The API reads and sets them; the
//! relay looks up the ones in force for the pairs of a round.

use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
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

    /// The levels in force for `pairs`, where any is set: one question
    /// when no level exists at all (the common case), two otherwise.
    /// `pairs` is walked only in the second case.
    pub async fn in_force(
        &self,
        pairs: impl IntoIterator<Item = (Uuid, Uuid)>,
    ) -> Result<HashMap<(Uuid, Uuid), i64>, sqlx::Error> {
        let any_level = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM stock_thresholds)
                      OR EXISTS (SELECT 1 FROM product_thresholds) AS "any!""#
        )
        .fetch_one(&self.pool)
        .await?;
        if !any_level {
            return Ok(HashMap::new());
        }
        let pairs: HashSet<(Uuid, Uuid)> = pairs.into_iter().collect();
        let (warehouses, products): (Vec<Uuid>, Vec<Uuid>) = pairs.into_iter().unzip();
        Ok(sqlx::query!(
            r#"SELECT u.w AS "w!", u.p AS "p!",
                      COALESCE((SELECT st.low FROM stock_thresholds st
                                WHERE st.product_id = u.p AND st.warehouse_id = u.w),
                               (SELECT pt.low FROM product_thresholds pt
                                WHERE pt.product_id = u.p)) AS low
               FROM unnest($1::uuid[], $2::uuid[]) AS u(w, p)"#,
            &warehouses,
            &products,
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .filter_map(|r| Some(((r.w, r.p), r.low?)))
        .collect())
    }

    pub async fn set_pair(
        &self,
        warehouse_id: Uuid,
        product_id: Uuid,
        low: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "INSERT INTO stock_thresholds (warehouse_id, product_id, low) VALUES ($1, $2, $3)
             ON CONFLICT (product_id, warehouse_id) DO UPDATE SET low = excluded.low, updated_at = now()",
            warehouse_id,
            product_id,
            low,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a pair's own level; `false` when it had none.
    pub async fn delete_pair(
        &self,
        warehouse_id: Uuid,
        product_id: Uuid,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query!(
            "DELETE FROM stock_thresholds WHERE product_id = $2 AND warehouse_id = $1",
            warehouse_id,
            product_id,
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
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
        sqlx::query!(
            "INSERT INTO product_thresholds (product_id, low) VALUES ($1, $2)
             ON CONFLICT (product_id) DO UPDATE SET low = excluded.low, updated_at = now()",
            product_id,
            low,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a product's default level; `false` when it had none.
    pub async fn delete_product(&self, product_id: Uuid) -> Result<bool, sqlx::Error> {
        let done = sqlx::query!(
            "DELETE FROM product_thresholds WHERE product_id = $1",
            product_id
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
