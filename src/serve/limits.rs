//! The limits a service needs to stay up, and the JSON errors it answers with.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Limits on what one request may ask for. Every one is a `wenhui serve` flag.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request body in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Longest prompt in tokens, counted on the prompt each endpoint builds: a completion's or
    /// fill's context (the model's own framing included), the search prompt of a poem or answer,
    /// a classification's compiled input (longer: 400 naming the limit). The model's positions
    /// bound it too (a classification's input is cut to them, and its answer says by how much).
    pub max_prompt_tokens: usize,
    /// Largest `max_tokens` a request may ask for (larger: 400).
    pub max_tokens: usize,
    /// Largest `n` (choices) and number of prompts times `n` in one completion request.
    pub max_choices: usize,
    /// Largest `beams` for fill, poem and answer.
    pub max_beams: usize,
    /// Most completion rows (choices) decoded together in one continuous batch (1 = one at a time);
    /// a request with more rows (`n` × prompts) is refused, one that does not fit beside the
    /// rows decoding waits for them.
    pub max_batch: usize,
    /// Requests waiting for the model beyond the one it is running (more: 429 with `Retry-After`).
    pub queue_len: usize,
    /// Longest time a request may take, queueing included (longer: 504; the work is stopped).
    pub timeout: Duration,
    /// Longest time a client may take to send a request's headers (the connection is then
    /// closed) or its body (408): a client that stalls cannot hold a connection open.
    pub read_timeout: Duration,
    /// How long a stop (Ctrl-C, SIGTERM, [`super::ServerHandle::shutdown`]) waits for the requests
    /// in flight before cancelling them; a second signal cancels them at once.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_prompt_tokens: 1024,
            max_tokens: 512,
            max_choices: 8,
            max_beams: 16,
            max_batch: 16,
            queue_len: 64,
            timeout: Duration::from_secs(120),
            read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// Longest time limit (`timeout`, `read_timeout`, `shutdown_grace`) in seconds, about 31
    /// years: far past any real limit, and far from the ends of [`std::time::Instant`] arithmetic
    /// and of the timers the server sets with them.
    pub const MAX_SECONDS: u64 = 1_000_000_000;

    /// Checks that every limit lets a request through (a zero size or time would refuse them all)
    /// and that none is beyond what the server can hold (times at most [`Limits::MAX_SECONDS`]);
    /// errors name the `wenhui serve` flag.
    /// [`super::start`] runs it, so a library caller gets the same checks as the command line.
    pub fn validate(&self) -> crate::Result<()> {
        let sizes = [
            ("--max-body-bytes", self.max_body_bytes),
            ("--max-prompt-tokens", self.max_prompt_tokens),
            ("--max-tokens", self.max_tokens),
            ("--max-choices", self.max_choices),
            ("--max-beams", self.max_beams),
            ("--max-batch", self.max_batch),
            ("--queue", self.queue_len),
        ];
        if let Some((flag, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(crate::Error::input(format!("{flag} 0 would refuse every request; give a positive limit")));
        }
        if self.max_beams > crate::generate::MAX_BEAMS {
            return Err(crate::Error::input(format!(
                "--max-beams {}: at most {} (a search keeps a batch row and a cache per beam)",
                self.max_beams,
                crate::generate::MAX_BEAMS
            )));
        }
        let times = [("--timeout", self.timeout), ("--read-timeout", self.read_timeout), ("--shutdown-grace", self.shutdown_grace)];
        if let Some((flag, _)) = times.iter().find(|(_, t)| t.is_zero()) {
            return Err(crate::Error::input(format!("{flag} 0 would stop every request at once; give a positive number of seconds")));
        }
        if let Some((flag, t)) = times.iter().find(|(_, t)| *t > Duration::from_secs(Self::MAX_SECONDS)) {
            return Err(crate::Error::input(format!(
                "{flag} {} s is too long: give at most {} seconds",
                t.as_secs_f64(),
                Self::MAX_SECONDS
            )));
        }
        Ok(())
    }
}

/// An error answered as `{"error": {"message", "type", "code"}}` (OpenAI's shape).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong and what to change.
    pub message: String,
    /// Seconds to wait before retrying (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retry_after: None }
    }
    /// 400: the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 429: the queue is full.
    pub fn busy(queue_len: usize, retry_after: u64) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!("the server is busy: {queue_len} requests are already waiting (the --queue limit); retry later"),
            retry_after: Some(retry_after),
        }
    }
    /// 504: the request ran past the timeout.
    pub fn timeout(limit: Duration) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("the request took longer than the {} s limit (--timeout) and was stopped", limit.as_secs_f64()),
        )
    }
    /// 503: a stopping server cancelled the request when its `--shutdown-grace` ended (or at a
    /// second Ctrl-C / SIGTERM).
    pub fn shutting_down() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down and cancelled this request; retry when it is back")
    }
    /// 499 (nginx's "client closed request"): the client left before the answer; only counted, never sent.
    pub fn client_closed() -> Self {
        Self::new(StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST), "the client closed the connection before the answer")
    }
    /// 500: the server failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    /// The `type` field: a short name for the status.
    pub fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            400 => "invalid_request_error",
            404 => "not_found_error",
            405 => "method_not_allowed",
            408 => "request_timeout",
            409 => "conflict",
            413 => "request_too_large",
            429 => "rate_limit_error",
            499 => "client_closed",
            501 => "not_implemented",
            503 => "unavailable",
            504 => "timeout",
            _ => "server_error",
        }
    }
    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"message": self.message, "type": self.kind(), "code": self.status.as_u16()}})
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Input(m) => Self::bad_request(m),
            crate::Error::Tokenizer(m) => Self::bad_request(format!("tokenizer: {m}")),
            other => Self::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}
