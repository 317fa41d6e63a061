//! A real headless Chromium for the console's tests: Debian's `chromium`
//! driven through its `chromedriver` over WebDriver, one of each per
//! test. Nothing is downloaded: both come from the system
//! (`scripts/setup.sh` installs them), and the browser is started with
//! its background networking off, so the only requests it makes are the
//! pages' own.

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A browser session and the driver process behind it, which is killed
/// when this is dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: std::path::PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn binary(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium session with its
    /// browser and network logs recorded.
    pub async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new(binary("CHROMEDRIVER", "/usr/bin/chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (scripts/setup.sh installs Debian's chromium-driver)");
        let profile = std::env::temp_dir().join(format!("ws-chromium-{}", uuid::Uuid::new_v4()));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary("CHROMIUM", "/usr/bin/chromium"),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-extensions",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL", "performance": "ALL" },
        });
        let caps = match caps {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}/");
        let mut client = None;
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        Browser {
            client: client.expect("a Chromium session through chromedriver"),
            driver,
            profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
            .text()
            .await
            .expect("text")
    }

    /// Runs `script` in the page and answers its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .expect("script runs")
    }

    /// Waits until `script` evaluates to true in the page. The deadline
    /// only bounds a hung run.
    pub async fn until(&self, what: &str, script: &str) {
        for _ in 0..300 {
            if self.eval(script).await == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("gave up waiting for: {what}");
    }

    /// The browser's log since the last call: console messages, script
    /// errors and refused loads (a CSP refusal among them).
    pub async fn console_log(&self) -> Vec<Value> {
        self.log("browser").await
    }

    /// Every request since the last call, as (the document that made it,
    /// the URL it asked for).
    pub async fn requests(&self) -> Vec<(String, String)> {
        self.log("performance")
            .await
            .iter()
            .filter_map(|entry| {
                let message: Value = serde_json::from_str(entry["message"].as_str()?).ok()?;
                let message = &message["message"];
                let params = &message["params"];
                (message["method"] == "Network.requestWillBeSent").then(|| {
                    let document = params["documentURL"].as_str().unwrap_or_default();
                    let url = params["request"]["url"].as_str().unwrap_or_default();
                    (document.to_string(), url.to_string())
                })
            })
            .collect()
    }

    async fn log(&self, kind: &'static str) -> Vec<Value> {
        match self.client.issue_cmd(ReadLog(kind)).await {
            Ok(Value::Array(entries)) => entries,
            other => panic!("chromedriver's {kind} log: {other:?}"),
        }
    }

    pub async fn screenshot(&self) -> Vec<u8> {
        self.client.screenshot().await.expect("screenshot")
    }
}

/// ChromeDriver's log endpoint, which WebDriver itself does not define.
#[derive(Debug)]
struct ReadLog(&'static str);

impl WebDriverCompatibleCommand for ReadLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": self.0 }).to_string()),
        )
    }
}
