//! The HTTP side: the SimpleLogin-compatible REST API under `/api` and the health endpoint.

pub(crate) mod addy;
mod authorized;
mod bounds;
mod error;
mod extract;
mod limit;
mod notifications;
mod openapi;
mod quarantine;
pub(crate) mod simplelogin;
mod web;

use std::future::Future;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use postern_domain::Context;
use postern_domain::secrets::HmacKey;
use serde_json::json;
use tower_http::cors::{Any, CorsLayer};

pub use error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
    /// Signs the alias suffixes offered to clients.
    pub suffix_key: HmacKey,
    /// Signs the token between the password and the TOTP step of a login.
    pub mfa_key: HmacKey,
    pub limits: std::sync::Arc<postern_domain::limit::RateLimiter>,
}

impl AppState {
    pub async fn new(ctx: Context) -> Result<Self, postern_domain::DomainError> {
        let suffix_key = postern_domain::secrets::load_or_create(ctx.db(), "alias-suffix").await?;
        let mfa_key = postern_domain::secrets::load_or_create(ctx.db(), "mfa-key").await?;
        Ok(Self {
            ctx,
            suffix_key,
            mfa_key,
            limits: Default::default(),
        })
    }

    /// Counts one request on `key` against a per-minute limit from the settings.
    pub(crate) fn per_minute(
        &self,
        key: &str,
        limit: impl Fn(&postern_config::LimitSettings) -> u32,
    ) -> Result<(), ApiError> {
        self.limit(key, limit(&self.ctx.settings().limits), limit::MINUTE)
    }

    /// Counts one request on `key`: `429` past `limit` within `period`.
    pub(crate) fn limit(
        &self,
        key: &str,
        limit: u32,
        period: std::time::Duration,
    ) -> Result<(), ApiError> {
        if self.limits.hit(key, limit, period) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit exceeded",
            ))
        }
    }

    /// Counts an alias creation by `user_id` against the configured limits.
    pub(crate) fn limit_alias_creation(&self, user_id: i64) -> Result<(), ApiError> {
        let l = &self.ctx.settings().limits;
        let key = format!("alias:{user_id}");
        self.limit(&format!("{key}:m"), l.alias_per_minute, limit::MINUTE)?;
        self.limit(&format!("{key}:h"), l.alias_per_hour, limit::HOUR)
    }
}

pub fn router(state: AppState) -> Router {
    // Browser extensions call the API from other origins, with the key in a header.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(Any)
        .allow_headers(Any);
    let api = simplelogin::routes()
        .route(
            "/mailboxes/{id}/authorized_addresses",
            get(authorized::list).post(authorized::add),
        )
        .route(
            "/mailboxes/{id}/authorized_addresses/{address_id}",
            axum::routing::delete(authorized::remove),
        )
        .route("/bounces", get(notifications::bounces))
        .route("/bounces/{id}/message", get(notifications::refused_message))
        .route("/quarantine", get(quarantine::list))
        .route(
            "/quarantine/{id}/release",
            axum::routing::post(quarantine::release),
        )
        .route(
            "/quarantine/{id}",
            axum::routing::delete(quarantine::delete),
        )
        .nest("/v1", addy::routes())
        .route("/openapi.json", get(openapi::document))
        .route("/docs", get(openapi::page))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        })
        .layer(axum::middleware::map_response(json_errors))
        .layer(cors);
    Router::new()
        .route("/health", get(health))
        .route(
            "/auth/activate",
            get(simplelogin::activate_link).post(simplelogin::activate_confirm),
        )
        .route(
            "/mailbox/verify",
            get(simplelogin::verify_mailbox_link).post(simplelogin::verify_mailbox_confirm),
        )
        .route("/auth/api_to_cookie", get(simplelogin::api_to_cookie))
        .route(
            "/act/{token}",
            get(notifications::action_page).post(notifications::action_confirm),
        )
        .nest("/api", api)
        .merge(web::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "Not found") })
        .layer(axum::middleware::from_fn(invalidate_caches))
        .with_state(state)
}

/// Any request that may change aliases, mailboxes, contacts or settings makes the mail
/// path's caches in this process forget what they hold, so the change applies at once.
async fn invalidate_caches(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let changes = !request.method().is_safe();
    let response = next.run(request).await;
    if changes {
        postern_domain::cache::invalidate();
    }
    response
}

/// Framework rejections (bad query strings, oversized or unreadable bodies) come as plain text;
/// API clients get every error as `{"error": …}`.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let message = match status {
        StatusCode::BAD_REQUEST => "Bad Request",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::NOT_FOUND => "No such endpoint",
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "Request body too large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "Unsupported content type",
        StatusCode::TOO_MANY_REQUESTS => "Rate limit exceeded",
        s if s.is_server_error() => "Internal error",
        _ => status.canonical_reason().unwrap_or("Error"),
    };
    ApiError::new(status, message).into_response()
}

/// `200 {"status":"ok"}` when the database answers, `503` otherwise.
async fn health(State(state): State<AppState>) -> Response {
    let db = state.ctx.db();
    match postern_domain::delivery::queue::health(db).await {
        Ok(queue) => Json(json!({"status": "ok", "queue": queue})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
