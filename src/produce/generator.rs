//! A deterministic stream of movement events, with the stock it must lead
//! to.
//!
//! The generator keeps its own model of stock and never departs more than it
//! has put in, so every event it produces applies (or is a duplicate of one
//! that did). Records are keyed by warehouse, so every event touching a
//! (warehouse, product) lands in one partition, in order: the consumer sees
//! them in the order the model assumed.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub count: usize,
    pub warehouses: usize,
    pub products: usize,
    /// Share of events that are departures (each departure is later
    /// followed by the arrival of the same movement elsewhere).
    pub departure_share: f64,
    /// Share of records that re-send an earlier record verbatim.
    pub duplicate_share: f64,
    /// Share of records that are corrections people make (counts and
    /// adjustments of stock the model knows). At 0 the stream is exactly
    /// what it was before corrections existed.
    pub correction_share: f64,
    pub seed: u64,
}

/// One record to produce: its key (the warehouse) and the structured-mode
/// CloudEvent.
#[derive(Debug, Clone)]
pub struct GeneratedRecord {
    pub key: String,
    pub event: Value,
    /// True when this record re-sends an earlier one.
    pub duplicate: bool,
}

pub struct Generator {
    config: GeneratorConfig,
    rng: ChaCha8Rng,
    warehouses: Vec<Uuid>,
    products: Vec<Uuid>,
    stock: HashMap<(usize, usize), i64>,
    /// Arrivals of movements already departed, waiting to be produced.
    in_transit: VecDeque<(Uuid, usize, usize, i64)>,
    /// Recent records, to pick duplicates from.
    recent: VecDeque<GeneratedRecord>,
    clock: DateTime<Utc>,
    produced: usize,
    duplicates: usize,
}

const RECENT: usize = 4096;

impl Generator {
    pub fn new(config: GeneratorConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let warehouses = (0..config.warehouses.max(2))
            .map(|_| uuid_from(&mut rng))
            .collect();
        let products = (0..config.products.max(1))
            .map(|_| uuid_from(&mut rng))
            .collect();
        Generator {
            config,
            rng,
            warehouses,
            products,
            stock: HashMap::new(),
            in_transit: VecDeque::new(),
            recent: VecDeque::with_capacity(RECENT),
            clock: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
            produced: 0,
            duplicates: 0,
        }
    }

    /// The stock every (warehouse, product) the stream touched must end
    /// with.
    pub fn expected_stock(&self) -> Vec<(Uuid, Uuid, i64)> {
        let mut out: Vec<(Uuid, Uuid, i64)> = self
            .stock
            .iter()
            .map(|(&(w, p), &q)| (self.warehouses[w], self.products[p], q))
            .collect();
        out.sort();
        out
    }

    pub fn produced(&self) -> usize {
        self.produced
    }

    /// Records that re-send an earlier record (and so are duplicates).
    pub fn duplicates(&self) -> usize {
        self.duplicates
    }

    fn next_record(&mut self) -> GeneratedRecord {
        if !self.recent.is_empty() && self.rng.random_bool(self.config.duplicate_share) {
            let i = self.rng.random_range(0..self.recent.len());
            let mut again = self.recent[i].clone();
            again.duplicate = true;
            self.duplicates += 1;
            return again;
        }
        self.clock += Duration::seconds(1);
        if self.config.correction_share > 0.0
            && self
                .rng
                .random_bool(self.config.correction_share.clamp(0.0, 1.0))
        {
            let record = self.correction();
            self.remember(&record);
            return record;
        }
        let share = self.config.departure_share.clamp(0.0, 0.5);
        let roll: f64 = self.rng.random();
        let record = if roll < share {
            self.departure().unwrap_or_else(|| self.supply())
        } else if roll < 2.0 * share && !self.in_transit.is_empty() {
            self.transfer_arrival()
        } else {
            self.supply()
        };
        self.remember(&record);
        record
    }

    /// Keeps `record` among the recent ones duplicates are picked from.
    fn remember(&mut self, record: &GeneratedRecord) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(record.clone());
    }

    /// A count (the quantity found) or an adjustment (a change the stock
    /// can take) of a pair, which always applies.
    fn correction(&mut self) -> GeneratedRecord {
        let w = self.rng.random_range(0..self.warehouses.len());
        let p = self.rng.random_range(0..self.products.len());
        let held = self.stock.get(&(w, p)).copied().unwrap_or(0);
        let (kind, quantity, after) = if held == 0 || self.rng.random_bool(0.5) {
            let found = self.rng.random_range(0..=held + 10);
            ("count", found, found)
        } else {
            let mut change = self.rng.random_range(-held..=10);
            if change == 0 {
                change = 1;
            }
            ("adjustment", change, held + change)
        };
        self.stock.insert((w, p), after);
        let warehouse = self.warehouses[w];
        let id = uuid_from(&mut self.rng);
        let adjustment = uuid_from(&mut self.rng);
        GeneratedRecord {
            key: warehouse.to_string(),
            duplicate: false,
            event: json!({
                "id": id.to_string(),
                "source": format!("SCANNER-{}", 1000 + w),
                "specversion": "1.0",
                "type": "ru.retail.warehouses.adjustment",
                "datacontenttype": "application/json",
                "time": self.clock.timestamp_millis(),
                "data": {
                    "adjustment_id": adjustment.to_string(),
                    "warehouse_id": warehouse.to_string(),
                    "product_id": self.products[p].to_string(),
                    "kind": kind,
                    "quantity": quantity,
                    "reason": if kind == "count" { "cycle_count" } else { "damaged" },
                }
            }),
        }
    }

    /// Stock arriving from outside the network.
    fn supply(&mut self) -> GeneratedRecord {
        let w = self.rng.random_range(0..self.warehouses.len());
        let p = self.rng.random_range(0..self.products.len());
        let q = self.rng.random_range(1..=100);
        *self.stock.entry((w, p)).or_default() += q;
        let movement = uuid_from(&mut self.rng);
        self.record(movement, "arrival", w, p, q)
    }

    /// A departure of stock the model knows is there, or `None` when the
    /// randomly picked (warehouse, product) holds nothing.
    fn departure(&mut self) -> Option<GeneratedRecord> {
        let w = self.rng.random_range(0..self.warehouses.len());
        let p = self.rng.random_range(0..self.products.len());
        let held = self.stock.get(&(w, p)).copied().unwrap_or(0);
        if held == 0 {
            return None;
        }
        let q = self.rng.random_range(1..=held.min(100));
        *self.stock.get_mut(&(w, p)).unwrap() -= q;
        let movement = uuid_from(&mut self.rng);
        // The goods arrive elsewhere, sometimes short by a little.
        let mut to = self.rng.random_range(0..self.warehouses.len() - 1);
        if to >= w {
            to += 1;
        }
        let lost = if self.rng.random_bool(0.1) {
            q.min(2) - 1
        } else {
            0
        };
        self.in_transit.push_back((movement, to, p, q - lost));
        Some(self.record(movement, "departure", w, p, q))
    }

    fn transfer_arrival(&mut self) -> GeneratedRecord {
        let (movement, w, p, q) = self.in_transit.pop_front().expect("in transit");
        *self.stock.entry((w, p)).or_default() += q;
        self.record(movement, "arrival", w, p, q)
    }

    fn record(
        &mut self,
        movement: Uuid,
        event: &str,
        w: usize,
        p: usize,
        q: i64,
    ) -> GeneratedRecord {
        let warehouse = self.warehouses[w];
        let id = uuid_from(&mut self.rng);
        GeneratedRecord {
            key: warehouse.to_string(),
            duplicate: false,
            event: json!({
                "id": id.to_string(),
                "source": format!("WH-{}", 1000 + w),
                "specversion": "1.0",
                "type": "ru.retail.warehouses.movement",
                "datacontenttype": "application/json",
                "time": self.clock.timestamp_millis(),
                "subject": format!("WH-{}:{}", 1000 + w, event.to_uppercase()),
                "data": {
                    "movement_id": movement.to_string(),
                    "warehouse_id": warehouse.to_string(),
                    "timestamp": self.clock.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "event": event,
                    "product_id": self.products[p].to_string(),
                    "quantity": q,
                }
            }),
        }
    }
}

impl Iterator for Generator {
    type Item = GeneratedRecord;

    fn next(&mut self) -> Option<GeneratedRecord> {
        if self.produced == self.config.count {
            return None;
        }
        self.produced += 1;
        Some(self.next_record())
    }
}

fn uuid_from(rng: &mut ChaCha8Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LedgerState, MovementEvent, Outcome, apply_batch};

    fn config(seed: u64) -> GeneratorConfig {
        GeneratorConfig {
            count: 5000,
            warehouses: 4,
            products: 6,
            departure_share: 0.25,
            duplicate_share: 0.05,
            correction_share: 0.05,
            seed,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let a: Vec<Value> = Generator::new(config(7)).map(|r| r.event).collect();
        let b: Vec<Value> = Generator::new(config(7)).map(|r| r.event).collect();
        let c: Vec<Value> = Generator::new(config(8)).map(|r| r.event).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn every_event_applies_and_the_rules_reach_the_expected_stock() {
        let mut generator = Generator::new(config(3));
        let events: Vec<MovementEvent> = generator
            .by_ref()
            .map(|r| MovementEvent::from_structured(r.event.to_string().as_bytes()).unwrap())
            .collect();
        let mut state = LedgerState::default();
        let outcomes = apply_batch(&mut state, &events, Utc::now());

        let duplicates = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Duplicate { .. }))
            .count();
        let rejected = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Rejected { .. }))
            .count();
        assert_eq!(rejected, 0);
        assert_eq!(duplicates, generator.duplicates());
        let corrections = events
            .iter()
            .filter(|e| e.content.kind.is_correction())
            .count();
        assert!(
            corrections > 5000 / 40,
            "about 5% are corrections: {corrections}"
        );
        let departures = events
            .iter()
            .filter(|e| e.content.kind.as_str() == "departure")
            .count();
        assert!(
            departures > 5000 / 6,
            "about a quarter are departures: {departures}"
        );
        for (w, p, q) in generator.expected_stock() {
            assert_eq!(state.stock.get(&(w, p)).copied().unwrap_or(0), q);
        }
    }
}
