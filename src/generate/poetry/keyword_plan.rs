//! The keyword planner behind [`super::keywords_fit`] and [`super::keyword_steer`]: an exact
//! placement test of the keywords not written yet over the rest of the current line and the
//! lines to come, and the schedule that spreads keywords over a poem.

use super::check::is_cjk;
use super::rules::Constraints;
use super::tables::to_simplified;

/// The simplified Chinese characters of a line (punctuation and anything else dropped).
pub(super) fn body(line: &str) -> Vec<char> {
    line.chars().filter(|c| is_cjk(*c)).map(to_simplified).collect()
}

/// Whether `needle` (non-empty) occurs in `hay`.
pub(super) fn contains(hay: &[char], needle: &[char]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// How many of `m` keywords should stand in lines `0..=k` of `n`: keyword j (0-based) is due
/// by line ⌈(j+1)·n/(m+1)⌉ (1-based), spreading them over the poem and leaving the last line
/// free when it can be (a keyword written early leaves the lines after it room to answer its
/// tones and rhyme).
pub(super) fn scheduled(m: usize, n: usize, k: usize) -> usize {
    (0..m).filter(|j| ((j + 1) * n).div_ceil(m + 1) <= k + 1).count()
}

/// What the last character of a line must be, as far as a keyword ending there is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Anything (line 1: it may or may not join the rhyme).
    Free,
    /// Not 平 (lines 3, 5, 7 under the tone rules).
    NotLevel,
    /// The rhyme: in the rhyme table, a level group under the tone rules, and sharing a group
    /// with the rhyme characters written so far.
    Rhyme,
}

/// A line as the planner sees it: its cells (`None`: free) and the rule for its end.
type Row = (Vec<Option<char>>, End);

/// The exact placement test over one poem's lines, after the lines written so far.
pub(super) struct Planner<'a> {
    c: &'a Constraints,
    keywords: &'a [Vec<char>],
    len: usize,
    lines: usize,
    heads: Vec<Option<char>>,
    /// Bodies of the lines written so far.
    written: Vec<Vec<char>>,
}

impl<'a> Planner<'a> {
    pub(super) fn new(c: &'a Constraints, keywords: &'a [Vec<char>], lines: &[&str]) -> Self {
        let heads = (0..c.form.lines()).map(|k| c.head(k)).collect();
        let written = lines.iter().map(|l| body(l)).collect();
        Planner { c, keywords, len: c.form.line_len(), lines: c.form.lines(), heads, written }
    }

    /// Indices of the keywords in neither the written lines nor the current line `cur`.
    pub(super) fn missing(&self, cur: &[char]) -> Vec<usize> {
        (0..self.keywords.len())
            .filter(|&i| !contains(cur, &self.keywords[i]) && !self.written.iter().any(|b| contains(b, &self.keywords[i])))
            .collect()
    }

    fn end(&self, k: usize) -> End {
        if k % 2 == 1 {
            End::Rhyme
        } else if k > 0 && self.c.strictness >= super::Strictness::Standard && !self.c.relax_keyword_tones {
            End::NotLevel
        } else {
            End::Free
        }
    }

    /// May a keyword put `ch` last in a line with end rule `end`? (A forced character there
    /// that the rhyme or the tail tone refuses would only be placed to be rejected.)
    fn end_ok(&self, end: End, ch: char) -> bool {
        match end {
            End::Free => true,
            End::NotLevel => super::tone_of(ch) != Some(super::Tone::Ping),
            End::Rhyme => {
                let idx = super::rhyme_index(self.c.rhyme);
                let tonal = self.c.strictness >= super::Strictness::Standard;
                let finals = self.written.iter().skip(1).step_by(2).filter_map(|b| b.last().copied()).filter(|&f| idx.knows(f));
                let mut groups: Vec<usize> = idx.groups_of(ch).iter().copied().filter(|&g| !tonal || idx.groups[g].level).collect();
                for f in finals {
                    groups.retain(|g| idx.groups_of(f).contains(g));
                }
                !groups.is_empty()
            }
        }
    }

    /// Do the keywords `missing` fit the rest of line `k` (written so far: `cur`; `closed`: it
    /// takes nothing more) and the empty lines after it? Dynamic programming over keyword
    /// subsets, line by line: which subsets can the lines so far hold?
    pub(super) fn fits(&self, k: usize, cur: &[char], closed: bool, missing: &[usize]) -> bool {
        let m = missing.len();
        if m == 0 {
            return true;
        }
        let full = (1usize << m) - 1;
        let mut reach = vec![false; full + 1];
        reach[0] = true;
        let mut rows: Vec<Row> = Vec::new();
        if !closed && k < self.lines && cur.len() < self.len {
            let mut cells: Vec<Option<char>> = cur.iter().map(|&ch| Some(ch)).collect();
            cells.resize(self.len, None);
            if cur.is_empty() {
                cells[0] = self.heads[k];
            }
            rows.push((cells, self.end(k)));
        }
        for j in k + 1..self.lines {
            let mut cells = vec![None; self.len];
            cells[0] = self.heads[j];
            rows.push((cells, self.end(j)));
        }
        // Lines with the same cells and end rule hold the same subsets: computed once each.
        let mut seen: Vec<(Row, Vec<bool>)> = Vec::new();
        for row in rows {
            let holds = match seen.iter().find(|(r, _)| *r == row) {
                Some((_, h)) => h.clone(),
                None => {
                    let h: Vec<bool> = (0..=full).map(|s| self.holds(&mut row.0.clone(), row.1, missing, s)).collect();
                    seen.push((row, h.clone()));
                    h
                }
            };
            let mut next = reach.clone();
            for used in (0..=full).filter(|&u| reach[u]) {
                // Every non-empty subset of the keywords not placed yet.
                let rest = full & !used;
                let mut sub = rest;
                while sub > 0 {
                    if holds[sub] {
                        next[used | sub] = true;
                    }
                    sub = (sub - 1) & rest;
                }
            }
            reach = next;
            if reach[full] {
                return true;
            }
        }
        reach[full]
    }

    /// Can one line with `cells` and end rule `end` hold every keyword of the subset `set`
    /// (bits over `missing`)?
    fn holds(&self, cells: &mut [Option<char>], end: End, missing: &[usize], set: usize) -> bool {
        let Some(bit) = (0..missing.len()).find(|b| set & (1 << b) != 0) else { return true };
        let w = &self.keywords[missing[bit]];
        if w.len() > cells.len() {
            return false;
        }
        let last = cells.len() - w.len();
        for p in 0..=last {
            if !w.iter().enumerate().all(|(i, &ch)| cells[p + i].is_none_or(|x| x == ch)) {
                continue;
            }
            // A character already there was judged with its line; one placed last must suit the end.
            if p == last && cells[cells.len() - 1].is_none() && !w.last().is_some_and(|&ch| self.end_ok(end, ch)) {
                continue;
            }
            let saved: Vec<Option<char>> = cells[p..p + w.len()].to_vec();
            for (i, &ch) in w.iter().enumerate() {
                cells[p + i] = Some(ch);
            }
            let ok = self.holds(cells, end, missing, set & !(1 << bit));
            cells[p..p + w.len()].copy_from_slice(&saved);
            if ok {
                return true;
            }
        }
        false
    }
}
