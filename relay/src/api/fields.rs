//! Request bodies as ChatSecure's clients send them (Django REST framework, which
//! ChatSecure-Push-Server runs on, accepted JSON,
//! form-urlencoded and multipart), reduced to one map of fields with typed, length-limited getters.

use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde_json::{Map, Value};

use super::ApiError;

/// A request body's fields, whatever the content type (JSON object, form-urlencoded or multipart);
/// form and multipart values are strings. An empty body is an empty map.
#[derive(Debug, Default)]
pub struct Fields(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ctype = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ctype.starts_with("multipart/form-data") {
            let mut mp = axum::extract::Multipart::from_request(req, state)
                .await
                .map_err(|_| ApiError::bad_request("malformed multipart body"))?;
            let mut map = Map::new();
            while let Some(field) = mp
                .next_field()
                .await
                .map_err(|_| ApiError::bad_request("malformed multipart body"))?
            {
                let name = field.name().unwrap_or("").to_string();
                let text = field
                    .text()
                    .await
                    .map_err(|_| ApiError::bad_request("malformed multipart field"))?;
                map.insert(name, Value::String(text));
            }
            return Ok(Fields(map));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Fields::default());
        }
        if ctype.starts_with("application/x-www-form-urlencoded") {
            let pairs: Vec<(String, String)> = serde_urlencoded_pairs(&bytes)?;
            return Ok(Fields(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            ));
        }
        // JSON is the default (DRF's first parser); anything else that is not JSON is a 400.
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(Fields(m)),
            Ok(_) => Err(ApiError::bad_request("body must be a JSON object")),
            Err(_) => Err(ApiError::bad_request("malformed JSON body")),
        }
    }
}

fn serde_urlencoded_pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let parsed = reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(bytes)))
        .map_err(|_| ApiError::bad_request("malformed form body"))?;
    Ok(parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

impl Fields {
    /// A string field: JSON strings as given, numbers and booleans as text; `None` if absent or null.
    pub fn text(&self, name: &str) -> Option<String> {
        match self.0.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A string field with a length limit in characters; empty counts as absent.
    pub fn limited(&self, name: &str, max_chars: usize) -> Result<Option<String>, ApiError> {
        match self.text(name) {
            Some(s) if s.chars().count() > max_chars => Err(ApiError::field(
                name,
                &format!("Ensure this field has no more than {max_chars} characters."),
            )),
            Some(s) if s.is_empty() => Ok(None),
            other => Ok(other),
        }
    }

    /// A required string field with a length limit.
    pub fn required(&self, name: &str, max_chars: usize) -> Result<String, ApiError> {
        self.limited(name, max_chars)?
            .ok_or_else(|| ApiError::field(name, "This field is required."))
    }

    /// A boolean field (`true`/`false`, `1`/`0`, `on`/`off` in forms).
    pub fn flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "on" | "yes" => Ok(Some(true)),
                "false" | "0" | "off" | "no" | "" => Ok(Some(false)),
                _ => Err(ApiError::field(name, "Must be a valid boolean.")),
            },
            Some(_) => Err(ApiError::field(name, "Must be a valid boolean.")),
        }
    }

    /// A non-negative integer field.
    pub fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| ApiError::field(name, "A valid integer is required.")),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| ApiError::field(name, "A valid integer is required.")),
            Some(_) => Err(ApiError::field(name, "A valid integer is required.")),
        }
    }
}
