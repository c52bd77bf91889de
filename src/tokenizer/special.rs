//! GLM command tokens: their ids ([`SpecialTokens`]) and the per-family layouts that
//! decide where missing command tokens are appended (GLM spec §3, THUDM/GLM `data_utils/tokenization.py`).

use serde::{Deserialize, Serialize};
use tokenizers::{AddedToken, Model};

use super::TokenizerFamily;
use crate::error::{Error, Result};

/// Ids of GLM's command tokens. `None` means the tokenizer does not define that token.
///
/// Several roles may share one id (BERT: `pad == eos == [PAD]`; GPT-2: `pad == eos == <|endoftext|>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpecialTokens {
    /// Padding (`[PAD]` for BERT, `<|endoftext|>` for GPT-2 / Chinese SentencePiece).
    pub pad: Option<u32>,
    /// End of text (`[PAD]` for BERT, `<|endoftext|>` for GPT-2 / Chinese SentencePiece).
    pub eos: Option<u32>,
    /// `[CLS]` (GLM's `ENC` token, first token of every sample).
    pub cls: Option<u32>,
    /// `[MASK]`: a single masked span (cloze).
    pub mask: Option<u32>,
    /// `[SEP]`.
    pub sep: Option<u32>,
    /// `[UNK]` (the GLM command token, not necessarily the model's own unknown piece).
    pub unk: Option<u32>,
    /// `<|startofpiece|>`: starts a generated span.
    pub sop: Option<u32>,
    /// `<|endofpiece|>`: ends a generated span.
    pub eop: Option<u32>,
    /// `[gMASK]`: generation mask (a long span at the end).
    pub gmask: Option<u32>,
    /// `[sMASK]`: sentence mask.
    pub smask: Option<u32>,
    /// `[dBLOCK]`: document-level block mask (pretraining with `block_mask_prob > 0`).
    pub dblock: Option<u32>,
}

/// One GLM command-token role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Pad,
    Eos,
    Cls,
    Mask,
    Sep,
    Unk,
    Sop,
    Eop,
    GMask,
    SMask,
    DBlock,
}

/// (role, short name, literal GLM token) for every role, in display order.
const ROLES: [(Role, &str, &str); 11] = [
    (Role::Pad, "pad", "[PAD]"),
    (Role::Eos, "eos", "<|endoftext|>"),
    (Role::Cls, "cls", "[CLS]"),
    (Role::Mask, "mask", "[MASK]"),
    (Role::Sep, "sep", "[SEP]"),
    (Role::Unk, "unk", "[UNK]"),
    (Role::Sop, "sop", "<|startofpiece|>"),
    (Role::Eop, "eop", "<|endofpiece|>"),
    (Role::GMask, "gmask", "[gMASK]"),
    (Role::SMask, "smask", "[sMASK]"),
    (Role::DBlock, "dblock", "[dBLOCK]"),
];

impl SpecialTokens {
    fn slot(&mut self, role: Role) -> &mut Option<u32> {
        match role {
            Role::Pad => &mut self.pad,
            Role::Eos => &mut self.eos,
            Role::Cls => &mut self.cls,
            Role::Mask => &mut self.mask,
            Role::Sep => &mut self.sep,
            Role::Unk => &mut self.unk,
            Role::Sop => &mut self.sop,
            Role::Eop => &mut self.eop,
            Role::GMask => &mut self.gmask,
            Role::SMask => &mut self.smask,
            Role::DBlock => &mut self.dblock,
        }
    }

    fn value(&self, role: Role) -> Option<u32> {
        match role {
            Role::Pad => self.pad,
            Role::Eos => self.eos,
            Role::Cls => self.cls,
            Role::Mask => self.mask,
            Role::Sep => self.sep,
            Role::Unk => self.unk,
            Role::Sop => self.sop,
            Role::Eop => self.eop,
            Role::GMask => self.gmask,
            Role::SMask => self.smask,
            Role::DBlock => self.dblock,
        }
    }

    /// All defined roles as `(short name, id)`, in the order pad, eos, cls, mask, sep, unk, sop, eop, gmask, smask, dblock.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u32)> + '_ {
        ROLES.iter().filter_map(move |&(role, name, _)| self.value(role).map(|id| (name, id)))
    }

    /// The id of a command token, by role name (`pad eos cls mask sep unk sop eop gmask smask dblock`)
    /// or by its GLM literal (`[PAD] <|endoftext|> [CLS] [MASK] [SEP] [UNK] <|startofpiece|> <|endofpiece|>
    /// [gMASK] [sMASK] [dBLOCK]`). A literal resolves to its role: for BERT `<|endoftext|>` gives the eos id
    /// (that of `[PAD]`), for GPT-2 `[PAD]` gives the pad id (that of `<|endoftext|>`).
    ///
    /// Errors with [`Error::Tokenizer`] for an unknown name or a token this tokenizer does not define.
    pub fn get(&self, name: &str) -> Result<u32> {
        ROLES.iter().find(|(_, short, literal)| *short == name || *literal == name).and_then(|&(role, _, _)| self.value(role)).ok_or_else(
            || {
                let known: Vec<String> = self.iter().map(|(n, id)| format!("{n}={id}")).collect();
                let literals: Vec<&str> = ROLES.iter().filter(|r| self.value(r.0).is_some()).map(|r| r.2).collect();
                Error::Tokenizer(format!(
                    "unknown special token `{name}`; known: {} (or by literal: {})",
                    known.join(", "),
                    literals.join(" ")
                ))
            },
        )
    }
}

/// One command token of a layout: the literal, the roles it fills and whether it strips the whitespace on its left.
type Slot = (&'static str, &'static [Role], bool);

const BERT: &[Slot] = &[
    ("[PAD]", &[Role::Pad, Role::Eos], false),
    ("[CLS]", &[Role::Cls], false),
    ("[MASK]", &[Role::Mask], false),
    ("[SEP]", &[Role::Sep], false),
    ("[UNK]", &[Role::Unk], false),
    ("<|startofpiece|>", &[Role::Sop], false),
    ("<|endofpiece|>", &[Role::Eop], false),
    ("[gMASK]", &[Role::GMask], false),
    ("[sMASK]", &[Role::SMask], false),
];

const GPT2: &[Slot] = &[
    ("<|endoftext|>", &[Role::Pad, Role::Eos], false),
    ("<|startofpiece|>", &[Role::Sop], false),
    ("<|endofpiece|>", &[Role::Eop], false),
    ("[CLS]", &[Role::Cls], false),
    ("[MASK]", &[Role::Mask], true),
    ("[SEP]", &[Role::Sep], false),
    ("[UNK]", &[Role::Unk], false),
    ("[gMASK]", &[Role::GMask], true),
    ("[sMASK]", &[Role::SMask], true),
    ("[dBLOCK]", &[Role::DBlock], false),
];

const ROBERTA: &[Slot] = &[
    ("</s>", &[Role::Pad, Role::Eos, Role::Sep], false),
    ("<s>", &[Role::Cls], false),
    ("<mask>", &[Role::Mask], true),
    ("<unk>", &[Role::Unk], false),
    ("<|startofpiece|>", &[Role::Sop], false),
    ("<|endofpiece|>", &[Role::Eop], false),
    ("[gMASK]", &[Role::GMask], true),
    ("[sMASK]", &[Role::SMask], true),
];

/// GLM chinese SentencePiece with `--fix-command-token`: V, V+1, ... V+10.
const CHINESE_SP: &[Slot] = &[
    ("<|endoftext|>", &[Role::Pad, Role::Eos], false),
    ("[SEP]", &[Role::Sep], false),
    ("[CLS]", &[Role::Cls], false),
    ("[MASK]", &[Role::Mask], false),
    ("[UNK]", &[Role::Unk], false),
    ("[UNUSED]", &[], false),
    ("<|startofpiece|>", &[Role::Sop], false),
    ("<|endofpiece|>", &[Role::Eop], false),
    ("[sMASK]", &[Role::SMask], false),
    ("[gMASK]", &[Role::GMask], false),
    ("[dBLOCK]", &[Role::DBlock], false),
];

/// Character-level tokenizer: these come first, at ids 0.. (see [`super::chars`]).
pub(crate) const CHARS: &[Slot] = &[
    ("<|endoftext|>", &[Role::Pad, Role::Eos], false),
    ("[CLS]", &[Role::Cls], false),
    ("[MASK]", &[Role::Mask], false),
    ("[SEP]", &[Role::Sep], false),
    ("[UNK]", &[Role::Unk], false),
    ("<|startofpiece|>", &[Role::Sop], false),
    ("<|endofpiece|>", &[Role::Eop], false),
    ("[gMASK]", &[Role::GMask], false),
    ("[sMASK]", &[Role::SMask], false),
    ("[dBLOCK]", &[Role::DBlock], false),
];

const OTHER: &[Slot] = &[
    ("<|endoftext|>", &[Role::Pad, Role::Eos], false),
    ("<|startofpiece|>", &[Role::Sop], false),
    ("<|endofpiece|>", &[Role::Eop], false),
    ("[CLS]", &[Role::Cls], false),
    ("[MASK]", &[Role::Mask], false),
    ("[SEP]", &[Role::Sep], false),
    ("[UNK]", &[Role::Unk], false),
    ("[gMASK]", &[Role::GMask], false),
    ("[sMASK]", &[Role::SMask], false),
    ("[dBLOCK]", &[Role::DBlock], false),
];

/// The first saved command token whose id `tok` spells as no token of that role (in any family's
/// layout), as `(short name, id, what the id spells, the literals the role takes)`: a sidecar edited
/// or mixed up with another vocabulary would turn an ordinary character into, say, the blank.
pub(crate) fn mismatched_command_token(
    special: &SpecialTokens,
    tok: &tokenizers::Tokenizer,
) -> Option<(&'static str, u32, String, String)> {
    for &(role, name, _) in &ROLES {
        let Some(id) = special.value(role) else { continue };
        let mut literals: Vec<&str> = [BERT, GPT2, ROBERTA, CHINESE_SP, CHARS, OTHER]
            .iter()
            .flat_map(|l| l.iter())
            .filter(|(_, roles, _)| roles.contains(&role))
            .map(|&(content, _, _)| content)
            .collect();
        literals.sort_unstable();
        literals.dedup();
        let found = tok.id_to_token(id).unwrap_or_default();
        if !literals.contains(&found.as_str()) {
            return Some((name, id, found, literals.join(" or ")));
        }
    }
    None
}

fn layout(family: TokenizerFamily, tok: &tokenizers::Tokenizer) -> &'static [Slot] {
    match family {
        TokenizerFamily::WordPiece => BERT,
        TokenizerFamily::ByteLevelBpe => {
            let roberta =
                tok.token_to_id("<|endoftext|>").is_none() && ["<s>", "</s>", "<mask>"].iter().all(|t| tok.token_to_id(t).is_some());
            if roberta {
                ROBERTA
            } else {
                GPT2
            }
        }
        TokenizerFamily::SentencePiece => CHINESE_SP,
        TokenizerFamily::Chars => CHARS,
        TokenizerFamily::Other => OTHER,
    }
}

/// Makes sure every command token of `family`'s layout exists as a *special* added token, appending the
/// missing ones in layout order after the current vocabulary; tokens already present keep their ids.
pub(crate) fn ensure_command_tokens(tok: &mut tokenizers::Tokenizer, family: TokenizerFamily) -> Result<SpecialTokens> {
    let mut special = SpecialTokens::default();
    for &(content, roles, lstrip) in layout(family, tok) {
        let existing = tok.token_to_id(content);
        let token = AddedToken::from(content, true).lstrip(lstrip);
        tok.add_special_tokens(&[token]);
        let id = tok.token_to_id(content).ok_or_else(|| Error::Tokenizer(format!("could not add the GLM command token `{content}`")))?;
        if existing.is_none() {
            if let Some(other) = tok.get_model().id_to_token(id).filter(|t| t != content) {
                return Err(Error::Tokenizer(format!(
                    "appending `{content}` gave it id {id}, which the vocabulary already uses for `{other}` \
                     (the vocabulary ids are not contiguous: duplicate or missing entries)"
                )));
            }
        }
        for &role in roles {
            *special.slot(role) = Some(id);
        }
    }
    Ok(special)
}
