//! Setting up a pretraining run before its first step: the model it trains (fresh, from
//! `init_from`, or resumed), and the checks that keep a resumed run the run it was — its model,
//! its held-out documents, its later checkpoints — and a new run off another run's files.

use super::checkpoint::{self, Checkpoint};
use super::config::{required_kind, PretrainConfig};
use super::pretrain::split_documents;
use super::progress::note;
use crate::data::corpus::TokenCorpus;
use crate::data::lm::LmObjective;
use crate::model::bert::BertConfig;
use crate::model::glm::GlmConfig;
use crate::model::gpt2::Gpt2Config;
use crate::model::{Gelu, ModelConfig, ModelKind};
use crate::tokenizer::{padded_vocab_size, Tokenizer};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The model config for a fresh run: `cfg.arch` (GLM by default) with the run's shape.
pub(crate) fn fresh_model(cfg: &PretrainConfig, tokenizer: &Tokenizer) -> Result<ModelConfig> {
    let vocab = padded_vocab_size(tokenizer.vocab_size(true));
    let erf = cfg.gelu == "erf";
    Ok(match cfg.model_kind()? {
        ModelKind::Glm => {
            let mut g = GlmConfig::new(cfg.layers, cfg.hidden, cfg.heads, vocab, cfg.seq_len);
            g.gelu = if erf { Gelu::Erf } else { Gelu::Tanh };
            ModelConfig::Glm(g)
        }
        ModelKind::Bert => ModelConfig::Bert(BertConfig {
            vocab_size: vocab,
            hidden_size: cfg.hidden,
            num_hidden_layers: cfg.layers,
            num_attention_heads: cfg.heads,
            intermediate_size: 4 * cfg.hidden,
            max_position_embeddings: cfg.seq_len,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: if erf { "gelu" } else { "gelu_new" }.into(),
            initializer_range: 0.02,
            hidden_dropout_prob: cfg.dropout,
            attention_probs_dropout_prob: cfg.dropout,
        }),
        ModelKind::Gpt2 => ModelConfig::Gpt2(Gpt2Config {
            vocab_size: vocab,
            n_embd: cfg.hidden,
            n_layer: cfg.layers,
            n_head: cfg.heads,
            n_positions: cfg.seq_len,
            n_inner: None,
            layer_norm_epsilon: 1e-5,
            activation_function: if erf { "gelu" } else { "gelu_new" }.into(),
            initializer_range: 0.02,
            embd_pdrop: cfg.dropout,
            attn_pdrop: cfg.dropout,
            resid_pdrop: cfg.dropout,
        }),
    })
}

/// The first of `fields` (shape fields of the run config: `layers`, `hidden`, `heads`, `gelu`,
/// `arch`; others are skipped) whose value in `cfg` differs from `model`'s, as `(field, the
/// config's value, the model's value)`. `config` is the model's config.json (named in errors).
pub fn model_mismatch(
    cfg: &PretrainConfig,
    model: &ModelConfig,
    config: &Path,
    fields: &[String],
) -> Result<Option<(String, String, String)>> {
    let (layers, hidden, heads, _) = model.dims();
    for field in fields {
        let (asked, has) = match field.as_str() {
            "layers" => (cfg.layers.to_string(), layers.to_string()),
            "hidden" => (cfg.hidden.to_string(), hidden.to_string()),
            "heads" => (cfg.heads.to_string(), heads.to_string()),
            "gelu" => (cfg.gelu.clone(), format!("{:?}", model.gelu(config)?).to_lowercase()),
            "arch" => (cfg.model_kind()?.to_string(), model.kind().to_string()),
            _ => continue,
        };
        if asked != has {
            return Ok(Some((field.clone(), asked, has)));
        }
    }
    Ok(None)
}

/// A run from `--init-from` keeps that model's shape: a layer count, width, head count, GELU or
/// architecture the file or the flags set must agree with it (it used to be ignored silently).
pub(crate) fn ensure_same_shape(cfg: &PretrainConfig, model: &ModelConfig, dir: &Path) -> Result<()> {
    if let Some((field, asked, has)) = model_mismatch(cfg, model, &dir.join("config.json"), &cfg.model_fields_given)? {
        return Err(Error::input(format!(
            "{field} {asked}: the model in {} (init_from) has {field} {has}, and a run from a model keeps its shape; drop {field}, or drop init_from to train a fresh model",
            dir.display()
        )));
    }
    Ok(())
}

/// A resumed run continues with its checkpoint's model: shape fields set (in the file or by
/// flags) must agree with it. (The CLI checks this first, naming the flag or the file.)
pub(crate) fn ensure_resumed_shape(cfg: &PretrainConfig, ck: &Checkpoint) -> Result<()> {
    if let Some((field, asked, has)) = model_mismatch(cfg, &ck.model, &ck.dir.join("config.json"), &cfg.model_fields_given)? {
        return Err(Error::input(format!(
            "{field} {asked}: the checkpoint {} has {field} {has}, and a resumed run continues with its checkpoint's model; \
             drop {field}, or start a new run from the checkpoint with init_from (--init-from)",
            ck.dir.display()
        )));
    }
    Ok(())
}

/// `seed` and `valid_fraction` chose a run's held-out documents (and `seed` its data order): a
/// resumed run keeps the checkpoint's. Recomputing the split with others would turn documents
/// the model trained on into validation documents.
pub(crate) fn ensure_same_split_settings(cfg: &PretrainConfig, ck: &Checkpoint) -> Result<()> {
    let saved = &ck.state.config;
    let refuse = |field: &str, now: String, was: String| {
        Error::input(format!(
            "{field} {now} (--{}): the checkpoint {} was trained with {field} {was}, which chose its held-out documents \
             (split.json) and data order, and a resumed run keeps them; drop the setting, or start a new run",
            field.replace('_', "-"),
            ck.dir.display()
        ))
    };
    if let Some(seed) = saved.get("seed").and_then(|v| v.as_u64()).filter(|s| *s != cfg.seed) {
        return Err(refuse("seed", cfg.seed.to_string(), seed.to_string()));
    }
    if let Some(f) = saved.get("valid_fraction").and_then(|v| v.as_f64()).filter(|f| *f != cfg.valid_fraction) {
        return Err(refuse("valid_fraction", cfg.valid_fraction.to_string(), f.to_string()));
    }
    Ok(())
}

/// The checkpoints of the run `run` after the step of `ck`: continuing `run` from `ck` would
/// replace them and cut its `metrics.jsonl` back to that step. Unless `discard` (the user's
/// `--discard-later`) they are an error naming them and the way to branch instead.
pub(crate) fn later_checkpoints(run: &Path, ck: &Checkpoint, discard: bool) -> Result<Vec<PathBuf>> {
    let step = ck.state.step;
    let later: Vec<PathBuf> =
        checkpoint::step_dirs(&run.join("checkpoints"))?.into_iter().filter(|(s, _)| *s > step).map(|(_, d)| d).collect();
    if later.is_empty() || discard {
        return Ok(later);
    }
    let names: Vec<String> = later.iter().filter_map(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
    Err(Error::file(
        run,
        format!(
            "holds checkpoints after step {step} ({}): continuing this run from {} would delete them and cut metrics.jsonl \
             back to step {step}. To continue from that checkpoint into a new run (a branch), add -o NEW_DIR; to discard \
             the later checkpoints, add --discard-later",
            names.join(", "),
            ck.dir.display()
        ),
    ))
}

/// The resumed run's objective, kept when its checkpoint was saved before the span-rule settings
/// existed ([`PretrainConfig::keep_pre_span_rules`]): one warning names the values it keeps.
pub(crate) fn keep_pre_span_rules(cfg: &mut PretrainConfig, ck: &Checkpoint) {
    let kept = cfg.keep_pre_span_rules(&ck.state.config);
    if kept.is_empty() {
        return;
    }
    let value = |f: &str| match f {
        "block_mask_prob" => cfg.block_mask_prob.map(|v| v.to_string()),
        "short_seq_prob" => cfg.short_seq_prob.map(|v| v.to_string()),
        "sentence_end_in_span" => cfg.sentence_end_in_span.map(|v| v.to_string()),
        _ => cfg.task_masks.map(|v| v.to_string()),
    };
    let values: Vec<String> = kept.iter().map(|f| format!("{f} {}", value(f).unwrap_or_default())).collect();
    tracing::warn!(
        "{} was saved before {} existed, when the `{}` objective used other values than it does now: the run continues \
         with those it trained with, {} (token spans are placed by the current rules); set them (flags or --config) to change it",
        ck.dir.join("trainer_state.json").display(),
        kept.join(", "),
        cfg.objective,
        values.join(", ")
    );
}

/// Removes the later checkpoints [`later_checkpoints`] found (`--discard-later`), saying so, and
/// points `run/latest` at `resumed`, the checkpoint the run continues from: until the run saves
/// its next one, `latest` names a checkpoint that is there (it named one of those removed).
pub(crate) fn discard(run: &Path, resumed: &Path, later: &[PathBuf]) -> Result<()> {
    if later.is_empty() {
        return Ok(());
    }
    for d in later {
        std::fs::remove_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    // Absolute: a checkpoint resumed as `.` from inside it still has its name.
    let resumed = resumed.canonicalize().map_err(|e| Error::io(resumed, e))?;
    let name = resumed.file_name().ok_or_else(|| Error::file(&resumed, "a checkpoint directory without a name"))?;
    crate::error::write_atomic(&run.join("latest"), name.to_string_lossy().as_bytes())?;
    let names: Vec<String> = later.iter().filter_map(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
    tracing::warn!("discarded the later checkpoints {} (--discard-later)", names.join(", "));
    Ok(())
}

/// A new run writes `dir/split.json`: one already there (another run's, or the user's own) is
/// not replaced.
pub(crate) fn ensure_no_split(dir: &Path) -> Result<()> {
    let p = dir.join("split.json");
    if p.exists() {
        return Err(Error::file(
            &p,
            "already exists: a new run writes its held-out documents there and would replace it; move it away, or write \
             the run to another directory (-o)",
        ));
    }
    Ok(())
}

/// The training and held-out documents of a resumed run: those of its `split.json` in `run`
/// when there is one (the split it trained with), else the seeded split of its settings.
pub(crate) fn resumed_split(run: Option<&Path>, cfg: &PretrainConfig, n: usize) -> Result<(Vec<usize>, Vec<usize>)> {
    let Some(path) = run.map(|r| r.join("split.json")).filter(|p| p.is_file()) else {
        return Ok(split_documents(n, cfg.valid_fraction, cfg.seed));
    };
    let fix = "restore the run's split.json, or delete it to recompute the split from the checkpoint's settings";
    let v: serde_json::Value =
        serde_json::from_str(&crate::error::read_text(&path)?).map_err(|e| Error::file(&path, format!("not valid JSON ({e}): {fix}")))?;
    let (seed, fraction) = (v.get("seed").and_then(|s| s.as_u64()), v.get("valid_fraction").and_then(|f| f.as_f64()));
    if seed != Some(cfg.seed) || fraction != Some(cfg.valid_fraction) {
        let show = |x: Option<String>| x.unwrap_or_else(|| "none".into());
        return Err(Error::file(
            &path,
            format!(
                "was written with seed {} and valid_fraction {}, but the checkpoint trained with seed {} and valid_fraction {}: {fix}",
                show(seed.map(|s| s.to_string())),
                show(fraction.map(|f| f.to_string())),
                cfg.seed,
                cfg.valid_fraction
            ),
        ));
    }
    let corpus_changed = |what: String| {
        Error::file(
            &path,
            format!(
                "{what}, but the corpus {} has {n} documents: resume with the corpus the run trained on (--corpus)",
                cfg.corpus.display()
            ),
        )
    };
    if let Some(docs) = v.get("documents").and_then(|d| d.as_u64()).filter(|d| *d != n as u64) {
        return Err(corpus_changed(format!("the run split {docs} documents")));
    }
    let listed =
        v.get("valid_documents").and_then(|d| d.as_array()).ok_or_else(|| Error::file(&path, format!("no valid_documents list: {fix}")))?;
    let mut valid = Vec::with_capacity(listed.len());
    for x in listed {
        match x.as_u64() {
            Some(i) if (i as usize) < n => valid.push(i as usize),
            _ => return Err(corpus_changed(format!("valid_documents lists {x}"))),
        }
    }
    valid.sort_unstable();
    valid.dedup();
    let mut held = vec![false; n];
    for &i in &valid {
        held[i] = true;
    }
    Ok(((0..n).filter(|&i| !held[i]).collect(), valid))
}

/// Writes a run's `split.json`: its seed and valid_fraction, the corpus's document count (so a
/// resume notices another corpus) and the held-out documents.
pub(crate) fn write_split(path: &Path, cfg: &PretrainConfig, documents: usize, valid: &[usize]) -> Result<()> {
    let json =
        serde_json::json!({"seed": cfg.seed, "valid_fraction": cfg.valid_fraction, "documents": documents, "valid_documents": valid});
    crate::error::write_atomic(path, json.to_string().as_bytes())
}

/// A warning when validation is on but the corpus has too few documents to hold one out: the
/// run would otherwise go without a validation loss unsaid.
pub(crate) fn warn_no_validation(cfg: &PretrainConfig, documents: usize, valid: &[usize]) {
    if valid.is_empty() && cfg.valid_fraction > 0.0 && cfg.valid_batches > 0 {
        tracing::warn!(
            "the corpus {} has {documents} document(s), too few to hold any out for validation (valid_fraction {} needs at \
             least 2): the run reports no validation loss, and `export --best` cannot choose a checkpoint",
            cfg.corpus.display(),
            cfg.valid_fraction
        );
    }
}

/// A warning when `short_seq_prob` is on but `seq_len` is too short for short-sequence batches
/// (chunks of 32..seq_len−1 tokens need seq_len ≥ 34): otherwise they would never happen, unsaid.
pub(crate) fn warn_short_seq_len(cfg: &PretrainConfig) -> Result<()> {
    if cfg.lm_objective(0) != LmObjective::Blank {
        return Ok(());
    }
    let p = cfg.objectives()?.short_seq_prob;
    let min = crate::data::blank::SHORT_SEQ_MIN;
    if p > 0.0 && cfg.seq_len <= min + 1 {
        let preset = if cfg.short_seq_prob.is_none() { format!(" (the `{}` preset's)", cfg.objective) } else { String::new() };
        tracing::warn!(
            "short_seq_prob {p}{preset} has no effect with seq_len {}: short-sequence batches cut samples into chunks of \
             {min}..seq_len−1 tokens and need seq_len ≥ {}; raise seq_len, or set short_seq_prob 0",
            cfg.seq_len,
            min + 2
        );
    }
    Ok(())
}

/// The model directory `init_from` names: a pretraining run directory stands for its newest
/// checkpoint, as `wenhui export RUN` takes it (a note names it).
pub(crate) fn init_from_dir(dir: &Path) -> Result<PathBuf> {
    Ok(match crate::model::checkpoint::pretraining_run_checkpoint(dir)? {
        Some(ck) => {
            note(&format!("init_from {} is a pretraining run: starting from its newest checkpoint {}", dir.display(), ck.display()));
            ck
        }
        None => dir.to_path_buf(),
    })
}

/// Sets the run's dropout on `model` and checks that it fits the objective, the tokenizer and
/// the sequence length. A model from `init_from` (`from`) with fewer positions than a default
/// `seq_len` lowers it to them (a note says so); a `seq_len` the user set is an error instead.
pub(crate) fn prepare_model(model: &mut ModelConfig, cfg: &mut PretrainConfig, tokenizer: &Tokenizer, from: Option<&Path>) -> Result<()> {
    let need = required_kind(cfg.lm_objective(0));
    if model.kind() != need {
        let objective = match model.kind() {
            ModelKind::Glm => "default (or glm-large, glm-10b)",
            ModelKind::Bert => "mlm",
            ModelKind::Gpt2 => "causal",
        };
        return Err(Error::input(format!(
            "objective `{}` trains a {need} model; this model is a {}: pass --objective {objective} (`objective` in a config file)",
            cfg.objective,
            model.kind()
        )));
    }
    let p = cfg.dropout;
    let (vocab, positions) = match model {
        ModelConfig::Glm(g) => {
            (g.embedding_dropout_prob, g.attention_dropout_prob, g.output_dropout_prob) = (p, p, p);
            (g.vocab_size, g.max_sequence_length)
        }
        ModelConfig::Bert(b) => {
            (b.hidden_dropout_prob, b.attention_probs_dropout_prob) = (p, p);
            (b.vocab_size, b.max_position_embeddings)
        }
        ModelConfig::Gpt2(g) => {
            (g.embd_pdrop, g.attn_pdrop, g.resid_pdrop) = (p, p, p);
            (g.vocab_size, g.n_positions)
        }
    };
    if vocab < tokenizer.vocab_size(true) {
        return Err(Error::input(format!(
            "the model's vocabulary ({vocab}) is smaller than the corpus tokenizer's ({})",
            tokenizer.vocab_size(true)
        )));
    }
    if cfg.seq_len > positions {
        match from {
            Some(dir) if !cfg.seq_len_given => {
                note(&format!(
                    "seq_len {positions}: the model in {} has {positions} positions, fewer than the default {} (--seq-len sets it)",
                    dir.display(),
                    cfg.seq_len
                ));
                cfg.seq_len = positions;
            }
            _ => {
                let (n, fix) = (cfg.seq_len, format!("pass --seq-len {positions} or less (`seq_len` in a config file)"));
                return Err(Error::input(format!("--seq-len {n} exceeds the model's {positions} positions: {fix}")));
            }
        }
    }
    Ok(())
}

/// Refuses a run far beyond the machine's memory before anything is allocated (see
/// [`crate::device::ensure_fits`]): f32 weights, gradients and two AdamW moments, and a
/// micro-batch's saved activations (about 40 values per token and channel per layer), one
/// layer's attention scores at a time (three per key and head: beyond a small budget the
/// probabilities are recomputed in the backward pass, not kept), and the logits.
pub(crate) fn check_memory(model: &ModelConfig, cfg: &PretrainConfig) -> Result<()> {
    let (l, h, n, v) = model.dims();
    let params: f64 = model.parameter_shapes().iter().map(|(_, s)| s.iter().product::<usize>() as f64).sum();
    let (b, s, h, l) = (cfg.batch_size as f64, cfg.seq_len as f64, h as f64, l as f64);
    let activations = b * s * (l * 40.0 * h + 3.0 * n as f64 * s + v as f64);
    let hint = "lower --hidden, --layers, --seq-len or --batch-size";
    crate::device::ensure_fits(&crate::device::default_device(), 4.0 * (4.0 * params + activations), "this run", hint)
}

/// The run configuration saved with every checkpoint: `cfg`, with the model's true shape (a
/// model from `init_from` or a checkpoint keeps its own, whatever the defaults say), the
/// blank-infilling settings of [`super::config::SPAN_RULE_FIELDS`] as the preset resolved them
/// (so that a later change of a preset cannot change a resumed run's objective) and the corpus
/// and `init_from` as absolute paths, so that a resume from another directory finds them. A run
/// with `epochs` saves them beside the `steps` they came to, which its resume keeps.
pub(crate) fn saved_config(cfg: &PretrainConfig, model: &ModelConfig, config: &Path) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(cfg.with_span_rules_resolved()?).map_err(|e| Error::input(e.to_string()))?;
    let (layers, hidden, heads, _) = model.dims();
    let gelu = format!("{:?}", model.gelu(config)?).to_lowercase();
    if let Some(o) = v.as_object_mut() {
        o.insert("layers".into(), layers.into());
        o.insert("hidden".into(), hidden.into());
        o.insert("heads".into(), heads.into());
        o.insert("gelu".into(), gelu.into());
        if cfg.arch.is_some() {
            o.insert("arch".into(), model.kind().to_string().into());
        }
        for key in ["corpus", "init_from"] {
            let abs = o.get(key).and_then(|p| p.as_str()).and_then(|p| Path::new(p).canonicalize().ok());
            if let Some(abs) = abs {
                o.insert(key.into(), abs.to_string_lossy().into_owned().into());
            }
        }
    }
    Ok(v)
}

/// The line a run prints before its first step (unless quiet): the corpus and its split, the
/// model (`origin`: fresh, from a model, resumed), the objective mix, the steps (and the epochs
/// they were counted for: `steps 1..822 (2 epochs ≈ 822 steps)`) and the batch.
pub(crate) fn header(
    cfg: &PretrainConfig,
    corpus: &TokenCorpus,
    split: (usize, usize),
    model: &ModelConfig,
    origin: &str,
    start: u64,
) -> Result<String> {
    let (l, h, n, _) = model.dims();
    let params: usize = model.parameter_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    let mix = match cfg.lm_objective(0) {
        LmObjective::Blank => {
            let o = cfg.objectives()?;
            let doc = (1.0 - o.token_prob - o.sentence_prob).max(0.0);
            format!("token {} / sentence {} / document {doc:.2}", o.token_prob, o.sentence_prob)
        }
        LmObjective::Mlm { .. } => "masked LM".into(),
        LmObjective::Causal => "next token".into(),
    };
    Ok(format!(
        "pretraining into {}: corpus {} ({} documents, {} tokens; {} for training, {} held out); {} model L={l} H={h} N={n}, \
         {:.2} M parameters, {origin}; objective {} ({mix}); steps {}..{}{}, batch {} × {} × seq {}, lr {:e}",
        cfg.out_dir.display(),
        cfg.corpus.display(),
        corpus.num_docs(),
        corpus.num_tokens(),
        split.0,
        split.1,
        model.kind(),
        params as f64 / 1e6,
        cfg.objective,
        start + 1,
        cfg.steps,
        cfg.epochs.map_or(String::new(), |e| format!(" ({e} epochs ≈ {} steps)", cfg.steps)),
        cfg.batch_size,
        cfg.accumulate,
        cfg.seq_len,
        cfg.lr
    ))
}
