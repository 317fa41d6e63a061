//! The monitoring files under `deploy/`: the Prometheus configuration and
//! alerting rules pass promtool and their unit tests, every metric a panel or
//! a rule reads is one the service exports, and a real Prometheus scraping a
//! real service fires an alert on a fault the test causes.

use crate::broker::{kafka_settings, produce_raw};
use crate::fixtures::{PrivateRedis, free_port, wait_for_port};
use crate::helpers::eventually;
use crate::helpers::{Ev, spawn_app_from, test_settings};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use uuid::Uuid;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// Runs promtool (Debian's `prometheus` package; `.ci/run` installs it).
fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(deploy("prometheus"))
        .output()
        .expect("promtool (scripts/setup.sh installs Debian's prometheus package)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_prometheus_config_and_rules_pass_promtool_and_their_unit_tests() {
    promtool(&["check", "config", "prometheus.yml"]);
    let rules = promtool(&["check", "rules", "alerts.yml"]);
    assert!(rules.contains("SUCCESS"), "{rules}");
    let tested = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn every_alerting_rule_waits_with_for_and_carries_a_runbook() {
    let rules: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap())
            .unwrap();
    let mut seen = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().expect("only alerting rules");
            assert!(rule["for"].as_str().is_some(), "{name} has no for:");
            assert!(
                rule["annotations"]["runbook"]
                    .as_str()
                    .is_some_and(|r| r.len() > 40),
                "{name} has no runbook"
            );
            assert!(rule["labels"]["severity"].as_str().is_some(), "{name}");
            seen += 1;
        }
    }
    assert!(seen >= 10, "{seen} rules");
}

/// The words of a PromQL expression that name metrics: what is left once
/// label matchers, ranges, strings, grouping clauses, functions and
/// keywords are taken out.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const NOT_METRICS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "rate",
        "increase",
        "deriv",
        "histogram_quantile",
        "label_values",
        "by",
        "on",
        "ignoring",
        "without",
        "and",
        "or",
        "unless",
        "offset",
        "instance",
    ];
    let mut plain = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    for c in expr.chars() {
        match c {
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace == 0 && depth_bracket == 0 => plain.push(c),
            _ => {}
        }
        if matches!(c, '{' | '}' | '[' | ']') {
            plain.push(' ');
        }
    }
    // Grouping labels: `by (a, b)` and `on (a)`.
    let grouping = regex::Regex::new(r"\b(by|on|ignoring|without)\s*\([^)]*\)").unwrap();
    let plain = grouping.replace_all(&plain, " ");
    let word = regex::Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*").unwrap();
    word.find_iter(&plain)
        .map(|m| m.as_str().to_string())
        .filter(|w| !NOT_METRICS.contains(&w.as_str()))
        .collect()
}

#[test]
fn the_metric_name_reader_finds_metrics_and_nothing_else() {
    let names = metric_names(
        r#"sum by (instance, le) (rate(ledger_batch_duration_seconds_bucket{instance=~"$instance"}[5m])) / on (instance) up > 0.5"#,
    );
    assert_eq!(
        names,
        BTreeSet::from([
            "ledger_batch_duration_seconds_bucket".to_string(),
            "up".to_string()
        ])
    );
}

/// Every expression of the rules and of the dashboard's panels.
fn monitored_expressions() -> Vec<String> {
    let mut exprs = Vec::new();
    let rules: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap())
            .unwrap();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            exprs.push(rule["expr"].as_str().unwrap().to_string());
        }
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/dashboards/warehouse-stock.json")).unwrap(),
    )
    .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    exprs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_a_panel_or_a_rule_reads_is_exported_after_some_traffic() {
    let settings = kafka_settings(1, &[("KAFKA_BATCH_MAX_WAIT_MS", "10")]);
    let app = spawn_app_from(settings.clone()).await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    // Applied, rejected, a cache miss and a hit, and one dead letter.
    app.post_event(&Ev::new(w, p, 5).arrival()).await;
    app.post_event(&Ev::new(w, p, 50).departure()).await;
    app.stock(w, p).await;
    app.stock(w, p).await;
    produce_raw(&settings, &[("k", b"{ not json")]).await;
    eventually("the dead letter and the lag", || async {
        let text = app.metrics_text().await;
        text.contains("kafka_dlq_messages_total{") && text.contains("kafka_consumer_lag{")
    })
    .await;

    let text = app.metrics_text().await;
    let exported: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    let exprs = monitored_expressions();
    assert!(exprs.len() > 20, "{} expressions", exprs.len());
    for expr in &exprs {
        for name in metric_names(expr) {
            // `up` is Prometheus's own, one per scrape target.
            if name != "up" {
                assert!(
                    exported.contains(name.as_str()),
                    "{name} (in {expr}) is not exported; exported: {exported:?}"
                );
            }
        }
    }
}

/// A Prometheus server of the test's own, scraping one target every second.
struct PrivatePrometheus {
    child: Child,
    dir: PathBuf,
    address: String,
}

impl PrivatePrometheus {
    /// Rules are the repository's own, with every `for:` shortened to
    /// `for_` so the test need not wait minutes; the expressions, labels and
    /// annotations are unchanged.
    fn start(target: &str, for_: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ws-prom-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
        let shortened = regex::Regex::new(r"(?m)^(\s+for:)\s*\S+$")
            .unwrap()
            .replace_all(&rules, format!("$1 {for_}"));
        assert_ne!(shortened, rules, "the rules have for: clauses");
        std::fs::write(dir.join("alerts.yml"), shortened.as_ref()).unwrap();
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - alerts.yml\n\
                 scrape_configs:\n  - job_name: warehouse-stock\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .expect("prometheus (scripts/setup.sh installs Debian's prometheus package)");
        wait_for_port(port, "private prometheus");
        PrivatePrometheus {
            child,
            dir,
            address: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits until the server has loaded its rules and serves its API: its
    /// port opens earlier, and until then the API answers 503 in plain text.
    async fn ready(&self) {
        eventually("Prometheus to be ready", || async {
            reqwest::get(format!("{}/-/ready", self.address))
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
    }

    async fn api(&self, path: &str) -> Value {
        let response = reqwest::get(format!("{}{path}", self.address))
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// `(alertname, state)` of every pending or firing alert.
    async fn alerts(&self) -> BTreeSet<(String, String)> {
        let body = self.api("/api/v1/alerts").await;
        body["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap().to_string(),
                    a["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The state (`pending` or `firing`) of the alert `name`, if it is active.
    async fn alert(&self, name: &str) -> Option<String> {
        self.alerts()
            .await
            .into_iter()
            .find(|(alert, _)| alert == name)
            .map(|(_, state)| state)
    }

    /// The newest value of an instant query, if it has one.
    async fn value(&self, query: &str) -> Option<f64> {
        let body = self
            .api(&format!("/api/v1/query?query={}", urlencode(query)))
            .await;
        body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for PrivatePrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_fires_redis_down_while_redis_is_stopped_and_only_then() {
    let mut redis = PrivateRedis::start();
    let app = spawn_app_from(test_settings(&[("REDIS_URL", &redis.url())])).await;
    let target = app.address.trim_start_matches("http://").to_string();
    let prometheus = PrivatePrometheus::start(&target, "3s");
    prometheus.ready().await;

    // A few evaluations with Redis up, and no alert about it.
    eventually("five scrapes with Redis up", || async {
        prometheus
            .value(r#"sum_over_time(dependency_up{dependency="redis"}[1m])"#)
            .await
            .is_some_and(|n| n >= 5.0)
    })
    .await;
    assert_eq!(prometheus.alert("RedisDown").await, None);

    redis.stop();
    eventually("RedisDown to fire", || async {
        prometheus.alert("RedisDown").await.as_deref() == Some("firing")
    })
    .await;
    assert_eq!(
        prometheus.alert("DatabaseUnreachable").await,
        None,
        "only what is down alerts"
    );

    redis.restart();
    eventually("RedisDown to resolve", || async {
        prometheus.alert("RedisDown").await.is_none()
    })
    .await;
}
