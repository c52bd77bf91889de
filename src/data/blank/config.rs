//! [`ObjectiveConfig`]: the probabilities and ratios of the blank-infilling objectives, and
//! THUDM's presets.

/// The longest `max_span` [`ObjectiveConfig::validate`] accepts.
const MAX_SPAN: usize = 1 << 20;

/// Probabilities and ratios of the objectives. Defaults follow THUDM's `arguments.py`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectiveConfig {
    /// Probability of the token-level objective for a batch (`--bert-prob`).
    pub token_prob: f64,
    /// Probability of the sentence-level objective (`--gap-sentence-prob`); the document-level
    /// objective gets `1 - token_prob - sentence_prob`.
    pub sentence_prob: f64,
    /// Share of tokens masked by the token and sentence objectives (0.15).
    pub mask_ratio: f64,
    /// Share of tokens the sentence objective masks, when it should differ from `mask_ratio`
    /// (a higher share infills more fields of a templated document, e.g. a poem's title).
    pub sentence_mask_ratio: Option<f64>,
    /// λ of the Poisson span-length distribution (`--avg-block-length`, 3).
    pub avg_span: f64,
    /// Longest token-level span (39).
    pub max_span: usize,
    /// Shortest document-level span as a share of the sample (`--gpt-min-ratio`, 0.5).
    pub doc_min_ratio: f64,
    /// Probability of the prefix-LM form of the document objective (`--gpt-infill-prob`, 0.5);
    /// samples of several documents always use it.
    pub prefix_lm_prob: f64,
    /// Shuffle the spans in Part B (`shuffle_blocks`, true).
    pub shuffle_spans: bool,
    /// Use `[sMASK]`/`[gMASK]` for sentence/document spans (`--task-mask`, off by default);
    /// `[MASK]` otherwise.
    pub task_masks: bool,
    /// Probability that a Part-B input token of a token-level span (not its `[sop]`) becomes
    /// `[dBLOCK]`, its target unchanged (`--block-mask-prob`, 0; GLM-10B 0.1).
    pub block_mask_prob: f64,
    /// Probability that a whole batch is re-cut into shorter sentence-aligned samples of
    /// 32..seq_len−1 tokens (`--short-seq-prob`, 0; GLM-10B 0.02).
    pub short_seq_prob: f64,
    /// A sentence span includes the punctuation that ends it, and only the sample's unterminated
    /// tail (not the text before each `eos`) is a sentence, as THUDM's code does (true). `false`
    /// keeps the punctuation in Part A and makes every segment's unterminated tail a sentence:
    /// the layout the shipped poetry models were trained with (their inverse prompting scores a
    /// title span without its `；`).
    pub sentence_end_in_span: bool,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self {
            token_prob: 0.5,
            sentence_prob: 0.0,
            mask_ratio: 0.15,
            sentence_mask_ratio: None,
            avg_span: 3.0,
            max_span: 39,
            doc_min_ratio: 0.5,
            prefix_lm_prob: 0.5,
            shuffle_spans: true,
            task_masks: false,
            block_mask_prob: 0.0,
            short_seq_prob: 0.0,
            sentence_end_in_span: true,
        }
    }
}

impl ObjectiveConfig {
    /// GLM-Large: token-level blank infilling only (config/ds_block_large.sh).
    pub fn glm_large() -> Self {
        Self { token_prob: 1.0, sentence_prob: 0.0, task_masks: false, ..Self::default() }
    }
    /// GLM-10B (config/ds_block_10B.sh): token 0.5, sentence 0.3, document 0.2 with spans of
    /// 25–100%, task masks, `[dBLOCK]` on 10% of token-span inputs, 2% short-sequence batches.
    pub fn glm_10b() -> Self {
        Self {
            token_prob: 0.5,
            sentence_prob: 0.3,
            doc_min_ratio: 0.25,
            task_masks: true,
            block_mask_prob: 0.1,
            short_seq_prob: 0.02,
            ..Self::default()
        }
    }
    /// A named preset: `glm-large`, `glm-10b` or `default` (THUDM's argument defaults).
    pub fn preset(name: &str) -> crate::Result<Self> {
        match name {
            "glm-large" => Ok(Self::glm_large()),
            "glm-10b" => Ok(Self::glm_10b()),
            "default" => Ok(Self::default()),
            other => Err(crate::Error::input(format!("unknown objective preset `{other}` (glm-large, glm-10b, default)"))),
        }
    }
    /// The objective as an evaluation measures it (the trainer's validation and `eval ppl`): this
    /// one without the training-time augmentations, no `[dBLOCK]` noise in Part B
    /// (`block_mask_prob` 0) and no re-cut short batches (`short_seq_prob` 0), so that the loss is
    /// that of the objective itself and a tokenizer without `[dBLOCK]` evaluates too.
    pub fn for_evaluation(&self) -> Self {
        Self { block_mask_prob: 0.0, short_seq_prob: 0.0, ..self.clone() }
    }
    /// Checks that the probabilities and ratios make sense.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::input(format!("objective: {m}")));
        if !(0.0..=1.0).contains(&self.token_prob)
            || !(0.0..=1.0).contains(&self.sentence_prob)
            || self.token_prob + self.sentence_prob > 1.0 + 1e-9
        {
            return bad(format!(
                "token_prob {} and sentence_prob {} must be in [0, 1] and sum to at most 1",
                self.token_prob, self.sentence_prob
            ));
        }
        if !(self.mask_ratio > 0.0 && self.mask_ratio < 1.0) {
            return bad(format!("mask_ratio {} must be in (0, 1)", self.mask_ratio));
        }
        if let Some(r) = self.sentence_mask_ratio {
            if !(r > 0.0 && r < 1.0) {
                return bad(format!("sentence_mask_ratio {r} must be in (0, 1)"));
            }
        }
        // (A span cannot outgrow a sample; the bound keeps the span-length table allocatable.)
        if !(self.avg_span.is_finite() && self.avg_span > 0.0) || self.max_span == 0 || self.max_span > MAX_SPAN {
            return bad(format!(
                "avg_span {} must be a positive number and max_span {} between 1 and {MAX_SPAN}",
                self.avg_span, self.max_span
            ));
        }
        if !(0.0..=1.0).contains(&self.doc_min_ratio) || !(0.0..=1.0).contains(&self.prefix_lm_prob) {
            return bad("doc_min_ratio and prefix_lm_prob must be in [0, 1]".into());
        }
        for (name, p) in [("block_mask_prob", self.block_mask_prob), ("short_seq_prob", self.short_seq_prob)] {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("{name} {p} must be in [0, 1]"));
            }
        }
        Ok(())
    }
}
