//! Minimal HTTP/1.1 pieces for the push phase: a client for the relay's JSON API (one request per
//! connection, `Connection: close`), and a stand-in push provider (a UnifiedPush-style endpoint
//! that records when each device's push arrives, RFC 9110 methods and status codes only).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Largest request body the stand-in accepts.
const MAX_BODY_BYTES: usize = 1 << 16;

/// A failed HTTP exchange.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Socket failure.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Not an HTTP response, or a URL this client does not handle.
    #[error("bad http: {0}")]
    Bad(String),
    /// The exchange took too long.
    #[error("timed out")]
    Timeout,
}

/// POSTs a JSON body to `http://host:port/path` and returns (status, body).
///
/// Errors: [`HttpError`] on transport failure, a non-`http://` URL, or a malformed response.
pub async fn post_json(
    url: &str,
    auth: Option<&str>,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String), HttpError> {
    http_request("POST", url, auth, body, timeout).await
}

/// Sends one `method` request (JSON body, `Authorization: Token <auth>` when given) to
/// `http://host:port/path` on a fresh connection and returns (status, body).
///
/// Errors: [`HttpError`] on transport failure, a non-`http://` URL, or a malformed response.
pub async fn http_request(
    method: &str,
    url: &str,
    auth: Option<&str>,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String), HttpError> {
    tokio::time::timeout(timeout, request_inner(method, url, auth, body))
        .await
        .map_err(|_| HttpError::Timeout)?
}

/// Splits `http://host:port/path` into (`host:port`, `/path`).
///
/// Errors: [`HttpError::Bad`] for any other scheme.
pub fn split_http_url(url: &str) -> Result<(String, String), HttpError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HttpError::Bad(format!("only http:// URLs: {url}")))?;
    Ok(rest
        .split_once('/')
        .map_or((rest.to_owned(), "/".to_owned()), |(h, p)| {
            (h.to_owned(), format!("/{p}"))
        }))
}

async fn request_inner(
    method: &str,
    url: &str,
    auth: Option<&str>,
    body: &str,
) -> Result<(u16, String), HttpError> {
    let (host, path) = split_http_url(url)?;
    let mut stream = TcpStream::connect(&host).await?;
    let auth = auth
        .map(|a| format!("Authorization: Token {a}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{auth}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| HttpError::Bad("no status line".into()))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A stand-in push provider on loopback: every `POST /up/<n>` is recorded with its arrival time.
#[derive(Clone)]
pub struct StandInProvider {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub base_url: String,
    arrivals: Arc<Mutex<HashMap<usize, Instant>>>,
    arrived: Arc<Notify>,
}

impl StandInProvider {
    /// Binds 127.0.0.1 on a free port and serves until the returned handle is aborted.
    ///
    /// Errors: the bind failure.
    pub async fn start() -> Result<(StandInProvider, tokio::task::JoinHandle<()>), std::io::Error> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let provider = StandInProvider {
            base_url: format!("http://{}", listener.local_addr()?),
            arrivals: Arc::new(Mutex::new(HashMap::new())),
            arrived: Arc::new(Notify::new()),
        };
        let serving = provider.clone();
        let handle = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serving.clone().serve(socket));
            }
        });
        Ok((provider, handle))
    }

    /// The endpoint URL of device `n`.
    pub fn endpoint(&self, n: usize) -> String {
        format!("{}/up/{n}", self.base_url)
    }

    /// First arrival time per device number.
    pub fn arrivals(&self) -> HashMap<usize, Instant> {
        self.arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until `count` devices have received a push or `deadline` passes.
    pub async fn wait_for(&self, count: usize, deadline: tokio::time::Instant) {
        loop {
            let notified = self.arrived.notified();
            if self
                .arrivals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len()
                >= count
            {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// Serves keep-alive HTTP/1.1 requests on one connection.
    async fn serve(self, socket: TcpStream) {
        let mut reader = BufReader::new(socket);
        loop {
            let mut request_line = String::new();
            match reader.read_line(&mut request_line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let mut length = 0usize;
            let mut close = false;
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == "\r\n" || line == "\n" {
                    break;
                }
                match line.split_once(':') {
                    Some((name, value)) if name.eq_ignore_ascii_case("content-length") => {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    Some((name, value)) if name.eq_ignore_ascii_case("connection") => {
                        close = value.trim().eq_ignore_ascii_case("close");
                    }
                    _ => {}
                }
            }
            if length > MAX_BODY_BYTES {
                return;
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).await.is_err() {
                return;
            }
            let now = Instant::now();
            let device = request_line
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.strip_prefix("/up/"))
                .and_then(|n| n.parse::<usize>().ok());
            if let Some(n) = device {
                self.arrivals
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(n)
                    .or_insert(now);
                self.arrived.notify_waiters();
            }
            // 201 is what UnifiedPush and Web Push servers answer to an accepted message.
            let reply = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
            if reader.get_mut().write_all(reply).await.is_err() || close {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn provider_records_posts_and_client_reads_status() {
        let (provider, handle) = StandInProvider::start().await.unwrap();
        let (status, _) = post_json(&provider.endpoint(7), None, "{}", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(status, 201);
        provider
            .wait_for(1, tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
        assert!(provider.arrivals().contains_key(&7));
        handle.abort();
    }
}
