//! Every read of the ledger, through one door: the current figures and
//! movements read through the cache, the lists, history and past figures
//! read PostgreSQL (`reads`). Handlers ask the ledger and never its pool or
//! cache, so each read keeps the cache's no-stale guarantee in one place.

use super::handle::Ledger;
use super::reads::{
    HistoryItem, Holding, MovementFilter, MovementsPage, ProductFigures, Rejection, StockFigure,
    StockItem, entries, movements, stock,
};
use crate::domain::{MovementView, RejectReason};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use uuid::Uuid;

impl Ledger {
    /// The current stock of a pair (0 if never seen) and its last change,
    /// through the cache.
    pub async fn stock(
        &self,
        warehouse_id: Uuid,
        product_id: Uuid,
    ) -> Result<StockFigure, sqlx::Error> {
        let key = self.cache.stock_key(warehouse_id, product_id);
        let (figure, _) = self
            .cache
            .read_through(&key, || async {
                stock::stock(&self.reads, warehouse_id, product_id)
                    .await
                    .map(Some)
            })
            .await?;
        Ok(figure.unwrap_or(StockFigure {
            quantity: 0,
            last_seq: None,
        }))
    }

    /// The current quantities of `pairs`, in their order (duplicates
    /// allowed): one Redis round trip for all of them, one statement for
    /// the misses, one round trip to fill those that ever changed.
    pub async fn stock_many(
        &self,
        pairs: &[(Uuid, Uuid)],
    ) -> Result<Vec<StockFigure>, sqlx::Error> {
        let keys: Vec<String> = pairs
            .iter()
            .map(|&(w, p)| self.cache.stock_key(w, p))
            .collect();
        // A pair that never changed is not cached: a caller asking for a
        // thousand made-up pairs would otherwise fill Redis with a thousand
        // zeros per request. Reading one again costs an index probe.
        let changed: fn(&StockFigure) -> bool = |figure| figure.last_seq.is_some();
        self.cache
            .read_many(&keys, changed, |missed| async move {
                let wanted: Vec<(Uuid, Uuid)> = missed.iter().map(|&i| pairs[i]).collect();
                let found = stock::stock_figures(&self.reads, &wanted).await?;
                Ok(wanted
                    .iter()
                    .map(|pair| {
                        found.get(pair).copied().unwrap_or(StockFigure {
                            quantity: 0,
                            last_seq: None,
                        })
                    })
                    .collect())
            })
            .await
    }

    /// The quantity of a pair as of a moment of the ledger's clock; not
    /// cached (a past figure never changes, but few are asked twice).
    /// `None` when the moment lies further back than one read may walk.
    pub async fn stock_as_of(
        &self,
        warehouse_id: Uuid,
        product_id: Uuid,
        as_of: DateTime<Utc>,
    ) -> Result<Option<StockFigure>, sqlx::Error> {
        stock::stock_as_of(&self.reads, warehouse_id, product_id, as_of, self.read_scan).await
    }

    /// A movement, through the cache; `None` while no half is applied.
    pub async fn movement(&self, movement_id: Uuid) -> Result<Option<MovementView>, sqlx::Error> {
        let key = self.cache.movement_key(movement_id);
        let (view, _) = self
            .cache
            .read_through(&key, || movements::movement(&self.reads, movement_id))
            .await?;
        Ok(view)
    }

    /// Movements matching `filter`, a page at a time, from PostgreSQL.
    pub async fn movements(
        &self,
        filter: MovementFilter,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<MovementsPage, sqlx::Error> {
        movements::movements(&self.reads, filter, after, limit, self.read_scan).await
    }

    pub async fn history(
        &self,
        warehouse_id: Uuid,
        product_id: Uuid,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<HistoryItem>, sqlx::Error> {
        entries::history(&self.reads, warehouse_id, product_id, after, limit).await
    }

    /// A pair's history before `before`, newest first, from PostgreSQL.
    pub async fn recent_history(
        &self,
        warehouse_id: Uuid,
        product_id: Uuid,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<HistoryItem>, sqlx::Error> {
        entries::recent_history(&self.reads, warehouse_id, product_id, before, limit).await
    }

    /// A product across warehouses, one page of warehouses at a time.
    pub async fn product_stock(
        &self,
        product_id: Uuid,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<ProductFigures, sqlx::Error> {
        stock::product_stock(&self.reads, product_id, after, limit).await
    }

    pub async fn warehouse_stock(
        &self,
        warehouse_id: Uuid,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<StockItem>, sqlx::Error> {
        stock::warehouse_stock(&self.reads, warehouse_id, after, limit).await
    }

    /// A warehouse's stock list as it stood at `as_of`, from PostgreSQL;
    /// `None` when a pair's moment lies further back than a read may walk.
    pub async fn warehouse_stock_as_of(
        &self,
        warehouse_id: Uuid,
        as_of: DateTime<Utc>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Option<Vec<StockItem>>, sqlx::Error> {
        let scan = self.read_scan;
        stock::warehouse_stock_as_of(&self.reads, warehouse_id, as_of, after, limit, scan).await
    }

    /// The stock rows of `pairs` and of every holder of `products`, from
    /// PostgreSQL: what the standing alerts compare with levels.
    pub async fn holdings(
        &self,
        pairs: &[(Uuid, Uuid)],
        products: &[Uuid],
    ) -> Result<Vec<Holding>, sqlx::Error> {
        stock::holdings(&self.reads, pairs, products).await
    }

    /// For each `(warehouse, product, mark)`, the change that last took
    /// the pair under `mark`, and when it applied, from PostgreSQL.
    pub async fn under_since(
        &self,
        marks: &[(Uuid, Uuid, i64)],
    ) -> Result<HashMap<(Uuid, Uuid), (i64, DateTime<Utc>)>, sqlx::Error> {
        stock::under_since(&self.reads, marks).await
    }

    /// Rejections since `since`, up to `cap`.
    pub async fn rejections_since(
        &self,
        since: DateTime<Utc>,
        cap: i64,
    ) -> Result<i64, sqlx::Error> {
        entries::rejections_since(&self.reads, since, cap).await
    }

    pub async fn rejections(
        &self,
        reason: Option<RejectReason>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Rejection>, sqlx::Error> {
        entries::rejections(&self.reads, reason, after, limit).await
    }

    /// Whether PostgreSQL answers a trivial query.
    pub async fn database_answers(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Whether Redis answers a PING within the cache's operation timeout.
    pub async fn cache_answers(&self) -> bool {
        self.cache.ping().await
    }

    /// (open, idle, max) connections of the pool, for the metrics.
    pub fn pool_figures(&self) -> (u32, usize, u32) {
        (
            self.pool.size(),
            self.pool.num_idle(),
            self.pool.options().get_max_connections(),
        )
    }
}
