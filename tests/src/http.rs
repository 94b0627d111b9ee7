//! Calling the API: in memory through the router, or over a real HTTP/1.1 connection.

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use crate::harness::TestServer;

/// A response: status, JSON body (`Null` when empty or not JSON) and headers.
pub struct Reply {
    pub status: u16,
    pub json: Value,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Through the router, no socket. `key` goes in SimpleLogin's `Authentication` header.
pub async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let state = postern_api::AppState::new(server.running().ctx.clone())
        .await
        .expect("API state");
    let router = postern_api::router(state);
    let mut req = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        req = req.header("Authentication", key);
    }
    let req = match body {
        Some(body) => req
            .header("Content-Type", "application/json")
            .body(Body::from(body.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let response = router.oneshot(req).await.expect("router answers");
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    Reply {
        status: status.as_u16(),
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        body: String::from_utf8_lossy(&bytes).into_owned(),
        headers,
    }
}

/// Over a real TCP connection to the running server.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    let body = body.unwrap_or_default();
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        json: serde_json::from_str(body).unwrap_or(Value::Null),
        body: body.to_string(),
        headers,
    }
}

pub fn ok(status: u16) -> bool {
    StatusCode::from_u16(status).is_ok_and(|s| s.is_success())
}

/// Opens a link from an email as a person would: the page (which must change nothing and
/// offer a confirm button), then the button (a form POST of the token to `path`).
pub async fn confirm_link(addr: SocketAddr, path: &str, token: &str) -> Reply {
    let page = http(addr, "GET", &format!("{path}?token={token}"), &[], None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("method=post") && page.body.contains(token),
        "{}",
        page.body
    );
    http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&format!("token={token}")),
    )
    .await
}
