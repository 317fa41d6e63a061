//! A product across warehouses: its total, what is in transit, and pages
//! of the warehouses holding it.

use crate::helpers::{Ev, all_pages, spawn_app, stock_up};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test]
async fn a_product_across_warehouses_has_its_total_its_transit_and_pages_of_holders() {
    let app = spawn_app().await;
    let p = Uuid::new_v4();
    let mut holders: Vec<(Uuid, i64)> = (0..5).map(|i| (Uuid::new_v4(), 10 * (i + 1))).collect();
    for &(w, q) in &holders {
        stock_up(&app, w, p, q).await;
    }
    // A warehouse sold out is not a holder; another product does not count.
    let empty = Uuid::new_v4();
    stock_up(&app, empty, p, 3).await;
    app.post_ok(&Ev::new(empty, p, 3).departure()).await;
    stock_up(&app, holders[0].0, Uuid::new_v4(), 1000).await;
    // Two shipments: one on the road, one arrived short.
    let on_road = Uuid::new_v4();
    app.post_ok(&Ev::new(holders[1].0, p, 6).movement(on_road).departure())
        .await;
    holders[1].1 -= 6;
    let arrived = Uuid::new_v4();
    app.post_ok(&Ev::new(holders[2].0, p, 8).movement(arrived).departure())
        .await;
    holders[2].1 -= 8;
    app.post_ok(&Ev::new(holders[3].0, p, 7).movement(arrived).arrival())
        .await;
    holders[3].1 += 7;
    holders.sort();

    let path = format!("/api/v1/products/{p}/stock");
    let (status, whole) = app.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    let total: i64 = holders.iter().map(|h| h.1).sum();
    assert_eq!(whole["product_id"], p.to_string());
    assert_eq!(whole["total"], total);
    // On the road: the 6 of `on_road` and the 3 that emptied `empty`.
    assert_eq!(whole["in_transit"], 6 + 3);
    let items = all_pages(&app, &path, 2).await;
    let listed: Vec<(Uuid, i64)> = items
        .iter()
        .map(|i| {
            (
                i["warehouse_id"].as_str().unwrap().parse().unwrap(),
                i["quantity"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, holders);

    let (status, nothing) = app
        .get(&format!("/api/v1/products/{}/stock", Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(nothing["total"], 0);
    assert_eq!(nothing["in_transit"], 0);
    assert_eq!(nothing["items"], json!([]));
    assert_eq!(nothing["next_after"], Value::Null);
    for (bad, name) in [
        ("/api/v1/products/nope/stock", "product_id"),
        (&*format!("{path}?after=zzz"), "after"),
        (&*format!("{path}?limit=0"), "limit"),
        (&*format!("{path}?after="), "after"),
    ] {
        let (status, body) = app.get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(body["detail"].as_str().unwrap().contains(name), "{body}");
    }
}
