//! Builders for the "classic" vocabulary files: BERT `vocab.txt` (uncased WordPiece) and
//! GPT-2 `vocab.json` + `merges.txt` (byte-level BPE), equivalent to HF `BertTokenizer` / `GPT2Tokenizer`.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{read_text, Error, Result};

/// The BERT special tokens registered as special added tokens (they keep their vocab.txt ids).
const BERT_SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Reads a BERT `vocab.txt` (one token per line, line number = id; a trailing `\r` is dropped).
pub(crate) fn read_vocab_txt(path: &Path) -> Result<Vocab> {
    let text = read_text(path)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.trim().is_empty() {
        return Err(Error::file(path, "empty vocabulary (expected one token per line)"));
    }
    let mut vocab = Vocab::default();
    for (id, line) in body.split('\n').enumerate() {
        let token = line.strip_suffix('\r').unwrap_or(line);
        let id = u32::try_from(id).map_err(|_| Error::file(path, "vocabulary too large"))?;
        // Like BERT's `load_vocab`: a repeated token keeps the last line's id.
        vocab.insert(token.to_string(), id);
    }
    Ok(vocab)
}

/// BERT uncased WordPiece from `vocab.txt`, like HF `BertTokenizer(do_lower_case=True)`:
/// BertNormalizer (clean text, CJK chars spaced, lowercase + strip accents), BertPreTokenizer,
/// WordPiece `##` with unk `[UNK]` (100 chars per word at most), `[CLS] $A [SEP]` / `[CLS] $A [SEP] $B:1 [SEP]:1`.
pub(crate) fn wordpiece_from_vocab_txt(path: &Path) -> Result<Tokenizer> {
    let vocab = read_vocab_txt(path)?;
    let id_of = |t: &str| vocab.get(t).copied().ok_or_else(|| Error::file(path, format!("the vocabulary has no `{t}` token")));
    let (cls, sep) = (id_of("[CLS]")?, id_of("[SEP]")?);
    id_of("[UNK]")?;
    let model = WordPiece::builder()
        .vocab(vocab.clone())
        .unk_token("[UNK]".into())
        .continuing_subword_prefix("##".into())
        .max_input_chars_per_word(100)
        .build()
        .map_err(|e| Error::file(path, format!("cannot build a WordPiece model: {e}")))?;
    let post = TemplateProcessing::builder()
        .try_single("[CLS] $A [SEP]")
        .and_then(|b| b.try_pair("[CLS] $A [SEP] $B:1 [SEP]:1"))
        .map_err(|e| Error::Tokenizer(format!("bad BERT template: {e}")))?
        .special_tokens(vec![("[CLS]", cls), ("[SEP]", sep)])
        .build()
        .map_err(|e| Error::Tokenizer(format!("bad BERT template: {e}")))?;
    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_post_processor(Some(post))
        .with_decoder(Some(WordPieceDecoder::new("##".into(), true)));
    let specials: Vec<AddedToken> = BERT_SPECIALS.iter().filter(|t| vocab.contains_key(**t)).map(|t| AddedToken::from(*t, true)).collect();
    tok.add_special_tokens(&specials);
    Ok(tok)
}

/// Reads GPT-2 `merges.txt`: an optional `#version` header, then one `left right` pair per line.
fn read_merges(path: &Path) -> Result<Merges> {
    let text = read_text(path)?;
    let mut merges = Merges::new();
    for (n, line) in text.lines().enumerate() {
        if (n == 0 && line.starts_with("#version")) || line.trim().is_empty() {
            continue;
        }
        let pair = line.split_once(' ').filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains(' '));
        let (a, b) =
            pair.ok_or_else(|| Error::file(path, format!("line {}: expected two space-separated symbols, got `{line}`", n + 1)))?;
        merges.push((a.to_string(), b.to_string()));
    }
    Ok(merges)
}

/// GPT-2 byte-level BPE from `vocab.json` + `merges.txt`, like HF `GPT2Tokenizer`: ByteLevel pre-tokenizer
/// (GPT-2 regex, no prefix space), no normalizer, ByteLevel decoder, no special tokens added on encode.
/// `<|endoftext|>` (when in the vocabulary) is registered as a special added token.
pub(crate) fn gpt2_from_files(vocab_path: &Path, merges_path: &Path) -> Result<Tokenizer> {
    let text = read_text(vocab_path)?;
    let vocab: HashMap<String, u32> =
        serde_json::from_str(&text).map_err(|e| Error::file(vocab_path, format!("not a JSON object of token -> id: {e}")))?;
    if vocab.is_empty() {
        return Err(Error::file(vocab_path, "empty vocabulary"));
    }
    let has_eot = vocab.contains_key("<|endoftext|>");
    let vocab: Vocab = vocab.into_iter().collect();
    let merges = read_merges(merges_path)?;
    let model = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| Error::file(merges_path, format!("merges do not fit {}: {e}", vocab_path.display())))?;
    let mut tok = Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
        .with_post_processor(Some(ByteLevel::new(true, false, true)))
        .with_decoder(Some(ByteLevel::default()));
    if has_eot {
        tok.add_special_tokens(&[AddedToken::from("<|endoftext|>", true)]);
    }
    Ok(tok)
}
