//! Tokenizers for GLM, GPT-2 and BERT checkpoints, on top of HF `tokenizers`: `tokenizer.json`, BERT
//! `vocab.txt`, GPT-2 `vocab.json` + `merges.txt`, SentencePiece `*.model` and a character-level tokenizer for
//! Chinese (`chars.txt`). After loading, GLM's command tokens (`[MASK]`, `[gMASK]`, `<|startofpiece|>`, ...) are
//! made to exist as special tokens with the ids of the THUDM/GLM code (GLM spec §3), recorded in [`SpecialTokens`].
//!
//! ```no_run
//! use wenhui::tokenizer::Tokenizer;
//! let tok = Tokenizer::from_dir("tests/fixtures/tokenizers/wordpiece".as_ref())?;
//! let ids = tok.encode("Hello [MASK] world", true)?;
//! assert!(ids.contains(&tok.special.get("[MASK]")?));
//! # Ok::<(), wenhui::Error>(())
//! ```

pub mod chars;
mod classic;
pub mod sentencepiece;
mod special;
pub mod train;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokenizers::decoders::DecoderWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{Encoding, Model, ModelWrapper};

pub use chars::CharVocab;
pub use special::SpecialTokens;

use crate::error::{read_text, write_atomic, Error, Result};

/// Name of the file [`Tokenizer::save`] writes next to `tokenizer.json` to remember the family and command-token ids.
pub const SIDECAR_FILE: &str = "wenhui_tokenizer.json";

/// What kind of tokenizer this is; decides where GLM's command tokens go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TokenizerFamily {
    /// BERT WordPiece (`vocab.txt`): pad = eos = `[PAD]`; sop, eop, `[gMASK]`, `[sMASK]` appended.
    WordPiece,
    /// GPT-2 / RoBERTa byte-level BPE: pad = eos = `<|endoftext|>` (RoBERTa: `</s>`); the rest appended.
    ByteLevelBpe,
    /// SentencePiece (GLM chinese, `--fix-command-token` layout appended after the pieces).
    SentencePiece,
    /// Character level ([`CharVocab`]): command tokens at ids 0..10.
    Chars,
    /// Anything else (command tokens appended in the GPT-2 order).
    Other,
}

/// A tokenizer plus its GLM command-token ids.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The tokenizer family.
    pub family: TokenizerFamily,
    /// Ids of GLM's command tokens.
    pub special: SpecialTokens,
}

/// The `wenhui_tokenizer.json` sidecar.
#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    format: String,
    family: TokenizerFamily,
    special: SpecialTokens,
}

const SIDECAR_FORMAT: &str = "wenhui-tokenizer/1";

/// Rounds a vocabulary size up to a multiple of 128 (THUDM `--make-vocab-size-divisible-by 128`): the number
/// of embedding rows of a GLM checkpoint (50257 + 9 GPT-2 command tokens → 50304).
pub fn padded_vocab_size(n: usize) -> usize {
    n.div_ceil(128) * 128
}

fn tok_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!("{what}: {e}"))
}

impl Tokenizer {
    /// Loads the tokenizer of a directory, looking in order for `tokenizer.json` (with the `wenhui_tokenizer.json`
    /// sidecar if present), `vocab.txt` (BERT uncased WordPiece), `vocab.json` + `merges.txt` (GPT-2 byte-level
    /// BPE), one `*.model` (SentencePiece) and `chars.txt` (character level).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        if !dir.exists() {
            return Err(Error::file(dir, "does not exist: give a model or tokenizer directory"));
        }
        Self::find_in_dir(dir)?.ok_or_else(|| {
            Error::file(dir, "no tokenizer files: looked for tokenizer.json, vocab.txt, vocab.json + merges.txt, *.model, chars.txt")
        })
    }

    /// [`Tokenizer::from_dir`], but `Ok(None)` when the directory holds no tokenizer file at all
    /// (a model without one); a tokenizer file that is there but unreadable is still an error.
    pub fn find_in_dir(dir: &Path) -> Result<Option<Self>> {
        if !dir.is_dir() {
            return Ok(None);
        }
        let file = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        if let Some(p) = file("tokenizer.json") {
            return Self::from_tokenizer_json(&p).map(Some);
        }
        if let Some(p) = file("vocab.txt") {
            return Self::from_parts(classic::wordpiece_from_vocab_txt(&p)?, TokenizerFamily::WordPiece).map(Some);
        }
        let (vocab, merges) = (file("vocab.json"), file("merges.txt"));
        if let (Some(v), Some(m)) = (&vocab, &merges) {
            return Self::from_parts(classic::gpt2_from_files(v, m)?, TokenizerFamily::ByteLevelBpe).map(Some);
        }
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut models: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "model"))
            .collect();
        models.sort();
        match models.as_slice() {
            [one] => return Self::from_file(one).map(Some),
            [] => {}
            many => {
                let names: Vec<String> = many.iter().map(|p| p.display().to_string()).collect();
                return Err(Error::file(dir, format!("several SentencePiece models, pass one file: {}", names.join(", "))));
            }
        }
        if let Some(p) = file("chars.txt") {
            return CharVocab::from_file(&p)?.build().map(Some);
        }
        // Half a GPT-2 tokenizer is a damaged one, not none.
        match (vocab, merges) {
            (Some(_), None) => Err(Error::file(dir, "vocab.json is there but merges.txt is missing")),
            (None, Some(_)) => Err(Error::file(dir, "merges.txt is there but vocab.json is missing")),
            _ => Ok(None),
        }
    }

    /// Loads one tokenizer file, by its name: `*.json` except `vocab.json` (tokenizers JSON), `vocab.json` /
    /// `merges.txt` (GPT-2; the other file must be in the same directory), `chars.txt`, other `*.txt` (BERT
    /// vocab), `*.model` (SentencePiece, with GLM's command tokens appended after the pieces: the way to
    /// load a `.model` file; [`sentencepiece::load_raw`] gives the bare `tokenizers` one).
    pub fn from_file(path: &Path) -> Result<Self> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let ext = path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
        let sibling = |n: &str| path.with_file_name(n);
        match (name.as_str(), ext.as_str()) {
            ("vocab.json", _) => Self::from_parts(classic::gpt2_from_files(path, &sibling("merges.txt"))?, TokenizerFamily::ByteLevelBpe),
            ("merges.txt", _) => Self::from_parts(classic::gpt2_from_files(&sibling("vocab.json"), path)?, TokenizerFamily::ByteLevelBpe),
            ("chars.txt", _) => CharVocab::from_file(path)?.build(),
            (_, "json") => Self::from_tokenizer_json(path),
            (_, "txt") => Self::from_parts(classic::wordpiece_from_vocab_txt(path)?, TokenizerFamily::WordPiece),
            (_, "model") => Self::from_parts(sentencepiece::load_raw(path)?, TokenizerFamily::SentencePiece),
            _ => Err(Error::file(
                path,
                "unknown tokenizer file type (expected tokenizer.json, vocab.txt, vocab.json, merges.txt, *.model or chars.txt)",
            )),
        }
    }

    /// Loads a `tokenizers` JSON file. If `wenhui_tokenizer.json` sits next to it, its family and command-token ids
    /// are used as saved; otherwise the family is detected and the command tokens are added as for that family.
    fn from_tokenizer_json(path: &Path) -> Result<Self> {
        let text = read_text(path)?;
        let inner: tokenizers::Tokenizer = text.parse().map_err(|e| Error::file(path, format!("not a valid tokenizers JSON file: {e}")))?;
        let sidecar = path.with_file_name(SIDECAR_FILE);
        if !sidecar.is_file() {
            return Self::from_tokenizer(inner);
        }
        let saved: Sidecar = serde_json::from_str(&read_text(&sidecar)?).map_err(|e| Error::file(&sidecar, format!("bad sidecar: {e}")))?;
        if saved.format != SIDECAR_FORMAT {
            return Err(Error::file(&sidecar, format!("unsupported format `{}` (expected `{SIDECAR_FORMAT}`)", saved.format)));
        }
        if let Some((name, id)) = saved.special.iter().find(|(_, id)| inner.id_to_token(*id).is_none()) {
            return Err(Error::file(&sidecar, format!("command token `{name}` has id {id}, which {} does not define", path.display())));
        }
        if let Some((name, id, found, expected)) = special::mismatched_command_token(&saved.special, &inner) {
            return Err(Error::file(
                &sidecar,
                format!(
                    "command token `{name}` has id {id}, which {} spells `{found}`, not {expected}: the sidecar does not belong to \
                     this vocabulary; restore it from the model's source, or delete it to detect the command tokens again",
                    path.display()
                ),
            ));
        }
        Ok(Self { inner, family: saved.family, special: saved.special })
    }

    /// Wraps a `tokenizers::Tokenizer`, detecting its family from its model, pre-tokenizer and decoder,
    /// and adds the GLM command tokens.
    pub fn from_tokenizer(inner: tokenizers::Tokenizer) -> Result<Self> {
        let family = detect_family(&inner);
        Self::from_parts(inner, family)
    }

    /// Wraps a `tokenizers::Tokenizer` of a known family and makes sure the family's GLM command tokens exist
    /// (appended after the vocabulary; tokens already present keep their ids).
    pub fn from_parts(mut inner: tokenizers::Tokenizer, family: TokenizerFamily) -> Result<Self> {
        let special = special::ensure_command_tokens(&mut inner, family)?;
        Ok(Self { inner, family, special })
    }

    /// Token ids of `text`. `add_special` adds the post-processor's tokens (`[CLS] … [SEP]` for WordPiece;
    /// nothing for the other families).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        Ok(self.encode_full(text, add_special)?.get_ids().to_vec())
    }

    /// Token ids and token strings (pieces) of `text`.
    pub fn encode_with_pieces(&self, text: &str, add_special: bool) -> Result<(Vec<u32>, Vec<String>)> {
        let enc = self.encode_full(text, add_special)?;
        Ok((enc.get_ids().to_vec(), enc.get_tokens().to_vec()))
    }

    /// The full `tokenizers` encoding of `text` (ids, tokens, type ids, byte offsets, ...).
    pub fn encode_full(&self, text: &str, add_special: bool) -> Result<Encoding> {
        self.inner.encode(text, add_special).map_err(|e| tok_err("encoding failed", e))
    }

    /// The encoding of a sentence pair (`[CLS] a [SEP] b [SEP]` with type ids 0… 1… for WordPiece).
    pub fn encode_pair(&self, a: &str, b: &str, add_special: bool) -> Result<Encoding> {
        self.inner.encode((a, b), add_special).map_err(|e| tok_err("encoding failed", e))
    }

    /// Text of `ids`; `skip_special` drops special tokens (command tokens, `[CLS]`, ...). An id the tokenizer
    /// does not define is an error.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        if let Some(bad) = ids.iter().find(|&&id| self.inner.id_to_token(id).is_none()) {
            return Err(Error::Tokenizer(format!("cannot decode id {bad}: not in the vocabulary (size {})", self.vocab_size(true))));
        }
        self.inner.decode(ids, skip_special).map_err(|e| tok_err("decoding failed", e))
    }

    /// How this tokenizer's vocabulary differs from `other`'s (`None`: the same ids for the same
    /// tokens): the size, the special ids, or the first differing token among every id up to
    /// 4,096 and about 4,096 spread over the rest. A model only makes sense of ids from its own
    /// tokenizer, so a corpus or a tokenizer file that disagrees is an error where they meet.
    pub fn vocabulary_mismatch(&self, other: &Tokenizer) -> Option<String> {
        let (a, b) = (self.vocab_size(true), other.vocab_size(true));
        if a != b {
            return Some(format!("{a} tokens against {b}"));
        }
        if self.special != other.special {
            return Some("different special token ids".into());
        }
        let step = (a / 4096).max(1);
        (0..a.min(4096)).chain((4096..a).step_by(step)).find_map(|id| {
            let (x, y) = (self.id_to_token(id as u32), other.id_to_token(id as u32));
            let shown = |t: Option<String>| t.map_or_else(|| "(no token)".to_string(), |t| format!("`{t}`"));
            (x != y).then(|| format!("id {id} is {} against {}", shown(x), shown(y)))
        })
    }

    /// The token string of `id`.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a token string (added tokens included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Without added tokens: the model's vocabulary size. With them: one past the largest id, i.e. the number of
    /// embedding rows needed (before [`padded_vocab_size`]).
    pub fn vocab_size(&self, with_added: bool) -> usize {
        let base = self.inner.get_model().get_vocab_size();
        if !with_added {
            return base;
        }
        let max_added = self.inner.get_added_tokens_decoder().keys().map(|&id| id as usize + 1).max().unwrap_or(0);
        base.max(max_added)
    }

    /// Writes `tokenizer.json` and the `wenhui_tokenizer.json` sidecar (family + command-token ids) into `dir`
    /// (created if needed), each atomically (temporary file + rename). [`Tokenizer::from_dir`] restores the same
    /// tokenizer and ids.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let json = self.inner.to_string(false).map_err(|e| tok_err("cannot serialise the tokenizer", e))?;
        let sidecar = Sidecar { format: SIDECAR_FORMAT.into(), family: self.family, special: self.special };
        let side = serde_json::to_string_pretty(&sidecar).map_err(|e| tok_err("cannot serialise the sidecar", e))?;
        write_atomic(&dir.join("tokenizer.json"), json.as_bytes())?;
        write_atomic(&dir.join(SIDECAR_FILE), side.as_bytes())
    }

    /// The wrapped `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

fn detect_family(tok: &tokenizers::Tokenizer) -> TokenizerFamily {
    let byte_level = matches!(tok.get_pre_tokenizer(), Some(PreTokenizerWrapper::ByteLevel(_)))
        || decoder_has(tok.get_decoder(), &|d| matches!(d, DecoderWrapper::ByteLevel(_)));
    let sp_like = matches!(tok.get_pre_tokenizer(), Some(PreTokenizerWrapper::Metaspace(_)))
        || decoder_has(tok.get_decoder(), &|d| matches!(d, DecoderWrapper::Metaspace(_) | DecoderWrapper::ByteFallback(_)));
    match tok.get_model() {
        ModelWrapper::WordPiece(_) => TokenizerFamily::WordPiece,
        ModelWrapper::BPE(_) if byte_level => TokenizerFamily::ByteLevelBpe,
        ModelWrapper::BPE(_) if sp_like => TokenizerFamily::SentencePiece,
        ModelWrapper::Unigram(_) => TokenizerFamily::SentencePiece,
        _ => TokenizerFamily::Other,
    }
}

fn decoder_has(d: Option<&DecoderWrapper>, pred: &dyn Fn(&DecoderWrapper) -> bool) -> bool {
    match d {
        Some(DecoderWrapper::Sequence(s)) => s.get_decoders().iter().any(|d| decoder_has(Some(d), pred)),
        Some(d) => pred(d),
        None => false,
    }
}
