//! One error type for every handler: a public message and a status, as `{"error": "…"}`.
//! Causes are logged, never echoed.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use postern_domain::DomainError;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// Unknown and not-yours answer alike, so ids cannot be probed.
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden")
    }

    pub fn wrong_api_key() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Wrong api key")
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "No such endpoint")
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(m) => ApiError::bad_request(m),
            DomainError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            DomainError::NotFound(_) => ApiError::forbidden(),
            e @ DomainError::Unavailable(_) => {
                tracing::error!(error = %e, "request failed");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable")
            }
            e
            @ (DomainError::Db(_) | DomainError::Crypto(_) | DomainError::MalformedMessage(_)) => {
                tracing::error!(error = %e, "request failed");
                ApiError::internal()
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::bad_request("request body cannot be empty")
            }
            JsonRejection::BytesRejection(_) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large")
            }
            other => ApiError::bad_request(format!("Bad Request: {}", other.body_text())),
        }
    }
}
