//! The Turing-test endpoints (`wenhui serve --turing FILE`): a pair to judge with a one-time vote
//! token, the vote, and the results (see [`crate::eval::turing`] for the storage and statistics).

use super::limits::ApiError;
use super::routes::AppState;
use crate::eval::turing::{read_pairs, summarize, TuringPair, VoteError, VoteStore};
use crate::Result;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Largest vote body in bytes (a vote is ~100 bytes; larger: 413).
pub const MAX_VOTE_BYTES: usize = 4096;

/// Where the pairs and the votes are.
#[derive(Debug, Clone)]
pub struct TuringConfig {
    /// The pairs (JSONL of `wenhui turing prepare`).
    pub pairs: PathBuf,
    /// The SQLite vote database (created when missing).
    pub votes: PathBuf,
}

/// The loaded pairs and the open vote store.
pub struct TuringState {
    pairs: Vec<TuringPair>,
    by_id: HashMap<String, usize>,
    store: VoteStore,
}

impl TuringState {
    /// Reads the pairs and opens the vote database.
    pub fn open(cfg: &TuringConfig) -> Result<Self> {
        let pairs = read_pairs(&cfg.pairs)?;
        let by_id = pairs.iter().enumerate().map(|(i, p)| (p.id.clone(), i)).collect();
        let store = VoteStore::open(&cfg.votes)?;
        Ok(Self { pairs, by_id, store })
    }
}

fn off() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "the Turing test is off: start the server with `wenhui serve --turing PAIRS.jsonl`")
        .into_response()
}

/// Runs a blocking database call off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::result::Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("vote database task failed: {e}")))
}

/// `GET /v1/turing/pair?seen=ID,ID…`: a random pair (one not in `seen` while any is left), its
/// two poems left and right, and a one-time vote token.
pub(crate) async fn pair(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let Some(t) = s.turing.clone() else { return off() };
    let seen_param = q.as_deref().unwrap_or("").split('&').find_map(|kv| kv.strip_prefix("seen=")).map(percent_decode).unwrap_or_default();
    let seen: Vec<&str> = seen_param.split(',').take(1000).collect();
    let fresh: Vec<usize> = (0..t.pairs.len()).filter(|&i| !seen.contains(&t.pairs[i].id.as_str())).collect();
    let pool = if fresh.is_empty() { (0..t.pairs.len()).collect() } else { fresh.clone() };
    let i = pool[rand::rng().random_range(0..pool.len())];
    let id = t.pairs[i].id.clone();
    let issued = match blocking({
        let t = t.clone();
        move || t.store.issue(&id)
    })
    .await
    {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return ApiError::internal(e.to_string()).into_response(),
        Err(e) => return e.into_response(),
    };
    let p = &t.pairs[i];
    let (left, right) = if issued.human_left { (&p.human, &p.machine) } else { (&p.machine, &p.human) };
    Json(json!({
        "pair_id": p.id, "title": p.title, "form": p.form, "left": left, "right": right, "token": issued.token,
        "pairs": t.pairs.len(), "unseen": fresh.len(),
    }))
    .into_response()
}

/// Decodes `%XX` escapes and `+` of a query value (invalid escapes are kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |i: usize| b.get(i).and_then(|&c| (c as char).to_digit(16));
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A vote.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vote {
    pair_id: String,
    token: String,
    /// `left` or `right`: the poem the visitor takes for the human one.
    pick: String,
}

/// `POST /v1/turing/vote` `{"pair_id", "token", "pick": "left"|"right"}`: 200 with the answer once
/// the vote is committed; 404 unknown pair, 400 unknown token or bad body, 409 replay, 413 too large.
pub(crate) async fn vote(State(s): State<AppState>, body: std::result::Result<Bytes, BytesRejection>) -> Response {
    let Some(t) = s.turing.clone() else { return off() };
    let bytes = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("a vote is at most {MAX_VOTE_BYTES} bytes")).into_response()
        }
        Err(e) => return ApiError::new(e.status(), format!("could not read the request body: {}", e.body_text())).into_response(),
    };
    // serde reads a struct from a JSON array too (its fields in order): only an object is a vote.
    let parsed = if super::routes::is_object(&bytes) {
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    } else {
        Err("the body must be a JSON object".to_string())
    };
    let v: Vote = match parsed {
        Ok(v) => v,
        Err(e) => {
            return ApiError::bad_request(format!("invalid vote: {e} (send {{\"pair_id\", \"token\", \"pick\": \"left\"|\"right\"}})"))
                .into_response()
        }
    };
    let picked_left = match v.pick.as_str() {
        "left" => true,
        "right" => false,
        other => return ApiError::bad_request(format!("`pick` must be \"left\" or \"right\", got {other:?}")).into_response(),
    };
    let Some(&i) = t.by_id.get(&v.pair_id) else {
        return ApiError::new(StatusCode::NOT_FOUND, format!("unknown pair id {:?}", v.pair_id)).into_response();
    };
    let form = t.pairs[i].form.clone();
    let outcome = blocking({
        let t = t.clone();
        move || t.store.vote(&v.pair_id, &form, &v.token, picked_left)
    })
    .await;
    match outcome {
        Ok(Ok(o)) => {
            let human_left = picked_left != o.machine_chosen;
            Json(json!({"vote_id": o.id, "machine_chosen": o.machine_chosen, "human": if human_left {"left"} else {"right"}}))
                .into_response()
        }
        Ok(Err(e)) => {
            let status = match e {
                VoteError::UnknownToken | VoteError::WrongPair => StatusCode::BAD_REQUEST,
                VoteError::Replayed => StatusCode::CONFLICT,
                VoteError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            ApiError::new(status, e.to_string()).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/turing/results`: the machine-chosen rate with its Wilson 95% interval, per form.
pub(crate) async fn results(State(s): State<AppState>) -> Response {
    let Some(t) = s.turing.clone() else { return off() };
    match blocking(move || t.store.votes()).await {
        Ok(Ok(votes)) => {
            let summary = summarize(votes.iter().map(|(f, m)| (f.as_str(), *m)));
            Json(summary).into_response()
        }
        Ok(Err(e)) => ApiError::internal(e.to_string()).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Shared handle.
pub(crate) type SharedTuring = Option<Arc<TuringState>>;
