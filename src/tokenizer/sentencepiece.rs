//! SentencePiece `.model` files (protobuf) turned into an equivalent `tokenizers::Tokenizer`, without
//! the C++ library: UNIGRAM models become a `Unigram` model (scores, byte fallback), BPE models a `BPE`
//! model whose merges are rebuilt from the piece scores (as HF's `SentencePieceExtractor` does).
//!
//! Normalisation follows SentencePiece's `Normalizer`: the model's precompiled charsmap
//! (`nmt_nfkc`, `nfkc`, ... or identity when empty), then `remove_extra_whitespaces` (leading and trailing
//! spaces dropped, runs of spaces collapsed to one), `add_dummy_prefix` (a `▁` in front of non-empty text)
//! and `escape_whitespaces` (space → `▁`). The text is then split before each `▁` (the Metaspace split,
//! when `split_by_whitespace`, the trainer default) and into single digits when `split_digits` is set;
//! neither split changes the result, since the trainer never makes pieces across those boundaries.
//! Decoding maps `▁` back to spaces, joins byte pieces `<0xNN>` into UTF-8 and drops the dummy-prefix space.
//!
//! Differences from the C++ library, all on unusual input: control pieces (`<s>`, `</s>`) and `<unk>`
//! written literally in the text are matched as those tokens; `decode` renders `<unk>` as `<unk>`
//! (or drops it with `skip_special`) instead of ` ⁇ `.
//!
//! To load a `.model` file for wenhui's models, use [`Tokenizer::from_file`](super::Tokenizer::from_file)
//! (or [`Tokenizer::from_dir`](super::Tokenizer::from_dir) on its directory): it gives a
//! [`wenhui::tokenizer::Tokenizer`](super::Tokenizer) with GLM's command tokens (`[MASK]`,
//! `<|startofpiece|>`, …) added, as the command line does. [`load_raw`] and [`from_proto`] give
//! the bare `tokenizers::Tokenizer` without them (wrap it with
//! [`Tokenizer::from_parts`](super::Tokenizer::from_parts) and
//! [`TokenizerFamily::SentencePiece`](super::TokenizerFamily::SentencePiece));
//! [`sentencepiece_model`] is the protobuf crate [`from_proto`] reads.
//!
//! ```no_run
//! use wenhui::tokenizer::Tokenizer;
//! let tok = Tokenizer::from_file("glm-large-chinese/cog-pretrain.model".as_ref())?;
//! let ids = tok.encode("北京是中国的首都[MASK]", false)?;
//! # Ok::<(), wenhui::Error>(())
//! ```

use std::collections::HashSet;
use std::path::Path;

use sentencepiece_model::{ModelProto, ModelType, SentencePieceModel, Type};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{NormalizerWrapper, Precompiled, Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, ModelWrapper, SplitDelimiterBehavior, Tokenizer};

use crate::error::{read_file, Error, Result};

const SPACE: &str = "\u{2581}";

/// The protobuf types of a SentencePiece model ([`from_proto`] takes a `ModelProto`), at the
/// version wenhui reads.
pub use sentencepiece_model;

/// Reads a SentencePiece `.model` file and builds the equivalent bare `tokenizers::Tokenizer` (no
/// BOS/EOS added on encode), **without** GLM's command tokens. For a tokenizer to use with
/// wenhui's models, load the file with [`super::Tokenizer::from_file`] instead.
pub fn load_raw(path: &Path) -> Result<Tokenizer> {
    let bytes = read_file(path)?;
    if bytes.is_empty() {
        return Err(Error::file(path, "empty file, not a SentencePiece model"));
    }
    let model = SentencePieceModel::from_slice(&bytes)
        .map_err(|e| Error::file(path, format!("not a SentencePiece model (protobuf decode failed: {e})")))?;
    from_proto(model.model(), path)
}

/// Former name of [`load_raw`] (it clashed with [`crate::model::load_model`] and hid that the
/// result has no GLM command tokens).
#[deprecated(note = "use `wenhui::tokenizer::Tokenizer::from_file` (with GLM's command tokens) or `sentencepiece::load_raw`")]
pub fn load_model(path: &Path) -> Result<Tokenizer> {
    load_raw(path)
}

/// Builds the bare `tokenizers::Tokenizer` of a parsed SentencePiece model ([`load_raw`]'s second
/// half; no GLM command tokens: wrap it with [`super::Tokenizer::from_parts`]); `origin` names the
/// file in errors.
pub fn from_proto(proto: &ModelProto, origin: &Path) -> Result<Tokenizer> {
    let bad = |msg: String| Error::file(origin, msg);
    if proto.pieces.is_empty() {
        return Err(bad("the SentencePiece model has no pieces (empty vocabulary or not a .model file)".into()));
    }
    let trainer = proto.trainer_spec.clone().unwrap_or_default();
    let norm = proto.normalizer_spec.clone().unwrap_or_default();
    if trainer.treat_whitespace_as_suffix() {
        return Err(bad("treat_whitespace_as_suffix=true is not supported".into()));
    }
    let byte_fallback = trainer.byte_fallback();
    let unk_id = proto.pieces.iter().position(|p| p.r#type() == Type::Unknown);

    let model: ModelWrapper = match trainer.model_type() {
        ModelType::Unigram => {
            let unk_id = unk_id.ok_or_else(|| bad("the SentencePiece model has no <unk> piece".into()))?;
            let vocab: Vec<(String, f64)> = proto.pieces.iter().map(|p| (p.piece().to_string(), f64::from(p.score()))).collect();
            Unigram::from(vocab, Some(unk_id), byte_fallback).map_err(|e| bad(format!("cannot build a Unigram model: {e}")))?.into()
        }
        ModelType::Bpe => bpe_model(proto, unk_id, byte_fallback).map_err(bad)?.into(),
        other => return Err(bad(format!("SentencePiece model_type {} is not supported (supported: UNIGRAM, BPE)", other.as_str_name()))),
    };

    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(normalizer(&norm.precompiled_charsmap.clone().unwrap_or_default(), &norm, origin)?));
    let mut pre: Vec<PreTokenizerWrapper> = Vec::new();
    if trainer.split_by_whitespace() && norm.escape_whitespaces() {
        pre.push(split(SplitPattern::String(SPACE.into()), SplitDelimiterBehavior::MergedWithNext)?.into());
    }
    if trainer.split_digits() {
        pre.push(Digits::new(true).into());
    }
    if !pre.is_empty() {
        tok.with_pre_tokenizer(Some(PreTokenizerSequence::new(pre)));
    }
    let mut dec: Vec<DecoderWrapper> =
        vec![replace(ReplacePattern::String(SPACE.into()), " ")?.into(), ByteFallback::new().into(), Fuse::new().into()];
    if norm.add_dummy_prefix() {
        dec.push(Strip::new(' ', 1, 0).into());
    }
    tok.with_decoder(Some(DecoderSequence::new(dec)));

    // Control pieces and <unk> are special (dropped by skip_special); user-defined pieces are always matched whole.
    let special: Vec<AddedToken> = proto
        .pieces
        .iter()
        .filter(|p| matches!(p.r#type(), Type::Control | Type::Unknown) && !p.piece().is_empty())
        .map(|p| AddedToken::from(p.piece(), true))
        .collect();
    tok.add_special_tokens(&special);
    let user: Vec<AddedToken> = proto
        .pieces
        .iter()
        .filter(|p| p.r#type() == Type::UserDefined && !p.piece().is_empty())
        .map(|p| AddedToken::from(p.piece(), false).normalized(false))
        .collect();
    tok.add_tokens(&user);
    Ok(tok)
}

fn replace(pattern: ReplacePattern, content: &str) -> Result<Replace> {
    Replace::new(pattern, content).map_err(|e| Error::Tokenizer(format!("bad replace pattern: {e}")))
}

fn split(pattern: SplitPattern, behavior: SplitDelimiterBehavior) -> Result<Split> {
    Split::new(pattern, behavior, false).map_err(|e| Error::Tokenizer(format!("bad split pattern: {e}")))
}

/// SentencePiece's `Normalizer`, as a sequence of `tokenizers` normalizers.
fn normalizer(charsmap: &[u8], spec: &sentencepiece_model::NormalizerSpec, origin: &Path) -> Result<NormalizerSequence> {
    let mut steps: Vec<NormalizerWrapper> = Vec::new();
    if !charsmap.is_empty() {
        let pre = Precompiled::from(charsmap)
            .map_err(|e| Error::file(origin, format!("bad precompiled_charsmap in the normalizer spec: {e}")))?;
        // The charsmap trie is indexed without bounds checks: probe it once so a corrupt one is an error, not a panic later.
        let probe = pre.clone();
        let ok = std::panic::catch_unwind(move || {
            let sample = "Hello, World! 123 \t\u{3000}ＡＢＣ 你好。é\u{301} 😀";
            probe.normalize_string(sample).len()
        });
        if ok.is_err() {
            return Err(Error::file(origin, "corrupt precompiled_charsmap in the normalizer spec"));
        }
        steps.push(pre.into());
    }
    if spec.remove_extra_whitespaces() {
        steps.push(replace(ReplacePattern::Regex(" {2,}".into()), " ")?.into());
        steps.push(replace(ReplacePattern::Regex("^ | $".into()), "")?.into());
    }
    if spec.add_dummy_prefix() {
        steps.push(Prepend::new(" ".into()).into());
    }
    if spec.escape_whitespaces() {
        steps.push(replace(ReplacePattern::String(" ".into()), SPACE)?.into());
    }
    Ok(NormalizerSequence::new(steps))
}

/// A BPE model for SentencePiece BPE: merge `(l, r)` exists when `l`, `r` and `l + r` are pieces; merges are
/// ranked by the score of `l + r` (higher first), ties by the ids of `l` and `r`.
fn bpe_model(proto: &ModelProto, unk_id: Option<usize>, byte_fallback: bool) -> std::result::Result<BPE, String> {
    let mut vocab = Vocab::default();
    for (id, p) in proto.pieces.iter().enumerate() {
        vocab.insert(p.piece().to_string(), u32::try_from(id).map_err(|_| "too many pieces".to_string())?);
    }
    let mergeable: HashSet<&str> =
        proto.pieces.iter().filter(|p| matches!(p.r#type(), Type::Normal | Type::UserDefined)).map(|p| p.piece()).collect();
    let mut ranked: Vec<(f32, u32, u32, String, String)> = Vec::new();
    for p in proto.pieces.iter().filter(|p| p.r#type() == Type::Normal) {
        let s = p.piece();
        for (i, _) in s.char_indices().skip(1) {
            let (l, r) = s.split_at(i);
            if let (true, true, Some(&il), Some(&ir)) = (mergeable.contains(l), mergeable.contains(r), vocab.get(l), vocab.get(r)) {
                ranked.push((p.score(), il, ir, l.to_string(), r.to_string()));
            }
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let merges: Merges = ranked.into_iter().map(|(_, _, _, l, r)| (l, r)).collect();
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(byte_fallback).fuse_unk(true);
    if let Some(unk) = unk_id.and_then(|i| proto.pieces.get(i)) {
        builder = builder.unk_token(unk.piece().to_string());
    }
    builder.build().map_err(|e| format!("cannot build a BPE model: {e}"))
}
