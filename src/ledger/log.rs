//! The audit log as the ledger's change record: every applied entry is one
//! change of a pair's stock. The ledger writes the log ([`super::apply`]);
//! this module hands readers the committed record ([`Change`], defined
//! beside the write in [`super::change`]) and owns every read of applied
//! entries, so that an `event_log` row becomes a [`Change`] in exactly one
//! place ([`AppliedRow::into_logged`]).
//!
//! `seq` is taken before a batch commits, so batches on different
//! connections commit out of `seq` order. A reader that had read up to 200
//! while the batch holding 150 was still in flight would pass 150 and
//! never see it. So readers read only up to the [`Horizon`]: the highest
//! `seq` below which every entry that will ever commit has committed.
//! Along one pair `seq` order is commit order (the ledger takes its
//! numbers while it holds the pair's row lock), so a pair's changes come
//! in the order they happened, and the last one carries its stock.

use super::change::AppliedRow;
use super::horizon::Horizon;
use super::tail::LogTail;
use crate::domain::EventKind;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

pub use super::change::{Change, LoggedChange};

/// Which changes a reader follows; both filters are optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChangeFilter {
    pub warehouse_id: Option<Uuid>,
    pub product_id: Option<Uuid>,
}

/// The readers' handle on the change record: the log, its horizon, and
/// (for the relay) the tail of what this process committed.
#[derive(Clone)]
pub struct ChangeLog {
    pool: PgPool,
    horizon: Horizon,
    tail: LogTail,
    /// The most positions of the log one filtered read walks.
    scan: i64,
}

/// What one read of the change record found.
#[derive(Debug)]
pub struct ChangeRead {
    /// The changes it selected, in `seq` order.
    pub changes: Vec<Change>,
    /// Every change up to here that the filter selects is among
    /// `changes` or was before `after`, unless `changes` is full.
    pub reached: i64,
}

impl ChangeLog {
    pub(super) fn new(pool: PgPool, horizon: Horizon, tail: LogTail, scan: i64) -> Self {
        assert!(scan > 0, "a read must be able to walk the log");
        ChangeLog {
            pool,
            horizon,
            tail,
            scan,
        }
    }

    /// The same record read through another pool (the relay keeps one on
    /// its own runtime).
    pub fn through(&self, pool: PgPool) -> Self {
        ChangeLog {
            pool,
            ..self.clone()
        }
    }

    /// What this process's ledger committed lately.
    pub fn tail(&self) -> &LogTail {
        &self.tail
    }

    /// The horizon as last established.
    pub fn horizon(&self) -> i64 {
        self.horizon.current()
    }

    /// How long the horizon has been held back, if it is.
    pub fn held_back(&self) -> Option<Duration> {
        self.horizon.held_back()
    }

    /// The session of this database whose transaction holds an id the
    /// longest: what holds the horizon back when it is held. Its process
    /// id and when its transaction began.
    pub async fn oldest_writer(&self) -> Result<Option<(i32, DateTime<Utc>)>, sqlx::Error> {
        let row = sqlx::query!(
            r#"SELECT pid AS "pid!", xact_start AS "xact_start!" FROM pg_stat_activity
               WHERE datname = current_database() AND backend_xid IS NOT NULL
                 AND xact_start IS NOT NULL
               ORDER BY xact_start LIMIT 1"#
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| (r.pid, r.xact_start)))
    }

    /// The horizon once it covers every entry committed before this call
    /// (so a reader sees its own acknowledged writes), or as it stands
    /// after `within` if something holds it back that long.
    pub async fn fresh_horizon(&self, within: Duration) -> i64 {
        self.horizon.fresh(within).await
    }

    /// Whether the moment `t` of the ledger's clock is final: no entry
    /// committed from now on is applied at or before it. Waits up to
    /// `within` for it to become so.
    pub async fn settles(&self, t: DateTime<Utc>, within: Duration) -> bool {
        self.horizon.settles(t, within).await
    }

    /// Waits until the horizon passes `seq`, or `until` passes. Returns
    /// the horizon then.
    pub async fn horizon_passes(&self, seq: i64, until: tokio::time::Instant) -> i64 {
        self.horizon.passes(seq, until).await
    }

    /// Up to `limit` changes with `after < seq <= horizon`, in `seq` order.
    ///
    /// A pair's changes are read along its index, to the horizon. Any
    /// other read walks the log's order, and at most `READ_SCAN_LIMIT`
    /// positions of it: a filter that selects little (one warehouse among
    /// many, a run of rejections) costs a caller more requests, each
    /// bounded, rather than one that walks the whole log.
    pub async fn changes(
        &self,
        after: i64,
        horizon: i64,
        filter: ChangeFilter,
        limit: i64,
    ) -> Result<ChangeRead, sqlx::Error> {
        if horizon <= after {
            return Ok(ChangeRead {
                changes: Vec::new(),
                reached: after,
            });
        }
        let (rows, reached) = match (filter.warehouse_id, filter.product_id) {
            (Some(warehouse), Some(product)) => {
                let rows = sqlx::query_as!(
                    AppliedRow,
                    r#"SELECT seq, warehouse_id, product_id, event AS "event: EventKind", quantity,
                              delta, stock_after AS "stock_after!", movement_id, message_id, received_at,
                              opens_pair
                       FROM event_log
                       WHERE product_id = $1 AND warehouse_id = $2
                         AND outcome = 'applied' AND seq > $3 AND seq <= $4
                       ORDER BY seq LIMIT $5"#,
                    product,
                    warehouse,
                    after,
                    horizon,
                    limit,
                )
                .fetch_all(&self.pool)
                .await?;
                (rows, horizon)
            }
            _ => {
                let upto = horizon.min(after.saturating_add(self.scan));
                let rows = self.rows(after, upto, filter, limit).await?;
                (rows, upto)
            }
        };
        Ok(ChangeRead {
            changes: rows.into_iter().map(|r| r.into_logged().change).collect(),
            reached,
        })
    }

    /// Up to `limit` changes with `after < seq <= horizon`, with their
    /// marks: the spans the tail does not hold, for the relay.
    pub async fn logged(
        &self,
        after: i64,
        horizon: i64,
        limit: i64,
    ) -> Result<Vec<LoggedChange>, sqlx::Error> {
        if horizon <= after {
            return Ok(Vec::new());
        }
        let rows = self
            .rows(after, horizon, ChangeFilter::default(), limit)
            .await?;
        Ok(rows.into_iter().map(AppliedRow::into_logged).collect())
    }

    /// The applied rows with `after < seq <= horizon` that `filter`
    /// selects, along the log's order. (A filter written `$n IS NULL OR`
    /// is no index condition, so the walk is the `seq` range's, whatever
    /// the plan.)
    async fn rows(
        &self,
        after: i64,
        horizon: i64,
        filter: ChangeFilter,
        limit: i64,
    ) -> Result<Vec<AppliedRow>, sqlx::Error> {
        sqlx::query_as!(
            AppliedRow,
            r#"SELECT seq, warehouse_id, product_id, event AS "event: EventKind", quantity,
                      delta, stock_after AS "stock_after!", movement_id, message_id, received_at,
                      opens_pair
               FROM event_log
               WHERE seq > $1 AND seq <= $2 AND outcome = 'applied'
                 AND ($3::uuid IS NULL OR warehouse_id = $3)
                 AND ($4::uuid IS NULL OR product_id = $4)
               ORDER BY seq LIMIT $5"#,
            after,
            horizon,
            filter.warehouse_id,
            filter.product_id,
            limit,
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Which of `changes` are their pair's first change. Only a change
    /// from 0 can be; the ledger marks the first change of a pair it found
    /// no stock row of (`opens_pair`), and only the other changes from 0
    /// look for an earlier one (in the product-history index).
    pub async fn first_changes(
        &self,
        changes: &[LoggedChange],
    ) -> Result<HashSet<i64>, sqlx::Error> {
        let mut probe = (Vec::new(), Vec::new(), Vec::new());
        let mut first = HashSet::new();
        for logged in changes {
            let c = &logged.change;
            if !(c.delta > 0 && c.before() == 0) {
                continue;
            }
            if logged.opens_pair {
                first.insert(c.seq);
            } else {
                probe.0.push(c.seq);
                probe.1.push(c.warehouse_id);
                probe.2.push(c.product_id);
            }
        }
        if probe.0.is_empty() {
            return Ok(first);
        }
        let found = sqlx::query_scalar!(
            r#"SELECT u.seq AS "seq!" FROM unnest($1::int8[], $2::uuid[], $3::uuid[]) AS u(seq, w, p)
               WHERE NOT EXISTS (SELECT 1 FROM event_log l
                                 WHERE l.product_id = u.p AND l.warehouse_id = u.w
                                   AND l.outcome = 'applied' AND l.seq < u.seq)"#,
            &probe.0,
            &probe.1,
            &probe.2,
        )
        .fetch_all(&self.pool)
        .await?;
        first.extend(found);
        Ok(first)
    }

    /// How many changes are committed after `position`, counted up to `cap`.
    pub async fn count_after(&self, position: i64, cap: i64) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM (SELECT 1 FROM event_log
                                              WHERE seq > $1 AND outcome = 'applied' LIMIT $2) AS c"#,
            position,
            cap,
        )
        .fetch_one(&self.pool)
        .await
    }
}
