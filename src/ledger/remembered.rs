//! Stock quantities this process committed recently.
//!
//! A batch's first attempt takes the quantities of the (warehouse, product)
//! pairs it knows from here and reads only the rest from PostgreSQL; with
//! a steady stream, that is most of them, and the stock read was about a
//! fifth of the ledger's PostgreSQL time per event.
//!
//! A remembered quantity is a belief, not a fact: another instance, or a
//! batch of this one that committed in between, may have changed the row.
//! That costs a retry, never a wrong decision, because the write already
//! compares every stock row a decision relied on with the quantity the
//! decision saw (see [`super::apply`]); a batch that took a quantity from
//! here also has the rows of its duplicates compared, since a duplicate
//! reports the current stock. Retries read everything again.
//!
//! Memory is bounded by two generations: when the current one is full it
//! becomes the previous one and the one before is dropped, so pairs in
//! steady use stay and the rest age out.
//!
//! A pair is remembered under a 64-bit keyed hash of it, not its 32 bytes:
//! a slot takes 17 bytes instead of 41. Two pairs that shared a hash would
//! share a belief, which the write's check refutes like any stale one; with
//! a key drawn per process, no caller can choose pairs that collide.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use uuid::Uuid;

pub(super) type Pair = (Uuid, Uuid);

/// Pairs per generation. A full generation has 262,144 slots of 17 bytes
/// (4.5 MB), so both together stay under 10 MB.
const GENERATION: usize = 131_072;

#[derive(Default)]
pub(super) struct RememberedStock {
    /// Keys the hash a pair is remembered under.
    key: std::collections::hash_map::RandomState,
    generations: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: HashMap<u64, i64>,
    previous: HashMap<u64, i64>,
}

impl Generations {
    fn insert(&mut self, pair: u64, quantity: i64) {
        if self.current.len() >= GENERATION && !self.current.contains_key(&pair) {
            self.previous = std::mem::take(&mut self.current);
            self.current.reserve(GENERATION);
        }
        self.current.insert(pair, quantity);
    }
}

impl RememberedStock {
    /// The remembered quantity of each pair of `pairs` that has one.
    pub(super) fn recall<'a>(
        &self,
        pairs: impl IntoIterator<Item = &'a Pair>,
    ) -> HashMap<Pair, i64> {
        let mut g = self.generations.lock().expect("remembered stock lock");
        let mut known = HashMap::new();
        for pair in pairs {
            let hash = self.key.hash_one(pair);
            if let Some(&quantity) = g.current.get(&hash) {
                known.insert(*pair, quantity);
            } else if let Some(quantity) = g.previous.remove(&hash) {
                // Still in use: it moves to the current generation.
                g.insert(hash, quantity);
                known.insert(*pair, quantity);
            }
        }
        known
    }

    /// Remembers the quantities a committed batch left (or saw).
    pub(super) fn remember<'a>(&self, stock: impl IntoIterator<Item = (&'a Pair, &'a i64)>) {
        let mut g = self.generations.lock().expect("remembered stock lock");
        for (pair, &quantity) in stock {
            g.insert(self.key.hash_one(pair), quantity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(n: u128) -> Pair {
        (Uuid::from_u128(n), Uuid::from_u128(n + 1))
    }

    #[test]
    fn a_remembered_quantity_is_recalled_and_an_unknown_pair_is_not() {
        let remembered = RememberedStock::default();
        remembered.remember([(&pair(1), &7)]);
        let known = remembered.recall(&[pair(1), pair(3)]);
        assert_eq!(known.get(&pair(1)), Some(&7));
        assert!(!known.contains_key(&pair(3)));
    }

    #[test]
    fn the_latest_quantity_wins() {
        let remembered = RememberedStock::default();
        remembered.remember([(&pair(1), &7)]);
        remembered.remember([(&pair(1), &2)]);
        assert_eq!(remembered.recall(&[pair(1)]).get(&pair(1)), Some(&2));
    }

    #[test]
    fn pairs_in_use_survive_two_generations_and_idle_ones_are_dropped() {
        let remembered = RememberedStock::default();
        remembered.remember([(&pair(u128::MAX - 10), &1), (&pair(u128::MAX - 20), &2)]);
        let fill = |from: u128| {
            for n in from..from + GENERATION as u128 {
                remembered.remember([(&pair(n * 2), &0)]);
            }
        };
        // The first fill pushes both into the previous generation; the
        // recall of one moves it back into the current one.
        fill(0);
        assert_eq!(remembered.recall(&[pair(u128::MAX - 10)]).len(), 1);
        fill(GENERATION as u128);
        let known = remembered.recall(&[pair(u128::MAX - 10), pair(u128::MAX - 20)]);
        assert_eq!(known.get(&pair(u128::MAX - 10)), Some(&1));
        assert!(!known.contains_key(&pair(u128::MAX - 20)));
    }
}
