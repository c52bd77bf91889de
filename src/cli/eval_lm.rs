//! `wenhui eval lm`: perplexity over a text file, or LAMBADA-style last-word accuracy.

use crate::cli::common::DefaultModel;
use std::path::PathBuf;
use wenhui::eval::lm::{last_word_accuracy, perplexity, split_passage, LmMode, LmTokens, PplOptions};
use wenhui::model::{load_model, LoadOptions, ModelKind};
use wenhui::tokenizer::Tokenizer;

/// `wenhui eval lm`.
#[derive(Debug, clap::Args)]
pub struct EvalLmArgs {
    #[command(flatten)]
    pub model: DefaultModel,
    /// A text file (perplexity) or, with --lambada, JSONL passages.
    #[arg(long)]
    pub data: PathBuf,
    /// LAMBADA-style last-word accuracy on JSONL passages (field --field).
    #[arg(long)]
    pub lambada: bool,
    /// JSON field of a passage.
    #[arg(long, default_value = "text")]
    pub field: String,
    /// unidirectional (left to right), bidirectional, or both.
    #[arg(long, default_value = "both", value_parser = ["unidirectional", "bidirectional", "both"])]
    pub mode: String,
    /// Mask token of the layout: gmask, or mask (the original zero-shot scripts).
    #[arg(long, default_value = "gmask", value_parser = ["gmask", "mask"])]
    pub mask: String,
    /// Text tokens per window (default: the model's positions − 2).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Window stride (default: --seq-len, no overlap, as the official default).
    #[arg(long)]
    pub stride: Option<usize>,
    /// Score the whole file as one document (by default each line is a document).
    #[arg(long)]
    pub whole_file: bool,
    /// Windows or passages per forward pass.
    #[arg(long, default_value_t = 8, value_parser = crate::cli::common::positive)]
    pub batch_size: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `eval lm`.
pub fn run(a: EvalLmArgs) -> anyhow::Result<()> {
    let dir = a.model.dir()?;
    let m = load_model(&dir, &LoadOptions::default())?;
    if m.backbone.info().kind != ModelKind::Glm {
        anyhow::bail!("eval lm evaluates a GLM (for a GPT-2 use `eval ppl`)");
    }
    let tokenizer = Tokenizer::from_dir(&dir)?;
    let s = &tokenizer.special;
    let t = LmTokens {
        cls: s.get("cls")?,
        mask: s.get(&a.mask)?,
        sop: s.get("sop")?,
        pad: s.pad.or(s.eos).ok_or_else(|| anyhow::anyhow!("the tokenizer has no pad or eos token"))?,
    };
    let modes: Vec<LmMode> = match a.mode.as_str() {
        "unidirectional" => vec![LmMode::Unidirectional],
        "bidirectional" => vec![LmMode::Bidirectional],
        _ => vec![LmMode::Unidirectional, LmMode::Bidirectional],
    };
    let text = wenhui::error::read_text(&a.data)?;
    let mut results = Vec::new();
    if a.lambada {
        let mut passages = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let at = |m: String| anyhow::anyhow!("{}: line {}: {m}", a.data.display(), i + 1);
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| at(format!("not JSON: {e}")))?;
            let p = match v.get(&a.field) {
                Some(serde_json::Value::String(p)) => p,
                Some(other) => {
                    return Err(at(format!("field `{}` is not a string (it is {other}); put the passage text in a JSON string", a.field)))
                }
                None => return Err(at(format!("missing field `{}` (set another with --field)", a.field))),
            };
            passages.push(split_passage(&tokenizer, p).map_err(|e| at(e.to_string()))?);
        }
        let answers: Vec<u32> = passages.iter().flat_map(|p| p.answer.iter().copied()).collect();
        let unk = unk_share(s.unk, &answers, "answer");
        for mode in modes {
            let bar = wenhui::train::progress::count_bar(true, passages.len() as u64, "passages");
            let r = last_word_accuracy(m.backbone.as_ref(), &passages, &t, mode, a.batch_size, &bar)?;
            bar.finish_and_clear();
            if !a.json {
                println!(
                    "{:?}: last-word accuracy {:.2}%  answer loss {:.4}  ({} passages, {} cut)",
                    r.mode, r.accuracy, r.loss, r.passages, r.truncated
                );
            }
            results.push(with_unk(serde_json::to_value(&r)?, unk));
        }
    } else {
        let docs: Vec<Vec<u32>> = if a.whole_file {
            vec![tokenizer.encode(text.trim(), false)?]
        } else {
            text.lines().filter(|l| !l.trim().is_empty()).map(|l| tokenizer.encode(l.trim(), false)).collect::<Result<_, _>>()?
        };
        let seq_len = a.seq_len.unwrap_or(m.backbone.info().max_positions.saturating_sub(2));
        let stride = a.stride.unwrap_or(seq_len);
        let all: Vec<u32> = docs.iter().flatten().copied().collect();
        let unk = unk_share(s.unk, &all, "target");
        for mode in modes {
            let bar = wenhui::train::progress::count_bar(true, docs.len() as u64, "documents");
            let o = PplOptions { mode, seq_len, stride, batch_size: a.batch_size };
            let r = anyhow::Context::with_context(perplexity(m.backbone.as_ref(), &docs, &t, &o, &bar), || a.data.display().to_string())?;
            bar.finish_and_clear();
            if !a.json {
                println!(
                    "{:?}: loss {:.4}  ppl {:.2}  ({} tokens, {} windows of {} stride {}, {} documents)",
                    r.mode, r.loss, r.ppl, r.tokens, r.windows, r.seq_len, r.stride, r.documents
                );
            }
            results.push(with_unk(serde_json::to_value(&r)?, unk));
        }
    }
    if a.json {
        println!("{}", serde_json::json!({"data": a.data, "results": results}));
    }
    Ok(())
}

/// Share of `[UNK]` among the scored `what` tokens, with a warning when there are any: an unknown
/// token is scored as one id for all the text it stands for, so the perplexity says little about the text.
fn unk_share(unk: Option<u32>, ids: &[u32], what: &str) -> f64 {
    let Some(unk) = unk else { return 0.0 };
    let n = ids.iter().filter(|&&i| i == unk).count();
    let share = n as f64 / ids.len().max(1) as f64;
    if n > 0 {
        eprintln!(
            "warning: {n} of {} {what} tokens ({:.1}%) are [UNK]: the tokenizer does not cover this text, and the \
             loss / perplexity scores [UNK] rather than the text (use data in the model's language or script)",
            ids.len(),
            100.0 * share
        );
    }
    share
}

/// `value` (a report object) with `unk_targets`, the share of `[UNK]` targets, added.
fn with_unk(mut value: serde_json::Value, unk: f64) -> serde_json::Value {
    if let Some(o) = value.as_object_mut() {
        o.insert("unk_targets".into(), serde_json::json!(unk));
    }
    value
}
