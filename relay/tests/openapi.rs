//! relay/openapi.json against the real routes: the documented paths and methods are exactly the
//! router's, every documented operation reaches a handler on a live relay (not the router's 404/405),
//! every documented path answers without its trailing slash too, and the served document is the file.

// Test helpers outside #[test] functions unwrap too: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::{Harness, TestAccounts, sqlite_url};
use serde_json::Value;

const DOC: &str = include_str!("../openapi.json");

fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let doc: Value = serde_json::from_str(DOC).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| k.as_str() != "parameters")
                .map(|k| k.to_ascii_uppercase())
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

#[test]
fn document_matches_route_table() {
    let routes: BTreeMap<String, BTreeSet<String>> = herald_relay::api::route_table()
        .routes
        .into_iter()
        .collect();
    assert_eq!(documented(), routes);
}

#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(
        &sqlite_url(&dir),
        Arc::new(TestAccounts::default()),
        false,
        |_| {},
    )
    .await;
    let key = h.account("doc").await;
    for (path, methods) in documented() {
        let concrete = path
            .replace("{username}", "doc")
            .replace("{kind}", "apns")
            .replace("{id}", "x")
            .replace("{token}", "x");
        for bare in [false, true] {
            let p = if bare && concrete.ends_with('/') {
                concrete.trim_end_matches('/').to_string()
            } else {
                concrete.clone()
            };
            for m in &methods {
                let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
                let r = h
                    .http
                    .request(method, h.url(&p))
                    .header("Authorization", format!("Token {key}"))
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                assert_ne!(status, 405, "{m} {p}");
                assert!(
                    !(status == 404 && body["error"] == "no such route"),
                    "{m} {p} is not routed"
                );
                assert_ne!(status, 500, "{m} {p}: {body}");
            }
        }
    }
    let served: Value = h
        .http
        .get(h.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, serde_json::from_str::<Value>(DOC).unwrap());
}
