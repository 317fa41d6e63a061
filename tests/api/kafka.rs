//! The consumer against the real Kafka-protocol broker. Each test has its
//! own topics, consumer group and database. Producers batch as in
//! production, so restarts resume from offsets inside multi-record batches.

use crate::broker::{
    applied_count, committed_total, generated, kafka_settings, produce_generated, produce_raw,
    read_dead_letters,
};
use crate::fixtures::ServiceProcess;
use crate::helpers::{Ev, TestPool, eventually, metric_value, spawn_app_from};
use rdkafka::Message;
use rdkafka::message::Headers;
use serde_json::json;
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;
use warehouse_stock::config::Settings;
use warehouse_stock::ledger::reads;
use warehouse_stock::produce::generator::{Generator, GeneratorConfig};

/// The stock the generated stream must lead to, plus extra arrivals.
pub(crate) fn expected_stock(config: &GeneratorConfig) -> HashMap<(Uuid, Uuid), i64> {
    let mut generator = Generator::new(config.clone());
    generator.by_ref().for_each(drop);
    generator
        .expected_stock()
        .into_iter()
        .map(|(w, p, q)| ((w, p), q))
        .collect()
}

pub(crate) fn unique_events(config: &GeneratorConfig) -> i64 {
    let mut generator = Generator::new(config.clone());
    generator.by_ref().for_each(drop);
    (generator.produced() - generator.duplicates()) as i64
}

/// The expected stock, and the tables agree with the audit log.
pub(crate) async fn assert_stock(pool: &PgPool, expected: &HashMap<(Uuid, Uuid), i64>) {
    let diff = warehouse_stock::ledger::verify::verify(pool, 20)
        .await
        .unwrap();
    assert!(diff.is_empty(), "verify found: {diff:#?}");
    for (&(w, p), &q) in expected {
        let quantity = reads::stock(pool, w, p).await.unwrap().quantity;
        assert_eq!(quantity, q, "stock of {w}/{p}");
    }
}

pub(crate) async fn pool_of(settings: &Settings) -> TestPool {
    TestPool::connect(settings).await
}

/// Waits until `applied` events are in the audit log and every produced
/// record's offset is committed. Offsets are read only once the events are
/// in, so that the reads (each a client of the group) stay out of the way
/// while members join.
pub(crate) async fn until_done(settings: &Settings, pool: &PgPool, produced: i64, applied: i64) {
    eventually("every record applied", || async {
        let now = applied_count(pool).await;
        assert!(now <= applied, "overshoot: applied {now} of {applied}");
        now == applied
    })
    .await;
    eventually("every offset committed", || async {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        committed_total(settings) == produced
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_with_five_percent_duplicates_end_in_the_exact_stock() {
    let settings = kafka_settings(3, &[]);
    let app = spawn_app_from(settings.clone()).await;
    let config = generated(10_000, 11, 0.05);

    let produced = produce_generated(&settings, config.clone(), false).await;

    let unique = unique_events(&config);
    assert_eq!(produced.sent as i64 - produced.duplicates as i64, unique);
    // Every record accounted for: all offsets committed, the unique events
    // applied, the re-sends seen as duplicates, nothing rejected.
    until_done(&settings, &app.pool, 10_000, unique).await;
    let rejected: i64 =
        sqlx::query_scalar("SELECT count(*) FROM event_log WHERE outcome = 'rejected'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(rejected, 0);
    let expected = expected_stock(&config);
    assert_stock(&app.pool, &expected).await;
    let text = app.metrics_text().await;
    let kafka = |outcome| {
        metric_value(
            &text,
            "events_total",
            &[("source", "kafka"), ("outcome", outcome)],
        )
    };
    assert_eq!(
        metric_value(&text, "kafka_messages_consumed_total", &[]),
        10_000.0
    );
    assert_eq!(kafka("applied"), unique as f64);
    assert_eq!(kafka("duplicate"), produced.duplicates as f64);
    assert_eq!(kafka("rejected"), 0.0);
    // The offsets reached the broker through background commits, which the
    // consumer's context counted, and none failed.
    assert!(
        metric_value(&text, "kafka_offset_commits_total", &[("result", "ok")]) >= 1.0,
        "background commits are counted"
    );
    assert_eq!(
        metric_value(&text, "kafka_offset_commits_total", &[("result", "error")]),
        0.0
    );
    // And over HTTP, through the cache.
    for (&(w, p), &q) in expected.iter().take(20) {
        assert_eq!(app.stock(w, p).await, q);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_mode_records_are_applied_like_structured_ones() {
    let settings = kafka_settings(2, &[]);
    let app = spawn_app_from(settings.clone()).await;
    let config = generated(2_000, 12, 0.05);

    produce_generated(&settings, config.clone(), true).await;

    until_done(&settings, &app.pool, 2_000, unique_events(&config)).await;
    assert_stock(&app.pool, &expected_stock(&config)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_mid_stream_then_a_restart_of_the_same_static_member_applies_everything_exactly_once()
 {
    // The restarted process is the same instance (static membership), as a
    // supervisor restarting a crashed pod would run it: it takes its
    // partitions back at once, without waiting for the old session to end.
    let settings = kafka_settings(
        3,
        &[
            ("KAFKA_BATCH_SIZE", "50"),
            ("KAFKA_GROUP_INSTANCE_ID", "instance-1"),
        ],
    );
    let config = generated(20_000, 13, 0.05);
    produce_generated(&settings, config.clone(), false).await;
    let unique = unique_events(&config);
    let pool = pool_of(&settings).await;

    let first = ServiceProcess::start(&settings).await;
    eventually("some records applied", || async {
        applied_count(&pool).await >= 2_000
    })
    .await;
    first.kill_9();
    let at_kill = applied_count(&pool).await;
    assert!(
        at_kill < unique,
        "killed mid-stream ({at_kill} of {unique})"
    );

    let _second = ServiceProcess::start(&settings).await;
    until_done(&settings, &pool, 20_000, unique).await;
    assert_stock(&pool, &expected_stock(&config)).await;
}

/// Records received by a service process, from its `/metrics`.
async fn consumed_by(service: &ServiceProcess) -> f64 {
    let text = reqwest::get(format!("{}/metrics", service.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric_value(&text, "kafka_messages_consumed_total", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_member_killed_with_9_hands_its_partitions_to_the_survivor_which_applies_everything()
 {
    // No static membership: the group must notice the dead member by its
    // session expiring (10 s) and give its partitions to the other one.
    let settings = kafka_settings(3, &[("KAFKA_BATCH_SIZE", "100")]);
    // Thirty warehouses, so that the keys reach every partition.
    let wide = |count, seed| GeneratorConfig {
        warehouses: 30,
        ..generated(count, seed, 0.05)
    };
    let (before, after) = (wide(6_000, 31), wide(6_000, 32));
    let pool = pool_of(&settings).await;
    let doomed = ServiceProcess::start(&settings).await;
    let survivor = ServiceProcess::start(&settings).await;

    produce_generated(&settings, before.clone(), false).await;
    eventually("both members to be consuming", || async {
        consumed_by(&doomed).await > 0.0 && consumed_by(&survivor).await > 0.0
    })
    .await;
    until_done(&settings, &pool, 6_000, unique_events(&before)).await;
    let survivor_before = consumed_by(&survivor).await;
    doomed.kill_9();

    // Records for every partition, the dead member's included: only a
    // takeover applies them.
    produce_generated(&settings, after.clone(), false).await;
    let unique = unique_events(&before) + unique_events(&after);
    until_done(&settings, &pool, 12_000, unique).await;
    // Applied in full with only the survivor alive: it took over. It may
    // have received a few records twice around the rebalance, never fewer.
    let received = consumed_by(&survivor).await - survivor_before;
    assert!(
        received >= 6_000.0,
        "the survivor received the whole second stream ({received})"
    );
    let mut expected = expected_stock(&before);
    for (pair, quantity) in expected_stock(&after) {
        *expected.entry(pair).or_default() += quantity;
    }
    assert_stock(&pool, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_mid_stream_commits_the_in_flight_batch_so_a_restart_has_nothing_to_redo() {
    let settings = kafka_settings(3, &[("KAFKA_BATCH_SIZE", "50")]);
    // No duplicates: every record applies once, so committed offsets and
    // applied events must match exactly at the stop.
    let config = generated(20_000, 14, 0.0);
    produce_generated(&settings, config.clone(), false).await;
    let pool = pool_of(&settings).await;

    let service = ServiceProcess::start(&settings).await;
    eventually("some records applied", || async {
        applied_count(&pool).await >= 2_000
    })
    .await;
    let status = service.terminate().expect("exits within 10 s of SIGTERM");

    assert!(status.success(), "{status}");
    let applied = applied_count(&pool).await;
    assert!(applied < 20_000, "stopped mid-stream");
    assert_eq!(
        committed_total(&settings),
        applied,
        "every applied record is committed, and nothing else"
    );

    let _restart = ServiceProcess::start(&settings).await;
    until_done(&settings, &pool, 20_000, 20_000).await;
    assert_stock(&pool, &expected_stock(&config)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_and_rejected_records_go_to_the_dead_letter_topic_and_the_partition_moves_on() {
    let settings = kafka_settings(1, &[]);
    let app = spawn_app_from(settings.clone()).await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let arrival = Ev::new(w, p, 5).arrival().to_string();
    let too_much = Ev::new(w, p, 50).departure().to_string();
    let later = Ev::new(w, p, 2).arrival().to_string();
    let first = Ev::new(w, p, 4);
    // The same movement and event as `first`, with another quantity.
    let conflicting = Ev::new(w, p, 9)
        .movement(first.movement)
        .arrival()
        .to_string();
    let first = first.arrival().to_string();
    let not_an_event = json!({"id": "x", "data": {"quantity": 0}}).to_string();
    let garbage: &[u8] = b"\x00\xff\xfe not json";

    produce_raw(
        &settings,
        &[
            ("k0", arrival.as_bytes()),
            ("k1", garbage),
            ("k2", not_an_event.as_bytes()),
            ("k3", too_much.as_bytes()),
            ("k4", later.as_bytes()),
            ("k5", first.as_bytes()),
            ("k6", conflicting.as_bytes()),
        ],
    )
    .await;

    // Applied: k0, k4, k5; rejected into the log: k3, k6.
    until_done(&settings, &app.pool, 7, 3).await;
    assert_eq!(
        app.stock(w, p).await,
        11,
        "records after the bad ones were applied"
    );
    let letters = read_dead_letters(&settings, 4);
    let conflict = letters.last().unwrap();
    let fields = conflict
        .headers()
        .unwrap()
        .iter()
        .find(|h| h.key == "dlq_error_fields")
        .and_then(|h| h.value);
    assert_eq!(
        fields,
        Some(&b"quantity"[..]),
        "the conflict names what differs"
    );
    let summary: Vec<(String, String, Vec<u8>, String)> = letters
        .iter()
        .map(|m| {
            let header = |name: &str| {
                m.headers()
                    .unwrap()
                    .iter()
                    .find(|h| h.key == name)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).to_string())
                    .unwrap_or_default()
            };
            assert_eq!(header("dlq_original_topic"), settings.kafka.topic);
            assert_eq!(header("dlq_original_partition"), "0");
            assert!(!header("dlq_error_detail").is_empty());
            (
                String::from_utf8_lossy(m.key().unwrap()).to_string(),
                header("dlq_error_code"),
                m.payload().unwrap().to_vec(),
                header("dlq_original_offset"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "k1".into(),
                "malformed_json".into(),
                garbage.to_vec(),
                "1".into()
            ),
            (
                "k2".into(),
                "invalid_event".into(),
                not_an_event.into_bytes(),
                "2".into()
            ),
            (
                "k3".into(),
                "insufficient_stock".into(),
                too_much.into_bytes(),
                "3".into()
            ),
            (
                "k6".into(),
                "conflicting_duplicate".into(),
                conflicting.into_bytes(),
                "6".into()
            ),
        ]
    );
    // The rejected one is also in the audit log.
    let (_, rejections) = app.get("/api/v1/rejections").await;
    assert_eq!(rejections["items"][0]["reason"], "insufficient_stock");
    assert_eq!(app.metric("kafka_dlq_messages_total", &[]).await, 4.0);
    assert_eq!(
        app.metric("kafka_dlq_messages_total", &[("code", "malformed_json")])
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_larger_than_a_whole_fetch_is_dead_lettered_and_the_records_around_it_are_applied()
{
    // The consumer asks for 512 KiB per fetch; a record larger than that
    // (the broker takes up to 1 MB) must still arrive, or its partition
    // would stop at it.
    let settings = kafka_settings(1, &[]);
    let app = spawn_app_from(settings.clone()).await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    let before = Ev::new(w, p, 3).arrival().to_string();
    let mut huge = Ev::new(w, p, 100).arrival();
    huge["padding"] = json!("x".repeat(700 * 1024));
    let huge = huge.to_string();
    let after = Ev::new(w, p, 4).arrival().to_string();
    produce_raw(
        &settings,
        &[
            ("k0", before.as_bytes()),
            ("k1", huge.as_bytes()),
            ("k2", after.as_bytes()),
        ],
    )
    .await;

    until_done(&settings, &app.pool, 3, 2).await;
    assert_eq!(app.stock(w, p).await, 7, "both records around it applied");
    let letters = read_dead_letters(&settings, 1);
    let code = letters[0]
        .headers()
        .unwrap()
        .iter()
        .find(|h| h.key == "dlq_error_code")
        .and_then(|h| h.value);
    assert_eq!(code, Some(&b"payload_too_large"[..]));
    assert_eq!(letters[0].payload().unwrap().len(), huge.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_in_one_group_and_concurrent_webhook_posts_stay_exact() {
    let settings = kafka_settings(3, &[("KAFKA_BATCH_SIZE", "100")]);
    let first = spawn_app_from(settings.clone()).await;
    let second = spawn_app_from(settings.clone()).await;
    // Movements only: a count sets its pair's stock, so the sum below (the
    // stream's model plus the webhook's arrivals) holds only where nothing
    // but movements and adjustments change the pairs.
    let config = GeneratorConfig {
        correction_share: 0.0,
        ..generated(10_000, 15, 0.05)
    };
    let mut expected = expected_stock(&config);
    let pairs: Vec<(Uuid, Uuid)> = expected.keys().copied().collect();

    let producing = {
        let settings = settings.clone();
        let config = config.clone();
        tokio::spawn(async move { produce_generated(&settings, config, false).await })
    };
    // Meanwhile, arrivals over the webhook of both instances, on the same
    // (warehouse, product) pairs the stream is moving.
    let mut posts = Vec::new();
    for i in 0..300 {
        let (w, p) = pairs[i % pairs.len()];
        let app = if i % 2 == 0 { &first } else { &second };
        let client = app.client.clone();
        let url = format!("{}/api/v1/kafka/webhook", app.address);
        let message = Ev::new(w, p, 1).arrival();
        posts.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&message)
                .send()
                .await
                .unwrap()
                .status()
        }));
        *expected.get_mut(&(w, p)).unwrap() += 1;
    }
    for post in posts {
        assert_eq!(post.await.unwrap(), reqwest::StatusCode::OK);
    }
    producing.await.unwrap();

    until_done(&settings, &first.pool, 10_000, unique_events(&config) + 300).await;
    assert_stock(&first.pool, &expected).await;
    for (&(w, p), &q) in expected.iter().take(20) {
        assert_eq!(
            second.stock(w, p).await,
            q,
            "the other instance reads the same"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_keeps_failing_makes_readiness_say_stuck_until_it_applies() {
    let settings = kafka_settings(1, &[("KAFKA_STUCK_AFTER_SECONDS", "2")]);
    let app = spawn_app_from(settings.clone()).await;
    // The disk is full, as PostgreSQL tells it (53100), for this movement's
    // entries: an error no retry cures until someone acts.
    let event = Ev::new(Uuid::new_v4(), Uuid::new_v4(), 7);
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.movement_id = '{}' THEN
                 RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER full_disk BEFORE INSERT ON event_log
             FOR EACH ROW EXECUTE FUNCTION full_disk();",
        event.movement
    ))
    .execute(&app.pool)
    .await
    .unwrap();
    let body = serde_json::to_vec(&event.arrival()).unwrap();
    produce_raw(&settings, &[("k", &body)]).await;

    eventually("readiness to say stuck", || async {
        let (status, body) = app.get("/health/ready").await;
        status == reqwest::StatusCode::SERVICE_UNAVAILABLE && body["components"]["kafka"] == "stuck"
    })
    .await;
    let failing = app.metric("kafka_batch_failing_seconds", &[]).await;
    assert!(failing >= 2.0, "failing for {failing} s by the metric");

    // The operator frees the disk: the same batch applies, and all is well.
    sqlx::raw_sql("DROP TRIGGER full_disk ON event_log; DROP FUNCTION full_disk();")
        .execute(&app.pool)
        .await
        .unwrap();
    eventually("the batch to apply", || async {
        app.stock(event.warehouse, event.product).await == 7
    })
    .await;
    let (status, body) = app.get("/health/ready").await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body["components"]["kafka"], "ok");
    assert_eq!(app.metric("kafka_batch_failing_seconds", &[]).await, 0.0);
}
