//! Requests to the HTTP service example and its JSON replies, for the tests that
//! drive it (`tests/http_service.rs`, `tests/http_replicas.rs` of this package).
#![allow(dead_code, unreachable_pub)]

use serde_json::Value;

/// What a request got back: the status code and the JSON body.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub body: Value,
}

impl Reply {
    /// The string at `key` of the body.
    pub fn str(&self, key: &str) -> &str {
        self.body[key]
            .as_str()
            .unwrap_or_else(|| panic!("no string {key:?} in {}", self.body))
    }
}

/// Sends `request` and reads its reply, which must be JSON.
pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request
        .send()
        .await
        .expect("the request reaches the server");
    let code = response.status().as_u16();
    let text = response.text().await.expect("a response body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("a JSON body ({e}), got {code} {text:?}"));
    Reply { code, body }
}
