use crate::helpers::{Ev, spawn_app, stock_up};
use reqwest::StatusCode;
use uuid::Uuid;

#[tokio::test]
async fn a_pair_never_seen_has_zero_stock_on_both_paths() {
    let app = spawn_app().await;
    let (w, p) = (Uuid::new_v4(), Uuid::new_v4());
    for prefix in ["warehouse", "warehouses"] {
        let (status, body) = app.get(&format!("/api/v1/{prefix}/{w}/products/{p}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["warehouse_id"], w.to_string());
        assert_eq!(body["product_id"], p.to_string());
        assert_eq!(body["quantity"], 0);
    }
}

#[tokio::test]
async fn a_malformed_warehouse_or_product_id_is_400() {
    let app = spawn_app().await;
    let (status, body) = app
        .get(&format!(
            "/api/v1/warehouse/WH-1/products/{}",
            Uuid::new_v4()
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("warehouse_id"));
    let (status, _) = app
        .get(&format!("/api/v1/warehouses/{}/products/x", Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_warehouse_lists_its_stock_by_product_in_keyset_pages() {
    let app = spawn_app().await;
    let w = Uuid::new_v4();
    let mut products: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    for (i, p) in products.iter().enumerate() {
        stock_up(&app, w, *p, i as i64 + 1).await;
    }
    // Another warehouse's stock and a product sold out are not listed.
    stock_up(&app, Uuid::new_v4(), products[0], 50).await;
    let gone = Uuid::new_v4();
    stock_up(&app, w, gone, 3).await;
    app.post(&Ev::new(w, gone, 3).departure()).await;
    products.sort();

    let (status, first) = app
        .get(&format!("/api/v1/warehouses/{w}/products?limit=2"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut listed = Vec::new();
    let mut page = first;
    loop {
        for item in page["items"].as_array().unwrap() {
            listed.push(
                item["product_id"]
                    .as_str()
                    .unwrap()
                    .parse::<Uuid>()
                    .unwrap(),
            );
            assert!(item["quantity"].as_i64().unwrap() > 0);
        }
        let Some(after) = page["next_after"].as_str() else {
            break;
        };
        page = app
            .get(&format!(
                "/api/v1/warehouses/{w}/products?limit=2&after={after}"
            ))
            .await
            .1;
    }
    assert_eq!(listed, products);
}

#[tokio::test]
async fn a_limit_outside_one_to_a_thousand_is_400() {
    let app = spawn_app().await;
    let w = Uuid::new_v4();
    for limit in ["0", "1001", "ten"] {
        let (status, body) = app
            .get(&format!("/api/v1/warehouses/{w}/products?limit={limit}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{limit}");
        assert!(body["detail"].is_string());
    }
    let (status, _) = app.get("/api/v1/rejections?after=-3").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
