//! The operator console, driven in a real headless Chromium against a
//! real service on real PostgreSQL and Redis: every page shows the
//! ledger's data, the chart is drawn, the live feed and the forms work,
//! outside text stays text, and the pages load nothing from elsewhere and
//! log no error.

use crate::browser::Browser;
use crate::helpers::{Ev, TestApp, spawn_app_with, stock_up};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

const WRITE_TOKEN: &str = "console-write-token-0123456789";
const ADMIN_TOKEN: &str = "console-admin-token-0123456789";
const EVIL: &str = "<img src=x onerror=alert(1)>";

/// A service that asks for both tokens, and a client that sends the
/// write token, as a warehouse system would.
async fn console_app() -> TestApp {
    let mut app =
        spawn_app_with(&[("WEBHOOK_TOKEN", WRITE_TOKEN), ("ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let mut headers = HeaderMap::new();
    let bearer = format!("Bearer {WRITE_TOKEN}");
    headers.insert(AUTHORIZATION, HeaderValue::from_str(&bearer).unwrap());
    app.client = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    app
}

fn from(source: &str, mut event: Value) -> Value {
    event["source"] = json!(source);
    event
}

async fn set_level(app: &TestApp, w: Uuid, p: Uuid, low: i64) {
    let answer = app
        .client
        .put(format!(
            "{}/api/v1/warehouses/{w}/products/{p}/threshold",
            app.address
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "low": low }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
}

/// Types both tokens into the header's box, as a person would once.
async fn keep_tokens(browser: &Browser) {
    browser
        .eval(&format!(
            "document.getElementById('write-token').value = '{WRITE_TOKEN}';
             document.getElementById('admin-token').value = '{ADMIN_TOKEN}';
             document.querySelector('#token-form button').click(); return true;"
        ))
        .await;
    assert!(
        browser
            .text("#token-state")
            .await
            .contains("write and admin")
    );
}

/// Fails on any error in the browser's log and any request that left the
/// service's origin since the last check.
async fn assert_clean(browser: &Browser, app: &TestApp, page: &str) {
    let errors: Vec<Value> = browser
        .console_log()
        .await
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .collect();
    assert!(
        errors.is_empty(),
        "{page}: the browser logged errors: {errors:?}"
    );
    let origin = format!("{}/", app.address);
    let mut ours = 0;
    for (document, url) in browser.requests().await {
        // The browser's own pages (the new tab it opens with) are not the
        // console's: only what the console's documents asked for counts.
        // A data: URL goes nowhere: the browser's date pickers draw their
        // icons from them. (One in the page's own markup would break its
        // CSP, which the error check above catches.)
        if !document.starts_with(&origin) || url.starts_with("data:") {
            continue;
        }
        ours += 1;
        assert!(
            url.starts_with(&origin),
            "{page}: a request left the service's origin: {url}"
        );
    }
    assert!(ours > 0, "{page}: no request of the console's was recorded");
}

/// What every page is checked against: two warehouses, a product with a
/// completed transfer, one still on the road, a rejection and a level.
struct Seeded {
    w1: Uuid,
    w2: Uuid,
    p: Uuid,
    done: Uuid,
    open: Uuid,
    before_departure: chrono::DateTime<chrono::Utc>,
}

async fn seed(app: &TestApp) -> Seeded {
    let (w1, w2, p) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    app.post_ok(&from(EVIL, Ev::new(w1, p, 100).arrival()))
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before_departure = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let done = Uuid::new_v4();
    app.post_ok(&Ev::new(w1, p, 30).movement(done).departure())
        .await;
    app.post_ok(&Ev::new(w2, p, 28).movement(done).arrival())
        .await;
    let open = Uuid::new_v4();
    app.post_ok(&Ev::new(w1, p, 20).movement(open).departure())
        .await;
    let (_, refused) = app.post(&Ev::new(w2, p, 1000).departure()).await;
    assert_eq!(refused["code"], "insufficient_stock", "{refused}");
    set_level(app, w1, p, 60).await;
    Seeded {
        w1,
        w2,
        p,
        done,
        open,
        before_departure,
    }
}

#[tokio::test]
async fn every_console_page_shows_the_ledger_data_with_no_error_and_no_request_elsewhere() {
    let app = console_app().await;
    let s = seed(&app).await;
    let browser = Browser::start().await;
    let base = &app.address;
    let (w1, w2, p) = (s.w1, s.w2, s.p);

    browser.goto(&format!("{base}/console")).await;
    assert!(browser.text("#health").await.contains("Database\nok"));
    assert_eq!(browser.text("#low-now").await, "1");
    assert_eq!(browser.text("#rejected-hour").await, "1");
    save_screenshot(&browser, "overview").await;
    assert_clean(&browser, &app, "overview").await;

    browser
        .goto(&format!("{base}/console/warehouses/{w1}"))
        .await;
    let list = browser.text("#stock").await;
    assert!(
        list.contains(&p.to_string()) && list.contains("50"),
        "{list}"
    );
    let as_of = s
        .before_departure
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    browser
        .goto(&format!("{base}/console/warehouses/{w1}?as_of={as_of}"))
        .await;
    assert!(browser.text("#stock").await.contains("100"));
    assert_clean(&browser, &app, "warehouse").await;

    browser
        .goto(&format!("{base}/console/warehouses/{w1}/products/{p}"))
        .await;
    assert_eq!(browser.text("#stock-now").await, "50");
    assert!(browser.text("#level").await.starts_with("60"));
    let path = browser
        .eval("return document.querySelector('#stock-chart path.line').getAttribute('d')")
        .await;
    let path = path.as_str().unwrap();
    assert_eq!(
        path.matches('V').count(),
        2,
        "a step per change after the first: {path}"
    );
    let rows = browser
        .eval("return document.querySelectorAll('#history tbody tr').length")
        .await;
    assert_eq!(rows, json!(3));
    save_screenshot(&browser, "pair").await;
    assert_clean(&browser, &app, "pair").await;

    browser.goto(&format!("{base}/console/products/{p}")).await;
    assert_eq!(browser.text("#total").await, "78");
    assert_eq!(browser.text("#in-transit").await, "20");
    assert!(browser.text("#holders").await.contains(&w2.to_string()));
    assert_clean(&browser, &app, "product").await;

    browser.goto(&format!("{base}/console/movements")).await;
    let moving = browser.text("#movements").await;
    assert!(moving.contains(&s.open.to_string()), "{moving}");
    assert!(!moving.contains(&s.done.to_string()), "{moving}");
    browser
        .goto(&format!("{base}/console/movements/{}", s.done))
        .await;
    assert_eq!(browser.text("#status").await, "completed");
    let halves = browser.text("#halves").await;
    assert!(halves.contains(&w1.to_string()) && halves.contains(&w2.to_string()));
    assert_clean(&browser, &app, "movements").await;

    browser.goto(&format!("{base}/console/rejections")).await;
    assert!(
        browser
            .text("#rejections")
            .await
            .contains("insufficient_stock")
    );
    browser.goto(&format!("{base}/console/alerts")).await;
    let alerts = browser.text("#alerts").await;
    assert!(
        alerts.contains("low") && alerts.contains(&w1.to_string()),
        "{alerts}"
    );
    browser.goto(&format!("{base}/console/changes")).await;
    let feed = browser
        .eval("return document.querySelectorAll('#feed tbody tr').length")
        .await;
    assert_eq!(feed, json!(4), "the four applied changes");
    save_screenshot(&browser, "changes").await;
    assert_clean(&browser, &app, "lists").await;
}

/// Keeps a screenshot where a person can look at it (the README's come
/// from here), after checking it is one.
async fn save_screenshot(browser: &Browser, name: &str) {
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

#[tokio::test]
async fn the_live_feed_shows_a_change_posted_after_the_page_opened() {
    let app = console_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 5).await;
    let browser = Browser::start().await;
    browser
        .goto(&format!("{}/console/changes?product_id={p}", app.address))
        .await;
    browser
        .until(
            "the feed to poll",
            "return document.getElementById('feed-state').textContent === 'live'",
        )
        .await;
    let before = browser
        .eval("return document.querySelectorAll('#feed tbody tr').length")
        .await;
    assert_eq!(before, json!(1));

    app.post_ok(&Ev::new(w, p, 4321).arrival()).await;
    browser
        .until(
            "the new change to show",
            "return document.querySelector('#feed tbody tr').textContent.includes('4326')",
        )
        .await;
    assert_clean(&browser, &app, "feed").await;
}

#[tokio::test]
async fn a_count_entered_in_the_form_changes_the_stock_the_page_shows() {
    let app = console_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 10).await;
    let browser = Browser::start().await;
    browser
        .goto(&format!(
            "{}/console/warehouses/{w}/products/{p}",
            app.address
        ))
        .await;
    keep_tokens(&browser).await;
    browser
        .eval(
            "const form = document.getElementById('count-form');
             form.elements.quantity.value = '7';
             form.querySelector('button').click(); return true;",
        )
        .await;
    browser
        .until(
            "the page to show the count",
            "return document.getElementById('stock-now')?.textContent === '7'",
        )
        .await;
    assert_eq!(app.stock(w, p).await, 7);
    assert!(browser.text("#history").await.contains("count"));
    assert_clean(&browser, &app, "count").await;
}

#[tokio::test]
async fn a_write_off_removes_the_movement_from_the_in_transit_view() {
    let app = console_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 10).await;
    let lost = Uuid::new_v4();
    app.post_ok(&Ev::new(w, p, 4).movement(lost).departure())
        .await;
    let browser = Browser::start().await;
    browser
        .goto(&format!("{}/console/movements?product_id={p}", app.address))
        .await;
    keep_tokens(&browser).await;
    let row = format!("tr[data-movement='{lost}']");
    browser
        .eval(&format!(
            "document.querySelector(\"{row} form.write-off button\").click(); return true;"
        ))
        .await;
    browser
        .until(
            "the movement to leave the in-transit view",
            &format!("return document.getElementById('no-movements') !== null && !document.querySelector(\"{row}\")"),
        )
        .await;
    let (_, movement) = app.get(&format!("/api/v1/movements/{lost}")).await;
    assert_eq!(movement["status"], "written_off", "{movement}");
    assert_clean(&browser, &app, "write-off").await;
}

#[tokio::test]
async fn a_malicious_source_or_note_shows_as_text() {
    let app = console_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    app.post_ok(&from(EVIL, Ev::new(w, p, 10).arrival())).await;
    let (status, body) = app
        .post_json(
            "/api/v1/adjustments",
            &json!({
                "kind": "adjustment", "adjustment_id": Uuid::new_v4(), "warehouse_id": w,
                "product_id": p, "quantity": -1, "reason": "damaged", "note": EVIL,
                "reference": EVIL,
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let browser = Browser::start().await;
    browser
        .goto(&format!(
            "{}/console/warehouses/{w}/products/{p}",
            app.address
        ))
        .await;
    let shown = browser
        .eval(
            "return [Array.from(document.querySelectorAll('td.source')).pop().textContent,
                     document.querySelector('.note').textContent,
                     document.images.length]",
        )
        .await;
    assert_eq!(shown, json!([EVIL, EVIL, 0]));
    browser
        .goto(&format!("{}/console/changes", app.address))
        .await;
    assert_clean(&browser, &app, "escaping").await;
}

#[tokio::test]
async fn a_bad_id_in_a_console_path_gets_a_readable_page_with_the_api_code() {
    let app = console_app().await;
    let cases = [
        ("/console/warehouses/not-a-uuid", 400, "invalid_uuid"),
        (
            &format!("/console/movements/{}", Uuid::new_v4()) as &str,
            404,
            "not_found",
        ),
        ("/console/movements?status=lost", 400, "invalid_query"),
        ("/console/no-such-page", 404, "not_found"),
    ];
    for (path, status, code) in cases {
        let answer = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), status, "{path}");
        let kind = answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        let page = answer.text().await.unwrap();
        assert!(page.contains(code), "{path}: {page}");
        assert!(page.contains("Back to the overview"), "{path}");
    }
}

#[tokio::test]
async fn console_pages_allow_only_their_own_origin_and_run_no_inline_script() {
    let app = console_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p, 3).await;
    for path in [
        "/console".to_string(),
        format!("/console/warehouses/{w}/products/{p}"),
        "/console/changes".to_string(),
    ] {
        let answer = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        let policy = answer.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
        ] {
            assert!(policy.contains(part), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe"), "{path}: {policy}");
        let page = answer.text().await.unwrap();
        for script in page.split("<script").skip(1) {
            assert!(
                script.starts_with(" src=\"/console/"),
                "{path}: inline script"
            );
        }
        assert!(!page.contains(" style="), "{path}: inline style");
        assert!(!page.contains(" onclick="), "{path}: inline handler");
    }
}

#[tokio::test]
async fn the_csv_download_holds_exactly_the_rows_the_warehouse_page_shows() {
    let app = console_app().await;
    let w = Uuid::new_v4();
    let (p1, p2) = (Uuid::new_v4(), Uuid::new_v4());
    stock_up(&app, w, p1, 3).await;
    stock_up(&app, w, p2, 9).await;
    let answer = app
        .client
        .get(format!(
            "{}/console/warehouses/{w}/products.csv",
            app.address
        ))
        .send()
        .await
        .unwrap();
    assert!(
        answer.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let csv = answer.text().await.unwrap();
    let mut expected = vec![format!("{w},{p1},3"), format!("{w},{p2},9")];
    expected.sort();
    let mut lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.remove(0), "warehouse_id,product_id,quantity");
    assert_eq!(lines, expected);
}

#[tokio::test]
async fn the_api_description_pages_render_under_their_policy_with_no_error() {
    let app = console_app().await;
    let browser = Browser::start().await;
    for (page, ready) in [
        (
            "/redoc",
            "return document.querySelector('h1')?.textContent.startsWith('warehouse-stock') === true",
        ),
        (
            "/docs/",
            "return document.querySelector('.swagger-ui .info .title')?.textContent.startsWith('warehouse-stock') === true",
        ),
    ] {
        let answer = app
            .client
            .get(format!("{}{page}", app.address))
            .send()
            .await
            .unwrap();
        let policy = answer.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(policy.contains("script-src 'self';"), "{page}: {policy}");
        browser.goto(&format!("{}{page}", app.address)).await;
        browser
            .until(&format!("{page} to render the description"), ready)
            .await;
        let license = browser
            .eval("return document.body.innerText.includes('License:')")
            .await;
        assert_eq!(license, json!(false), "{page} shows an empty licence");
        assert_clean(&browser, &app, page).await;
    }
}
