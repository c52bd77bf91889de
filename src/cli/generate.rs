//! `wenhui generate --model DIR --prompt TEXT`: free-text generation with every strategy of
//! [`GenerationConfig`], streamed to stdout as tokens are decided (or one JSON object).
//!
//! GPT-2-style models continue the prompt left to right ([`CausalInputs`]); a GLM generates as
//! THUDM's long generation does: `[CLS] prompt [gMASK]` and the blank is filled
//! ([`fill_blanks_streaming`]); a prompt with its own `[MASK]`/`[sMASK]`/`[gMASK]` blanks has each
//! blank filled in turn, one fill per output line.

use crate::cli::common::ModelFlag;
use anyhow::bail;
use std::io::Write;
use std::time::Instant;
use wenhui::generate::{
    fill_blanks_streaming, generate, glm_context, BlankTokens, CausalInputs, EarlyStopping, GenerationConfig, StepHook,
};
use wenhui::model::{load_model, ModelKind};
use wenhui::tokenizer::Tokenizer;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelFlag,
    /// The text to continue. With a GLM, `[MASK]` / `[sMASK]` / `[gMASK]` blanks are filled;
    /// without one, `[gMASK]` is appended (long generation).
    #[arg(long, allow_hyphen_values = true)]
    prompt: String,
    /// Most new tokens (per blank with a GLM).
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Stop tokens are banned until this many new tokens exist.
    #[arg(long, visible_alias = "min-length", default_value_t = 0)]
    min_new_tokens: usize,
    #[command(flatten)]
    sampling: crate::cli::common::SamplingArgs,
    /// Seed of the sampler: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Beam search with this many beams (1 = greedy or sampling).
    #[arg(long, visible_alias = "beams", default_value_t = 1)]
    num_beams: usize,
    /// Beam scores are sum log p / length^penalty.
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    length_penalty: f32,
    /// When beam search stops: true, false or never (as Hugging Face).
    #[arg(long, default_value = "false", value_parser = parse_early_stopping)]
    early_stopping: EarlyStopping,
    /// Beam hypotheses to print, best first (≤ --num-beams; 1 with a GLM).
    #[arg(long, default_value_t = 1)]
    num_return_sequences: usize,
    /// Penalty (> 0) on tokens already in the text (1 = off).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// No n-gram of this size occurs twice (0 = off).
    #[arg(long, default_value_t = 0)]
    no_repeat_ngram_size: usize,
    /// Comma-separated words never to generate (each is tokenized; a several-token word bans its
    /// last token after the others).
    #[arg(long, value_delimiter = ',')]
    bad_words: Vec<String>,
    /// Stop when this text is generated (repeatable). Single-token strings stop every strategy;
    /// longer ones stop greedy decoding and sampling.
    #[arg(long)]
    stop: Vec<String>,
    /// Print one JSON object (prompt, text, sequences with tokens and scores, timing) instead of streaming.
    #[arg(long)]
    json: bool,
}

fn parse_early_stopping(s: &str) -> Result<EarlyStopping, String> {
    match s {
        "true" => Ok(EarlyStopping::True),
        "false" => Ok(EarlyStopping::False),
        "never" => Ok(EarlyStopping::Never),
        other => Err(format!("`{other}` is not one of true, false, never")),
    }
}

/// The generation config of the flags; multi-token stop strings are returned apart.
fn config(a: &Args, tokenizer: &Tokenizer) -> anyhow::Result<(GenerationConfig, Vec<Vec<u32>>)> {
    let mut cfg = GenerationConfig {
        max_new_tokens: a.max_new_tokens,
        min_new_tokens: a.min_new_tokens,
        seed: a.seed,
        repetition_penalty: a.repetition_penalty,
        no_repeat_ngram_size: a.no_repeat_ngram_size,
        num_beams: a.num_beams,
        length_penalty: a.length_penalty,
        early_stopping: a.early_stopping,
        num_return_sequences: a.num_return_sequences,
        ..GenerationConfig::default()
    };
    a.sampling.apply(&mut cfg, a.num_beams, "--num-beams")?;
    for w in a.bad_words.iter().filter(|w| !w.trim().is_empty()) {
        let ids = tokenizer.encode(w, false)?;
        if ids.is_empty() {
            bail!("--bad-words: `{w}` encodes to no tokens");
        }
        cfg.bad_words_ids.push(ids);
    }
    let mut long_stops = Vec::new();
    for s in &a.stop {
        let ids = tokenizer.encode(s, false)?;
        match ids.as_slice() {
            [] => bail!("--stop `{s}` encodes to no tokens; give visible text"),
            [one] => cfg.eos_token_ids.push(*one),
            _ if a.num_beams > 1 => {
                bail!("--stop `{s}` is {} tokens; with --num-beams > 1 only single-token stop strings work", ids.len())
            }
            _ => long_stops.push(ids),
        }
    }
    cfg.validate()?;
    Ok((cfg, long_stops))
}

/// Prints the decoded text of a growing token list as it grows, never half a character.
struct Printer<'a> {
    tokenizer: &'a Tokenizer,
    ids: Vec<u32>,
    shown: String,
    on: bool,
}

impl<'a> Printer<'a> {
    fn new(tokenizer: &'a Tokenizer, on: bool) -> Self {
        Self { tokenizer, ids: Vec::new(), shown: String::new(), on }
    }
    fn push(&mut self, token: u32) -> wenhui::Result<()> {
        self.ids.push(token);
        let text = self.tokenizer.decode(&self.ids, true)?;
        if !text.ends_with('\u{FFFD}') {
            self.show(text);
        }
        Ok(())
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
        let text = self.tokenizer.decode(&self.ids, true)?;
        self.show(text);
        if self.on {
            println!();
        }
        self.ids.clear();
        self.shown.clear();
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
    let margs = a.model.args();
    let m = load_model(&margs.model, &margs.load_options())?;
    let tokenizer = Tokenizer::from_dir(&margs.dir())?;
    if let Some(refusal) = wenhui::generate::blank::unknown_text(&tokenizer, &a.prompt)?.warn_or_refusal("--prompt") {
        bail!(refusal);
    }
    let (mut cfg, long_stops) = config(&a, &tokenizer)?;
    let model = m.backbone.as_ref();
    // Rows of a padded vocabulary have no token: never generate them.
    cfg.bad_words_ids.extend((tokenizer.vocab_size(true)..model.info().vocab_size).map(|id| vec![id as u32]));
    let max_pos = model.info().max_positions;
    let kind = model.info().kind;
    let too_long = |n: usize| {
        anyhow::anyhow!(
            "--prompt is {n} tokens but the model in {} has only {max_pos} positions; shorten the prompt",
            margs.model.display()
        )
    };
    let mut printer = Printer::new(&tokenizer, !a.json);
    let mut clock = Clock { start: Instant::now(), first: None };
    let mut failure: Option<wenhui::Error> = None;
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
            let mut fill: Vec<u32> = Vec::new();
            let mut hook = |b: usize, _i: usize, t: u32| {
                clock.tick();
                if b != current {
                    current = b;
                    fill.clear();
                    if let Err(e) = printer.finish() {
                        failure.get_or_insert(e);
                    }
                }
                if t == blank.eop || Some(t) == blank.eos {
                    return true;
                }
                fill.push(t);
                if let Err(e) = printer.push(t) {
                    failure.get_or_insert(e);
                    return false;
                }
                !long_stops.iter().any(|s| fill.ends_with(s))
            };
            let out = fill_blanks_streaming(model, &context, &blank, &cfg, Some(&mut hook))?;
            let seqs = out
                .fills
                .iter()
                .map(|f| {
                    Ok(Sequence {
                        text: tokenizer.decode(&f.tokens, true)?,
                        tokens: f.tokens.clone(),
                        score: f.score,
                        finished: f.finished,
                    })
                })
                .collect::<wenhui::Result<Vec<_>>>()?;
            (tokenizer.decode(&out.tokens, true)?, seqs)
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
            if let Some(eos) = tokenizer.special.eos {
                if !cfg.eos_token_ids.contains(&eos) {
                    cfg.eos_token_ids.push(eos);
                }
            }
            let stops = cfg.eos_token_ids.clone();
            let mut new: Vec<u32> = Vec::new();
            let mut hook = |_i: usize, t: u32| {
                clock.tick();
                new.push(t);
                if stops.contains(&t) {
                    return true;
                }
                if let Err(e) = printer.push(t) {
                    failure.get_or_insert(e);
                    return false;
                }
                !long_stops.iter().any(|s| new.ends_with(s))
            };
            let stream = cfg.num_beams == 1;
            let out = generate(model, &prompt, &CausalInputs::new(model), &cfg, stream.then_some(&mut hook as StepHook<'_>))?;
            let seqs = out
                .sequences
                .iter()
                .map(|h| {
                    let shown: Vec<u32> = h.tokens.iter().copied().filter(|t| !stops.contains(t)).collect();
                    Ok(Sequence { text: tokenizer.decode(&shown, true)?, tokens: h.tokens.clone(), score: h.score, finished: h.finished })
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
    let new_tokens: usize = if kind == ModelKind::Glm {
        sequences.iter().map(|s| s.tokens.len() + usize::from(s.finished)).sum()
    } else {
        sequences.first().map_or(0, |s| s.tokens.len())
    };
    // Greedy/sampling: the first token's time is the prompt pass; the rate counts the rest.
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
