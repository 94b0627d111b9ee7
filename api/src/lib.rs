//! The HTTP side: for now the health endpoint that load balancers and the tests poll.
//! The SimpleLogin-compatible REST API and the web UI build on this router.

use std::future::Future;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use postern_domain::mailflow::Mailflow;
use sea_orm::ConnectionTrait;
use serde_json::json;

#[derive(Clone)]
pub struct AppState {
    pub flow: Mailflow,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .fallback(not_found)
        .with_state(state)
}

/// `200 {"status":"ok"}` when the database answers, `503` otherwise.
async fn health(State(state): State<AppState>) -> Response {
    let db = state.flow.db();
    let statement = sea_orm::Statement::from_string(db.get_database_backend(), "SELECT 1");
    match db.execute_raw(statement).await {
        Ok(_) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "database unavailable"})),
            )
                .into_response()
        }
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "Not found"}))).into_response()
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
