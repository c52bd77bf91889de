//! `wenhui serve`: an HTTP API over one loaded model (axum + tokio).
//!
//! One worker thread owns the model; requests are queued to it through a bounded channel
//! ([`Limits::queue_len`], 429 when full), so one model copy serves every client. Completions are
//! decoded together by continuous batching (rows join and leave between decode steps, see
//! `batch.rs`); fill, poem and answer run one at a time. Endpoints: `POST /v1/completions` (OpenAI shape, SSE streaming), `/v1/fill`,
//! `/v1/poem`, `/v1/answer`, `/v1/classify` (cloze tasks: built-in FewGLUE names or TOML sent inline), `GET /health`,
//! `/v1/models`, `/metrics` (Prometheus text) and `/openapi.json`.
//!
//! ```no_run
//! let cfg = wenhui::serve::ServeConfig { addr: "127.0.0.1:0".parse()?, ..Default::default() };
//! let (addr, handle) = wenhui::serve::start(cfg)?;
//! println!("listening on http://{addr}");
//! handle.shutdown()?; // finishes in-flight requests first
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod api;
mod batch;
pub mod bench;
mod checks;
mod classify;
mod complete;
mod fit;
mod inverse;
pub mod limits;
mod listen;
pub mod metrics;
pub mod openapi;
pub mod routes;
mod text;
pub mod turing;
mod validate;
pub mod web;
pub mod worker;

/// The up-front length check of inverse prompting, shared with `wenhui poem` and `wenhui answer`.
pub use fit::{answer_search_fit, glm_search_fit, glm_search_positions, longest_answer, longest_poem, AnswerTooLong, SearchTooLong};
pub use limits::{ApiError, Limits};
pub use metrics::Metrics;
pub use turing::TuringConfig;
pub use worker::{ServedModel, ServedPrompt};

use crate::model::{load_model, LoadOptions};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Which model to serve.
#[derive(Default)]
pub enum ModelSource {
    /// The embedded poetry GLM ([`crate::embedded::poetry_model_dir`]).
    #[default]
    Embedded,
    /// A model directory (config, weights and tokenizer).
    Dir(PathBuf),
    /// A model already loaded (e.g. with a tokenizer built in code).
    Loaded(Box<ServedModel>),
}

/// How to run the server.
pub struct ServeConfig {
    /// The model.
    pub model: ModelSource,
    /// Where to listen (port 0: any free port).
    pub addr: SocketAddr,
    /// Request limits.
    pub limits: Limits,
    /// Also stop gracefully on Ctrl-C / SIGTERM (the CLI sets this).
    pub handle_signals: bool,
    /// P-tuned prompts to serve for `/v1/classify` (`wenhui ptune` run directories).
    pub prompts: Vec<PathBuf>,
    /// The Turing test to serve (`--turing PAIRS --votes DB`); `None`: its endpoints answer 404.
    pub turing: Option<TuringConfig>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            model: ModelSource::Embedded,
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            limits: Limits::default(),
            handle_signals: false,
            prompts: Vec::new(),
            turing: None,
        }
    }
}

/// A running server: stop it with [`ServerHandle::shutdown`] or wait for a signal with
/// [`ServerHandle::wait`].
pub struct ServerHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
    metrics: Arc<Metrics>,
}

impl ServerHandle {
    /// The server's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
    /// Stops accepting connections, finishes the requests in flight (for at most
    /// [`Limits::shutdown_grace`], then cancels them: each gets a 503, a stream an error event and
    /// `[DONE]`), then stops the worker.
    pub fn shutdown(mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.join()
    }
    /// Blocks until the server stops (a signal, with [`ServeConfig::handle_signals`]).
    pub fn wait(mut self) -> Result<()> {
        self.join()
    }
    fn join(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| Error::input("the server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.join();
    }
}

/// Loads the model of `source`, named after its directory.
fn load(source: ModelSource) -> Result<ServedModel> {
    let (dir, name) = match source {
        ModelSource::Loaded(m) => return Ok(*m),
        ModelSource::Embedded => (crate::embedded::poetry_model_dir()?, "wenhui-poetry-glm".to_string()),
        ModelSource::Dir(d) => {
            let name = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
            (d, name)
        }
    };
    let m = load_model(&dir, &LoadOptions::default())?;
    let tok_dir = if dir.is_dir() { dir.clone() } else { dir.parent().map(PathBuf::from).unwrap_or_default() };
    let tokenizer = Tokenizer::from_dir(&tok_dir)?;
    let seq2seq = crate::eval::seq2seq::SavedSeq2seq::load(&tok_dir, &tokenizer, m.backbone.as_ref())?;
    if let Some(s) = &seq2seq {
        tracing::info!(
            "{}: completions read each prompt as the source of the seq2seq template {:?}{}",
            tok_dir.display(),
            s.layout.cfg.template,
            if s.prompt.is_some() { " with its P-tuned prompt" } else { "" }
        );
    }
    Ok(ServedModel { seq2seq, ..ServedModel::new(m.backbone, tokenizer, name) })
}

/// Loads the model, binds `config.addr` and starts serving on background threads (the model
/// worker and a tokio runtime). Returns the bound address and the handle that stops it.
pub fn start(config: ServeConfig) -> Result<(SocketAddr, ServerHandle)> {
    config.limits.validate()?;
    let turing = match &config.turing {
        Some(t) => Some(Arc::new(turing::TuringState::open(t)?)),
        None => None,
    };
    let mut model = load(config.model)?;
    for dir in &config.prompts {
        let p = ServedPrompt::load(dir, model.backbone.as_ref())?;
        if let Some(other) = model.prompts.iter().find(|o| o.task.spec.name == p.task.spec.name) {
            return Err(Error::file(
                dir,
                format!("task `{}` is already served by the prompt in {}", p.task.spec.name, other.source.display()),
            ));
        }
        model.prompts.push(p);
    }
    let info = model.backbone.info();
    let prompts: Vec<_> =
        model.prompts.iter().map(|p| serde_json::json!({"task": p.task.spec.name, "source": p.source.display().to_string()})).collect();
    let model_info = serde_json::json!({
        "id": model.name, "object": "model", "owned_by": "wenhui", "kind": info.kind.to_string(),
        "max_positions": info.max_positions, "vocab_size": info.vocab_size, "layers": info.num_layers, "hidden_size": info.hidden_size,
        "prompts": prompts,
        "seq2seq": model.seq2seq.as_ref().map(|s| serde_json::json!({"template": s.layout.cfg.template, "p_tuned": s.prompt.is_some()})),
    });
    let listener = std::net::TcpListener::bind(config.addr).map_err(|e| Error::input(format!("cannot listen on {}: {e}", config.addr)))?;
    listener.set_nonblocking(true).map_err(|e| Error::input(format!("listener: {e}")))?;
    let addr = listener.local_addr().map_err(|e| Error::input(format!("listener: {e}")))?;
    let limits = config.limits;
    let metrics = Arc::new(Metrics::default());
    let (queue, jobs) = std::sync::mpsc::sync_channel(limits.queue_len);
    let front = Arc::new(validate::Front::of(&model));
    // Set when the grace period of a stop ends: the worker then answers every request it holds
    // with 503, so that clients hear why instead of a cut connection.
    let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let (metrics, limits, cancelled) = (metrics.clone(), limits.clone(), cancelled.clone());
        std::thread::Builder::new()
            .name("wenhui-model".into())
            .spawn(move || worker::run(model, jobs, metrics, limits, cancelled))
            .map_err(|e| Error::input(format!("cannot start the model worker: {e}")))?
    };
    let limits = Arc::new(limits);
    let state = routes::AppState { queue, metrics: metrics.clone(), limits: limits.clone(), model: Arc::new(model_info), turing, front };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let signals = config.handle_signals;
    let thread = std::thread::Builder::new()
        .name("wenhui-http".into())
        .spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| Error::input(format!("cannot start the tokio runtime: {e}")))?;
            let served = rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let stops = listen::stop_requests(stop_rx, signals);
                listen::serve(listener, routes::router(state), &limits, stops, &cancelled).await;
                Ok::<(), std::io::Error>(())
            });
            // Dropping the runtime drops the connections still open (their receivers: the worker
            // stops their work within a step) and every clone of the queue's sender: the worker
            // then ends once its queue is empty.
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
            join_for(worker, std::time::Duration::from_secs(5));
            served.map_err(|e| Error::input(format!("server: {e}")))
        })
        .map_err(|e| Error::input(format!("cannot start the server thread: {e}")))?;
    Ok((addr, ServerHandle { stop: Some(stop_tx), thread: Some(thread), metrics }))
}

/// Waits for the worker for at most `limit`: a step that never ends must not keep the process
/// from exiting (the thread is left behind, and ends with the process).
fn join_for(worker: std::thread::JoinHandle<()>, limit: std::time::Duration) {
    let until = std::time::Instant::now() + limit;
    while !worker.is_finished() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if worker.is_finished() {
        let _ = worker.join();
    } else {
        tracing::warn!("the model worker is still busy {} s after the stop; exiting without it", limit.as_secs_f64());
    }
}

/// Starts the server with signal handling and blocks until Ctrl-C / SIGTERM has drained it.
pub fn run(mut config: ServeConfig) -> Result<()> {
    config.handle_signals = true;
    let (addr, handle) = start(config)?;
    eprintln!(
        "wenhui serve: listening on http://{addr} (Ctrl-C to stop, twice to cancel the requests in flight); the web playground is at http://{addr}/"
    );
    handle.wait()
}
