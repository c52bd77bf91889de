//! What a task allows: the hard filter on units, the soft format score, acrostic heads, when a
//! text is complete. [`PlainRules`] serves free text (answers) from a task's `[units]` table;
//! [`PoemRules`] applies the regulated-verse rules of [`crate::generate::poetry`].

use super::template::Units;
use crate::generate::poetry::{
    check_line, check_poem, format_score, is_cjk, keyword_steer, keywords_behind, keywords_fit, Constraints, LineStatus, Steer,
    KEYWORD_LAG_PENALTY,
};
use crate::Result;

/// The task-specific side of inverse-prompted generation.
pub trait UnitRules {
    /// Verdict on a (possibly unfinished) unit after the accepted `units`.
    fn check(&self, units: &[String], candidate: &str) -> LineStatus;
    /// Soft format score of a complete unit after `units` (0 when the task has none).
    fn format_score(&self, units: &[String], unit: &str) -> f64;
    /// May a token whose text is `piece` be drawn at all?
    fn token_ok(&self, piece: &str) -> bool;
    /// The character unit `k` must start with (acrostic), if any.
    fn head(&self, k: usize) -> Option<char>;
    /// True when `units` form a complete text (a fixed form reached its last line).
    fn complete(&self, units: &[String]) -> bool;
    /// May the text end after `units` (an end-of-text candidate is accepted)?
    fn may_end(&self, units: &[String]) -> bool;
    /// True when only [`UnitRules::complete`] texts count as results (fixed forms such as poems);
    /// false when a text may stop at any unit (answers).
    fn fixed_form(&self) -> bool {
        false
    }
    /// Does the whole text satisfy every hard rule? (Used by refinement, which replaces inner units.)
    fn accepts(&self, units: &[String]) -> bool;
    /// The context a new unit must not copy from (the prompt).
    fn set_context(&mut self, _context: &str) {}
    /// The constraint verdict of a complete unit, for explanations: `ok`, or its warnings.
    fn describe(&self, _units: &[String], _unit: &str) -> String {
        "ok".into()
    }
    /// Checks the rules can be met at all (e.g. one acrostic head per line), saying what to fix;
    /// [`super::generate_inverse`] calls it first. The default accepts everything.
    fn validate(&self) -> Result<()> {
        Ok(())
    }
    /// Words the text must contain (keywords, in simplified characters); none by default.
    /// [`super::generate_inverse`] checks up front that each of their characters is one token,
    /// and does not count them as copied from the prompt.
    fn required(&self) -> Vec<String> {
        Vec::new()
    }
    /// Which characters must or should come next in the unit after `units` whose text so far
    /// is `partial` (keyword forcing); no steering by default.
    fn steer(&self, _units: &[String], _partial: &str) -> Steer {
        Steer::default()
    }
    /// Loosens the rules once, when a search step found no candidate at all; true when
    /// something was loosened (the step is then sampled again). The default loosens nothing.
    fn relax(&mut self) -> bool {
        false
    }
}

/// Free text cut into sub-sentences at `units.ends` (official QA rules): a unit has
/// `min_chars..=max_chars` characters with its end, contains no banned string, does not repeat an
/// earlier sub-sentence, and its last 4 characters do not occur earlier (prompt included).
#[derive(Debug, Clone)]
pub struct PlainRules {
    units: Units,
    context: String,
}

impl PlainRules {
    /// Rules from a task's `[units]`.
    pub fn new(units: Units) -> Self {
        Self { units, context: String::new() }
    }
}

impl UnitRules for PlainRules {
    fn check(&self, units: &[String], candidate: &str) -> LineStatus {
        let chars: Vec<char> = candidate.chars().collect();
        let n = chars.len();
        let is_end = |c: &char| self.units.ends.iter().any(|e| e.starts_with(*c));
        if n == 0 || self.units.banned.iter().any(|b| candidate.contains(b.as_str())) || candidate.contains('\n') {
            return LineStatus::Rejected;
        }
        if chars[..n - 1].iter().any(is_end) {
            return LineStatus::Rejected;
        }
        let ended = chars.last().is_some_and(is_end);
        if n > self.units.max_chars || (ended && n < self.units.min_chars) {
            return LineStatus::Rejected;
        }
        if !ended {
            return LineStatus::Incomplete;
        }
        let before: String = self.context.clone() + &units.concat();
        let body: String = chars[..n - 1].iter().collect();
        let tail: String = chars[n.saturating_sub(5)..n - 1].iter().collect();
        if before.contains(&body) || (tail.chars().count() >= 4 && before.contains(&tail)) {
            return LineStatus::Rejected;
        }
        LineStatus::Complete
    }
    fn format_score(&self, _units: &[String], _unit: &str) -> f64 {
        0.0
    }
    fn token_ok(&self, piece: &str) -> bool {
        !piece.is_empty() && !piece.contains('\n')
    }
    fn head(&self, _k: usize) -> Option<char> {
        None
    }
    fn complete(&self, units: &[String]) -> bool {
        units.len() >= self.units.max_units
    }
    fn may_end(&self, units: &[String]) -> bool {
        !units.is_empty()
    }
    fn accepts(&self, units: &[String]) -> bool {
        units.iter().enumerate().all(|(i, u)| self.check(&units[..i], u) == LineStatus::Complete)
    }
    fn set_context(&mut self, context: &str) {
        self.context = context.to_string();
    }
    fn validate(&self) -> Result<()> {
        self.units.validate()
    }
}

/// Regulated verse: every line must pass [`check_line`] under the [`Constraints`] (form, rhyme
/// table, tones, repetition, bans, acrostic heads) and leave room for the keywords not written
/// yet ([`keywords_fit`]; [`UnitRules::steer`] forces or prefers their characters); lines 3+ get
/// the official soft format score, and every line loses [`KEYWORD_LAG_PENALTY`] per keyword the
/// poem is behind its schedule with ([`keywords_behind`]).
#[derive(Debug, Clone)]
pub struct PoemRules {
    /// The constraints every line must satisfy.
    pub constraints: Constraints,
    /// Characters of the prompt a line may not quote 3-grams from.
    context: String,
}

impl PoemRules {
    /// Rules for `constraints`.
    pub fn new(constraints: Constraints) -> Self {
        Self { constraints, context: String::new() }
    }
}

impl UnitRules for PoemRules {
    fn check(&self, units: &[String], candidate: &str) -> LineStatus {
        let prev: Vec<&str> = units.iter().map(String::as_str).collect();
        let k = units.len();
        // The canonical punctuation only: `，` after odd lines, `。` after even ones.
        let want = crate::generate::poetry::Form::end_punct(k);
        if let Some(last) = candidate.chars().last() {
            if !is_cjk(last) && last != want {
                return LineStatus::Rejected;
            }
        }
        // No 3-gram of the title/prompt (official: the decoded context includes the prompt),
        // unless a keyword asked for it.
        let body: Vec<char> = candidate.chars().filter(|c| is_cjk(*c)).collect();
        let keywords = self.constraints.simplified_keywords();
        let asked = |w: &[char]| keywords.iter().any(|k| k.windows(w.len()).any(|x| x == w));
        if body.windows(3).any(|w| !asked(w) && self.context.contains(&w.iter().collect::<String>())) {
            return LineStatus::Rejected;
        }
        let status = match check_line(&prev, candidate, &self.constraints) {
            Ok(v) => v.status,
            Err(_) => return LineStatus::Rejected,
        };
        // A full-length line without its punctuation yet: judge it as complete now, so the last
        // character already meets the rhyme and tail rules (the punctuation cannot fix them).
        if status == LineStatus::Incomplete && body.len() == self.constraints.form.line_len() {
            let done = format!("{candidate}{want}");
            if !matches!(check_line(&prev, &done, &self.constraints), Ok(v) if v.status == LineStatus::Complete) {
                return LineStatus::Rejected;
            }
        }
        // No candidate that leaves a keyword without room.
        if status != LineStatus::Rejected && !keywords_fit(&self.constraints, &prev, candidate) {
            return LineStatus::Rejected;
        }
        status
    }
    fn format_score(&self, units: &[String], unit: &str) -> f64 {
        let mut lines: Vec<&str> = units.iter().map(String::as_str).collect();
        let format = if units.len() < 2 { 0.0 } else { format_score(&lines, unit).unwrap_or(-100.0) };
        lines.push(unit);
        format - KEYWORD_LAG_PENALTY * keywords_behind(&self.constraints, &lines) as f64
    }
    fn token_ok(&self, piece: &str) -> bool {
        let mut chars = piece.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c == '，' || c == '。' => true,
            (Some(_), _) => piece.chars().all(is_cjk),
            _ => false,
        }
    }
    fn head(&self, k: usize) -> Option<char> {
        self.constraints.head(k)
    }
    fn complete(&self, units: &[String]) -> bool {
        units.len() >= self.constraints.form.lines()
    }
    fn may_end(&self, _units: &[String]) -> bool {
        false
    }
    fn fixed_form(&self) -> bool {
        true
    }
    fn accepts(&self, units: &[String]) -> bool {
        check_poem(&units.concat(), &self.constraints).is_ok_and(|v| v.is_ok())
    }
    fn set_context(&mut self, context: &str) {
        self.context = context.to_string();
    }
    fn validate(&self) -> Result<()> {
        self.constraints.validate()
    }
    fn required(&self) -> Vec<String> {
        self.constraints.simplified_keywords().iter().map(|k| k.iter().collect()).collect()
    }
    fn steer(&self, units: &[String], partial: &str) -> Steer {
        let prev: Vec<&str> = units.iter().map(String::as_str).collect();
        keyword_steer(&self.constraints, &prev, partial)
    }
    /// Frees the keyword characters from the 平仄 rules (once, and only with keywords): a search
    /// then finds a poem with every keyword where the tones could not take one; the poem's check
    /// under the caller's constraints reports the rules it breaks.
    fn relax(&mut self) -> bool {
        let c = &mut self.constraints;
        if c.keywords.is_empty() || c.relax_keyword_tones {
            return false;
        }
        c.relax_keyword_tones = true;
        true
    }
    fn describe(&self, units: &[String], unit: &str) -> String {
        let prev: Vec<&str> = units.iter().map(String::as_str).collect();
        match check_line(&prev, unit, &self.constraints) {
            Ok(v) if v.verdict.violations.is_empty() && v.verdict.warnings.is_empty() => "ok".into(),
            Ok(v) => v.verdict.violations.iter().chain(&v.verdict.warnings).map(|w| format!("{:?}", w.rule)).collect::<Vec<_>>().join(","),
            Err(e) => e.to_string(),
        }
    }
}
