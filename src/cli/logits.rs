//! `wenhui logits DIR --text ... [--sep N]`

use crate::cli::common::ModelArgs;
use anyhow::{bail, Context};
use candle_core::{DType, Tensor, D};
use wenhui::model::{load_model, Attention, BackboneInput};
use wenhui::tokenizer::Tokenizer;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["text", "ids"])))]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Input text (tokenized with the model's tokenizer, special tokens added).
    #[arg(long)]
    text: Option<String>,
    /// Input token ids instead of text, comma-separated (for models without a tokenizer).
    #[arg(long, value_delimiter = ',')]
    ids: Option<Vec<u32>>,
    /// GLM-style attention: tokens before SEP see each other (Part A), later ones are causal.
    /// Default: the model's own (causal for GLM and GPT-2, bidirectional for BERT).
    #[arg(long)]
    sep: Option<usize>,
    /// Row whose logits are shown (0-based). Default: a BERT model's first `[MASK]` (the row
    /// that predicts it), else the last token (the next-token prediction of GLM and GPT-2).
    #[arg(long)]
    position: Option<usize>,
    /// How many tokens to show.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let m = load_model(&a.model.model, &a.model.load_options())?;
    let tokenizer = Tokenizer::find_in_dir(&a.model.dir())?;
    let ids = match (&a.ids, &a.text) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) => {
            let tok =
                tokenizer.as_ref().with_context(|| format!("no tokenizer in {}: pass --ids instead of --text", a.model.dir().display()))?;
            if let Some(refusal) = wenhui::generate::blank::unknown_text(tok, text)?.warn_or_refusal("--text") {
                bail!(refusal);
            }
            tok.encode(text, true)?
        }
        (None, None) => bail!("pass --text or --ids"),
    };
    if ids.is_empty() {
        bail!("the input is empty: nothing to score");
    }
    let n = ids.len();
    let max = m.backbone.info().max_positions;
    if n > max {
        bail!(
            "the input has {n} tokens but the model takes at most {max} positions (its max positions, as `wenhui inspect` shows); \
             pass at most {max} ids or a shorter --text"
        );
    }
    let first_mask = || {
        let mask = tokenizer.as_ref().and_then(|t| t.special.mask)?;
        (m.backbone.info().kind == wenhui::model::ModelKind::Bert).then(|| ids.iter().position(|&i| i == mask))?
    };
    let position = a.position.or_else(first_mask).unwrap_or(n - 1);
    if position >= n {
        bail!("--position {position} is outside the {n} input tokens");
    }
    let mut input = BackboneInput::ids(Tensor::new(ids.as_slice(), m.backbone.device())?.unsqueeze(0)?);
    if let Some(sep) = a.sep {
        input = input.with_attention(Attention::Sep(vec![sep]));
    }
    let out = m.backbone.forward(&input, None)?;
    let row = out.logits.get(0)?.get(position)?.to_dtype(DType::F32)?;
    let probs = candle_nn::ops::softmax(&row, D::Minus1)?.to_vec1::<f32>()?;
    let logits = row.to_vec1::<f32>()?;
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&x, &y| logits[y].total_cmp(&logits[x]));
    let piece = |id: usize| tokenizer.as_ref().and_then(|t| t.id_to_token(id as u32)).unwrap_or_default();
    let top: Vec<_> = order.iter().take(a.top_k).map(|&id| (id, piece(id), logits[id], probs[id])).collect();
    if a.json {
        let rows: Vec<_> = top.iter().map(|(id, p, l, pr)| serde_json::json!({"id": id, "piece": p, "logit": l, "prob": pr})).collect();
        println!("{}", serde_json::json!({"position": position, "input_ids": ids, "top": rows}));
    } else {
        println!("top {} at position {position} of {n}:", top.len());
        for (id, p, l, pr) in top {
            println!("{id:>8}  {p:<16} logit {l:>9.4}  p {pr:.4}");
        }
    }
    Ok(())
}
