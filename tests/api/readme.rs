//! The README's curl examples, run in order against a fresh service: each
//! answer must be the one printed beneath it.

use crate::helpers::spawn_app;
use serde_json::Value;
use std::process::Command;

/// One example: a curl command and the answer the README shows for it.
struct Example {
    command: String,
    answer: Value,
}

/// Every ```bash block of curl commands followed at once by a ```json block
/// holding one answer per command.
fn examples(readme: &str) -> Vec<Example> {
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```").filter(|l| !l.is_empty()) {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push((lang.to_string(), body.join("\n")));
        }
    }
    let mut out = Vec::new();
    for pair in blocks.windows(2) {
        let [(first, commands), (second, answers)] = pair else {
            unreachable!()
        };
        if first != "bash" || second != "json" || !commands.trim_start().starts_with("curl") {
            continue;
        }
        // A command starts on a line that starts with `curl`; its body may
        // run over several lines, inside quotes or after a `\`.
        let mut split: Vec<String> = Vec::new();
        for line in commands.lines() {
            match split.last_mut() {
                Some(last) if !line.starts_with("curl") => {
                    last.push('\n');
                    last.push_str(line);
                }
                _ => split.push(line.to_string()),
            }
        }
        let commands = split;
        let answers: Vec<Value> = serde_json::Deserializer::from_str(answers)
            .into_iter::<Value>()
            .map(|v| v.expect("the README's answers are JSON"))
            .collect();
        assert_eq!(
            commands.len(),
            answers.len(),
            "one answer per command in:\n{commands:#?}"
        );
        out.extend(
            commands
                .into_iter()
                .zip(answers)
                .map(|(command, answer)| Example { command, answer }),
        );
    }
    out
}

/// Replaces the moments the service stamps itself, which differ per run.
fn without_clock(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if matches!(key.as_str(), "processed_at" | "received_at" | "applied_at")
                        && v.is_string()
                    {
                        *v = Value::String("<now>".into());
                    } else {
                        walk(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_curl_example_in_the_readme_answers_as_shown_on_a_fresh_service() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let examples = examples(&readme);
    assert!(examples.len() >= 10, "{} examples", examples.len());
    let app = spawn_app().await;

    for Example { command, answer } in examples {
        let command = command.replace("http://localhost:8000", &app.address);
        // curl blocks its thread; the service answers from the others.
        let line = format!("{command} --silent --show-error");
        let output = tokio::task::spawn_blocking(move || {
            Command::new("bash")
                .args(["-c", &line])
                .output()
                .expect("bash and curl (scripts/setup.sh installs curl)")
        })
        .await
        .unwrap();
        assert!(
            output.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let got: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "{command} answered no JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
        // The answer as JSON, to paste into the README where it changed.
        let printed = got.to_string();
        assert_eq!(
            without_clock(got),
            without_clock(answer),
            "{command}\nanswered: {printed}"
        );
    }
}

/// A heading's anchor as the common Markdown renderers make it: lower
/// case, spaces to hyphens, punctuation other than `-` and `_` dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_link_in_the_readme_and_the_docs_resolves_to_a_file_or_a_heading() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let link = regex::Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let mut broken = Vec::new();
    for doc in [
        "README.md",
        "BENCHMARKS.md",
        "docs/operations.md",
        "docs/architecture.md",
    ] {
        let path = root.join(doc);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{doc}: {e}"));
        for target in link.captures_iter(&text).map(|c| c[1].to_string()) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (file, heading) = target.split_once('#').unwrap_or((&target, ""));
            let file = if file.is_empty() {
                path.clone()
            } else {
                path.parent().unwrap().join(file)
            };
            let Ok(content) = std::fs::read_to_string(&file).or_else(|_| {
                // A folder or a picture: it need only exist.
                file.exists().then(String::new).ok_or(())
            }) else {
                broken.push(format!("{doc}: {target} (no such file)"));
                continue;
            };
            let headings: Vec<String> = content
                .lines()
                .filter_map(|l| l.strip_prefix('#'))
                .map(|l| anchor(l.trim_start_matches('#')))
                .collect();
            if !heading.is_empty() && !headings.iter().any(|h| h == heading) {
                broken.push(format!("{doc}: {target} (no such heading)"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links that resolve to nothing: {broken:#?}"
    );
}

#[test]
fn the_readme_fits_one_sitting_and_names_the_console_on_its_first_screen() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let lines: Vec<&str> = readme.lines().collect();
    assert!(lines.len() <= 460, "the README has {} lines", lines.len());
    assert!(
        lines.iter().take(60).any(|l| l.contains("/console")),
        "the first 60 lines do not name /console"
    );
}
