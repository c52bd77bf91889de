//! Rules of classical Chinese regulated verse (近体诗) as pure functions: forms, 平仄, rhyme
//! tables, repetition and word bans, acrostic heads, and the soft format score of the official
//! inverse-prompting poem generator.
//!
//! * [`check_poem`] validates a whole poem against [`Constraints`] and lists every violated
//!   rule with its line and position ([`Verdict`]).
//! * [`check_line`] is the incremental test a line sampler needs: may this (possibly still
//!   unfinished) candidate line be appended to the lines already accepted ([`LineVerdict`])?
//! * [`format_score`] is the soft format score (`check2com`) used to rank lines 3 and later.
//! * Keywords ([`Constraints::with_keywords`], `wenhui poem --include 月,酒`) must each stand
//!   within one line. A line sampler keeps them placeable with [`keywords_fit`] (an exact test:
//!   can the keywords not written yet still be packed into the rest of this line and the lines
//!   to come, beside the acrostic heads?) and [`keyword_steer`] (which characters are forced
//!   next because the room left is just enough, and which are preferred because a keyword is due
//!   in this line); [`check_poem`] reports a missing keyword as [`Rule::Keyword`].
//!
//! Input may be simplified or traditional: every character is mapped to simplified
//! ([`to_simplified`]) before any lookup, so both give the same verdict.
//!
//! ```
//! use wenhui::generate::poetry::{check_poem, Constraints, Form};
//! let c = Constraints::new(Form::WuJue);
//! let v = check_poem("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", &c)?;
//! assert!(v.is_ok(), "{v}");
//! # Ok::<(), wenhui::Error>(())
//! ```

mod check;
mod keyword_plan;
mod keywords;
mod rules;
mod score;
mod tables;

pub use check::{check_line, check_poem, is_cjk, split_lines, PoemLine};
pub use keywords::{
    keyword_lines, keyword_steer, keywords_behind, keywords_fit, placements, split_keywords, Placement, Steer, DUE_SHARE,
    KEYWORD_LAG_PENALTY, MAX_KEYWORDS, MAX_KEYWORD_CHARS,
};
pub use rules::{
    Constraints, Form, LineStatus, LineVerdict, RhymeTable, Rule, Strictness, Verdict, Violation, ACROSTIC_RELAXED_RULES, DEFAULT_BANNED,
};
pub use score::{format_score, tone_mismatch};
pub use tables::{
    final_of, in_tone_table, modern_tone, plain_pinyin, rhyme_index, to_simplified, tone_of, toned_pinyin, RhymeGroup, RhymeIndex, Tone,
};
