//! The model worker: one thread owns the model and runs the queued requests one at a time,
//! reporting progress (tokens, lines) and the final answer through each request's channel.

use super::api::{AnswerRequest, CompletionRequest, FillRequest, PoemRequest};
use super::batch::Engine;
use super::limits::{ApiError, Limits};
use super::metrics::Metrics;
use super::validate::{AnswerPlan, ClassifyPlan, FillPlan, PoemPlan, Prepared};
use crate::generate::inverse::Cancel;
use crate::model::{Backbone, ModelKind};
use crate::tokenizer::Tokenizer;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// The served model, its tokenizer and what requests need to know about it.
pub struct ServedModel {
    /// The weights (one copy, owned by the worker).
    pub backbone: Box<dyn Backbone>,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// The name `/v1/models` reports.
    pub name: String,
    /// Token ids of a padded vocabulary that no text maps to: never generated.
    pub(crate) padding_ids: Vec<Vec<u32>>,
    /// Trained prompts (`--prompt DIR`), by task name: `/v1/classify` uses them for that task.
    pub prompts: Vec<ServedPrompt>,
    /// A seq2seq fine-tuned or P-tuned GLM's layout (and prompt), read from its directory:
    /// `/v1/completions` reads each prompt as its source (`/v1/fill` keeps plain blank filling).
    pub seq2seq: Option<crate::eval::seq2seq::SavedSeq2seq>,
}

/// A P-tuned prompt served with its task (`wenhui serve --prompt DIR`).
#[derive(Debug, Clone)]
pub struct ServedPrompt {
    /// The task (from the run's `task.toml`); requests name it by `task.spec.name`.
    pub task: crate::cloze::ClozeTask,
    /// The prompt vectors `[n_pseudo, hidden]`.
    pub vectors: candle_core::Tensor,
    /// Where it was loaded from.
    pub source: std::path::PathBuf,
}

impl ServedPrompt {
    /// Loads a `wenhui ptune` run directory, its `best/`, or any directory holding a prompt
    /// encoder (state or peft adapter) next to a `task.toml`, and checks it against `model`.
    pub fn load(dir: &std::path::Path, model: &dyn Backbone) -> crate::Result<Self> {
        let base = if dir.join("task.toml").is_file() { dir.to_path_buf() } else { dir.join("best") };
        let task_file = base.join("task.toml");
        if !task_file.is_file() {
            return Err(crate::Error::file(dir, "no task.toml here or in best/: pass a `wenhui ptune` run directory or its best/"));
        }
        let task = crate::cloze::ClozeTask::from_file(&task_file)?;
        let vectors = crate::ptuning::train::load_prompt(&base, model.device())?.prompt_embeddings()?;
        let (rows, width) = vectors.dims2()?;
        if rows != task.template.num_pseudo() || width != model.info().hidden_size {
            return Err(crate::Error::file(
                dir,
                format!(
                    "the prompt is {rows} × {width} but task `{}` has {} [P] tokens and the model's width is {}; was it trained for this model?",
                    task.spec.name,
                    task.template.num_pseudo(),
                    model.info().hidden_size
                ),
            ));
        }
        Ok(Self { task, vectors, source: dir.to_path_buf() })
    }
}

impl ServedModel {
    /// Wraps a loaded model and its tokenizer.
    pub fn new(backbone: Box<dyn Backbone>, tokenizer: Tokenizer, name: impl Into<String>) -> Self {
        let padding_ids = crate::generate::padded_vocabulary_rows(backbone.as_ref(), &tokenizer);
        Self { backbone, tokenizer, name: name.into(), padding_ids, prompts: Vec::new(), seq2seq: None }
    }
    /// The architecture.
    pub fn kind(&self) -> ModelKind {
        self.backbone.info().kind
    }
}

/// What the worker reports while and after running a request.
#[derive(Debug)]
pub enum Msg {
    /// The request passed the worker's checks and its work starts (a streamed response may begin).
    Started,
    /// New text of completion choice `choice`.
    Delta {
        /// Choice index.
        choice: usize,
        /// The new text.
        text: String,
    },
    /// Choice `choice` is done, for `reason` (`stop` or `length`).
    Finish {
        /// Choice index.
        choice: usize,
        /// OpenAI's finish reason.
        reason: &'static str,
    },
    /// A decided unit (poem line, answer sub-sentence).
    Unit {
        /// Unit index.
        index: usize,
        /// Its text.
        text: String,
    },
    /// Refinement replaced unit `index`, already reported, by `text`.
    Revise {
        /// Unit index.
        index: usize,
        /// Its new text.
        text: String,
    },
    /// The final answer (the response body) or the error.
    Done(Result<serde_json::Value, ApiError>),
}

/// The work of one request: the request and the plan its handler checked (token ids, parsed task),
/// so the worker repeats no check and no tokenization.
#[derive(Debug)]
pub(crate) enum Work {
    /// `/v1/completions`.
    Complete(CompletionRequest, Prepared),
    /// `/v1/fill`.
    Fill(FillRequest, FillPlan),
    /// `/v1/poem` (the inverse-prompting plans are boxed: their tasks make them the largest by
    /// far, and every queued job would be as large).
    Poem(PoemRequest, Box<PoemPlan>),
    /// `/v1/answer`.
    Answer(AnswerRequest, Box<AnswerPlan>),
    /// `/v1/classify`.
    Classify(ClassifyPlan),
}

/// A queued request: its work, where to report, and until when it may run.
#[derive(Debug)]
pub(crate) struct Job {
    /// What to do.
    pub(crate) work: Work,
    /// Progress and the final answer go here; when the receiver is gone the work stops.
    pub(crate) tx: UnboundedSender<Msg>,
    /// The work stops at this instant (the request's timeout).
    pub(crate) deadline: Instant,
}

/// Why a running request should stop early.
pub(crate) struct Ticket<'a> {
    pub(crate) tx: &'a UnboundedSender<Msg>,
    pub(crate) deadline: Instant,
    pub(crate) timeout: Duration,
    /// Set when a stopping server cancels the requests in flight (its grace period is over).
    pub(crate) cancelled: &'a Arc<AtomicBool>,
}

impl Ticket<'_> {
    /// True when the client is gone, the deadline passed or the server cancels its requests.
    pub(crate) fn should_stop(&self) -> bool {
        self.tx.is_closed() || Instant::now() >= self.deadline || self.cancelled.load(Ordering::Relaxed)
    }
    /// The error for a stopped request: 503 when the server cancelled it, 504 after the deadline;
    /// the client is gone otherwise.
    pub(crate) fn stop_error(&self) -> ApiError {
        if self.cancelled.load(Ordering::Relaxed) {
            ApiError::shutting_down()
        } else if Instant::now() >= self.deadline {
            ApiError::timeout(self.timeout)
        } else {
            ApiError::client_closed()
        }
    }
    /// The same check as [`Ticket::should_stop`], for a search that runs on its own.
    pub(crate) fn cancel(&self) -> Cancel {
        let (tx, deadline, cancelled) = (self.tx.clone(), self.deadline, self.cancelled.clone());
        Cancel::new(move || tx.is_closed() || Instant::now() >= deadline || cancelled.load(Ordering::Relaxed))
    }
    /// Sends a progress message (ignored when the client is gone).
    pub(crate) fn send(&self, m: Msg) {
        let _ = self.tx.send(m);
    }
}

/// Runs jobs until every sender of `jobs` is dropped (the server shut down) and the batch is
/// empty. Completions join the continuous batch (`serve::batch`) between decode steps when all
/// their rows fit within `--max-batch`; other requests (fill, poem, answer, GLM prompts with
/// several blanks) run alone when taken. `cancelled`: the server stops, every request answers 503.
pub(crate) fn run(model: ServedModel, jobs: Receiver<Job>, metrics: Arc<Metrics>, limits: Limits, cancelled: Arc<AtomicBool>) {
    let mut engine = Engine::new(&model, &limits, &cancelled);
    // A completion taken off the queue whose rows do not fit the batch yet: it waits here, first
    // in line (no later request overtakes it), until enough rows have left.
    let mut held: Option<Job> = None;
    loop {
        loop {
            let job = match held.take() {
                Some(job) => job,
                None if engine.rows() == 0 => match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                },
                None => match jobs.try_recv() {
                    Ok(job) => job,
                    Err(_) => break,
                },
            };
            if !fits(&engine, &job, &limits, &cancelled) {
                held = Some(job);
                break;
            }
            metrics.dequeued();
            admit(&mut engine, &model, job, &metrics, &limits, &cancelled);
        }
        if engine.rows() > 0 {
            let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.step(&metrics)));
            if stepped.is_err() {
                tracing::error!("a decode step panicked in the model worker; its requests fail, the worker goes on");
                engine.fail_all(ApiError::internal("the model worker failed on this batch (a bug: please report it with the request)"));
            }
        }
    }
}

/// Whether `job` can start now: a batched completion only when all its rows fit within
/// `--max-batch` beside the rows decoding (validation refuses a request with more rows than that,
/// so an empty batch takes any); a request that is to stop anyway is answered at once.
fn fits(engine: &Engine<'_>, job: &Job, limits: &Limits, cancelled: &Arc<AtomicBool>) -> bool {
    match &job.work {
        Work::Complete(_, p) if engine.batchable(p) => {
            let stop = Ticket { tx: &job.tx, deadline: job.deadline, timeout: limits.timeout, cancelled }.should_stop();
            stop || engine.rows() == 0 || engine.rows() + p.contexts.len() * p.n <= limits.max_batch
        }
        _ => true,
    }
}

/// Starts one request: a completion joins the batch, anything else runs now.
fn admit(engine: &mut Engine<'_>, model: &ServedModel, job: Job, metrics: &Metrics, limits: &Limits, cancelled: &Arc<AtomicBool>) {
    let waited = Ticket { tx: &job.tx, deadline: job.deadline, timeout: limits.timeout, cancelled };
    if waited.should_stop() {
        return waited.send(Msg::Done(Err(waited.stop_error())));
    }
    let job = match job {
        Job { work: Work::Complete(r, p), tx, deadline } if engine.batchable(&p) => return engine.join(r, p, tx, deadline),
        job => job,
    };
    let ticket = Ticket { tx: &job.tx, deadline: job.deadline, timeout: limits.timeout, cancelled };
    let started = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute(model, &job.work, &ticket)));
    let result = match result {
        Ok(Ok((body, tokens))) => {
            metrics.generated(tokens, started.elapsed());
            Ok(body)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => {
            tracing::error!("a request panicked in the model worker; the worker goes on");
            Err(ApiError::internal("the model worker failed on this request (a bug: please report it with the request)"))
        }
    };
    ticket.send(Msg::Done(result));
}

/// Runs one request: the response body and the tokens generated.
fn execute(model: &ServedModel, work: &Work, t: &Ticket<'_>) -> Result<(serde_json::Value, usize), ApiError> {
    match work {
        Work::Complete(r, p) => super::complete::complete(model, r, p, t),
        Work::Fill(r, p) => super::complete::fill(model, r, p, t),
        Work::Poem(r, p) => super::inverse::poem(model, r, p, t),
        Work::Answer(r, p) => super::inverse::answer(model, r, p, t),
        Work::Classify(p) => super::classify::classify(model, p, t),
    }
}
