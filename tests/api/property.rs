//! Random event sequences (movements' halves, counts and adjustments,
//! reversals and write-offs), split into random batches and applied through the real batch path, must
//! end exactly where a plain one-event-at-a-time model ends: same outcome
//! for every event, same stock, same movements. After
//! every batch, each pair's history replays to its stock and the product
//! totals and transit sums are the model's; at the end, the stock as of
//! each batch's moment is the model's stock after that batch.

use crate::helpers::{TestApp, redis_url, spawn_app};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::json;
use std::collections::HashMap;
use uuid::Uuid;
use warehouse_stock::domain::{
    EventKind, Halves, MovementEvent, MovementStatus, Outcome, Quantity, read_closing,
};
use warehouse_stock::ledger::{Ledger, reads};

/// One event over a tiny universe, so that duplicates, conflicts, shortages
/// and mismatches all happen often.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Step {
    movement: usize,
    departure: bool,
    warehouse: usize,
    product: usize,
    quantity: i64,
    hour: u32,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0..3usize,
        any::<bool>(),
        0..2usize,
        0..2usize,
        1..6i64,
        0..2u32,
    )
        .prop_map(
            |(movement, departure, warehouse, product, quantity, hour)| Step {
                movement,
                departure,
                warehouse,
                product,
                quantity,
                hour,
            },
        )
}

/// A correction over the same tiny universe: two ids, so that duplicates
/// and conflicts happen, and an expected quantity now and then.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fix {
    id: usize,
    count: bool,
    warehouse: usize,
    product: usize,
    quantity: i64,
    expected: Option<i64>,
}

fn fix() -> impl Strategy<Value = Fix> {
    (
        0..2usize,
        any::<bool>(),
        0..2usize,
        0..2usize,
        -6..9i64,
        proptest::option::weighted(0.3, 0..9i64),
    )
        .prop_map(|(id, count, warehouse, product, quantity, expected)| Fix {
            id,
            count,
            warehouse,
            product,
            // A count finds 0 or more; an adjustment changes by other than 0.
            quantity: match (count, quantity) {
                (true, q) => q.abs(),
                (false, 0) => 1,
                (false, q) => q,
            },
            expected,
        })
}

/// A reversal or write-off of one of the movements, under one of two ids
/// with one of two reasons, so that duplicates and conflicts happen.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Close {
    movement: usize,
    reversal: bool,
    id: usize,
    reason: usize,
}

fn close() -> impl Strategy<Value = Close> {
    (0..3usize, any::<bool>(), 0..2usize, 0..2usize).prop_map(|(movement, reversal, id, reason)| {
        Close {
            movement,
            reversal,
            id,
            reason,
        }
    })
}

/// One operation: a movement's half, a correction, or a closing.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Half(Step),
    Fix(Fix),
    Close(Close),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => step().prop_map(Op::Half),
        2 => fix().prop_map(Op::Fix),
        1 => close().prop_map(Op::Close),
    ]
}

const REASONS: [&str; 2] = ["correction", "lost"];

/// (product, departure (warehouse, quantity), arrival (warehouse, quantity))
type ModelMovement = (usize, Option<(usize, i64)>, Option<(usize, i64)>);

/// The model's stock per (warehouse, product).
type ModelStock = HashMap<(usize, usize), i64>;

/// The specification, written as plainly as possible.
#[derive(Default)]
struct Model {
    stock: ModelStock,
    movements: HashMap<usize, ModelMovement>,
    seen: HashMap<(usize, bool), Vec<(Step, String)>>,
    fixes: HashMap<usize, Vec<(Fix, String)>>,
    /// The applied closing of (movement, is a reversal): its id and reason.
    closed: HashMap<(usize, bool), (usize, usize)>,
}

impl Model {
    fn apply_op(&mut self, op: Op) -> String {
        match op {
            Op::Half(s) => self.apply(s),
            Op::Fix(f) => self.apply_fix(f),
            Op::Close(c) => self.apply_close(c),
        }
    }

    /// A closing as the API asks it: of a movement with an applied half
    /// (else 404, and nothing reaches the ledger), a write-off only of
    /// one that departed. The same id and reason again is a duplicate;
    /// the same id with another reason a conflict; another id, refused.
    /// A refusal is not recorded. A reversal undoes every applied half,
    /// or none if the arrival's warehouse no longer holds its quantity.
    fn apply_close(&mut self, c: Close) -> String {
        if let Some(&(id, reason)) = self.closed.get(&(c.movement, c.reversal)) {
            return match (id == c.id, reason == c.reason, c.reversal) {
                (true, true, _) => "duplicate".into(),
                (true, false, _) => "rejected:conflicting_duplicate".into(),
                (false, _, true) => "rejected:movement_reversed".into(),
                (false, _, false) => "rejected:movement_not_in_transit".into(),
            };
        }
        let Some(&(product, departure, arrival)) = self.movements.get(&c.movement) else {
            return String::new();
        };
        if !c.reversal {
            if self.in_transit(c.movement) {
                self.closed.insert((c.movement, false), (c.id, c.reason));
                return "applied".into();
            }
            return "rejected:movement_not_in_transit".into();
        }
        if let Some((w, q)) = arrival
            && self.stock.get(&(w, product)).copied().unwrap_or(0) < q
        {
            return "rejected:insufficient_stock".into();
        }
        if let Some((w, q)) = departure {
            *self.stock.entry((w, product)).or_default() += q;
        }
        if let Some((w, q)) = arrival {
            *self.stock.entry((w, product)).or_default() -= q;
        }
        self.closed.insert((c.movement, true), (c.id, c.reason));
        "applied".into()
    }

    fn in_transit(&self, movement: usize) -> bool {
        let reversed = self.closed.contains_key(&(movement, true));
        let written_off = self.closed.contains_key(&(movement, false));
        self.movements
            .get(&movement)
            .is_some_and(|(_, d, a)| d.is_some() && a.is_none() && !reversed && !written_off)
    }

    /// A count sets the stock, an adjustment adds to it; refused if the
    /// stock is not the one expected, or if it would go below 0. An id is
    /// decided once, as a movement's key is.
    fn apply_fix(&mut self, f: Fix) -> String {
        if let Some(earlier) = self.fixes.get(&f.id) {
            let result = match earlier.iter().find(|(e, _)| *e == f) {
                Some((_, result)) if result == "applied" => "duplicate".into(),
                Some((_, result)) => return result.clone(),
                None => "rejected:conflicting_duplicate".to_string(),
            };
            if result != "duplicate" {
                self.fixes
                    .entry(f.id)
                    .or_default()
                    .push((f, result.clone()));
            }
            return result;
        }
        let stock = self.stock.entry((f.warehouse, f.product)).or_default();
        let after = if f.count {
            f.quantity
        } else {
            *stock + f.quantity
        };
        let result = if f.expected.is_some_and(|e| e != *stock) {
            "rejected:stale_quantity".to_string()
        } else if after < 0 {
            "rejected:insufficient_stock".to_string()
        } else {
            *stock = after;
            "applied".to_string()
        };
        self.fixes
            .entry(f.id)
            .or_default()
            .push((f, result.clone()));
        result
    }

    fn apply(&mut self, s: Step) -> String {
        let key = (s.movement, s.departure);
        if let Some(earlier) = self.seen.get(&key) {
            if let Some((_, result)) = earlier.iter().find(|(e, _)| *e == s) {
                return if result == "applied" {
                    "duplicate".into()
                } else {
                    result.clone()
                };
            }
            return self.reject(s, "conflicting_duplicate");
        }
        if self.closed.contains_key(&(s.movement, true)) {
            return self.reject(s, "movement_reversed");
        }
        if let Some((product, departure, arrival)) = self.movements.get(&s.movement) {
            let other = if s.departure { arrival } else { departure };
            if let Some((warehouse, _)) = other
                && (*product != s.product || *warehouse == s.warehouse)
            {
                return self.reject(s, "movement_mismatch");
            }
        }
        let stock = self.stock.entry((s.warehouse, s.product)).or_default();
        if s.departure {
            if *stock < s.quantity {
                return self.reject(s, "insufficient_stock");
            }
            *stock -= s.quantity;
        } else {
            *stock += s.quantity;
        }
        let m = self
            .movements
            .entry(s.movement)
            .or_insert((s.product, None, None));
        m.0 = s.product;
        if s.departure {
            m.1 = Some((s.warehouse, s.quantity));
        } else {
            m.2 = Some((s.warehouse, s.quantity));
        }
        self.seen
            .entry(key)
            .or_default()
            .push((s, "applied".into()));
        "applied".into()
    }

    fn reject(&mut self, s: Step, reason: &str) -> String {
        let result = format!("rejected:{reason}");
        self.seen
            .entry((s.movement, s.departure))
            .or_default()
            .push((s, result.clone()));
        result
    }
}

/// Fresh ids per case, so cases share one database without interfering.
struct Ids {
    warehouses: [Uuid; 2],
    products: [Uuid; 2],
    movements: [Uuid; 3],
    fixes: [Uuid; 2],
    closings: [Uuid; 2],
}

impl Ids {
    fn new() -> Self {
        Ids {
            warehouses: [Uuid::new_v4(), Uuid::new_v4()],
            products: [Uuid::new_v4(), Uuid::new_v4()],
            movements: [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()],
            fixes: [Uuid::new_v4(), Uuid::new_v4()],
            closings: [Uuid::new_v4(), Uuid::new_v4()],
        }
    }

    /// The events of `op` as its caller would send them to the ledger,
    /// given the movements as `model` holds them before it.
    fn events(&self, op: Op, model: &Model) -> Vec<MovementEvent> {
        let Op::Close(c) = op else {
            return vec![self.op(op)];
        };
        let Some(&(product, departure, arrival)) = model.movements.get(&c.movement) else {
            return Vec::new();
        };
        let (kind, key) = match c.reversal {
            true => (EventKind::Reversal, "reversal_id"),
            false => (EventKind::WriteOff, "write_off_id"),
        };
        let body = json!({key: self.closings[c.id], "reason": REASONS[c.reason]});
        let closing = read_closing(kind, &body).unwrap();
        let side = |half: Option<(usize, i64)>| {
            half.map(|(w, q)| (self.warehouses[w], Quantity::parse(q).unwrap()))
        };
        let halves = Halves {
            movement_id: self.movements[c.movement],
            product_id: self.products[product],
            departure: side(departure),
            arrival: side(arrival),
        };
        closing.entries(&halves, "proptest", Utc::now())
    }

    fn op(&self, op: Op) -> MovementEvent {
        match op {
            Op::Close(_) => unreachable!("a closing's events depend on its movement"),
            Op::Half(s) => self.event(s),
            Op::Fix(f) => {
                let mut body = json!({
                    "adjustment_id": self.fixes[f.id],
                    "warehouse_id": self.warehouses[f.warehouse],
                    "product_id": self.products[f.product],
                    "kind": if f.count { "count" } else { "adjustment" },
                    "quantity": f.quantity,
                    "reason": "correction",
                });
                if let Some(expected) = f.expected {
                    body["expected_quantity"] = json!(expected);
                }
                MovementEvent::from_adjustment(&body, "proptest", Utc::now()).unwrap()
            }
        }
    }

    fn event(&self, s: Step) -> MovementEvent {
        let message = json!({
            "id": Uuid::new_v4().to_string(), "source": "proptest", "specversion": "1.0",
            "type": "ru.retail.warehouses.movement",
            "data": {
                "movement_id": self.movements[s.movement],
                "warehouse_id": self.warehouses[s.warehouse],
                "product_id": self.products[s.product],
                "timestamp": format!("2025-01-01T0{}:00:00Z", s.hour),
                "event": if s.departure { "departure" } else { "arrival" },
                "quantity": s.quantity,
            }
        });
        MovementEvent::from_structured(message.to_string().as_bytes()).unwrap()
    }
}

fn label(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Applied { .. } => "applied".into(),
        Outcome::Duplicate { .. } => "duplicate".into(),
        Outcome::Rejected { reason, .. } => format!("rejected:{reason}"),
    }
}

impl Model {
    /// What the model holds of `product` over all warehouses, and in
    /// movements that departed and have not arrived, nor were reversed or
    /// written off.
    fn product_figures(&self, product: usize) -> (i64, i64) {
        let total = self
            .stock
            .iter()
            .filter(|((_, p), _)| *p == product)
            .map(|(_, q)| q)
            .sum();
        let in_transit = self
            .movements
            .iter()
            .filter(|(m, (p, ..))| *p == product && self.in_transit(**m))
            .map(|(_, (_, departure, _))| departure.unwrap().1)
            .sum();
        (total, in_transit)
    }
}

/// After a batch: each pair's history is in the ledger's order, each
/// `stock_after` is the one before plus the delta, and it ends at the
/// pair's stock; the product figures are the model's.
async fn check_history_and_totals(app: &TestApp, ids: &Ids, model: &Model) {
    for (w, &warehouse) in ids.warehouses.iter().enumerate() {
        for (p, &product) in ids.products.iter().enumerate() {
            let history = reads::history(&app.pool, warehouse, product, None, 1000)
                .await
                .unwrap();
            let mut replayed = 0i64;
            let mut last_seq = 0;
            for item in &history {
                assert!(item.seq > last_seq, "history in the ledger's order");
                last_seq = item.seq;
                replayed += item.delta;
                assert_eq!(item.stock_after, replayed, "{item:?}");
            }
            let want = model.stock.get(&(w, p)).copied().unwrap_or(0);
            assert_eq!(
                replayed, want,
                "the history of pair ({w}, {p}) replays to its stock"
            );
            let now = reads::stock(&app.pool, warehouse, product)
                .await
                .unwrap()
                .quantity;
            assert_eq!(now, want);
        }
    }
    for (p, &product) in ids.products.iter().enumerate() {
        let figures = reads::product_stock(&app.pool, product, None, 1000)
            .await
            .unwrap();
        assert_eq!(
            (figures.total, figures.in_transit),
            model.product_figures(p),
            "product {p}"
        );
    }
}

async fn check(app: &TestApp, ledger: &Ledger, steps: Vec<Op>, cuts: Vec<usize>) {
    let ids = Ids::new();
    let mut model = Model::default();
    let mut expected = Vec::new();

    let mut actual = Vec::new();
    // Each batch's moment and the model's stock after it.
    let mut moments: Vec<(DateTime<Utc>, ModelStock)> = Vec::new();
    let before = Utc::now() - chrono::Duration::seconds(1);
    let mut done = 0;
    let mut cuts = cuts.into_iter().cycle();
    while done < steps.len() {
        let n = cuts.next().unwrap().min(steps.len() - done);
        // A closing's entries are built from the movement as it stands
        // before it, as the API builds them; each takes its label.
        let mut batch = Vec::new();
        for op in &steps[done..done + n] {
            let events = ids.events(*op, &model);
            let label = model.apply_op(*op);
            expected.extend(std::iter::repeat_n(label, events.len()));
            batch.extend(events);
        }
        done += n;
        if batch.is_empty() {
            continue;
        }
        let applied = ledger.apply(&batch).await.unwrap();
        actual.extend(applied.outcomes.iter().map(label));
        moments.push((applied.processed_at, model.stock.clone()));
        check_history_and_totals(app, &ids, &model).await;
    }
    assert_eq!(actual, expected, "outcomes for {steps:?}");

    // Past figures never change, so every moment is checked at the end. A
    // moment answers the last batch whose moment is at or before it.
    for (w, &warehouse) in ids.warehouses.iter().enumerate() {
        for (p, &product) in ids.products.iter().enumerate() {
            let then = reads::stock_as_of(&app.pool, warehouse, product, before, i64::MAX)
                .await
                .unwrap()
                .expect("an unbounded walk reaches every moment")
                .quantity;
            assert_eq!(then, 0, "nothing before the first batch");
            for (t, _) in &moments {
                let (_, stock) = moments.iter().rev().find(|(u, _)| u <= t).unwrap();
                let want = stock.get(&(w, p)).copied().unwrap_or(0);
                let then = reads::stock_as_of(&app.pool, warehouse, product, *t, i64::MAX)
                    .await
                    .unwrap()
                    .expect("an unbounded walk reaches every moment")
                    .quantity;
                assert_eq!(then, want, "pair ({w}, {p}) as of {t}");
            }
        }
    }

    for (w, &warehouse) in ids.warehouses.iter().enumerate() {
        for (p, &product) in ids.products.iter().enumerate() {
            let quantity = reads::stock(&app.pool, warehouse, product)
                .await
                .unwrap()
                .quantity;
            assert_eq!(quantity, model.stock.get(&(w, p)).copied().unwrap_or(0));
        }
    }
    check_movements(app, &ids, &model).await;
    let disagreements = warehouse_stock::ledger::verify::verify(&app.pool, 10)
        .await
        .unwrap();
    assert_eq!(disagreements, Vec::<String>::new());
}

/// Each movement as stored is the model's: its halves, what closed it,
/// and so its status.
async fn check_movements(app: &TestApp, ids: &Ids, model: &Model) {
    for (m, &movement) in ids.movements.iter().enumerate() {
        let stored = reads::movement(&app.pool, movement).await.unwrap();
        match (model.movements.get(&m), stored) {
            (None, None) => {}
            (Some((product, departure, arrival)), Some(view)) => {
                assert_eq!(view.product_id, ids.products[*product]);
                assert_eq!(
                    view.source_warehouse_id,
                    departure.map(|(w, _)| ids.warehouses[w])
                );
                assert_eq!(
                    view.destination_warehouse_id,
                    arrival.map(|(w, _)| ids.warehouses[w])
                );
                assert_eq!(
                    view.departure_quantity.map(i64::from),
                    departure.map(|(_, q)| q)
                );
                assert_eq!(
                    view.arrival_quantity.map(i64::from),
                    arrival.map(|(_, q)| q)
                );
                let closed = |reversal| model.closed.get(&(m, reversal)).map(|c| ids.closings[c.0]);
                assert_eq!(view.reversal.map(|r| r.id), closed(true));
                assert_eq!(view.write_off.map(|w| w.id), closed(false));
                let status = match (departure, arrival) {
                    _ if closed(true).is_some() => MovementStatus::Reversed,
                    (Some(_), Some(_)) => MovementStatus::Completed,
                    (Some(_), None) if closed(false).is_some() => MovementStatus::WrittenOff,
                    (Some(_), None) => MovementStatus::InTransit,
                    _ => MovementStatus::Arrived,
                };
                assert_eq!(view.status, status, "movement {m}");
            }
            (expected, stored) => panic!("movement {m}: model {expected:?}, stored {stored:?}"),
        }
    }
}

#[test]
fn random_batches_end_where_one_by_one_application_ends() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (app, ledger) = runtime.block_on(async {
        let app = spawn_app().await;
        let ledger = app.ledger(&redis_url()).await;
        (app, ledger)
    });
    let config = ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    };
    proptest!(config, |(steps in prop::collection::vec(op(), 1..40),
                        cuts in prop::collection::vec(1..8usize, 1..6))| {
        runtime.block_on(check(&app, &ledger, steps, cuts));
    });
}
