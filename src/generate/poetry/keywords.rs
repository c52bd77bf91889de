//! Keyword forcing (`wenhui poem --include 月,酒`): every keyword of [`Constraints::keywords`]
//! must stand, whole, within one line of the poem.
//!
//! The method is a placement planner consulted while each line is sampled (acrostic heads are
//! its special case: one character at a known position):
//!
//! * A keyword counts as written once some line (or the line being written) contains it.
//! * [`keywords_fit`] says whether the keywords not written yet can still be placed: in the rest
//!   of the current line (overlapping what is written there where the characters agree) or in
//!   the lines still to come (whose first character is fixed by an acrostic head, if any). It is
//!   an exact test: an assignment of keyword subsets to lines, each subset packed into its line
//!   without contradicting a fixed character. A line sampler refuses every candidate it fails,
//!   so no search path ever makes a keyword impossible.
//! * [`keyword_steer`] tells the sampler about the next character: when only a keyword character
//!   keeps the keywords placeable (the remaining room is just enough), it is forced
//!   ([`Steer::only`]); when a keyword is due in the current line (it cannot wait for later
//!   lines, or the keywords are spread over the poem and this line's share is still missing),
//!   the characters that start or continue a keyword here are preferred ([`Steer::prefer`],
//!   drawn with at least [`Steer::share`]), so that about half the lines sampled hold it, where
//!   the model puts it, rather than at the last possible position. A line after which the poem
//!   is behind that schedule loses [`KEYWORD_LAG_PENALTY`] per keyword in its format score, so
//!   the beams do not put every keyword off to the last line.
//!
//! The rules of the form still apply to keyword characters, except those relaxed for acrostic
//! heads ([`super::ACROSTIC_RELAXED_RULES`]); when no poem meets them with the keywords, the
//! search may set [`Constraints::relax_keyword_tones`] and the 平仄 rules then skip the keyword
//! characters ([`super::check_poem`] under the user's constraints still reports what they break).

use super::check::is_cjk;
use super::keyword_plan::{body, contains, scheduled, Planner};
use super::rules::Constraints;
use super::tables::to_simplified;
use crate::{Error, Result};

/// Most characters in one keyword (a keyword stays within one line, which has 5 or 7).
pub const MAX_KEYWORD_CHARS: usize = 4;

/// Most keywords one poem takes (the planner's work grows as 3 to this power per line).
pub const MAX_KEYWORDS: usize = 8;

/// A character no keyword contains: an unspecified character in the planner's lines.
const FREE: char = '\0';

/// Splits a keyword list at `,`, `，` and `、`, trimming whitespace around each keyword. Empty
/// entries are kept (so that [`Constraints::with_keywords`] can name them).
pub fn split_keywords(list: &str) -> Vec<String> {
    list.split([',', '，', '、']).map(|k| k.trim().to_string()).collect()
}

/// What may come next in a line while keywords are missing (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Steer {
    /// When set, the next character must be one of these (empty: the line cannot go on).
    pub only: Option<Vec<char>>,
    /// Characters that start or continue a keyword due in this line; empty when none is due.
    pub prefer: Vec<char>,
    /// The least probability the preferred characters together should be drawn with (0 when
    /// none is due): [`DUE_SHARE`] spread over the places left where a keyword can start, so
    /// that about that share of the lines sampled hold one, at places spread over the line.
    pub share: f64,
}

/// About this share of the lines sampled where a keyword is due hold one ([`Steer::share`]):
/// the beam still sees lines without, and the inverse score chooses.
pub const DUE_SHARE: f64 = 0.5;

/// Score taken from a line for each keyword the poem is behind its schedule with after that
/// line (keyword j of m is due by line ⌈(j+1)·n/(m+1)⌉ of n): without it the beams put off every
/// keyword to the last line, where it can only be forced (about a line's inverse-score spread).
pub const KEYWORD_LAG_PENALTY: f64 = 3.0;

impl Constraints {
    /// Sets the keywords (each 1 to [`MAX_KEYWORD_CHARS`] Chinese characters, simplified or
    /// traditional; repeated keywords count once) and checks them with [`Constraints::validate`].
    pub fn with_keywords<S: AsRef<str>>(mut self, keywords: &[S]) -> Result<Constraints> {
        let mut kept: Vec<String> = Vec::new();
        for k in keywords {
            let k = k.as_ref().trim().to_string();
            // Empty ones stay so that the check names them.
            if k.is_empty() || !kept.iter().any(|x| same_keyword(x, &k)) {
                kept.push(k);
            }
        }
        self.keywords = kept;
        self.validate()?;
        Ok(self)
    }

    /// The keywords in simplified characters.
    pub fn simplified_keywords(&self) -> Vec<Vec<char>> {
        self.keywords.iter().map(|k| k.chars().map(to_simplified).collect()).collect()
    }

    /// Checks the keywords: each non-empty, Chinese characters only, at most
    /// [`MAX_KEYWORD_CHARS`] (and a line's length), at most [`MAX_KEYWORDS`], and all of them
    /// placeable in an empty poem of the form beside the acrostic heads.
    pub(super) fn validate_keywords(&self) -> Result<()> {
        if self.keywords.len() > MAX_KEYWORDS {
            return Err(Error::Input(format!(
                "{} keywords: a poem takes at most {MAX_KEYWORDS}; leave some out (the {}th is `{}`)",
                self.keywords.len(),
                MAX_KEYWORDS + 1,
                self.keywords[MAX_KEYWORDS]
            )));
        }
        let longest = MAX_KEYWORD_CHARS.min(self.form.line_len());
        for (i, k) in self.keywords.iter().enumerate() {
            if k.trim().is_empty() {
                return Err(Error::Input(format!(
                    "keyword {} of {} is empty: give 1 to {longest} Chinese characters per keyword, separated by commas, e.g. 月,酒",
                    i + 1,
                    self.keywords.len()
                )));
            }
            if let Some(c) = k.chars().find(|c| !is_cjk(*c)) {
                return Err(Error::Input(format!(
                    "keyword `{k}` has `{c}`, which is not a Chinese character: a keyword is 1 to {longest} Chinese characters"
                )));
            }
            let n = k.chars().count();
            if n > longest {
                return Err(Error::Input(format!(
                    "keyword `{k}` has {n} characters: a keyword is at most {longest} characters, within one line of a {} ({} \
                     characters a line)",
                    self.form.name(),
                    self.form.line_len()
                )));
            }
        }
        // The first keyword that no longer fits an empty poem with the ones before it (the
        // tone rules aside: a search may relax them for keywords, never the rhyme).
        let all = self.simplified_keywords();
        let probe = Constraints { relax_keyword_tones: true, ..self.clone() };
        for n in 1..=all.len() {
            let first = (0..n).collect::<Vec<_>>();
            if Planner::new(&probe, &all[..n], &[]).fits(0, &[], false, &first) {
                continue;
            }
            let k = &self.keywords[n - 1];
            let (lines, len, form) = (self.form.lines(), self.form.line_len(), self.form.name());
            let headless = Constraints { heads: Vec::new(), ..probe.clone() };
            if !self.heads.is_empty() && Planner::new(&headless, &all[..n], &[]).fits(0, &[], false, &first) {
                let heads: String = self.heads.iter().collect();
                return Err(Error::Input(format!(
                    "keyword `{k}` conflicts with the acrostic heads `{heads}`: with each line starting with its head, a {form} \
                     ({lines} lines of {len} characters) has no room for it besides the keywords before it"
                )));
            }
            let before = if n > 1 { " besides the keywords before it" } else { "" };
            return Err(Error::Input(format!(
                "keyword `{k}` does not fit: a {form} ({lines} lines of {len} characters, a keyword within one line) has no \
                 room for it{before} (a keyword that ends a line must suit its end: lines 2, 4, … end on the rhyme); give \
                 fewer or shorter keywords, or a longer form"
            )));
        }
        Ok(())
    }
}

/// The same keyword once simplified.
fn same_keyword(a: &str, b: &str) -> bool {
    a.chars().map(to_simplified).eq(b.chars().map(to_simplified))
}

/// For each keyword, the first line (0-based) of `lines` that contains it, or `None`.
pub fn keyword_lines(c: &Constraints, lines: &[&str]) -> Vec<(String, Option<usize>)> {
    let bodies: Vec<Vec<char>> = lines.iter().map(|l| body(l)).collect();
    c.keywords.iter().zip(c.simplified_keywords()).map(|(k, s)| (k.clone(), bodies.iter().position(|b| contains(b, &s)))).collect()
}

/// Where one keyword of a poem stands (the `include` field of `poem --json` and `/v1/poem`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    /// The keyword as the user gave it.
    pub keyword: String,
    /// The first line (1-based) that holds it; `None` when it is missing.
    pub line: Option<usize>,
}

impl std::fmt::Display for Placement {
    /// `月 (line 2)` or `月 (missing)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{} (line {l})", self.keyword),
            None => write!(f, "{} (missing)", self.keyword),
        }
    }
}

/// Each keyword's [`Placement`] in `lines`.
pub fn placements(c: &Constraints, lines: &[&str]) -> Vec<Placement> {
    keyword_lines(c, lines).into_iter().map(|(keyword, at)| Placement { keyword, line: at.map(|l| l + 1) }).collect()
}

/// Can every keyword not yet in `lines` (complete lines with their punctuation) or in
/// `candidate` (the next line, possibly unfinished) still be placed? A candidate with its end
/// punctuation, or with a line's full length, takes no more keywords. True without keywords.
pub fn keywords_fit(c: &Constraints, lines: &[&str], candidate: &str) -> bool {
    if c.keywords.is_empty() {
        return true;
    }
    let all = c.simplified_keywords();
    let plan = Planner::new(c, &all, lines);
    let cur = body(candidate);
    let closed = candidate.chars().last().is_some_and(|ch| !is_cjk(ch)) || cur.len() >= c.form.line_len();
    let missing = plan.missing(&cur);
    plan.fits(lines.len(), &cur, closed, &missing)
}

/// What may follow `partial` (the unfinished line after `lines`) so that the keywords stay
/// placeable (see [`Steer`]). No steering without keywords, or once the line is full.
pub fn keyword_steer(c: &Constraints, lines: &[&str], partial: &str) -> Steer {
    let len = c.form.line_len();
    let cur = body(partial);
    if c.keywords.is_empty() || cur.len() >= len || lines.len() >= c.form.lines() {
        return Steer::default();
    }
    let all = c.simplified_keywords();
    let plan = Planner::new(c, &all, lines);
    let k = lines.len();
    let missing = plan.missing(&cur);
    if missing.is_empty() {
        return Steer::default();
    }
    let with = |ch: char| {
        let mut next = cur.clone();
        next.push(ch);
        let left: Vec<usize> = missing.iter().copied().filter(|&i| !contains(&next, &all[i])).collect();
        plan.fits(k, &next, next.len() >= len, &left)
    };
    if !with(FREE) {
        let mut only: Vec<char> = missing.iter().flat_map(|&i| all[i].iter().copied()).collect();
        only.sort_unstable();
        only.dedup();
        only.retain(|&ch| with(ch));
        return Steer { only: Some(only), prefer: Vec::new(), share: 0.0 };
    }
    let due = missing.len() > all.len() - scheduled(all.len(), c.form.lines(), k) || !plan.fits(k, &cur, true, &missing);
    if !due {
        return Steer::default();
    }
    // The character each missing keyword would put at the next position, where it can stand.
    let n = cur.len();
    let mut prefer = Vec::new();
    for &i in &missing {
        let w = &all[i];
        for p in (n + 1).saturating_sub(w.len())..=n {
            if p + w.len() <= len && w[..n - p] == cur[p..] && !prefer.contains(&w[n - p]) {
                prefer.push(w[n - p]);
            }
        }
    }
    // Places left (this one included) where a missing keyword can still start.
    let starts = (n..len).filter(|&p| missing.iter().any(|&i| p + all[i].len() <= len)).count().max(1);
    Steer { only: None, prefer, share: DUE_SHARE / starts as f64 }
}

/// How many keywords the poem `lines` (complete lines) is behind its schedule with: due by
/// the last of them (see [`KEYWORD_LAG_PENALTY`]) but in none of them.
pub fn keywords_behind(c: &Constraints, lines: &[&str]) -> usize {
    let Some(k) = lines.len().checked_sub(1) else { return 0 };
    let placed = keyword_lines(c, lines).iter().filter(|(_, at)| at.is_some()).count();
    scheduled(c.keywords.len(), c.form.lines(), k).saturating_sub(placed)
}

/// Positions of `body` taken by a keyword: its occurrences and, in an unfinished line, a
/// trailing start of one.
fn keyword_positions(c: &Constraints, body: &[char], complete: bool) -> Vec<bool> {
    let mut taken = vec![false; body.len()];
    for w in c.simplified_keywords() {
        for p in 0..body.len() {
            let n = w.len().min(body.len() - p);
            if body[p..p + n] == w[..n] && (n == w.len() || (!complete && p + n == body.len())) {
                taken[p..p + n].iter_mut().for_each(|f| *f = true);
            }
        }
    }
    taken
}

/// Positions of `body` (line `k`) whose character was forced: the acrostic head's and the
/// keywords' ([`keyword_positions`]). The rules relaxed for heads do not apply to them.
pub(super) fn forced_positions(c: &Constraints, k: usize, body: &[char], complete: bool) -> Vec<bool> {
    let mut forced = keyword_positions(c, body, complete);
    if c.head(k).is_some() {
        if let Some(f) = forced.first_mut() {
            *f = true;
        }
    }
    forced
}

/// Positions whose 平仄 the rules skip: the keyword characters when
/// [`Constraints::relax_keyword_tones`] is set.
pub(super) fn tone_free_positions(c: &Constraints, body: &[char], complete: bool) -> Vec<bool> {
    if !c.relax_keyword_tones {
        return vec![false; body.len()];
    }
    keyword_positions(c, body, complete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::poetry::Form;

    fn wujue(keywords: &[&str]) -> Constraints {
        Constraints::new(Form::WuJue).with_keywords(keywords).unwrap_or_else(|e| panic!("{keywords:?}: {e}"))
    }

    fn err(c: Constraints, keywords: &[&str]) -> String {
        match c.with_keywords(keywords) {
            Ok(_) => panic!("{keywords:?} accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn lists_split_at_either_comma() {
        assert_eq!(split_keywords("月,酒"), ["月", "酒"]);
        assert_eq!(split_keywords(" 明月 ，酒、花"), ["明月", "酒", "花"]);
        assert_eq!(split_keywords("月,,酒"), ["月", "", "酒"]);
    }

    #[test]
    fn bad_keywords_are_named() {
        let c = Constraints::new(Form::WuJue);
        assert!(err(c.clone(), &["月", ""]).contains("keyword 2 of 2 is empty"));
        assert!(err(c.clone(), &["moon"]).contains("keyword `moon` has `m`"));
        assert!(err(c.clone(), &["明月 光"]).contains("`明月 光`"));
        assert!(err(c.clone(), &["春眠不觉晓"]).contains("keyword `春眠不觉晓` has 5 characters"));
        assert!(err(c.clone(), &["一", "二", "三", "四", "五", "六", "七", "八", "九"])
            .contains("9 keywords: a poem takes at most 8; leave some out (the 9th is `九`)"));
        // Five 3-character keywords: one line holds only one of them (3 + 3 > 5).
        let e = err(c.clone(), &["明月光", "白云飞", "清风来", "山水间", "鸟语声"]);
        assert!(e.contains("keyword `鸟语声` does not fit"), "{e}");
        // Four 4-character keywords and one more: five characters a line, four beside a head.
        let five = ["明月清风", "白云流水", "高山远树", "落日孤城", "酒"];
        assert!(Constraints::new(Form::WuJue).with_keywords(&five).is_ok());
        let heads = Constraints { heads: "春夏秋冬".chars().collect(), ..Constraints::new(Form::WuJue) };
        let e = err(heads, &five);
        assert!(e.contains("keyword `酒` conflicts with the acrostic heads `春夏秋冬`"), "{e}");
    }

    #[test]
    fn traditional_and_repeated_keywords_are_simplified_once() {
        let c = wujue(&["東風", "东风", "酒"]);
        assert_eq!(c.keywords, ["東風", "酒"]);
        assert_eq!(c.simplified_keywords(), [vec!['东', '风'], vec!['酒']]);
    }

    #[test]
    fn a_keyword_counts_where_any_line_holds_it() {
        let c = wujue(&["明月", "酒"]);
        let lines = ["床前明月光，", "疑是地上霜。"];
        assert_eq!(keyword_lines(&c, &lines), [("明月".to_string(), Some(0)), ("酒".to_string(), None)]);
    }

    #[test]
    fn the_last_line_must_take_what_is_missing() {
        let c = wujue(&["酒"]);
        let three = ["床前明月光，", "疑是地上霜。", "举头望明月，"];
        // Room in the last line: nothing forced yet.
        assert!(keywords_fit(&c, &three, "低头"));
        assert_eq!(keyword_steer(&c, &three, "低头").only, None);
        // It is due, so the sampler prefers it.
        assert_eq!(keyword_steer(&c, &three, "低头").prefer, ['酒']);
        // One place left: forced. (The last place is the rhyme, which 酒 cannot be: so the
        // 4th, not the 5th.)
        assert_eq!(keyword_steer(&c, &three, "低头思").only, Some(vec!['酒']));
        assert!(!keywords_fit(&c, &three, "低头思故"));
        assert!(!keywords_fit(&c, &three, "低头思故乡。"));
        assert!(keywords_fit(&c, &three, "低头思酒"));
        // Earlier lines leave room for it.
        assert!(keywords_fit(&c, &three[..2], "举头望明月，"));
    }

    #[test]
    fn a_started_keyword_is_continued() {
        let c = wujue(&["明月"]);
        let three = ["白日依山尽，", "黄河入海流。", "欲穷千里目，"];
        // 月 (仄) cannot end the rhyme line, so 明月 must stand before the last place: with
        // three places left, only 明 keeps it placeable; then 月.
        assert_eq!(keyword_steer(&c, &three, "更").only, None);
        assert_eq!(keyword_steer(&c, &three, "更上").only, Some(vec!['明']));
        assert_eq!(keyword_steer(&c, &three, "更上明").only, Some(vec!['月']));
        assert_eq!(keyword_steer(&c, &three, "更上一").only, Some(vec![]));
        assert!(!keywords_fit(&c, &three, "更上一"));
    }

    #[test]
    fn a_keyword_ends_a_line_only_where_its_last_character_may_stand() {
        let three = ["白日依山尽，", "黄河入海流。", "欲穷千里目，"];
        // 楼 rhymes with 流 (十一尤): the rhyme place takes it; 光 (七阳) does not.
        assert!(keywords_fit(&wujue(&["层楼"]), &three, "更上一"));
        assert!(!keywords_fit(&wujue(&["月光"]), &three, "更上一"));
        // Line 3 may not end on 平 under the tone rules. 明月清风 leaves no room for 高山 in
        // line 4, so 高山 must end line 3 (山 is 平): refused, unless keywords are free of the
        // tone rules.
        let two = ["白日依山尽，", "黄河入海流。"];
        let c = wujue(&["高山", "明月清风"]);
        assert!(!keywords_fit(&c, &two, "欲穷千"));
        assert!(keywords_fit(&c, &two, "欲高山"));
        let relaxed = Constraints { relax_keyword_tones: true, ..c };
        assert!(keywords_fit(&relaxed, &two, "欲穷千"));
    }

    #[test]
    fn keywords_share_lines_and_overlap() {
        // Two 2-character keywords in the last line, or overlapping as 明月光 (光 rhymes with 长).
        let c = wujue(&["明月", "月光"]);
        let three = ["白日依山尽，", "黄河入海长。", "欲穷千里目，"];
        assert!(keywords_fit(&c, &three, "更"));
        assert!(keywords_fit(&c, &three, "更上明"));
        assert_eq!(keyword_steer(&c, &three, "更上明").only, Some(vec!['月']));
        assert!(!keywords_fit(&c, &three, "更上一层"));
        // Acrostic heads fix the first cell of every line to come (风 rhymes with 红).
        let heads = Constraints { heads: "春夏秋冬".chars().collect(), ..Constraints::new(Form::WuJue) }.with_keywords(&["明月清风"]);
        let heads = heads.unwrap_or_else(|e| panic!("{e}"));
        assert!(keywords_fit(&heads, &["春风一夜来，", "夏日满江红。", "秋声满院落，"], "冬"));
        assert_eq!(keyword_steer(&heads, &["春风一夜来，", "夏日满江红。", "秋声满院落，"], "冬").only, Some(vec!['明']));
    }

    #[test]
    fn keywords_are_due_spread_over_the_poem() {
        // One keyword in 4 lines: due from line 2; in 8 lines, from line 4.
        assert_eq!((0..4).map(|k| scheduled(1, 4, k)).collect::<Vec<_>>(), [0, 1, 1, 1]);
        assert_eq!((0..8).map(|k| scheduled(1, 8, k)).collect::<Vec<_>>(), [0, 0, 0, 1, 1, 1, 1, 1]);
        // Two in 4 lines: lines 2 and 3; four in 4: one a line.
        assert_eq!((0..4).map(|k| scheduled(2, 4, k)).collect::<Vec<_>>(), [0, 1, 2, 2]);
        assert_eq!((0..4).map(|k| scheduled(4, 4, k)).collect::<Vec<_>>(), [1, 2, 3, 4]);
        let c = wujue(&["花", "酒"]);
        // Line 1: they can wait.
        assert_eq!(keyword_steer(&c, &[], ""), Steer::default());
        // Line 2 with both missing: one is due, either may take the place.
        let s = keyword_steer(&c, &["春眠不觉晓，"], "");
        assert_eq!(s.only, None);
        let mut prefer = s.prefer.clone();
        prefer.sort_unstable();
        assert_eq!(prefer, ['花', '酒']);
        // Half the lines sampled should hold it: spread over the 5 places left.
        assert!((s.share - DUE_SHARE / 5.0).abs() < 1e-12, "{}", s.share);
        assert_eq!(keyword_steer(&c, &["春眠不觉晓，"], "处处闻").share, DUE_SHARE / 2.0);
        // A poem behind its schedule after a line: one keyword after line 2, both after line 3.
        assert_eq!(keywords_behind(&c, &["春眠不觉晓，"]), 0);
        assert_eq!(keywords_behind(&c, &["春眠不觉晓，", "处处闻啼鸟。"]), 1);
        assert_eq!(keywords_behind(&c, &["春眠不觉晓，", "处处闻啼鸟。", "夜来风雨声，"]), 2);
        assert_eq!(keywords_behind(&c, &["春眠花不晓，", "处处闻啼鸟。", "夜来风雨声，"]), 1);
        assert_eq!(keywords_behind(&c, &["春眠花不晓，", "处处闻啼鸟。", "夜来风酒声，"]), 0);
        // Line 2 with 花 in line 1: nothing due until line 3.
        assert_eq!(keyword_steer(&c, &["春眠花不晓，"], ""), Steer::default());
        assert_eq!(keyword_steer(&c, &["春眠花不晓，", "处处闻啼鸟。"], "夜来").prefer, ['酒']);
    }

    #[test]
    fn a_missing_keyword_is_a_violation_and_keyword_characters_are_exempt_like_heads() {
        use crate::generate::poetry::{check_poem, Rule};
        // 王之涣《登鹳雀楼》 with 青云 for 一层: 三平尾 (青云楼).
        let poem = "白日依山尽，黄河入海流。欲穷千里目，更上青云楼。";
        let v = check_poem(poem, &wujue(&["黄河", "酒"])).unwrap_or_default();
        let missing: Vec<&str> = v.violations.iter().filter(|x| x.rule == Rule::Keyword).map(|x| x.message.as_str()).collect();
        assert_eq!(missing, ["keyword `酒` occurs in no line (a keyword stands within one line)"], "{v}");
        // The tone rules read keyword characters, unless relaxed.
        let strict = wujue(&["青云"]);
        assert!(check_poem(poem, &strict).is_ok_and(|v| v.violates(Rule::TripleTail) && !v.violates(Rule::Keyword)));
        let relaxed = Constraints { relax_keyword_tones: true, ..strict };
        assert!(check_poem(poem, &relaxed).is_ok_and(|v| v.is_ok()));
        // A banned character asked for as a keyword is no fault there, as an acrostic head's.
        let banned = "白日依山尽，黄河入海流。欲穷千里目，更上的层楼。";
        assert!(check_poem(banned, &Constraints::new(Form::WuJue)).is_ok_and(|v| v.violates(Rule::Banned)));
        assert!(check_poem(banned, &wujue(&["的"])).is_ok_and(|v| !v.violates(Rule::Banned)));
        // A traditional keyword matches the simplified text and the other way round.
        assert!(check_poem(poem, &wujue(&["黃河"])).is_ok_and(|v| !v.violates(Rule::Keyword)));
        assert!(check_poem("白日依山盡，黃河入海流。欲窮千里目，更上一層樓。", &wujue(&["层楼"])).is_ok_and(|v| v.is_ok()));
    }

    #[test]
    fn keyword_positions_are_forced_positions() {
        let c = wujue(&["明月"]);
        assert_eq!(forced_positions(&c, 0, &"床前明月光".chars().collect::<Vec<_>>(), true), [false, false, true, true, false]);
        // The start of a keyword at the end of an unfinished line counts too.
        assert_eq!(forced_positions(&c, 0, &"床前明".chars().collect::<Vec<_>>(), false), [false, false, true]);
        assert_eq!(forced_positions(&c, 0, &"床前明".chars().collect::<Vec<_>>(), true), [false, false, false]);
        assert!(tone_free_positions(&c, &"床前明月光".chars().collect::<Vec<_>>(), true).iter().all(|f| !f));
        let relaxed = Constraints { relax_keyword_tones: true, ..c };
        assert_eq!(tone_free_positions(&relaxed, &"床前明月光".chars().collect::<Vec<_>>(), true), [false, false, true, true, false]);
    }
}
