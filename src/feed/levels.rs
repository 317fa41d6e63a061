//! Low-stock levels: a pair's own, or its product's default, which the
//! alerts compare every change against. This module owns the three level
//! tables and the one rule for which level is in force ([`Level::in_force`]);
//! the API, the console and the relay ask it, never the tables.
//!
//! Every write also records the level in `threshold_history` under a
//! number of the ledger's ([`crate::ledger::numbering`]), so a change is
//! compared against the level numbered last before it, whenever the relay
//! publishes it (migration 18).

use crate::ledger::numbering;
use serde::Serialize;
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

/// Where the level in force for a pair comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LevelSource {
    /// The pair's own level.
    Pair,
    /// Its product's default.
    Product,
}

impl LevelSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LevelSource::Pair => "pair",
            LevelSource::Product => "product",
        }
    }
}

/// A low-stock level and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub low: i64,
    pub from: LevelSource,
}

impl Level {
    /// The level in force for a pair, given its own and its product's: the
    /// pair's own wins. Every read of a level goes through here.
    pub fn in_force(own: Option<i64>, product: Option<i64>) -> Option<Level> {
        match (own, product) {
            (Some(low), _) => Some(Level {
                low,
                from: LevelSource::Pair,
            }),
            (None, Some(low)) => Some(Level {
                low,
                from: LevelSource::Product,
            }),
            (None, None) => None,
        }
    }
}

/// Every level set now: the pairs' own and the products' defaults. Both
/// lists are an admin's doing, so reading them whole is bounded by that.
#[derive(Debug, Default)]
pub struct LevelsSet {
    pub pairs: HashMap<(Uuid, Uuid), i64>,
    pub products: HashMap<Uuid, i64>,
}

impl LevelsSet {
    /// The level in force for a pair.
    pub fn of(&self, warehouse_id: Uuid, product_id: Uuid) -> Option<Level> {
        Level::in_force(
            self.pairs.get(&(warehouse_id, product_id)).copied(),
            self.products.get(&product_id).copied(),
        )
    }
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

    /// The level in force for a pair now.
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
        Ok(Level::in_force(row.own, row.product))
    }

    /// Every level set now, pairs' and products'.
    pub async fn all(&self) -> Result<LevelsSet, sqlx::Error> {
        let pairs = sqlx::query!("SELECT warehouse_id, product_id, low FROM stock_thresholds")
            .fetch_all(&self.pool)
            .await?;
        let products = sqlx::query!("SELECT product_id, low FROM product_thresholds")
            .fetch_all(&self.pool)
            .await?;
        Ok(LevelsSet {
            pairs: pairs
                .into_iter()
                .map(|r| ((r.warehouse_id, r.product_id), r.low))
                .collect(),
            products: products
                .into_iter()
                .map(|r| (r.product_id, r.low))
                .collect(),
        })
    }

    /// The level in force for each change `(seq, warehouse_id,
    /// product_id)`, by `seq`, where any is: of the levels numbered last
    /// before the change, the one [`Level::in_force`]. One question when no level
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
                      (SELECT h.low FROM threshold_history h
                       WHERE h.product_id = u.p AND h.warehouse_id = u.w AND h.from_seq < u.s
                       ORDER BY h.from_seq DESC LIMIT 1) AS own,
                      (SELECT h.low FROM threshold_history h
                       WHERE h.product_id = u.p AND h.warehouse_id IS NULL AND h.from_seq < u.s
                       ORDER BY h.from_seq DESC LIMIT 1) AS product
               FROM unnest($1::int8[], $2::uuid[], $3::uuid[]) AS u(s, w, p)"#,
            &seqs,
            &warehouses,
            &products,
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .filter_map(|r| Some((r.seq, Level::in_force(r.own, r.product)?.low)))
        .collect())
    }

    /// Records a level change of a pair (or, without `warehouse_id`, of a
    /// product) under the ledger's next number, in `tx`, so the feed's
    /// horizon passes no change numbered after it before it commits.
    async fn record(
        tx: &mut sqlx::PgConnection,
        product_id: Uuid,
        warehouse_id: Option<Uuid>,
        low: Option<i64>,
    ) -> Result<(), sqlx::Error> {
        let from_seq = numbering::take(&mut *tx).await?;
        sqlx::query!(
            "INSERT INTO threshold_history (product_id, warehouse_id, low, from_seq)
             VALUES ($1, $2, $3, $4)",
            product_id,
            warehouse_id,
            low,
            from_seq,
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
