//! The standing alerts: the pairs below the level in force for them now.
//! The levels say which pairs have a level and what it is; the ledger says
//! their stock and since when they have stood under a mark; the rules
//! ([`super::alerts::Shortfall`]) say which are below.

use super::alerts::Shortfall;
use super::levels::{LevelSource, Levels};
use crate::ledger::Ledger;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// A pair below the low-stock level in force for it now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActiveAlert {
    pub warehouse_id: Uuid,
    pub product_id: Uuid,
    /// `depleted` at 0, `low` otherwise.
    #[schema(value_type = String, example = "low")]
    pub level: Shortfall,
    /// The stock now.
    pub quantity: i64,
    /// The level in force: the pair's own, else its product's.
    pub threshold: i64,
    /// `pair` or `product`: where the level comes from.
    #[schema(value_type = String, example = "pair")]
    pub threshold_from: LevelSource,
    /// The change that took the pair below the mark it is under now (the
    /// level, or 1 when depleted), and when the ledger applied it;
    /// `null` for a pair that has had no change.
    pub crossed_seq: Option<i64>,
    pub crossed_at: Option<DateTime<Utc>>,
}

impl Levels {
    /// The pairs below their level now, depleted first, then by how long
    /// they have been below. The work is bounded by the levels set (an
    /// admin's doing) and the holders of the products that have a default
    /// level.
    pub async fn active_alerts(
        &self,
        ledger: &Ledger,
        limit: i64,
    ) -> Result<Vec<ActiveAlert>, sqlx::Error> {
        let set = self.all().await?;
        if set.pairs.is_empty() && set.products.is_empty() {
            return Ok(Vec::new());
        }
        let pairs: Vec<(Uuid, Uuid)> = set.pairs.keys().copied().collect();
        let products: Vec<Uuid> = set.products.keys().copied().collect();
        let mut alerts: Vec<ActiveAlert> = Vec::new();
        for h in ledger.holdings(&pairs, &products).await? {
            let Some(level) = set.of(h.warehouse_id, h.product_id) else {
                continue;
            };
            if let Some(shortfall) = Shortfall::of(h.quantity, Some(level.low)) {
                alerts.push(ActiveAlert {
                    warehouse_id: h.warehouse_id,
                    product_id: h.product_id,
                    level: shortfall,
                    quantity: h.quantity,
                    threshold: level.low,
                    threshold_from: level.from,
                    crossed_seq: None,
                    crossed_at: None,
                });
            }
        }
        let marks: Vec<(Uuid, Uuid, i64)> = alerts
            .iter()
            .map(|a| (a.warehouse_id, a.product_id, a.level.mark(a.threshold)))
            .collect();
        let since = ledger.under_since(&marks).await?;
        for a in &mut alerts {
            if let Some(&(seq, at)) = since.get(&(a.warehouse_id, a.product_id)) {
                (a.crossed_seq, a.crossed_at) = (Some(seq), Some(at));
            }
        }
        alerts.sort_by_key(|a| {
            let depleted = a.level == Shortfall::Depleted;
            (!depleted, a.crossed_seq, a.product_id, a.warehouse_id)
        });
        alerts.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(alerts)
    }
}
