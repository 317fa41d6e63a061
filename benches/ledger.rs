//! Micro-benchmarks of the hot path: parsing one message, the in-memory
//! rules over a 1,000-event batch, and a 1,000-event batch applied in
//! PostgreSQL (needs the local PostgreSQL that scripts/setup.sh starts;
//! BENCH_DATABASE_URL overrides it).

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use warehouse_stock::cache::{Cache, CacheSettings};
use warehouse_stock::config::Settings;
use warehouse_stock::domain::{LedgerState, MovementEvent, apply_batch};
use warehouse_stock::ledger::Ledger;
use warehouse_stock::produce::generator::{Generator, GeneratorConfig};
use warehouse_stock::telemetry::Metrics;

fn stream(count: usize, seed: u64) -> impl Iterator<Item = MovementEvent> {
    Generator::new(GeneratorConfig {
        count,
        warehouses: 50,
        products: 2000,
        departure_share: 0.25,
        duplicate_share: 0.05,
        correction_share: 0.0,
        seed,
    })
    .map(|r| MovementEvent::from_structured(r.event.to_string().as_bytes()).unwrap())
}

fn parse(c: &mut Criterion) {
    let message = br#"{"id":"b3b53031-e83a-4654-87f5-b6b6fb09fd99","source":"WH-3322","specversion":"1.0","type":"ru.retail.warehouses.movement","datacontenttype":"application/json","dataschema":"ru.retail.warehouses.movement.v1.0","time":1737439421623,"subject":"WH-3322:DEPARTURE","destination":"ru.retail.warehouses","data":{"movement_id":"c6290746-790e-43fa-8270-014dc90e02e0","warehouse_id":"25718666-6af6-4281-b5a6-3016e36fa557","timestamp":"2025-02-18T12:12:56Z","event":"departure","product_id":"4705204f-498f-4f96-b4ba-df17fb56bf55","quantity":100}}"#;
    c.bench_function("parse and validate one message", |b| {
        b.iter(|| MovementEvent::from_structured(black_box(message)).unwrap())
    });
}

fn rules(c: &mut Criterion) {
    let events: Vec<MovementEvent> = stream(1000, 1).collect();
    c.bench_function("rules: apply a 1,000-event batch in memory", |b| {
        b.iter_batched(
            LedgerState::default,
            |mut state| apply_batch(&mut state, black_box(&events), chrono::Utc::now()),
            BatchSize::SmallInput,
        )
    });
}

fn postgres(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // A database of its own each run (created on connect), so tables of an
    // earlier build never meet this build's migrations; scripts/test.sh
    // drops the ws_test_* databases that runs leave behind.
    let url = std::env::var("BENCH_DATABASE_URL").unwrap_or_else(|_| {
        format!(
            "postgres://postgres@127.0.0.1:5432/ws_test_bench_{}",
            uuid::Uuid::new_v4().simple()
        )
    });
    let settings = Settings::from_lookup(|name| match name {
        "DATABASE_URL" => Some(url.clone()),
        _ => None,
    })
    .unwrap();
    let ledger = runtime.block_on(async {
        let pool = warehouse_stock::startup::connect_database(&settings)
            .await
            .expect("PostgreSQL for the bench (run scripts/setup.sh)");
        let metrics = Metrics::new();
        let cache = Cache::new(
            &CacheSettings {
                url: settings.cache.url.clone(),
                prefix: "warehouse-stock:bench:".into(),
                ttl_seconds: 300,
                op_timeout: std::time::Duration::from_millis(50),
            },
            metrics.clone(),
        )
        .unwrap();
        Ledger::new(pool, cache, metrics)
    });
    // One long stream, so every iteration applies fresh events.
    let mut events = stream(usize::MAX, rand_seed());
    let mut next = move || events.by_ref().take(1000).collect::<Vec<_>>();
    let mut group = c.benchmark_group("postgres");
    group.sample_size(30);
    group.bench_function("apply a 1,000-event batch in PostgreSQL", |b| {
        b.iter_batched(
            &mut next,
            |batch| runtime.block_on(ledger.apply(&batch)).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

criterion_group!(benches, parse, rules, postgres);
criterion_main!(benches);
