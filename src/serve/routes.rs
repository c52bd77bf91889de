//! The HTTP layer: JSON parsing with clear 4xx errors, queueing to the model worker (429 when
//! full), timeouts (504), server-sent events, metrics and the info endpoints.

use super::api::{AnswerRequest, ClassifyRequest, CompletionRequest, FillRequest, PoemRequest};
use super::complete::{completion_id, now_secs};
use super::limits::{ApiError, Limits};
use super::metrics::Metrics;
use super::validate::Front;
use super::worker::{Job, Msg, Work};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The worker's bounded queue.
    pub(crate) queue: SyncSender<Job>,
    /// Counters.
    pub(crate) metrics: Arc<Metrics>,
    /// Limits.
    pub(crate) limits: Arc<Limits>,
    /// `/v1/models` and `/health` facts: name, kind, max positions.
    pub(crate) model: Arc<serde_json::Value>,
    /// The Turing test, when served (`--turing`).
    pub(crate) turing: super::turing::SharedTuring,
    /// The tokenizer and model facts that requests are checked against before they queue.
    pub(crate) front: Arc<Front>,
}

/// The endpoints a request is counted under in `/metrics`.
const ENDPOINTS: &[&str] = &[
    "/v1/completions",
    "/v1/fill",
    "/v1/poem",
    "/v1/answer",
    "/v1/classify",
    "/health",
    "/v1/models",
    "/metrics",
    "/openapi.json",
    "/v1/turing/pair",
    "/v1/turing/vote",
    "/v1/turing/results",
];

/// The router with every endpoint, the body limit and the metrics middleware.
pub fn router(state: AppState) -> Router {
    let mut app = Router::new();
    let turing = state.turing.is_some();
    for route in super::web::page_routes(turing) {
        app = app.route(route, get(move || async move { super::web::page(route, turing) }));
    }
    app.route("/assets/{name}", get(super::web::asset))
        .route("/v1/turing/pair", get(super::turing::pair))
        .route("/v1/turing/vote", post(super::turing::vote).layer(DefaultBodyLimit::max(super::turing::MAX_VOTE_BYTES)))
        .route("/v1/turing/results", get(super::turing::results))
        .route("/v1/completions", post(completions))
        .route("/v1/fill", post(fill))
        .route("/v1/poem", post(poem))
        .route("/v1/answer", post(answer))
        .route("/v1/classify", post(classify))
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), read_body))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Records one request in the metrics exactly once: with its response's status, the real outcome
/// of a stream when it ends, or 499 when the client leaves before either.
pub(crate) struct Outcome {
    metrics: Arc<Metrics>,
    endpoint: &'static str,
    start: Instant,
    done: AtomicBool,
}

impl Outcome {
    /// Counts the request with `status` (only the first call counts).
    fn record(&self, status: u16) {
        if !self.done.swap(true, Ordering::Relaxed) {
            self.metrics.record(self.endpoint, status, self.start.elapsed());
        }
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        self.record(ApiError::client_closed().status.as_u16());
    }
}

/// Marks a response whose [`Outcome`] its body (a stream) records when it ends.
#[derive(Clone, Copy)]
struct Deferred;

/// Counts every request by endpoint and status, with its latency.
async fn track(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let endpoint = ENDPOINTS
        .iter()
        .find(|e| **e == path)
        .copied()
        .or_else(|| super::web::page_routes(s.turing.is_some()).find(|r| *r == path).map(|_| "page"))
        .unwrap_or("other");
    let outcome = Arc::new(Outcome { metrics: s.metrics.clone(), endpoint, start: Instant::now(), done: AtomicBool::new(false) });
    req.extensions_mut().insert(outcome.clone());
    let resp = next.run(req).await;
    if resp.extensions().get::<Deferred>().is_none() {
        outcome.record(resp.status().as_u16());
    }
    resp
}

/// Reads the whole body before the handler runs: 413 at once when `Content-Length` is over the
/// limit, 413 as soon as a body without one passes it, 408 when it does not arrive within
/// `read_timeout` (hyper bounds the headers the same way).
async fn read_body(State(s): State<AppState>, req: Request, next: Next) -> Response {
    // A vote has its own, smaller limit: its 413 names that one, however large the body.
    let vote = req.uri().path() == "/v1/turing/vote";
    let limit = if vote { super::turing::MAX_VOTE_BYTES.min(s.limits.max_body_bytes) } else { s.limits.max_body_bytes };
    let too_large = || {
        let message = if vote {
            format!("a vote is at most {limit} bytes")
        } else {
            format!("the request body is larger than {limit} bytes (--max-body-bytes)")
        };
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    };
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large().into_response();
    }
    let (parts, body) = req.into_parts();
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
            if buf.len() + chunk.len() > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    match tokio::time::timeout(s.limits.read_timeout, read).await {
        Ok(Ok(buf)) => next.run(Request::from_parts(parts, Body::from(buf))).await,
        Ok(Err(e)) => e.into_response(),
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {} s; send it at once", s.limits.read_timeout.as_secs_f64()),
        )
        .into_response(),
    }
}

/// Parses a JSON body: 413 when too large, 400 naming the problem otherwise.
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>, limits: &Limits) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {} bytes (--max-body-bytes)", limits.max_body_bytes),
            )
        } else {
            ApiError::new(e.status(), format!("could not read the request body: {}", e.body_text()))
        }
    })?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request body is empty: send a JSON object"));
    }
    json_object(&bytes, limits)
}

/// Reads a request body that must be one JSON object. serde would read a struct from a JSON array
/// too (its fields in order), so anything but an object is refused first; errors name the field
/// (`prompt[1]`, `temperature`) where there is one.
pub(crate) fn json_object<T: DeserializeOwned>(bytes: &[u8], limits: &Limits) -> Result<T, ApiError> {
    if !is_object(bytes) {
        return Err(ApiError::bad_request("the body must be a JSON object ({\"field\": value, …})"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = (!path.is_empty() && path != ".").then_some(path);
        ApiError::bad_request(json_error(&inner, field.as_deref(), limits))
    })?;
    // Trailing text after the object: `from_slice` refuses it as well.
    de.end().map_err(|e| ApiError::bad_request(json_error(&e, None, limits)))?;
    Ok(parsed)
}

/// Whether the first non-blank byte of `bytes` opens a JSON object.
pub(crate) fn is_object(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// The message of a JSON error at `field`: an out-of-range number says the field's range, the
/// untagged lists say what they take.
fn json_error(e: &serde_json::Error, field: Option<&str>, limits: &Limits) -> String {
    let msg = e
        .to_string()
        .replace("data did not match any variant of untagged enum Prompts", "`prompt` must be a string or a list of strings")
        .replace("data did not match any variant of untagged enum Stops", "`stop` must be a string or a list of strings");
    match field {
        // A text field holds a number too large to read: say what the field takes instead.
        Some(f) if msg.starts_with("number out of range") => match text_field(f) {
            Some(takes) => format!("`{f}` must be {takes}, not a number ({msg})"),
            None => format!("`{f}` is out of range ({msg}): {}", range_of(f, limits)),
        },
        // (The untagged lists' messages name their field already.)
        Some(f) if !msg.contains(&format!("`{f}`")) => format!("invalid JSON body: `{f}`: {msg}"),
        _ => format!("invalid JSON body: {msg}"),
    }
}

/// What a text field of a request body (`prompt[1]`: an item of a list) takes; `None` for the
/// other fields.
fn text_field(field: &str) -> Option<&'static str> {
    match field.split('[').next().unwrap_or(field) {
        "prompt" | "stop" => Some("a string or a list of strings"),
        "include" if field.contains('[') => Some("a string"),
        "include" => Some("a list of strings"),
        "model" | "user" | "text" | "title" | "form" | "acrostic" | "rhyme" | "author" | "question" | "description" | "task"
        | "task_toml" => Some("a string"),
        _ => None,
    }
}

/// What a numeric request field takes, for an out-of-range value.
fn range_of(field: &str, limits: &Limits) -> String {
    match field {
        "temperature" => "give a number ≥ 0 (0 = greedy; sampling usually takes 0.5 to 1.5)".into(),
        "top_p" => "give a number in (0, 1]".into(),
        "frequency_penalty" | "presence_penalty" => "give a number in [-2, 2] (0 = off)".into(),
        "repetition_penalty" => "give a positive number (1 = off)".into(),
        "max_tokens" => format!("give a whole number from 1 to {} (--max-tokens)", limits.max_tokens),
        "beams" => format!("give a whole number from 1 to {} (--max-beams)", limits.max_beams),
        "n" => format!("give a whole number from 1 to {} (--max-choices)", limits.max_choices),
        _ => "give a smaller number (a whole number fits 64 bits, a decimal 32 bits)".into(),
    }
}

/// Puts `work` on the queue: the receiver of its messages and its deadline, or 429 when the queue is full.
fn submit(s: &AppState, work: Work) -> Result<(UnboundedReceiver<Msg>, Instant), ApiError> {
    let (tx, rx) = unbounded_channel();
    // `Limits::validate` bounds the timeout; the clamp keeps the sum from overflowing whatever
    // `Limits` the state was built with.
    let deadline = Instant::now() + s.limits.timeout.min(std::time::Duration::from_secs(Limits::MAX_SECONDS));
    let job = Job { work, tx, deadline };
    s.metrics.enqueued();
    match s.queue.try_send(job) {
        Ok(()) => Ok((rx, deadline)),
        Err(e) => {
            s.metrics.dequeued();
            Err(match e {
                TrySendError::Full(_) => ApiError::busy(s.limits.queue_len, 1),
                TrySendError::Disconnected(_) => {
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model worker has stopped (shutting down)")
                }
            })
        }
    }
}

/// Waits for the final answer, ignoring progress; 504 at the deadline (dropping the receiver
/// then tells the worker to stop).
async fn wait(s: &AppState, (mut rx, deadline): (UnboundedReceiver<Msg>, Instant)) -> Response {
    let done = async {
        while let Some(m) = rx.recv().await {
            if let Msg::Done(r) = m {
                return r;
            }
        }
        Err(ApiError::internal("the model worker dropped the request"))
    };
    match tokio::time::timeout_at(deadline.into(), done).await {
        Ok(Ok(body)) => Json(body).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => ApiError::timeout(s.limits.timeout).into_response(),
    }
}

/// The SSE response of a stream of worker messages, `to_event` mapping each one (None: skip).
/// It starts only once the worker has started the work: an error before that (a deadline passed
/// in the queue, a request the model refuses) is a plain JSON error with its status. The request
/// is counted in the metrics when the stream ends, with its real outcome.
async fn sse(
    s: &AppState,
    (mut rx, deadline): (UnboundedReceiver<Msg>, Instant),
    outcome: Arc<Outcome>,
    mut to_event: impl FnMut(Msg) -> Option<String> + Send + 'static,
) -> Response {
    let first = match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
        Err(_) => return ApiError::timeout(s.limits.timeout).into_response(),
        Ok(None) => return ApiError::internal("the model worker dropped the request").into_response(),
        Ok(Some(Msg::Done(Err(e)))) => return e.into_response(),
        Ok(Some(m)) => m,
    };
    let ended = outcome.clone();
    let events = tokio_stream::iter(Some(first))
        .chain(UnboundedReceiverStream::new(rx))
        .map(move |m| {
            match &m {
                Msg::Done(Ok(_)) => outcome.record(200),
                Msg::Done(Err(e)) => outcome.record(e.status.as_u16()),
                _ => {}
            }
            to_event(m)
        })
        .filter_map(|e| e)
        // The channel closed without a `Done` (the worker died): the client gets an error event,
        // not a silently cut answer, and the request counts as a 500. A recorded outcome means
        // `Done` came, and then this yields nothing. Lazy: evaluated when the stream gets here.
        .chain(tokio_stream::iter(std::iter::from_fn(move || {
            let cut = !ended.done.load(Ordering::Relaxed);
            let e = ApiError::internal("the model worker stopped before finishing the request");
            cut.then(|| {
                ended.record(e.status.as_u16());
                e.body().to_string()
            })
        })))
        .chain(tokio_stream::once("[DONE]".to_string()))
        .map(|d| Ok::<_, Infallible>(Event::default().data(d)));
    let mut resp = Sse::new(events).into_response();
    resp.extensions_mut().insert(Deferred);
    resp
}

/// `POST /v1/completions`.
async fn completions(
    State(s): State<AppState>,
    Extension(outcome): Extension<Arc<Outcome>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: CompletionRequest = match parse(body, &s.limits) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let plan = match super::validate::completion(&s.front, &req, &s.limits) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let (stream, stream_options) = (req.stream, req.stream_options.clone());
    let model = req.model.clone().unwrap_or_else(|| s.model["id"].as_str().unwrap_or("wenhui").to_string());
    let rx = match submit(&s, Work::Complete(req, plan)) {
        Ok(rx) => rx,
        Err(e) => return e.into_response(),
    };
    if !stream {
        return wait(&s, rx).await;
    }
    // One id for every chunk of this completion.
    let (id, created) = (completion_id(), now_secs());
    // As OpenAI: with `include_usage`, every chunk has `"usage": null` and a last chunk without
    // choices carries the whole request's usage.
    let include_usage = stream_options.is_some_and(|o| o.include_usage);
    let chunk = move |choices: serde_json::Value, usage: Option<serde_json::Value>| {
        let mut c = json!({"id": id, "object": "text_completion", "created": created, "model": model, "choices": choices});
        if include_usage {
            c["usage"] = usage.unwrap_or(serde_json::Value::Null);
        }
        c.to_string()
    };
    let choice =
        |index: usize, text: &str, reason: Option<&str>| json!([{"text": text, "index": index, "logprobs": null, "finish_reason": reason}]);
    sse(&s, rx, outcome, move |m| match m {
        Msg::Delta { choice: i, text } => Some(chunk(choice(i, &text, None), None)),
        Msg::Finish { choice: i, reason } => Some(chunk(choice(i, "", Some(reason)), None)),
        Msg::Done(Ok(body)) if include_usage => Some(chunk(json!([]), Some(body["usage"].clone()))),
        Msg::Done(Err(e)) => Some(e.body().to_string()),
        _ => None,
    })
    .await
}

/// `POST /v1/fill`.
async fn fill(State(s): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let checked =
        parse::<FillRequest>(body, &s.limits).and_then(|r| super::validate::fill(&s.front, &r, &s.limits).map(|p| Work::Fill(r, p)));
    match checked.and_then(|w| submit(&s, w)) {
        Ok(rx) => wait(&s, rx).await,
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/poem` (SSE with `stream: true`: one event per decided line, one per line refinement
/// replaces (`revised: true`), then the whole result).
async fn poem(State(s): State<AppState>, Extension(outcome): Extension<Arc<Outcome>>, body: Result<Bytes, BytesRejection>) -> Response {
    let (req, plan) = match parse::<PoemRequest>(body, &s.limits).and_then(|r| {
        let plan = super::validate::poem(&s.front, &r, &s.limits)?;
        // --max-prompt-tokens counts the tokens of the prompt the search builds, as on every endpoint.
        super::checks::search_prompt(&s.front, &plan.task, &plan.fields, &s.limits, "`title` and `author`", "`title` (or `author`)")?;
        Ok((r, plan))
    }) {
        Ok(checked) => checked,
        Err(e) => return e.into_response(),
    };
    let stream = req.stream;
    match submit(&s, Work::Poem(req, Box::new(plan))) {
        Ok(rx) if stream => {
            let mut seen = HashSet::new();
            sse(&s, rx, outcome, move |m| match m {
                Msg::Unit { index, text } if seen.insert(index) => Some(json!({"index": index, "line": text}).to_string()),
                Msg::Unit { index, text } | Msg::Revise { index, text } => {
                    Some(json!({"index": index, "line": text, "revised": true}).to_string())
                }
                Msg::Done(Ok(body)) => Some(json!({"result": body}).to_string()),
                Msg::Done(Err(e)) => Some(e.body().to_string()),
                _ => None,
            })
            .await
        }
        Ok(rx) => wait(&s, rx).await,
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/answer`.
async fn answer(State(s): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let checked = parse::<AnswerRequest>(body, &s.limits)
        .and_then(|r| super::validate::answer(&s.front, &r, &s.limits).map(|p| Work::Answer(r, Box::new(p))));
    match checked.and_then(|w| submit(&s, w)) {
        Ok(rx) => wait(&s, rx).await,
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/classify`.
async fn classify(State(s): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let checked =
        parse::<ClassifyRequest>(body, &s.limits).and_then(|r| super::validate::classify(&s.front, &r, &s.limits).map(Work::Classify));
    match checked.and_then(|w| submit(&s, w)) {
        Ok(rx) => wait(&s, rx).await,
        Err(e) => e.into_response(),
    }
}
/// `GET /health`.
async fn health(State(s): State<AppState>) -> Response {
    Json(json!({"status": "ok", "model": s.model["id"], "queue_depth": s.metrics.queue_depth().max(0)})).into_response()
}

/// `GET /v1/models`.
async fn models(State(s): State<AppState>) -> Response {
    Json(json!({"object": "list", "data": [s.model.as_ref()]})).into_response()
}

/// `GET /metrics`.
async fn metrics(State(s): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render()).into_response()
}

/// `GET /openapi.json`.
async fn openapi(State(s): State<AppState>) -> Response {
    Json(super::openapi::document(&s.limits)).into_response()
}

async fn not_found(req: Request) -> Response {
    ApiError::new(StatusCode::NOT_FOUND, format!("no endpoint {} {} (see GET /openapi.json)", req.method(), req.uri().path()))
        .into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{} is not allowed on {}", req.method(), req.uri().path())).into_response()
}
