//! `wenhui serve`: the HTTP API (see `wenhui::serve` and the README).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use wenhui::serve::bench::load;
use wenhui::serve::{start, Limits, ModelSource, ServeConfig, TuringConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model directory (default: the embedded poetry GLM).
    #[arg(long)]
    model: Option<PathBuf>,
    /// P-tuned prompts to serve (`wenhui ptune` run directories, repeatable): `/v1/classify` with
    /// `"task": NAME` uses the prompt trained for that task.
    #[arg(long = "prompt", value_name = "DIR")]
    prompts: Vec<PathBuf>,
    /// Serve the poetry Turing test with these pairs (`wenhui turing prepare`): /turing to vote,
    /// /turing/results for the rate.
    #[arg(long, value_name = "PAIRS")]
    turing: Option<PathBuf>,
    /// The SQLite vote database of --turing (default: the pairs file with the extension `votes.db`).
    #[arg(long, value_name = "DB", requires = "turing")]
    votes: Option<PathBuf>,
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Longest prompt in tokens, counted on the prompt each endpoint builds (completion and fill
    /// context, poem and answer search prompt, compiled classify input); 400 beyond.
    #[arg(long, default_value_t = Limits::default().max_prompt_tokens)]
    max_prompt_tokens: usize,
    /// Largest max_tokens a request may ask for (400 beyond).
    #[arg(long, default_value_t = Limits::default().max_tokens)]
    max_tokens: usize,
    /// Largest n × prompts in one completion request.
    #[arg(long, default_value_t = Limits::default().max_choices)]
    max_choices: usize,
    /// Largest beams for fill, poem and answer.
    #[arg(long, default_value_t = Limits::default().max_beams)]
    max_beams: usize,
    /// Most completion choices (rows) decoded together in one continuous batch (1 = one at a time);
    /// a completion with more rows (n × prompts) is refused (400).
    #[arg(long, default_value_t = Limits::default().max_batch, value_parser = crate::cli::common::positive)]
    max_batch: usize,
    /// Requests that may wait for the model (429 with Retry-After beyond).
    #[arg(long, default_value_t = Limits::default().queue_len, value_parser = crate::cli::common::positive)]
    queue: usize,
    /// Per-request time limit in seconds, queueing included (504 beyond).
    #[arg(long, default_value_t = Limits::default().timeout.as_secs_f64())]
    timeout: f64,
    /// Seconds a client gets to send its headers (then the connection is closed) and, again, its
    /// body (then 408).
    #[arg(long, default_value_t = Limits::default().read_timeout.as_secs_f64())]
    read_timeout: f64,
    /// Seconds the requests in flight get to finish after Ctrl-C / SIGTERM before they are
    /// cancelled (a second signal cancels them at once).
    #[arg(long, default_value_t = Limits::default().shutdown_grace.as_secs_f64())]
    shutdown_grace: f64,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    for (flag, secs) in [("--timeout", a.timeout), ("--read-timeout", a.read_timeout), ("--shutdown-grace", a.shutdown_grace)] {
        // (Duration::from_secs_f64 panics beyond about 584 billion years.)
        if !(secs > 0.0 && secs <= Limits::MAX_SECONDS as f64) {
            anyhow::bail!("{flag} must be a positive number of seconds (at most {}), got {secs}", Limits::MAX_SECONDS);
        }
    }
    let limits = Limits {
        max_body_bytes: a.max_body_bytes,
        max_prompt_tokens: a.max_prompt_tokens,
        max_tokens: a.max_tokens,
        max_choices: a.max_choices,
        max_beams: a.max_beams,
        max_batch: a.max_batch,
        queue_len: a.queue,
        timeout: Duration::from_secs_f64(a.timeout),
        read_timeout: Duration::from_secs_f64(a.read_timeout),
        shutdown_grace: Duration::from_secs_f64(a.shutdown_grace),
    };
    // Before loading the model: a wrong flag should not wait for it.
    limits.validate()?;
    let model = a.model.map_or(ModelSource::Embedded, ModelSource::Dir);
    let turing = a.turing.map(|pairs| {
        let votes = a.votes.unwrap_or_else(|| pairs.with_extension("votes.db"));
        TuringConfig { pairs, votes }
    });
    wenhui::serve::run(ServeConfig { model, addr: a.addr, limits, handle_signals: true, prompts: a.prompts, turing })?;
    Ok(())
}

/// `wenhui bench serve`
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Model directory (default: the embedded poetry GLM).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Concurrent client counts to measure (1 to 1024: a thread each).
    #[arg(long, value_delimiter = ',', default_value = "1,8,32", value_parser = clients)]
    clients: Vec<usize>,
    /// Requests per run.
    #[arg(long, default_value_t = 64, value_parser = crate::cli::common::positive)]
    requests: usize,
    /// max_tokens of every request.
    #[arg(long, default_value_t = 32, value_parser = crate::cli::common::positive)]
    max_tokens: usize,
    /// Prompt of every request (each gets its own seed).
    #[arg(long, default_value = "春风")]
    prompt: String,
    /// Continuous-batching sizes to compare (1 = one request at a time).
    #[arg(long, value_delimiter = ',', default_value = "1,16", value_parser = crate::cli::common::positive)]
    max_batch: Vec<usize>,
    /// Stop a run after this many seconds.
    #[arg(long, default_value_t = 60.0, value_parser = seconds)]
    max_seconds: f64,
}

/// The most concurrent clients of `bench serve` (each is a thread with its own connection).
const MAX_CLIENTS: usize = 1024;

/// The value parser of `--clients`: 1 to [`MAX_CLIENTS`].
fn clients(s: &str) -> Result<usize, String> {
    match crate::cli::common::positive(s)? {
        n if n > MAX_CLIENTS => {
            Err(format!("{n} clients is more than the {MAX_CLIENTS} threads a load run may start; give at most {MAX_CLIENTS}"))
        }
        n => Ok(n),
    }
}

/// The value parser of `--max-seconds`: a finite number of seconds above 0 (at most a day).
fn seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(v),
        Ok(_) => Err("must be above 0 and at most 86400 seconds".into()),
        Err(e) => Err(format!("not a number ({e})")),
    }
}

/// Runs the load generator against an in-process server on an ephemeral loopback port.
pub fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for &mb in &a.max_batch {
        let model = a.model.clone().map_or(ModelSource::Embedded, ModelSource::Dir);
        let limits = Limits { max_batch: mb.max(1), queue_len: 1024, max_tokens: a.max_tokens.max(1), ..Limits::default() };
        let (addr, handle) =
            start(ServeConfig { model, addr: "127.0.0.1:0".parse()?, limits, handle_signals: false, prompts: Vec::new(), turing: None })?;
        for &c in &a.clients {
            let body =
                |i: usize| serde_json::json!({"prompt": a.prompt, "max_tokens": a.max_tokens, "temperature": 0.9, "seed": i}).to_string();
            let mut r = load(addr, c, a.requests, Duration::from_secs_f64(a.max_seconds), &body);
            r.max_batch = mb;
            println!("{}", serde_json::to_string(&r)?);
            if r.ok == 0 {
                failed.push(format!("--clients {c} --max-batch {mb} ({} errors)", r.errors));
            }
        }
        handle.shutdown()?;
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "no request succeeded in the run(s) {}: the measurements are meaningless; check the model, --prompt and --max-tokens, \
             or give a longer --max-seconds",
            failed.join(", ")
        );
    }
    Ok(())
}
