//! Constraint and verdict types.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// A regulated-verse form: fixes the number of lines and characters per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Form {
    /// 五言绝句: 4 lines × 5 characters.
    WuJue,
    /// 七言绝句: 4 lines × 7 characters.
    QiJue,
    /// 五言律诗: 8 lines × 5 characters.
    WuLv,
    /// 七言律诗: 8 lines × 7 characters.
    QiLv,
}

impl Form {
    /// Every form.
    pub const ALL: [Form; 4] = [Form::WuJue, Form::QiJue, Form::WuLv, Form::QiLv];

    /// The form of `lines` lines of `line_len` characters each, if one has that shape.
    pub fn of_shape(lines: usize, line_len: usize) -> Option<Form> {
        Form::ALL.into_iter().find(|f| f.lines() == lines && f.line_len() == line_len)
    }

    /// Number of lines (4 or 8).
    pub fn lines(self) -> usize {
        match self {
            Form::WuJue | Form::QiJue => 4,
            Form::WuLv | Form::QiLv => 8,
        }
    }

    /// Characters per line, punctuation excluded (5 or 7).
    pub fn line_len(self) -> usize {
        match self {
            Form::WuJue | Form::WuLv => 5,
            Form::QiJue | Form::QiLv => 7,
        }
    }

    /// The full name used in the corpus and in prompts (`五言绝句`, `七言绝句`, `五言律诗`, `七言律诗`).
    pub fn name(self) -> &'static str {
        match self {
            Form::WuJue => "五言绝句",
            Form::QiJue => "七言绝句",
            Form::WuLv => "五言律诗",
            Form::QiLv => "七言律诗",
        }
    }

    /// Canonical end punctuation of line `k` (0-based): `，` for odd lines (1st, 3rd, …), `。` for even.
    pub fn end_punct(k: usize) -> char {
        if k.is_multiple_of(2) {
            '，'
        } else {
            '。'
        }
    }
}

impl FromStr for Form {
    type Err = Error;
    /// Accepts `五绝`/`五言绝句`/`wujue`, `七绝`/`七言绝句`/`qijue`, `五律`/`五言律诗`/`wulv`,
    /// `七律`/`七言律诗`/`qilv` (also traditional 絕/詩).
    fn from_str(s: &str) -> Result<Form> {
        let t: String = s.trim().chars().map(super::to_simplified).collect();
        match t.to_lowercase().as_str() {
            "五绝" | "五言绝句" | "wujue" => Ok(Form::WuJue),
            "七绝" | "七言绝句" | "qijue" => Ok(Form::QiJue),
            "五律" | "五言律诗" | "wulv" | "wulu" => Ok(Form::WuLv),
            "七律" | "七言律诗" | "qilv" | "qilu" => Ok(Form::QiLv),
            _ => Err(Error::Input(format!(
                "unknown poem form `{s}`: expected 五绝 (wujue), 七绝 (qijue), 五律 (wulv) or 七律 (qilv); also 五言绝句, \
                 七言绝句, 五言律诗, 七言律诗"
            ))),
        }
    }
}

/// Which rhyme table decides whether two characters rhyme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RhymeTable {
    /// 平水韵 (106 groups; the table lacks 上声 三讲): the classical standard for 近体诗.
    Pingshui,
    /// 词林正韵 (19 部, each split into 平/仄/入 groups here).
    Cilin,
    /// 中华新韵 (14 modern 韵部, each split into 平/仄 groups here).
    Xinyun,
}

impl RhymeTable {
    /// The name [`FromStr`] reads back: `pingshui`, `cilin` or `xinyun`.
    pub fn name(self) -> &'static str {
        match self {
            RhymeTable::Pingshui => "pingshui",
            RhymeTable::Cilin => "cilin",
            RhymeTable::Xinyun => "xinyun",
        }
    }

    /// The table's Chinese name (`平水韵`, `词林正韵`, `中华新韵`), which [`FromStr`] reads too.
    pub fn chinese_name(self) -> &'static str {
        match self {
            RhymeTable::Pingshui => "平水韵",
            RhymeTable::Cilin => "词林正韵",
            RhymeTable::Xinyun => "中华新韵",
        }
    }
}

impl FromStr for RhymeTable {
    type Err = Error;
    /// Accepts `pingshui`/`平水韵`, `cilin`/`词林正韵`, `xinyun`/`中华新韵`.
    fn from_str(s: &str) -> Result<RhymeTable> {
        let t: String = s.trim().chars().map(super::to_simplified).collect();
        match t.to_lowercase().as_str() {
            "pingshui" | "平水韵" => Ok(RhymeTable::Pingshui),
            "cilin" | "词林正韵" => Ok(RhymeTable::Cilin),
            "xinyun" | "中华新韵" => Ok(RhymeTable::Xinyun),
            _ => Err(Error::Input(format!("unknown rhyme table `{s}` (expected pingshui, cilin or xinyun)"))),
        }
    }
}

/// How many rules are hard errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Strictness {
    /// Shape, rhyme group (any tone), repetition, banned characters and acrostic heads only;
    /// no 平仄 rules. A rhyme character missing from the rhyme table is an error at every
    /// strictness (nothing shows that it rhymes).
    Loose,
    /// `Loose` + level-tone (平) rhyme, non-rhyming lines end 仄, 二四六分明, 粘对 and the
    /// 三平尾/三仄尾 bans, and no character of unknown 平仄 where these rules read the tone;
    /// 孤平 is a warning.
    Standard,
    /// `Standard` with 孤平 as an error (so the tones it reads must be known too).
    Strict,
}

/// Characters banned after the first position of a line (official `generate_pms_v6.py`:
/// `的`, `些`, `么`; the refined script bans only `的`).
pub const DEFAULT_BANNED: &[char] = &['的', '些', '么'];

/// Rules that are **not** applied at a position fixed by an acrostic head character (or taken
/// by a keyword, [`Constraints::keywords`]): a head
/// can repeat the character at the same position of the previous line ([`Rule::SamePosition`]),
/// may be a banned character ([`Rule::Banned`]), is not counted by the per-character limit
/// ([`Rule::CharLimit`]) and counts as 平 for [`Rule::GuPing`]. (2/4/6 alternation, 粘对 and
/// the tail rules never look at the first character, so a head needs no more; they do read
/// keyword characters, unless [`Constraints::relax_keyword_tones`] is set.)
pub const ACROSTIC_RELAXED_RULES: &[Rule] = &[Rule::SamePosition, Rule::Banned, Rule::CharLimit, Rule::GuPing];

/// Everything a poem must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraints {
    /// Line count and line length.
    pub form: Form,
    /// Rhyme table for the even-line rhyme.
    pub rhyme: RhymeTable,
    /// Acrostic (藏头) heads: line k must start with `heads[k]`; empty = no acrostic.
    pub heads: Vec<char>,
    /// Which rules are errors.
    pub strictness: Strictness,
    /// Characters banned after the first position of a line.
    pub banned: Vec<char>,
    /// At most this many occurrences of one character in the whole poem (`None`: no limit, as in
    /// the official code, which only forbids repeated 3-grams / in-line 2-grams).
    pub max_char_repeats: Option<usize>,
    /// Keywords (`--include`) the poem must contain, each within one line (as given; compared
    /// simplified); empty = none. Set them with [`Constraints::with_keywords`]. Like acrostic
    /// heads, their characters are exempt from [`ACROSTIC_RELAXED_RULES`]; see
    /// [`keywords_fit`](super::keywords_fit) and [`keyword_steer`](super::keyword_steer) for how a
    /// search places them.
    pub keywords: Vec<String>,
    /// When set, the 平仄 rules do not read keyword characters (they count as either tone): the
    /// fallback of a search that found no poem with the keywords under every rule. Off by default.
    pub relax_keyword_tones: bool,
}

impl Constraints {
    /// `form` with 平水韵, no acrostic, [`Strictness::Standard`], [`DEFAULT_BANNED`], no char limit.
    pub fn new(form: Form) -> Constraints {
        Constraints {
            form,
            rhyme: RhymeTable::Pingshui,
            heads: Vec::new(),
            strictness: Strictness::Standard,
            banned: DEFAULT_BANNED.to_vec(),
            max_char_repeats: None,
            keywords: Vec::new(),
            relax_keyword_tones: false,
        }
    }

    /// Parses form and rhyme-table names (see their `FromStr`) and checks the acrostic heads:
    /// exactly one CJK character per line (traditional allowed) or an empty string (no
    /// acrostic). Whitespace around the heads is ignored; only whitespace, or whitespace between
    /// heads, is refused (it would otherwise silently mean no acrostic, or other heads).
    pub fn parse(form: &str, rhyme: &str, heads: &str) -> Result<Constraints> {
        let mut c = Constraints::new(form.parse()?);
        c.rhyme = rhyme.parse()?;
        let trimmed = heads.trim();
        if trimmed.is_empty() && !heads.is_empty() {
            return Err(Error::Input(
                "acrostic is only whitespace: give one Chinese character per line, e.g. 春夏秋冬, or leave it out for no acrostic".into(),
            ));
        }
        if trimmed.chars().any(char::is_whitespace) {
            return Err(Error::Input(format!(
                "acrostic `{trimmed}` has whitespace between its heads: give one Chinese character per line with nothing between \
                 them, e.g. 春夏秋冬"
            )));
        }
        c.heads = trimmed.chars().collect();
        c.validate()?;
        Ok(c)
    }

    /// Checks the acrostic heads (count = line count, CJK characters only) and the keywords
    /// (see [`Constraints::with_keywords`]; they must fit the form beside the heads).
    pub fn validate(&self) -> Result<()> {
        self.validate_heads()?;
        self.validate_keywords()
    }

    /// Checks the acrostic heads only (see [`Constraints::validate`]).
    pub(super) fn validate_heads(&self) -> Result<()> {
        if self.heads.is_empty() {
            return Ok(());
        }
        if let Some(c) = self.heads.iter().find(|c| !super::check::is_cjk(**c)) {
            return Err(Error::Input(format!(
                "acrostic head `{c}` is not a Chinese character: give one Chinese character per line, e.g. 春夏秋冬"
            )));
        }
        if self.heads.len() != self.form.lines() {
            return Err(Error::Input(format!(
                "acrostic needs one head character per line: {} lines, got {} heads",
                self.form.lines(),
                self.heads.len()
            )));
        }
        Ok(())
    }

    /// The simplified head of line `k`, if an acrostic is set.
    pub fn head(&self, k: usize) -> Option<char> {
        self.heads.get(k).map(|c| super::to_simplified(*c))
    }
}

/// A rule of [`check_poem`](super::check::check_poem) / [`check_line`](super::check::check_line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Wrong number of lines for the form.
    LineCount,
    /// Wrong number of characters in a line.
    LineLength,
    /// Missing or wrong end punctuation (odd lines `，`, even lines `。`).
    Punctuation,
    /// A character that is not a Chinese character (candidate lines of [`check_line`](super::check::check_line) only).
    ForbiddenChar,
    /// Even-line finals do not share a rhyme group (line 1 may join: 首句入韵).
    Rhyme,
    /// Rhyme on an oblique (仄) group where 近体诗 requires a level (平) rhyme.
    RhymeTone,
    /// A rhyme character missing from the rhyme table (also under its traditional/simplified
    /// form): it cannot be shown to rhyme, so it is an error at every strictness.
    RhymeUnknown,
    /// A character whose 平仄 is unknown (neither the tone table nor the pinyin reading has
    /// it) at a position a hard tone rule reads (2nd/4th/6th, the last three; under
    /// [`Strictness::Strict`] also the 孤平 positions). Acrostic heads are exempt.
    ToneUnknown,
    /// A non-rhyming line (3rd, 5th, 7th) ends on 平.
    NonRhymeEnd,
    /// 二四六分明: 2nd and 4th characters must differ in tone, the 6th equal the 2nd.
    Alternation,
    /// 对: 2nd/4th/6th tones of a couplet's second line must be opposite to its first line.
    Dui,
    /// 粘: 2nd/4th/6th tones of a couplet's first line must equal the previous line's.
    Nian,
    /// 三平尾 / 三仄尾: the last three characters share one tone.
    TripleTail,
    /// 孤平: a 平-ending line with a single other 平 character (warning unless strict).
    GuPing,
    /// The same line body occurs earlier in the poem.
    RepeatedLine,
    /// A 3-gram of the line occurs earlier in the poem.
    RepeatedTrigram,
    /// A 2-gram occurs twice within the line.
    RepeatedBigram,
    /// Same character at the same position as the previous line (last position excluded).
    SamePosition,
    /// A character occurs more often than [`Constraints::max_char_repeats`].
    CharLimit,
    /// A banned modern/function character ([`Constraints::banned`]).
    Banned,
    /// The line does not start with its acrostic head character.
    Acrostic,
    /// A keyword of [`Constraints::keywords`] occurs in no line.
    Keyword,
}

/// One violated rule, where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which rule.
    pub rule: Rule,
    /// Line index (0-based).
    pub line: usize,
    /// Character index in the line (0-based), when the rule points at one.
    pub pos: Option<usize>,
    /// Human-readable explanation (Chinese terms, English text).
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "line {} char {}: {:?}: {}", self.line + 1, p + 1, self.rule, self.message),
            None => write!(f, "line {}: {:?}: {}", self.line + 1, self.rule, self.message),
        }
    }
}

/// Result of [`check_poem`](super::check::check_poem): hard violations and warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Violated hard rules (under the chosen strictness).
    pub violations: Vec<Violation>,
    /// Soft findings that do not reject the poem.
    pub warnings: Vec<Violation>,
}

impl Verdict {
    /// `true` when no hard rule is violated.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// `true` when some hard violation is of `rule`.
    pub fn violates(&self, rule: Rule) -> bool {
        self.violations.iter().any(|v| v.rule == rule)
    }

    /// `true` when some warning is of `rule`.
    pub fn warns(&self, rule: Rule) -> bool {
        self.warnings.iter().any(|v| v.rule == rule)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.violations.is_empty() {
            write!(f, "ok")?;
        }
        for v in &self.violations {
            writeln!(f, "error: {v}")?;
        }
        for v in &self.warnings {
            writeln!(f, "warning: {v}")?;
        }
        Ok(())
    }
}

/// Outcome of [`check_line`](super::check::check_line), the official filter's 0/1/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineStatus {
    /// The line is complete (full length, correct end punctuation) and may be appended.
    Complete,
    /// No rule is broken yet, but the line is unfinished: keep generating.
    Incomplete,
    /// A hard rule is broken: discard this candidate (and every extension of it).
    Rejected,
}

/// Result of [`check_line`](super::check::check_line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineVerdict {
    /// Complete, incomplete or rejected.
    pub status: LineStatus,
    /// Violations (only and always non-empty when rejected) and warnings of the candidate line.
    pub verdict: Verdict,
}
