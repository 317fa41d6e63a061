//! The API description: it must list exactly the routes the router serves,
//! and the Swagger UI must come from the compiled-in assets.

use crate::helpers::spawn_app;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeSet;
use uuid::Uuid;
use warehouse_stock::api::served_routes;

/// `(METHOD, path)` of every operation in an OpenAPI document.
fn operations(spec: &Value) -> BTreeSet<(String, String)> {
    let paths = spec["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .filter(|k| {
                    ["get", "post", "put", "patch", "delete", "head", "options"]
                        .contains(&k.as_str())
                })
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

#[tokio::test]
async fn the_description_lists_exactly_the_routes_the_router_serves() {
    let app = spawn_app().await;
    let (status, spec) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);

    let described = operations(&spec);
    let served: BTreeSet<(String, String)> = served_routes()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();

    assert_eq!(described, served);
}

#[tokio::test]
async fn every_described_operation_is_answered_by_a_route() {
    let app = spawn_app().await;
    let (_, spec) = app.get("/openapi.json").await;
    let id = Uuid::new_v4().to_string();

    for (method, path) in operations(&spec) {
        let concrete = path
            .replace("{warehouse_id}", &id)
            .replace("{product_id}", &id)
            .replace("{movement_id}", &id);
        let response = app
            .client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{concrete}", app.address),
            )
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        // The fallbacks answer these two; a described route must not reach them.
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            !body.contains("no such endpoint"),
            "{method} {path} reached the fallback"
        );
    }
}

#[tokio::test]
async fn every_error_answer_of_the_description_has_a_documented_body() {
    let app = spawn_app().await;
    let (_, spec) = app.get("/openapi.json").await;

    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert!(
                        schema
                            .as_str()
                            .is_some_and(|s| s.starts_with("#/components/schemas/")),
                        "{method} {path} {status} has no JSON body schema"
                    );
                }
            }
        }
    }
    let error = &spec["components"]["schemas"]["ErrorBody"]["properties"];
    assert!(error["code"].is_object() && error["detail"].is_object());
}

#[tokio::test]
async fn the_swagger_ui_is_served_from_compiled_in_assets() {
    let app = spawn_app().await;
    let get = |path: &str| app.client.get(format!("{}{path}", app.address)).send();

    let page = get("/docs/").await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("swagger-ui"));

    let css = get("/docs/swagger-ui.css").await.unwrap();
    assert_eq!(css.status(), StatusCode::OK);
    assert!(css.text().await.unwrap().len() > 1000);

    let init = get("/docs/swagger-initializer.js").await.unwrap();
    assert_eq!(init.status(), StatusCode::OK);
    assert!(init.text().await.unwrap().contains("/openapi.json"));
}

#[tokio::test]
async fn redoc_is_served_from_compiled_in_assets_and_links_nothing_elsewhere() {
    let app = spawn_app().await;
    let get = |path: &str| app.client.get(format!("{}{path}", app.address)).send();

    let page = get("/redoc").await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"<redoc spec-url="/openapi.json">"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<script src="/redoc/redoc.standalone.js">"#),
        "{html}"
    );
    assert!(
        !html.contains("://"),
        "the page links no other host: {html}"
    );

    let script = get("/redoc/redoc.standalone.js").await.unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let body = script.text().await.unwrap();
    assert!(
        body.len() > 1_000_000,
        "the whole bundle: {} bytes",
        body.len()
    );
    assert!(body.contains("spec-url"), "ReDoc reads the page's spec-url");
}

/// Every `$ref` string anywhere in `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_reference_resolves_and_every_limit_declares_its_bounds() {
    let app = spawn_app().await;
    let (_, spec) = app.get("/openapi.json").await;
    let mut found = Vec::new();
    refs(&spec, &mut found);
    assert!(!found.is_empty());
    for r in &found {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {r}"));
        assert!(
            spec["components"]["schemas"].get(name).is_some(),
            "{r} does not resolve"
        );
    }
    let mut limits = 0;
    for item in spec["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            for p in operation["parameters"].as_array().into_iter().flatten() {
                if p["name"] == "limit" {
                    limits += 1;
                    let schema = &p["schema"];
                    assert_eq!(schema["minimum"], 1, "{p}");
                    assert_eq!(schema["maximum"], 1000, "{p}");
                }
            }
        }
    }
    assert!(limits >= 5, "{limits} limit parameters");
    // The webhook's `time` is an integer (epoch ms) or an RFC 3339 string.
    let time = &spec["components"]["schemas"]["MovementMessage"]["properties"]["time"];
    let text = time.to_string();
    assert!(
        text.contains("EventTime") || text.contains("oneOf"),
        "{time}"
    );
    let event_time = spec["components"]["schemas"]["EventTime"].to_string();
    assert!(
        event_time.contains("integer") && event_time.contains("date-time"),
        "{event_time}"
    );
}

#[tokio::test]
async fn the_webhook_answer_links_to_lookups_that_exist_with_parameters_they_take() {
    let app = spawn_app().await;
    let (_, spec) = app.get("/openapi.json").await;
    let mut operations = std::collections::HashMap::new();
    for item in spec["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            if let Some(id) = operation["operationId"].as_str() {
                operations.insert(id.to_string(), operation.clone());
            }
        }
    }
    let answer = &spec["paths"]["/api/v1/kafka/webhook"]["post"]["responses"]["200"];
    let links = answer["links"]
        .as_object()
        .expect("the 200 answer has links");
    for wanted in ["movement", "stock", "history", "product_stock"] {
        assert!(links.contains_key(wanted), "no {wanted} link");
    }
    for (name, link) in links {
        let target = &operations[link["operationId"].as_str().unwrap()];
        let taken: BTreeSet<&str> = target["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        for (parameter, expression) in link["parameters"].as_object().unwrap() {
            assert!(taken.contains(parameter.as_str()), "{name}: {parameter}");
            // Each expression points at a field the answer's schema has.
            let pointer = expression
                .as_str()
                .unwrap()
                .strip_prefix("$response.body#/")
                .unwrap();
            let mut schema = &answer["content"]["application/json"]["schema"];
            for field in pointer.split('/') {
                schema = &resolve(&spec, schema)["properties"][field];
                assert!(schema.is_object(), "{name}: {pointer} has no {field}");
            }
            assert_eq!(
                resolve(&spec, schema)["format"],
                "uuid",
                "{name}: {pointer}"
            );
        }
    }
}

/// A schema with its `$ref`, if any, followed into the components.
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => &spec["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    }
}
