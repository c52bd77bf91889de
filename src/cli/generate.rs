//! `wenhui generate [--model DIR] --prompt TEXT`: free-text generation with every strategy of
//! [`GenerationConfig`], streamed to stdout as tokens are decided (or one JSON object).
//!
//! GPT-2-style models continue the prompt left to right ([`CausalInputs`]); a GLM generates as
//! THUDM's long generation does: `[CLS] prompt [gMASK]` and the blank is filled
//! ([`fill_blanks_streaming`]); a prompt with its own `[MASK]`/`[sMASK]`/`[gMASK]` blanks has each
//! blank filled in turn, one fill per output line.

use crate::cli::common::{DefaultModel, GeluArg, ModelArgs, ProcessorArgs};
use anyhow::bail;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use wenhui::generate::{
    fill_blanks_streaming, generate, glm_context, BlankTokens, CausalInputs, EarlyStopping, GenerationConfig, StepHook,
};
use wenhui::model::{load_model, ModelKind};
use wenhui::tokenizer::Tokenizer;

#[derive(Debug, clap::Args)]
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
    prompt: String,
    /// Most new tokens (per blank with a GLM).
    #[arg(long, default_value_t = 32, value_parser = crate::cli::common::positive)]
    max_new_tokens: usize,
    #[command(flatten)]
    sampling: crate::cli::common::SamplingArgs,
    /// Seed of the sampler: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    seed: u64,
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
    stop: Vec<String>,
    /// Print one JSON object (prompt, text, sequences with tokens and scores, timing) instead of
    /// streaming. timing.prompt_ms is the time to the first token; null with beam search, whose
    /// tokens are known only when the search ends.
    #[arg(long)]
    json: bool,
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
fn check_flags(a: &Args) -> anyhow::Result<()> {
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

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.prompt.trim().is_empty() {
        bail!("--prompt is empty: give the text to continue");
    }
    check_flags(&a)?;
    let margs = ModelArgs { model: a.model.dir()?, gelu: a.gelu, config: a.config.clone() };
    let m = load_model(&margs.model, &margs.load_options())?;
    let tokenizer = Tokenizer::from_dir(&margs.dir())?;
    if let Some(refusal) = wenhui::generate::blank::unknown_text(&tokenizer, &a.prompt)?.warn_or_refusal("--prompt") {
        bail!(refusal);
    }
    let mut cfg = config(&a, &tokenizer)?;
    let model = m.backbone.as_ref();
    cfg.bad_words_ids.extend(wenhui::generate::padded_vocabulary_rows(model, &tokenizer));
    let max_pos = model.info().max_positions;
    let kind = model.info().kind;
    let too_long = |n: usize| {
        anyhow::anyhow!(
            "--prompt is {n} tokens but the model in {} has only {max_pos} positions; shorten the prompt",
            margs.model.display()
        )
    };
    let stops = Stops { tokenizer: &tokenizer, texts: a.stop.clone(), min_new: cfg.min_new_tokens };
    let mut printer = Printer::new(&stops, !a.json);
    let mut clock = Clock { start: Instant::now(), first: None };
    let mut failure: Option<wenhui::Error> = None;
    // The tokens generated, stop tokens included (the rate counts them).
    let new_tokens: usize;
    let (text, sequences) = match kind {
        ModelKind::Glm => {
            if cfg.num_return_sequences > 1 {
                bail!("--num-return-sequences must be 1 with a GLM (blank filling keeps the best fill of each blank)");
            }
            let blank = BlankTokens::from_special(&tokenizer.special)?;
            let context = glm_context(&tokenizer, &a.prompt)?;
            if context.len() > max_pos {
                return Err(too_long(context.len()));
            }
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
            let out = fill_blanks_streaming(model, &context, &blank, &cfg, Some(&mut hook))?;
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
        ModelKind::Bert => {
            bail!("{}: generate needs a GLM or a GPT-2; this is a BERT masked LM (try `wenhui logits`)", margs.model.display())
        }
        ModelKind::Gpt2 => {
            let prompt = tokenizer.encode(&a.prompt, false)?;
            if prompt.is_empty() {
                bail!("--prompt encodes to no tokens with this tokenizer; give visible text");
            }
            if prompt.len() > max_pos {
                return Err(too_long(prompt.len()));
            }
            let eos = tokenizer.special.eos;
            if let Some(eos) = eos {
                if !cfg.eos_token_ids.contains(&eos) {
                    cfg.eos_token_ids.push(eos);
                }
            }
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
            let stream = cfg.num_beams == 1;
            let out = generate(model, &prompt, &CausalInputs::new(model), &cfg, stream.then_some(&mut hook as StepHook<'_>))?;
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
    };
    let total_ms = clock.start.elapsed().as_secs_f64() * 1e3;
    if let Some(e) = failure {
        return Err(e.into());
    }
    if !a.json {
        if kind == ModelKind::Glm || cfg.num_beams == 1 {
            printer.finish()?;
        } else {
            for (i, s) in sequences.iter().enumerate() {
                if sequences.len() > 1 {
                    println!("[{}] ({:.3}) {}", i + 1, s.score, s.text);
                } else {
                    println!("{}", s.text);
                }
            }
        }
        return Ok(());
    }
    // Greedy/sampling: the first token's time is the prompt pass; the rate counts the rest. Beam
    // search decides its tokens only when the search ends: no time to a first token (null).
    let prompt_ms = if cfg.num_beams == 1 { clock.first } else { None };
    let tokens_per_s = match prompt_ms {
        Some(p) if new_tokens > 1 && total_ms > p => (new_tokens - 1) as f64 / ((total_ms - p) / 1e3),
        _ => new_tokens as f64 / (total_ms / 1e3).max(1e-9),
    };
    let report = serde_json::json!({
        "prompt": a.prompt,
        "model": kind.to_string(),
        "text": text,
        "texts": sequences.iter().map(|s| s.text.clone()).collect::<Vec<_>>(),
        "tokens": sequences.first().map(|s| s.tokens.clone()).unwrap_or_default(),
        "scores": sequences.iter().map(|s| s.score).collect::<Vec<_>>(),
        "sequences": sequences,
        "timing": {"prompt_ms": prompt_ms, "total_ms": total_ms, "new_tokens": new_tokens, "tokens_per_s": tokens_per_s},
    });
    println!("{report}");
    Ok(())
}
