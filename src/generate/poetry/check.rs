//! [`check_poem`] and [`check_line`]: the hard rules.

use super::rules::{Constraints, LineStatus, LineVerdict, RhymeTable, Rule, Strictness, Verdict, Violation};
use super::tables::{rhyme_index, to_simplified, tone_of, RhymeIndex, Tone};
use crate::{Error, Result};

/// One parsed line: simplified characters and its end punctuation (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoemLine {
    /// The characters, mapped to simplified.
    pub body: Vec<char>,
    /// The end punctuation as written, `None` when the text ended without one.
    pub punct: Option<char>,
}

/// Whether `c` is a CJK ideograph (the corpus's rule: U+3400–4DBF, U+4E00–9FFF, U+F900–FAFF,
/// planes 2–3) or `〇`.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x3FFFF | 0x3007)
}

fn is_end_punct(c: char) -> bool {
    "，,。？?！!；;".contains(c)
}

/// Allowed end punctuation of line `k` (0-based): the official sets (odd lines `，,？?`,
/// even lines `。？?！!`).
fn allowed_end(k: usize, p: char) -> bool {
    if k.is_multiple_of(2) {
        "，,？?".contains(p)
    } else {
        "。？?！!".contains(p)
    }
}

/// Splits a poem into lines at `，,。？?！!；;`, ignoring whitespace and mapping traditional
/// characters to simplified. Errors on empty text and on any other non-Chinese character.
pub fn split_lines(text: &str) -> Result<Vec<PoemLine>> {
    if text.trim().is_empty() {
        return Err(Error::Input("empty poem text".into()));
    }
    let mut lines = Vec::new();
    let mut cur = Vec::new();
    for (i, c) in text.chars().enumerate() {
        if c.is_whitespace() {
            continue;
        }
        if is_cjk(c) {
            cur.push(to_simplified(c));
        } else if is_end_punct(c) {
            lines.push(PoemLine { body: std::mem::take(&mut cur), punct: Some(c) });
        } else {
            return Err(Error::Input(format!("non-Chinese character `{c}` (U+{:04X}) at character {} of the poem", c as u32, i + 1)));
        }
    }
    if !cur.is_empty() {
        lines.push(PoemLine { body: cur, punct: None });
    }
    Ok(lines)
}

/// Checks a whole poem. `Err` for empty text, non-Chinese characters, bad acrostic heads or bad
/// keywords; otherwise every violated rule is listed in the [`Verdict`] (a missing keyword as
/// [`Rule::Keyword`] on the last line).
pub fn check_poem(text: &str, c: &Constraints) -> Result<Verdict> {
    c.validate()?;
    let lines = split_lines(text)?;
    let mut v = Verdict::default();
    if lines.len() != c.form.lines() {
        let line = lines.len().min(c.form.lines()).saturating_sub(1);
        let msg = format!("{} lines, the form needs {}", lines.len(), c.form.lines());
        v.violations.push(Violation { rule: Rule::LineCount, line, pos: None, message: msg });
    }
    for k in 0..lines.len() {
        let lv = line_rules(&lines[..k], &lines[k], true, c);
        v.violations.extend(lv.violations);
        v.warnings.extend(lv.warnings);
    }
    let written: Vec<String> = lines.iter().map(|l| s(&l.body)).collect();
    let written: Vec<&str> = written.iter().map(String::as_str).collect();
    for (k, at) in super::keywords::keyword_lines(c, &written) {
        if at.is_none() {
            let line = lines.len().saturating_sub(1);
            let message = format!("keyword `{k}` occurs in no line (a keyword stands within one line)");
            v.violations.push(Violation { rule: Rule::Keyword, line, pos: None, message });
        }
    }
    Ok(v)
}

/// Incremental check for a line sampler: may `candidate` follow `prefix_lines` (each one
/// complete line with its end punctuation, e.g. `"白日依山尽，"`)?
///
/// A candidate without end punctuation is a prefix of a line: only the rules it can already
/// break are applied (length so far, head, banned and non-Chinese characters, repetitions,
/// 2/4/6 and 粘对 tones of the characters so far); it is [`LineStatus::Incomplete`] when none
/// fails. A candidate with end punctuation gets every rule, including rhyme and the tail rules,
/// and is [`LineStatus::Complete`] when none fails. The prefix lines are not re-checked
/// (use [`check_poem`]). `Err` for bad heads and for a prefix entry that is not exactly one
/// line of Chinese characters with its end punctuation.
pub fn check_line(prefix_lines: &[&str], candidate: &str, c: &Constraints) -> Result<LineVerdict> {
    // Only the heads: a sampler calls this for every token, and the keywords' check is a
    // placement search (a search checks them once, up front).
    c.validate_heads()?;
    let mut prev = Vec::with_capacity(prefix_lines.len());
    for (j, l) in prefix_lines.iter().enumerate() {
        match split_lines(l)?.as_slice() {
            [one] if one.punct.is_some() => prev.push(one.clone()),
            _ => return Err(Error::Input(format!("prefix line {} `{l}` is not one line with its end punctuation", j + 1))),
        }
    }
    let k = prev.len();
    let reject = |rule, pos, message: String| LineVerdict {
        status: LineStatus::Rejected,
        verdict: Verdict { violations: vec![Violation { rule, line: k, pos, message }], warnings: Vec::new() },
    };
    if k >= c.form.lines() {
        let msg = format!("the poem already has {k} lines");
        return Ok(reject(Rule::LineCount, None, msg));
    }
    let chars: Vec<char> = candidate.chars().filter(|ch| !ch.is_whitespace()).collect();
    let mut body = Vec::with_capacity(chars.len());
    let mut punct = None;
    for (i, &ch) in chars.iter().enumerate() {
        if is_cjk(ch) {
            body.push(to_simplified(ch));
        } else if is_end_punct(ch) && i + 1 == chars.len() {
            punct = Some(ch);
        } else {
            let (rule, what) = if is_end_punct(ch) {
                (Rule::Punctuation, "punctuation inside the line")
            } else {
                (Rule::ForbiddenChar, "non-Chinese character")
            };
            return Ok(reject(rule, Some(body.len()), format!("{what} `{ch}`")));
        }
    }
    let line = PoemLine { body, punct };
    let complete = punct.is_some();
    let verdict = line_rules(&prev, &line, complete, c);
    let status = if !verdict.is_ok() {
        LineStatus::Rejected
    } else if complete {
        LineStatus::Complete
    } else {
        LineStatus::Incomplete
    };
    Ok(LineVerdict { status, verdict })
}

struct Out<'a> {
    v: Verdict,
    line: usize,
    c: &'a Constraints,
}

impl Out<'_> {
    fn push(&mut self, hard: bool, rule: Rule, pos: Option<usize>, message: String) {
        let x = Violation { rule, line: self.line, pos, message };
        if hard {
            self.v.violations.push(x);
        } else {
            self.v.warnings.push(x);
        }
    }
    fn tonal(&self) -> bool {
        self.c.strictness >= Strictness::Standard
    }
    fn strict(&self) -> bool {
        self.c.strictness >= Strictness::Strict
    }
}

fn s(chars: &[char]) -> String {
    chars.iter().collect()
}

/// Every rule for line `prev.len()`; `complete` = the line is finished.
fn line_rules(prev: &[PoemLine], line: &PoemLine, complete: bool, c: &Constraints) -> Verdict {
    let k = prev.len();
    let len = c.form.line_len();
    let body = &line.body;
    let n = body.len();
    let head = c.head(k);
    let mut o = Out { v: Verdict::default(), line: k, c };

    // Shape.
    if n > len || (complete && n != len) {
        o.push(true, Rule::LineLength, None, format!("{n} characters, the form needs {len}"));
    }
    if complete {
        match line.punct {
            None => o.push(true, Rule::Punctuation, None, "missing end punctuation".into()),
            Some(p) if !allowed_end(k, p) => {
                let want = super::Form::end_punct(k);
                o.push(true, Rule::Punctuation, None, format!("ends with `{p}`, expected `{want}`"));
            }
            _ => {}
        }
    }
    // Acrostic head.
    if let (Some(h), Some(&first)) = (head, body.first()) {
        if first != h {
            o.push(true, Rule::Acrostic, Some(0), format!("starts with `{first}`, head is `{h}`"));
        }
    }
    // Heads and keyword characters were forced: the rules relaxed for them skip these positions.
    let forced = super::keywords::forced_positions(c, k, body, complete);
    let is_forced = |i: usize| forced.get(i).copied().unwrap_or(false);
    // Banned characters.
    for (i, ch) in body.iter().enumerate() {
        if c.banned.contains(ch) && !is_forced(i) {
            o.push(true, Rule::Banned, Some(i), format!("banned character `{ch}`"));
        }
    }
    // Character limit over the poem.
    if let Some(max) = c.max_char_repeats {
        let forced_before: Vec<Vec<bool>> =
            prev.iter().enumerate().map(|(j, l)| super::keywords::forced_positions(c, j, &l.body, true)).collect();
        let earlier = |ch: char| {
            prev.iter()
                .enumerate()
                .flat_map(|(j, l)| l.body.iter().enumerate().map(move |(i, x)| (j, i, *x)))
                .filter(|&(j, i, x)| x == ch && !forced_before[j][i])
                .count()
        };
        for (i, &ch) in body.iter().enumerate() {
            let here = body[..=i].iter().enumerate().filter(|&(p, &x)| x == ch && !is_forced(p)).count();
            if !is_forced(i) && earlier(ch) + here == max + 1 {
                o.push(true, Rule::CharLimit, Some(i), format!("`{ch}` used more than {max} times"));
            }
        }
    }
    repetition_rules(prev, line, complete, &mut o, &is_forced);
    if o.tonal() {
        tone_rules(prev, line, complete, &mut o, &is_forced);
    }
    if complete && k % 2 == 1 && n > 0 {
        rhyme_rules(prev, line, &mut o);
    }
    o.v
}

fn repetition_rules(prev: &[PoemLine], line: &PoemLine, complete: bool, o: &mut Out, is_forced: &dyn Fn(usize) -> bool) {
    let body = &line.body;
    let n = body.len();
    if complete && n > 0 && prev.iter().any(|p| p.body == *body) {
        o.push(true, Rule::RepeatedLine, None, format!("line `{}` repeats an earlier line", s(body)));
        return;
    }
    if let Some(i) = (0..n.saturating_sub(2)).find(|&i| prev.iter().any(|p| p.body.windows(3).any(|w| w == &body[i..i + 3]))) {
        let g = s(&body[i..i + 3]);
        o.push(true, Rule::RepeatedTrigram, Some(i), format!("3-gram `{g}` occurs earlier"));
    }
    'outer: for i in 0..n.saturating_sub(1) {
        for j in i + 1..n - 1 {
            if body[i..i + 2] == body[j..j + 2] {
                let g = s(&body[i..i + 2]);
                o.push(true, Rule::RepeatedBigram, Some(j), format!("2-gram `{g}` twice in the line"));
                break 'outer;
            }
        }
    }
    if let Some(p) = prev.last() {
        let last = o.c.form.line_len() - 1;
        for (i, (a, b)) in body.iter().zip(&p.body).enumerate().take(last) {
            if a == b && !is_forced(i) {
                let msg = format!("`{a}` at the same position as in the previous line");
                o.push(true, Rule::SamePosition, Some(i), msg);
            }
        }
    }
}

fn tones(body: &[char]) -> Vec<Tone> {
    body.iter().map(|&ch| tone_of(ch).unwrap_or(Tone::Either)).collect()
}

fn tone_rules(prev: &[PoemLine], line: &PoemLine, complete: bool, o: &mut Out, is_forced: &dyn Fn(usize) -> bool) {
    let k = prev.len();
    let len = o.c.form.line_len();
    let mut t = tones(&line.body);
    // The fallback for keywords the tones cannot accommodate: their characters count as either.
    for (x, free) in t.iter_mut().zip(super::keywords::tone_free_positions(o.c, &line.body, complete)) {
        if free {
            *x = Tone::Either;
        }
    }
    let n = t.len();
    let lab = |x: Tone| x.label();
    // An unknown tone would pass every rule below as "either": reject it where a hard rule reads
    // the tone (2/4/6, the last three; strict: the 孤平 positions too).
    let strict = o.strict();
    for (i, &ch) in line.body.iter().enumerate().take(len) {
        let read = i % 2 == 1 || i + 3 >= len || (strict && i + 5 >= len);
        if read && !is_forced(i) && tone_of(ch).is_none() {
            o.push(true, Rule::ToneUnknown, Some(i), format!("the 平仄 of `{ch}` is unknown"));
        }
    }
    // 二四六分明.
    if n > 3 && !t[1].conflicts(t[3]) && t[1] == t[3] && t[1] != Tone::Either {
        o.push(true, Rule::Alternation, Some(3), format!("2nd and 4th characters both {}", lab(t[1])));
    }
    if len == 7 && n > 5 && t[5].conflicts(t[1]) {
        let msg = format!("6th character {} but 2nd {}", lab(t[5]), lab(t[1]));
        o.push(true, Rule::Alternation, Some(5), msg);
    }
    // 粘对 against the previous line.
    if let Some(p) = prev.last() {
        let pt = tones(&p.body);
        for i in [1, 3, 5].into_iter().filter(|&i| i < n && i < pt.len() && i < len) {
            if k % 2 == 1 && t[i] == pt[i] && t[i] != Tone::Either {
                let msg = format!("对: character {} is {} in both lines of the couplet", i + 1, lab(t[i]));
                o.push(true, Rule::Dui, Some(i), msg);
            } else if k.is_multiple_of(2) && t[i].conflicts(pt[i]) {
                let msg = format!("粘: character {} is {}, the previous line has {}", i + 1, lab(t[i]), lab(pt[i]));
                o.push(true, Rule::Nian, Some(i), msg);
            }
        }
    }
    if !complete || n != len {
        return;
    }
    let tail = &t[len - 3..];
    if tail[0] != Tone::Either && tail.iter().all(|&x| x == tail[0]) {
        let what = if tail[0] == Tone::Ping { "三平尾" } else { "三仄尾" };
        o.push(true, Rule::TripleTail, Some(len - 3), format!("{what}: last three characters {}", lab(tail[0])));
    }
    if k.is_multiple_of(2) && k > 0 && t[len - 1] == Tone::Ping {
        o.push(true, Rule::NonRhymeEnd, Some(len - 1), "non-rhyming line ends on 平".into());
    }
    // 孤平 in the x平仄仄平 pattern: only one 平 besides the rhyme (heads and either count as 平).
    let off = len - 5;
    let ping = |i: usize| t[i] != Tone::Ze || is_forced(i);
    if t[len - 1] == Tone::Ping && t[off + 3] == Tone::Ze && (off..off + 4).filter(|&i| ping(i)).count() <= 1 {
        let strict = o.strict();
        o.push(strict, Rule::GuPing, None, "孤平: only one 平 besides the rhyme character".into());
    }
}

fn rhyme_rules(prev: &[PoemLine], line: &PoemLine, o: &mut Out) {
    let idx = rhyme_index(o.c.rhyme);
    let mut finals: Vec<char> = prev.iter().skip(1).step_by(2).filter_map(|l| l.body.last().copied()).collect();
    let Some(&last) = line.body.last() else { return };
    finals.push(last);
    let pos = Some(line.body.len() - 1);
    if !idx.knows(last) {
        // Nothing shows that an unknown character rhymes: an error, never a mere warning.
        let table = o.c.rhyme.name();
        o.push(true, Rule::RhymeUnknown, pos, format!("rhyme character `{last}` is not in the rhyme table ({table})"));
    }
    let mut common: Option<Vec<usize>> = None;
    for ch in finals.iter().filter(|ch| idx.knows(**ch)) {
        let g = idx.groups_of(*ch);
        common = Some(match common {
            None => g.to_vec(),
            Some(c) => c.into_iter().filter(|x| g.contains(x)).collect(),
        });
    }
    let Some(common) = common else { return };
    let all = s(&finals);
    if common.is_empty() {
        o.push(true, Rule::Rhyme, pos, format!("rhyme characters `{all}` share no rhyme group"));
    } else if o.tonal() && !common.iter().any(|&g| idx.groups[g].level) {
        let names: Vec<&str> = common.iter().map(|&g| idx.groups[g].name.as_str()).collect();
        let msg = format!("rhyme characters `{all}` rhyme only in oblique groups ({})", names.join(", "));
        o.push(true, Rule::RhymeTone, pos, msg);
    } else if o.tonal() && prev.len() == 1 {
        // Checked once, with line 2 (the first rhyme line), which sets the rhyme.
        // 首句入韵: a first line that does not end on 仄 ends on the rhyme (a 平 ending off the
        // rhyme is neither of the two openings regulated verse allows). Line 1 may borrow a
        // neighbouring group (首句借邻韵: 东/冬, 支/微, 庚/青, …), which 词林正韵 merges: under 平水韵
        // it is checked against that table.
        // (词林正韵 splits a few 平水韵 groups, 灰 among them: either table's rhyme will do.)
        let joins = |table: &RhymeIndex, f: char| {
            let level = |c: char| table.groups_of(c).iter().copied().filter(|&g| table.groups[g].level).collect::<Vec<_>>();
            level(f).iter().any(|g| finals.iter().filter(|c| table.knows(**c)).all(|&c| level(c).contains(g)))
        };
        let first = prev.first().and_then(|l| l.body.last().copied()).filter(|&f| tone_of(f) == Some(Tone::Ping));
        if let Some(f) = first.filter(|&f| idx.knows(f)) {
            let near = (o.c.rhyme == RhymeTable::Pingshui).then(|| rhyme_index(RhymeTable::Cilin));
            if !joins(idx, f) && !near.is_some_and(|n| joins(n, f)) {
                let msg = format!("line 1 ends on 平 `{f}` but does not rhyme with `{all}` (首句入韵: end it on the rhyme or on 仄)");
                o.push(true, Rule::Rhyme, pos, msg);
            }
        }
    }
}
