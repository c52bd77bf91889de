//! Training a tokenizer on a corpus: `wenhui tokenizer train`.
//!
//! Documents are read with the same readers as `prepare` ([`crate::data::reader`]), streamed chunk by chunk and
//! counted in parallel (words after normalisation and pre-tokenization, or characters), so memory grows with the
//! number of distinct words, not with the corpus. Then:
//!
//! * [`TrainKind::Bpe`]: GPT-2-style byte-level BPE (`tokenizers` BpeTrainer over the 256 byte symbols,
//!   `<|endoftext|>` at id 0), loaded like GPT-2 `vocab.json` + `merges.txt`;
//! * [`TrainKind::WordPiece`]: BERT-style uncased WordPiece (BertNormalizer with lowercasing, BertPreTokenizer,
//!   `##` continuations, `[PAD] [UNK] [CLS] [SEP] [MASK]` at ids 0–4, `[CLS] $A [SEP]` post-processor);
//! * [`TrainKind::Chars`]: a [`CharVocab`] of the characters occurring at least `min_frequency` times, most
//!   frequent first (the order of [`CharVocab::from_corpus`]).
//!
//! GLM's command tokens are then added for the family as [`Tokenizer::from_parts`] does, so a saved and reloaded
//! tokenizer ([`Tokenizer::save`], [`Tokenizer::from_dir`]) has the same ids.
//!
//! **Deterministic**: training twice on the same input gives the same vocabulary. `tokenizers`' BpeTrainer is
//! (merge ties are broken by symbol ids, which come from the sorted alphabet), but its WordPieceTrainer is not:
//! it numbers the `##c` continuation symbols in hash-map order, so ties between equally frequent merges fall
//! differently in every run. WordPiece is therefore trained as BPE with each continuation character spelled as
//! a private-use character (which sort, and so get ids, in a fixed order), mapped back to `##c` afterwards —
//! the same vocabulary WordPieceTrainer produces up to its tie-breaking.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::path::PathBuf;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::{BpeTrainer, Vocab, BPE};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::{BertNormalizer, NormalizerWrapper};
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, Model, NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, Trainer,
};

use super::{CharVocab, Tokenizer, TokenizerFamily};
use crate::data::reader::{byte_progress, DocReader, ProblemLog, ReadOptions};
use crate::error::{Error, Result};

/// Which tokenizer to train.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainKind {
    /// GPT-2-style byte-level BPE.
    #[default]
    Bpe,
    /// BERT-style uncased WordPiece.
    WordPiece,
    /// Character level (Chinese), see [`CharVocab`].
    Chars,
}

/// Options of [`train_tokenizer`].
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The kind of tokenizer.
    pub kind: TrainKind,
    /// Most entries of the trained vocabulary ([`Tokenizer::vocab_size`]`(false)`), the family's own special
    /// tokens included (BPE: `<|endoftext|>`; WordPiece: the five BERT tokens; chars: the ten command tokens).
    /// The GLM command tokens that BPE and WordPiece append come on top. BPE needs at least 257 (the byte
    /// alphabet); WordPiece the 5 BERT tokens plus every character seen (and its `##` form where it
    /// continues a word): a smaller size is an error naming the least size.
    pub vocab_size: usize,
    /// BPE / WordPiece: a merge needs at least this many occurrences; chars: a character needs at least this
    /// many occurrences (0 counts as 1).
    pub min_frequency: u64,
    /// How documents are read.
    pub read: ReadOptions,
    /// Show a progress bar (bytes read) on stderr when it is a terminal.
    pub progress: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self { kind: TrainKind::Bpe, vocab_size: 30_000, min_frequency: 2, read: ReadOptions::default(), progress: false }
    }
}

fn tok_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!("{what}: {e}"))
}

/// The largest vocabulary a tokenizer may be trained to (GLM-130B's is 150,528).
pub const MAX_VOCAB: usize = 4_000_000;

/// Trains a tokenizer of `opts.kind` on the documents of `inputs` (files or directories, read as `prepare`
/// reads them). The result has the GLM command tokens of its family.
pub fn train_tokenizer(inputs: &[PathBuf], opts: &TrainOptions) -> Result<Tokenizer> {
    // The trainers size tables by it: a huge value would exhaust the memory before any merge.
    if opts.vocab_size > MAX_VOCAB {
        return Err(Error::input(format!("vocabulary size {} is beyond any model's (at most {MAX_VOCAB})", opts.vocab_size)));
    }
    match opts.kind {
        TrainKind::Bpe => train_bpe(inputs, opts),
        TrainKind::WordPiece => train_wordpiece(inputs, opts),
        TrainKind::Chars => train_chars(inputs, opts),
    }
}

/// Streams the documents and counts `unit`s (words, characters) in parallel, chunk by chunk.
fn count_units<K, F>(inputs: &[PathBuf], opts: &TrainOptions, unit: F) -> Result<HashMap<K, u64>>
where
    K: Eq + Hash + Send,
    F: Fn(&str, &mut HashMap<K, u64>) -> Result<()> + Sync,
{
    let mut reader = DocReader::new(inputs, &opts.read)?;
    let mut log = ProblemLog::new(opts.read.on_error);
    let bar = byte_progress(reader.total_bytes(), opts.progress, "count");
    let mut total: HashMap<K, u64> = HashMap::new();
    loop {
        let docs = reader.next_chunk(4096, 64 << 20, &mut log)?;
        if docs.is_empty() {
            break;
        }
        let part = docs
            .par_iter()
            .try_fold(HashMap::new, |mut m, d| unit(&d.text, &mut m).map(|()| m))
            .try_reduce(HashMap::new, |a, b| Ok(merge_counts(a, b)))?;
        total = merge_counts(total, part);
        bar.set_position(reader.bytes_read());
    }
    bar.finish_and_clear();
    log.finish();
    Ok(total)
}

fn merge_counts<K: Eq + Hash>(a: HashMap<K, u64>, b: HashMap<K, u64>) -> HashMap<K, u64> {
    let (mut big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    for (k, n) in small {
        *big.entry(k).or_default() += n;
    }
    big
}

/// Counts the words of `text` as a tokenizer with this normalizer and pre-tokenizer would see them in training.
fn count_words(norm: Option<&NormalizerWrapper>, pre: &PreTokenizerWrapper, text: &str, out: &mut HashMap<String, u64>) -> Result<()> {
    let mut normalized = NormalizedString::from(text);
    if let Some(norm) = norm {
        norm.normalize(&mut normalized).map_err(|e| tok_err("normalization failed", e))?;
    }
    let mut pre_tokenized = PreTokenizedString::from(normalized);
    pre.pre_tokenize(&mut pre_tokenized).map_err(|e| tok_err("pre-tokenization failed", e))?;
    for (word, _, _) in pre_tokenized.get_splits(OffsetReferential::Original, OffsetType::Byte) {
        match out.get_mut(word) {
            Some(n) => *n += 1,
            None => {
                out.insert(word.to_string(), 1);
            }
        }
    }
    Ok(())
}

/// Runs a BPE trainer on word counts. (`Trainer::feed` only takes sequences, so each word is fed as many times
/// as it occurs, in pieces of at most `REPEAT` copies.)
fn train_bpe_counts(words: &[(String, u64)], mut trainer: BpeTrainer) -> Result<(BPE, Vec<AddedToken>)> {
    const REPEAT: u64 = 4096;
    let items = words
        .iter()
        .enumerate()
        .flat_map(|(i, (_, n))| (0..n.div_ceil(REPEAT)).map(move |k| format!("{i} {}", (n - k * REPEAT).min(REPEAT))));
    trainer
        .feed(items, |item| {
            let parsed = item.split_once(' ').and_then(|(i, k)| Some((i.parse::<usize>().ok()?, k.parse::<usize>().ok()?)));
            let (word, k) = parsed.and_then(|(i, k)| Some((&words.get(i)?.0, k))).ok_or("internal: bad word item")?;
            Ok(vec![word.clone(); k])
        })
        .map_err(|e| tok_err("BPE training failed", e))?;
    let mut bpe = BPE::default();
    let specials = trainer.train(&mut bpe).map_err(|e| tok_err("BPE training failed", e))?;
    Ok((bpe, specials))
}

fn sorted_counts(counts: HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut words: Vec<(String, u64)> = counts.into_iter().collect();
    words.sort_unstable();
    words
}

fn train_bpe(inputs: &[PathBuf], opts: &TrainOptions) -> Result<Tokenizer> {
    let alphabet = ByteLevel::alphabet();
    if opts.vocab_size < alphabet.len() + 1 {
        return Err(Error::input(format!(
            "vocabulary size {} is too small for byte-level BPE: the {} byte symbols and <|endoftext|> need {}",
            opts.vocab_size,
            alphabet.len(),
            alphabet.len() + 1
        )));
    }
    let pre: PreTokenizerWrapper = ByteLevel::new(false, true, true).into();
    let words = sorted_counts(count_units(inputs, opts, |text, out| count_words(None, &pre, text, out))?);
    let trainer = BpeTrainer::builder()
        .vocab_size(opts.vocab_size)
        .min_frequency(opts.min_frequency)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from("<|endoftext|>", true)])
        .initial_alphabet(alphabet.into_iter().collect())
        .build();
    let (bpe, specials) = train_bpe_counts(&words, trainer)?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    inner
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
        .with_post_processor(Some(ByteLevel::new(true, false, true)))
        .with_decoder(Some(ByteLevel::default()));
    inner.add_special_tokens(&specials);
    Tokenizer::from_parts(inner, TokenizerFamily::ByteLevelBpe)
}

/// BERT's special tokens, at ids 0..5 of a trained WordPiece vocabulary.
const BERT_SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Private-use characters standing for `##c` continuation symbols: a fixed order, skipping any that occur in
/// the corpus.
fn private_use_chars(used: &BTreeSet<char>) -> impl Iterator<Item = char> + '_ {
    (0xF0000..=0xFFFFD).chain(0x100000..=0x10FFFD).chain(0xE000..=0xF8FF).filter_map(char::from_u32).filter(|c| !used.contains(c))
}

fn train_wordpiece(inputs: &[PathBuf], opts: &TrainOptions) -> Result<Tokenizer> {
    if opts.vocab_size <= BERT_SPECIALS.len() {
        return Err(Error::input(format!("vocabulary size {} is too small for WordPiece (at least 6)", opts.vocab_size)));
    }
    let norm: NormalizerWrapper = BertNormalizer::new(true, true, None, true).into();
    let pre: PreTokenizerWrapper = BertPreTokenizer.into();
    let counts = count_units(inputs, opts, |text, out| count_words(Some(&norm), &pre, text, out))?;
    // Continuation characters `##c` become private-use characters so that BpeTrainer numbers them in order.
    let chars: BTreeSet<char> = counts.keys().flat_map(|w| w.chars()).collect();
    let mut to_private = HashMap::with_capacity(chars.len());
    let mut from_private = HashMap::with_capacity(chars.len());
    let mut free = private_use_chars(&chars);
    for &c in &chars {
        let p = free.next().ok_or_else(|| Error::input("too many distinct characters for WordPiece training (more than 130 000)"))?;
        to_private.insert(c, p);
        from_private.insert(p, c);
    }
    let mut words: Vec<(String, u64)> = counts
        .into_iter()
        .map(|(w, n)| {
            let mut it = w.chars();
            let first = it.next().into_iter();
            (first.chain(it.map(|c| to_private.get(&c).copied().unwrap_or(c))).collect(), n)
        })
        .collect();
    words.sort_unstable();
    // Every character seen stays in the vocabulary (as a word start and, where it continues a
    // word, as `##c`): a smaller size cannot be honoured, so it is refused as BPE's is.
    let alphabet: BTreeSet<char> = chars.iter().copied().chain(words.iter().flat_map(|(w, _)| w.chars())).collect();
    let needed = BERT_SPECIALS.len() + alphabet.len();
    if opts.vocab_size < needed {
        return Err(Error::input(format!(
            "vocabulary size {} is too small for WordPiece on this text: its {} distinct characters take {} entries (with the \
             ## forms of those that continue words), plus the 5 BERT tokens; use at least {needed}",
            opts.vocab_size,
            chars.len(),
            alphabet.len()
        )));
    }
    let trainer = BpeTrainer::builder()
        .vocab_size(opts.vocab_size)
        .min_frequency(opts.min_frequency)
        .show_progress(false)
        .special_tokens(BERT_SPECIALS.iter().map(|t| AddedToken::from(*t, true)).collect())
        .initial_alphabet(chars.iter().copied().collect())
        .build();
    let (bpe, _) = train_bpe_counts(&words, trainer)?;
    let mut vocab = Vocab::default();
    for (token, id) in bpe.get_vocab() {
        let continuation = token.chars().next().is_some_and(|c| from_private.contains_key(&c));
        let plain: String = token.chars().map(|c| from_private.get(&c).copied().unwrap_or(c)).collect();
        vocab.insert(if continuation { format!("##{plain}") } else { plain }, id);
    }
    let model = WordPiece::builder()
        .vocab(vocab)
        .unk_token("[UNK]".into())
        .continuing_subword_prefix("##".into())
        .max_input_chars_per_word(100)
        .build()
        .map_err(|e| tok_err("cannot build the WordPiece model", e))?;
    let id = |t: &str| model.token_to_id(t).ok_or_else(|| Error::Tokenizer(format!("the trained vocabulary has no `{t}`")));
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    let post = TemplateProcessing::builder()
        .try_single("[CLS] $A [SEP]")
        .and_then(|b| b.try_pair("[CLS] $A [SEP] $B:1 [SEP]:1"))
        .map_err(|e| tok_err("bad BERT template", e))?
        .special_tokens(vec![("[CLS]", cls), ("[SEP]", sep)])
        .build()
        .map_err(|e| tok_err("bad BERT template", e))?;
    let mut inner = tokenizers::Tokenizer::new(model);
    inner
        .with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_post_processor(Some(post))
        .with_decoder(Some(WordPieceDecoder::new("##".into(), true)));
    let specials: Vec<AddedToken> = BERT_SPECIALS.iter().map(|t| AddedToken::from(*t, true)).collect();
    inner.add_special_tokens(&specials);
    Tokenizer::from_parts(inner, TokenizerFamily::WordPiece)
}

fn train_chars(inputs: &[PathBuf], opts: &TrainOptions) -> Result<Tokenizer> {
    let first = CharVocab::FIRST_CHAR_ID as usize;
    if opts.vocab_size <= first {
        return Err(Error::input(format!(
            "vocabulary size {} is too small for a character tokenizer: ids 0..{first} are the command tokens",
            opts.vocab_size
        )));
    }
    let counts = count_units(inputs, opts, |text, out: &mut HashMap<char, u64>| {
        for c in text.chars().filter(|c| !c.is_whitespace()) {
            *out.entry(c).or_default() += 1;
        }
        Ok(())
    })?;
    let min = opts.min_frequency.max(1);
    let mut kept: Vec<(char, u64)> = counts.into_iter().filter(|&(_, n)| n >= min).collect();
    if kept.is_empty() {
        return Err(Error::input(format!("no character occurs at least {min} times in the corpus; lower the minimum frequency")));
    }
    // The order of CharVocab::from_corpus: most frequent first, ties by code point.
    kept.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    kept.truncate(opts.vocab_size - first);
    CharVocab::from_chars(kept.into_iter().map(|(c, _)| c)).build()
}
