//! A stand-in for FCM (Firebase Cloud Messaging HTTP v1) and its OAuth token endpoint, so push can be
//! tested end to end without the vendor: `/token` grants a token, every other request is a send,
//! recorded with its body and answered with success.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use serde_json::json;
use tokio::sync::mpsc;

use crate::TIMEOUT;

/// The private key of the test service account (`service_account(...)`).
pub const FCM_KEY: &str = include_str!("../../relay/tests/fixtures/fcm-test-key.pem");

/// A running stand-in FCM on a loopback port.
pub struct StandInFcm {
    /// Its base URL (`http://127.0.0.1:port`), for `[relay.fcm] base_url` and the token URI.
    pub url: String,
    /// The body of every send, in order.
    pub sends: mpsc::UnboundedReceiver<String>,
}

async fn stand_in(
    State(sends): State<mpsc::UnboundedSender<String>>,
    uri: Uri,
    body: Bytes,
) -> axum::Json<serde_json::Value> {
    if uri.path() == "/token" {
        return axum::Json(
            json!({"access_token": "at", "expires_in": 3600, "token_type": "Bearer"}),
        );
    }
    let _ = sends.send(String::from_utf8_lossy(&body).into_owned());
    axum::Json(json!({"name": "projects/test-project/messages/1"}))
}

impl StandInFcm {
    pub async fn start() -> StandInFcm {
        let (tx, sends) = mpsc::unbounded_channel();
        let app = axum::Router::new().fallback(stand_in).with_state(tx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        StandInFcm { url, sends }
    }

    /// The body of the next push sent to FCM.
    pub async fn next_send(&mut self) -> String {
        tokio::time::timeout(TIMEOUT, self.sends.recv())
            .await
            .expect("a push reached the stand-in FCM in time")
            .unwrap()
    }

    /// A service-account JSON file's contents whose token URI is this stand-in.
    pub fn service_account(&self) -> String {
        json!({
            "type": "service_account",
            "project_id": "test-project",
            "client_email": "relay@test-project.iam.gserviceaccount.com",
            "private_key": FCM_KEY,
            "token_uri": format!("{}/token", self.url),
        })
        .to_string()
    }
}
