//! `wenhui generate [--model DIR] --prompt TEXT`: free-text generation with every strategy of
//! [`GenerationConfig`], streamed to stdout as tokens are decided (or one JSON object).
//!
//! GPT-2-style models continue the prompt left to right ([`CausalInputs`]); a GLM generates as
//! THUDM's long generation does: `[CLS] prompt [gMASK]` and the blank is filled
//! ([`fill_blanks_streaming`]); a prompt with its own `[MASK]`/`[sMASK]`/`[gMASK]` blanks has each
//! blank filled in turn, one fill per output line. A GLM fine-tuned or P-tuned by
//! `finetune`/`ptune --task seq2seq` reads the prompt as its source, with the template (and
//! continuous prompt) it was trained with (`generate_seq2seq.rs`).

use crate::cli::common::{DefaultModel, GeluArg, ModelArgs, ProcessorArgs};
use anyhow::{bail, Context};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use wenhui::eval::seq2seq::SavedSeq2seq;
use wenhui::generate::{
    fill_blanks_streaming, generate, glm_context, BlankTokens, CausalInputs, EarlyStopping, GenerationConfig, StepHook,
};
use wenhui::model::{load_model, ModelKind};
use wenhui::tokenizer::Tokenizer;

/// The flags of `generate`: one `--prompt` or an `--input` file of prompts.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["prompt", "input"])))]
pub struct Args {
    #[command(flatten)]
    model: DefaultModel,
    /// GLM GELU variant: tanh (THUDM training code, default) or erf (Hugging Face hub port).
    #[arg(long, value_enum)]
    gelu: Option<GeluArg>,
    /// A config.json to use instead of the one beside the weights.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The text to continue. With a GLM, `[MASK]` / `[sMASK]` / `[gMASK]` blanks are filled;
    /// without one, `[gMASK]` is appended (long generation).
    #[arg(long, allow_hyphen_values = true)]
    prompt: Option<String>,
    /// A file of prompts instead of --prompt, all generated with one model load. A `.jsonl`,
    /// `.json` or `.ndjson` file holds one JSON object per line, the prompt under
    /// --prompt-field, its other keys copied to the output; any other extension is plain text,
    /// one prompt per line. Blank lines are skipped. Every line is checked before the first is
    /// generated (a bad one is named FILE:LINE and nothing is written). Output: one JSON line per
    /// prompt, in input order, with `line` (1-based), `prompt` and the fields --json prints
    /// (--json is implied); with sampling, the i-th prompt (from 0) uses seed --seed + i (as
    /// `poem --titles`), given as `seed`.
    #[arg(long, value_name = "PROMPTS")]
    pub(super) input: Option<PathBuf>,
    /// With --input: write the JSON lines to this file (whole, when every prompt is done)
    /// instead of stdout.
    #[arg(long, value_name = "OUT.jsonl", requires = "input")]
    pub(super) output: Option<PathBuf>,
    /// Replace an existing --output file.
    #[arg(long, requires = "output")]
    pub(super) force: bool,
    /// With a JSONL --input: the key of each line's prompt [default: prompt].
    #[arg(long, requires = "input")]
    pub(super) prompt_field: Option<String>,
    /// Most new tokens (per blank with a GLM).
    #[arg(long, default_value_t = 32, value_parser = crate::cli::common::positive)]
    max_new_tokens: usize,
    #[command(flatten)]
    sampling: crate::cli::common::SamplingArgs,
    /// Seed of the sampler: the same seed gives the same text (with --input, prompt i uses
    /// seed + i).
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// Beam search with this many beams (1 = greedy or sampling).
    #[arg(long, visible_alias = "beams", default_value_t = 1, value_parser = beams_parser())]
    num_beams: usize,
    /// Beam scores are sum log p / length^penalty.
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true, value_parser = crate::cli::common::finite)]
    length_penalty: f32,
    /// When beam search stops: true, false or never (as Hugging Face).
    #[arg(long, default_value = "false", value_parser = parse_early_stopping)]
    early_stopping: EarlyStopping,
    /// Beam hypotheses to print, best first (≤ --num-beams; 1 with a GLM).
    #[arg(long, default_value_t = 1, value_parser = crate::cli::common::positive)]
    num_return_sequences: usize,
    #[command(flatten)]
    processors: ProcessorArgs,
    /// Stop when this text is generated (repeatable). The text ends before it, as OpenAI's
    /// `stop` (from the token in which it begins), streamed or in JSON, and the sequence counts as
    /// finished. Single-token strings stop every strategy; longer ones stop greedy decoding and
    /// sampling (beam search refuses them).
    #[arg(long)]
    pub(super) stop: Vec<String>,
    /// Print one JSON object (prompt, text, sequences with tokens and scores, timing) instead of
    /// streaming. timing.prompt_ms is the time to the first token; null with beam search, whose
    /// tokens are known only when the search ends.
    #[arg(long)]
    json: bool,
    /// With a model fine-tuned or P-tuned on seq2seq pairs: ignore the layout saved with it and
    /// read the prompt as plain GLM text (`[CLS] prompt [gMASK]`, or its own blanks).
    #[arg(long)]
    no_layout: bool,
}

/// The value parser of `--num-beams`: 1 to the library's most beams, so clap names the flag.
pub(super) fn beams_parser() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=wenhui::generate::MAX_BEAMS as u64)
}

/// Checks the sampling flags of `generate` and `fill` before they become a
/// [`GenerationConfig`], whose own check names its fields rather than the flags.
pub(super) fn check_sampling(s: &crate::cli::common::SamplingArgs) -> anyhow::Result<()> {
    if let Some(t) = s.temperature.filter(|t| !(*t > 0.0 && t.is_finite())) {
        bail!("--temperature must be a positive number, got {t}");
    }
    if let Some(p) = s.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
        bail!("--top-p must be in (0, 1], got {p} (top_p: the probability mass nucleus sampling keeps)");
    }
    Ok(())
}

fn parse_early_stopping(s: &str) -> Result<EarlyStopping, String> {
    match s {
        "true" => Ok(EarlyStopping::True),
        "false" => Ok(EarlyStopping::False),
        "never" => Ok(EarlyStopping::Never),
        other => Err(format!("`{other}` is not one of true, false, never")),
    }
}

/// Checks the flags' values, naming the flag, before the model is loaded.
pub(super) fn check_flags(a: &Args) -> anyhow::Result<()> {
    check_sampling(&a.sampling)?;
    if a.num_return_sequences > a.num_beams {
        bail!(
            "--num-return-sequences must be between 1 and --num-beams ({}), got {} (num_return_sequences: each sequence is a beam)",
            a.num_beams,
            a.num_return_sequences
        );
    }
    a.processors.check(a.max_new_tokens)
}

/// The generation config of the flags (single-token stop strings among its stop tokens, so
/// every strategy stops at them).
fn config(a: &Args, tokenizer: &Tokenizer) -> anyhow::Result<GenerationConfig> {
    let mut cfg = GenerationConfig {
        max_new_tokens: a.max_new_tokens,
        seed: a.seed,
        num_beams: a.num_beams,
        length_penalty: a.length_penalty,
        early_stopping: a.early_stopping,
        num_return_sequences: a.num_return_sequences,
        ..GenerationConfig::default()
    };
    a.sampling.apply(&mut cfg, a.num_beams, "--num-beams")?;
    a.processors.apply(&mut cfg, tokenizer)?;
    for s in &a.stop {
        let ids = tokenizer.encode(s, false)?;
        match ids.as_slice() {
            [] => bail!("--stop `{s}` encodes to no tokens; give visible text"),
            [one] => cfg.eos_token_ids.push(*one),
            _ if a.num_beams > 1 => {
                bail!("--stop `{s}` is {} tokens; with --num-beams > 1 only single-token stop strings work", ids.len())
            }
            // Found in the text as it is generated (see `Stops`).
            _ => {}
        }
    }
    cfg.validate()?;
    Ok(cfg)
}

/// The `--stop` strings, looked for in the decoded text of one fill (GLM) or continuation
/// (GPT-2). One rule for every output: the text ends before the token in which the first stop
/// string begins, whether it is one token or several, so neither the stream nor the JSON shows
/// it. A stop string counts from the first token after `--min-new-tokens` (the stop tokens are
/// banned before it).
struct Stops<'a> {
    tokenizer: &'a Tokenizer,
    texts: Vec<String>,
    min_new: usize,
}

impl Stops<'_> {
    /// How many of `ids` to keep when their text holds a stop string; `None` when it holds none.
    fn cut(&self, ids: &[u32]) -> wenhui::Result<Option<usize>> {
        if self.texts.is_empty() || ids.len() <= self.min_new {
            return Ok(None);
        }
        let text = self.tokenizer.decode(ids, true)?;
        let head = self.tokenizer.decode(&ids[..self.min_new], true)?;
        let from = if text.starts_with(head.trim_end_matches('\u{FFFD}')) { head.trim_end_matches('\u{FFFD}').len() } else { 0 };
        match self.texts.iter().filter_map(|s| text[from..].find(s.as_str())).min() {
            Some(at) => Ok(Some(self.tokens_before(ids, from + at)?)),
            None => Ok(None),
        }
    }

    /// How many of `ids` may be shown now: all but those holding the end of the text that may
    /// still grow into a stop string.
    fn settled(&self, ids: &[u32]) -> wenhui::Result<usize> {
        let text = self.tokenizer.decode(ids, true)?;
        let hold = wenhui::generate::pending_stop_len(&text, &self.texts);
        if hold == 0 {
            return Ok(ids.len());
        }
        self.tokens_before(ids, text.len() - hold)
    }

    /// The most leading tokens of `ids` whose text ends by byte `at` of theirs, and whole: a
    /// token list cut inside a character decodes to U+FFFD, which would be shown.
    fn tokens_before(&self, ids: &[u32], at: usize) -> wenhui::Result<usize> {
        for k in (1..=ids.len()).rev() {
            let text = self.tokenizer.decode(&ids[..k], true)?;
            if text.len() <= at && !text.ends_with('\u{FFFD}') {
                return Ok(k);
            }
        }
        Ok(0)
    }

    /// `tokens` up to the first stop string, and whether one was found.
    fn apply<'t>(&self, tokens: &'t [u32]) -> wenhui::Result<(&'t [u32], bool)> {
        Ok(match self.cut(tokens)? {
            Some(k) => (&tokens[..k], true),
            None => (tokens, false),
        })
    }
}

/// Prints the decoded text of a growing token list as it grows: never half a character, and
/// never text that a stop string may yet claim (see [`Stops`]).
struct Printer<'a> {
    stops: &'a Stops<'a>,
    ids: Vec<u32>,
    shown: String,
    on: bool,
    stopped: bool,
}

impl<'a> Printer<'a> {
    fn new(stops: &'a Stops<'a>, on: bool) -> Self {
        Self { stops, ids: Vec::new(), shown: String::new(), on, stopped: false }
    }
    /// Adds a token; false once a stop string ended the text (generation should stop).
    fn push(&mut self, token: u32) -> wenhui::Result<bool> {
        if self.stopped {
            return Ok(false);
        }
        self.ids.push(token);
        if let Some(keep) = self.stops.cut(&self.ids)? {
            self.ids.truncate(keep);
            self.stopped = true;
            return Ok(false);
        }
        let settled = self.stops.settled(&self.ids)?;
        let text = self.stops.tokenizer.decode(&self.ids[..settled], true)?;
        if !text.ends_with('\u{FFFD}') {
            self.show(text);
        }
        Ok(true)
    }
    fn show(&mut self, text: String) {
        if let Some(rest) = text.strip_prefix(self.shown.as_str()) {
            if self.on && !rest.is_empty() {
                print!("{rest}");
                let _ = std::io::stdout().flush();
            }
            self.shown = text;
        }
    }
    /// Prints what is left and ends the line.
    fn finish(&mut self) -> wenhui::Result<()> {
        let text = self.stops.tokenizer.decode(&self.ids, true)?;
        self.show(text);
        if self.on {
            println!();
        }
        self.ids.clear();
        self.shown.clear();
        self.stopped = false;
        Ok(())
    }
}

/// One output sequence.
#[derive(Debug, serde::Serialize)]
struct Sequence {
    text: String,
    tokens: Vec<u32>,
    score: f32,
    finished: bool,
}

/// Times and the tokens counted.
struct Clock {
    start: Instant,
    first: Option<f64>,
}

impl Clock {
    fn tick(&mut self) {
        self.first.get_or_insert_with(|| self.start.elapsed().as_secs_f64() * 1e3);
    }
}

/// What every prompt of a run shares: the model, its tokenizer and the generation config of the
/// flags, loaded and checked once (`generate --input` generates every prompt of a file with one).
pub(super) struct Session {
    m: wenhui::model::LoadedModel,
    /// The model's tokenizer.
    pub(super) tokenizer: Tokenizer,
    /// The config of the flags (the `--stop` tokens, the padded vocabulary rows banned, a GPT-2's
    /// end of text among the stop tokens).
    pub(super) cfg: GenerationConfig,
    /// The model directory, for messages.
    dir: PathBuf,
    /// The architecture: GLM or GPT-2 (a BERT is refused).
    pub(super) kind: ModelKind,
    /// A seq2seq model's layout (and P-tuned prompt), unless --no-layout.
    seq2seq: Option<SavedSeq2seq>,
}

impl Session {
    /// Loads the model of the flags and builds their config; refuses a BERT, and several return
    /// sequences with a GLM, before any prompt is encoded.
    pub(super) fn load(a: &Args) -> anyhow::Result<Self> {
        let margs = ModelArgs { model: a.model.dir()?, gelu: a.gelu, config: a.config.clone() };
        let m = load_model(&margs.model, &margs.load_options())?;
        let tokenizer = Tokenizer::from_dir(&margs.dir())?;
        let mut cfg = config(a, &tokenizer)?;
        let model = m.backbone.as_ref();
        cfg.bad_words_ids.extend(wenhui::generate::padded_vocabulary_rows(model, &tokenizer));
        let kind = model.info().kind;
        match kind {
            ModelKind::Glm if cfg.num_return_sequences > 1 => {
                bail!("--num-return-sequences must be 1 with a GLM (blank filling keeps the best fill of each blank)")
            }
            ModelKind::Glm => {}
            ModelKind::Bert => {
                bail!("{}: generate needs a GLM or a GPT-2; this is a BERT masked LM (try `wenhui logits`)", margs.model.display())
            }
            ModelKind::Gpt2 => {
                if let Some(eos) = tokenizer.special.eos {
                    if !cfg.eos_token_ids.contains(&eos) {
                        cfg.eos_token_ids.push(eos);
                    }
                }
            }
        }
        let seq2seq = if a.no_layout { None } else { super::generate_seq2seq::load(&margs.model, &tokenizer, model)? };
        if let Some(s) = &seq2seq {
            for t in s.stop_tokens(&tokenizer) {
                if !cfg.eos_token_ids.contains(&t) {
                    cfg.eos_token_ids.push(t);
                }
            }
        }
        Ok(Self { m, tokenizer, cfg, dir: margs.model, kind, seq2seq })
    }

    /// The tokens the model reads for `prompt` (named `what` in messages): `[CLS] prompt
    /// [gMASK]` or the prompt's own blanks for a GLM, the prompt itself for a GPT-2. Refused when
    /// it encodes to nothing or is longer than the model's positions.
    pub(super) fn encode(&self, prompt: &str, what: &str) -> anyhow::Result<Vec<u32>> {
        if let Some(s) = &self.seq2seq {
            // The source: the layout cuts it to the template's room (said when it happens).
            let ids = s.layout.encode_source(&self.tokenizer, prompt).with_context(|| format!("{what} as a seq2seq source"))?;
            if ids.is_empty() {
                bail!("{what} encodes to no tokens with this tokenizer; give visible text");
            }
            return Ok(ids);
        }
        let ids = match self.kind {
            ModelKind::Gpt2 => {
                let ids = self.tokenizer.encode(prompt, false)?;
                if ids.is_empty() {
                    bail!("{what} encodes to no tokens with this tokenizer; give visible text");
                }
                ids
            }
            _ => glm_context(&self.tokenizer, prompt)?,
        };
        let max_pos = self.m.backbone.info().max_positions;
        if ids.len() > max_pos {
            bail!(
                "{what} is {} tokens but the model in {} has only {max_pos} positions; shorten the prompt",
                ids.len(),
                self.dir.display()
            );
        }
        Ok(ids)
    }

    /// Generates from `context` (from [`Session::encode`]) with `cfg` (the session's, or a copy
    /// with another seed), ending the text at the `stop` strings; when `stream`, the text is
    /// printed to stdout as it is decided (greedy and sampling, and a GLM's fills).
    pub(super) fn generate(&self, context: &[u32], cfg: &GenerationConfig, stop: &[String], stream: bool) -> anyhow::Result<Outcome> {
        let tokenizer = &self.tokenizer;
        let model = self.m.backbone.as_ref();
        let stops = Stops { tokenizer, texts: stop.to_vec(), min_new: cfg.min_new_tokens };
        let mut printer = Printer::new(&stops, stream);
        let mut clock = Clock { start: Instant::now(), first: None };
        let mut failure: Option<wenhui::Error> = None;
        // The tokens generated, stop tokens included (the rate counts them).
        let new_tokens: usize;
        let (text, sequences) = match (&self.seq2seq, self.kind) {
            (Some(s), _) => {
                let eos = tokenizer.special.eos;
                let eop = s.layout.tokens.eop;
                let mut hook = |_i: usize, t: u32| {
                    clock.tick();
                    if t == eop || Some(t) == eos {
                        return true;
                    }
                    printer.push(t).unwrap_or_else(|e| {
                        failure.get_or_insert(e);
                        false
                    })
                };
                let d = s.decode(model, context, cfg, Some(&mut hook as StepHook<'_>))?;
                if d.source_truncated {
                    tracing::warn!("the prompt was cut to the {} tokens of the model's source layout", s.layout.cfg.max_source_len);
                }
                new_tokens = d.tokens.len() + usize::from(d.finished);
                let (kept, stopped) = stops.apply(&d.tokens)?;
                let text = tokenizer.decode(kept, true)?;
                (text.clone(), vec![Sequence { text, tokens: kept.to_vec(), score: d.score, finished: d.finished || stopped }])
            }
            (None, ModelKind::Gpt2) => {
                let eos = tokenizer.special.eos;
                let mut hook = |_i: usize, t: u32| {
                    clock.tick();
                    // The model's own end of text shows nothing; a stop string's token is the printer's.
                    if Some(t) == eos {
                        return true;
                    }
                    printer.push(t).unwrap_or_else(|e| {
                        failure.get_or_insert(e);
                        false
                    })
                };
                let streamed = cfg.num_beams == 1;
                let out = generate(model, context, &CausalInputs::new(model), cfg, streamed.then_some(&mut hook as StepHook<'_>))?;
                new_tokens = out.sequences.first().map_or(0, |h| h.tokens.len());
                let seqs = out
                    .sequences
                    .iter()
                    .map(|h| {
                        let (kept, stopped) = stops.apply(&h.tokens)?;
                        Ok(Sequence {
                            text: tokenizer.decode(kept, true)?,
                            tokens: kept.to_vec(),
                            score: h.score,
                            finished: h.finished || stopped,
                        })
                    })
                    .collect::<wenhui::Result<Vec<_>>>()?;
                let best = seqs.first().map(|s| s.text.clone()).unwrap_or_default();
                (best, seqs)
            }
            (None, _) => {
                let blank = BlankTokens::from_special(&tokenizer.special)?;
                let mut current = 0usize;
                let mut hook = |b: usize, _i: usize, t: u32| {
                    clock.tick();
                    if b != current {
                        current = b;
                        if let Err(e) = printer.finish() {
                            failure.get_or_insert(e);
                        }
                    }
                    if t == blank.eop || Some(t) == blank.eos {
                        return true;
                    }
                    printer.push(t).unwrap_or_else(|e| {
                        failure.get_or_insert(e);
                        false
                    })
                };
                let out = fill_blanks_streaming(model, context, &blank, cfg, Some(&mut hook))?;
                // A fill that ended with a stop token lost it (`BlankFill::tokens`): count it.
                new_tokens = out.fills.iter().map(|f| f.tokens.len() + usize::from(f.finished)).sum();
                let mut seqs = Vec::with_capacity(out.fills.len());
                let mut filled = Vec::with_capacity(context.len());
                let mut fills = out.fills.iter().peekable();
                for (i, &t) in context.iter().enumerate() {
                    match fills.next_if(|f| f.mask_position == i) {
                        Some(f) => {
                            let (kept, stopped) = stops.apply(&f.tokens)?;
                            filled.extend_from_slice(kept);
                            seqs.push(Sequence {
                                text: tokenizer.decode(kept, true)?,
                                tokens: kept.to_vec(),
                                score: f.score,
                                finished: f.finished || stopped,
                            });
                        }
                        None => filled.push(t),
                    }
                }
                (tokenizer.decode(&filled, true)?, seqs)
            }
        };
        let total_ms = clock.start.elapsed().as_secs_f64() * 1e3;
        if let Some(e) = failure {
            return Err(e.into());
        }
        if stream && (self.kind == ModelKind::Glm || cfg.num_beams == 1) {
            printer.finish()?;
        }
        // Greedy/sampling: the first token's time is the prompt pass. Beam search decides its
        // tokens only when the search ends: no time to a first token (null).
        let prompt_ms = if cfg.num_beams == 1 { clock.first } else { None };
        Ok(Outcome { text, sequences, new_tokens, prompt_ms, total_ms, kind: self.kind })
    }
}

/// What one prompt generated, and how long it took.
pub(super) struct Outcome {
    text: String,
    sequences: Vec<Sequence>,
    new_tokens: usize,
    prompt_ms: Option<f64>,
    total_ms: f64,
    kind: ModelKind,
}

impl Outcome {
    /// The object `--json` prints for `prompt`: prompt, model, text, texts, tokens, scores,
    /// sequences and timing.
    pub(super) fn json(&self, prompt: &str) -> serde_json::Value {
        // The rate counts the tokens after the first, whose time is the prompt pass.
        let tokens_per_s = match self.prompt_ms {
            Some(p) if self.new_tokens > 1 && self.total_ms > p => (self.new_tokens - 1) as f64 / ((self.total_ms - p) / 1e3),
            _ => self.new_tokens as f64 / (self.total_ms / 1e3).max(1e-9),
        };
        serde_json::json!({
            "prompt": prompt,
            "model": self.kind.to_string(),
            "text": self.text,
            "texts": self.sequences.iter().map(|s| s.text.clone()).collect::<Vec<_>>(),
            "tokens": self.sequences.first().map(|s| s.tokens.clone()).unwrap_or_default(),
            "scores": self.sequences.iter().map(|s| s.score).collect::<Vec<_>>(),
            "sequences": self.sequences,
            "timing": {"prompt_ms": self.prompt_ms, "total_ms": self.total_ms, "new_tokens": self.new_tokens, "tokens_per_s": tokens_per_s},
        })
    }
}

/// Runs `generate`: one `--prompt`, or every prompt of an `--input` file.
pub fn run(a: Args) -> anyhow::Result<()> {
    if let Some(path) = &a.input {
        return super::generate_file::run(&a, path);
    }
    let Some(prompt) = a.prompt.as_deref() else { bail!("give --prompt TEXT or --input FILE") };
    // clap lets a flag that requires --input through when --prompt (which conflicts with it) is given.
    let file_only = [(a.output.is_some(), "--output"), (a.force, "--force"), (a.prompt_field.is_some(), "--prompt-field")];
    if let Some((_, flag)) = file_only.iter().find(|(given, _)| *given) {
        bail!("{flag} goes with --input FILE (a file of prompts); one --prompt is printed to stdout");
    }
    if prompt.trim().is_empty() {
        bail!("--prompt is empty: give the text to continue");
    }
    check_flags(&a)?;
    let session = Session::load(&a)?;
    if let Some(refusal) = wenhui::generate::blank::unknown_text(&session.tokenizer, prompt)?.warn_or_refusal("--prompt") {
        bail!(refusal);
    }
    let context = session.encode(prompt, "--prompt")?;
    let out = session.generate(&context, &session.cfg, &a.stop, !a.json)?;
    if a.json {
        println!("{}", out.json(prompt));
    } else if session.kind == ModelKind::Gpt2 && session.cfg.num_beams > 1 {
        for (i, s) in out.sequences.iter().enumerate() {
            if out.sequences.len() > 1 {
                println!("[{}] ({:.3}) {}", i + 1, s.score, s.text);
            } else {
                println!("{}", s.text);
            }
        }
    }
    Ok(())
}
