//! The soft format score of the official generator (`check2com`, `check2compare`, `checkrhy`).

use super::check::split_lines;
use super::tables::{final_of, modern_tone, plain_pinyin, tone_of, toned_pinyin, Tone};
use crate::{Error, Result};

/// Loose final groups of `check2compare` (different finals in one group still earn a bonus).
const FINAL_GROUPS: &[&[&str]] = &[
    &["a", "ia", "ua"],
    &["ai", "uai", "ei", "ui", "uei"],
    &["an", "uan", "ian", "ie", "ue", "ve"],
    &["ou", "iu", "iou"],
    &["ang", "iang", "uang"],
    &["ao", "iao"],
    &["e", "o", "uo"],
    &["en", "un", "uen", "ong", "iong", "in", "ing", "er"],
];

/// 1 平, 2 仄, 0 neutral. A character the table gives both tones (多音, 12% of the corpus)
/// takes its default modern reading, as pypinyin gives the official code one reading per
/// character: scored as 0 it would count as a mismatch against every other tone.
fn pz(c: char) -> u8 {
    match tone_of(c) {
        Some(Tone::Ping) => 1,
        Some(Tone::Ze) => 2,
        Some(Tone::Either) => match modern_tone(c) {
            Some(1 | 2) => 1,
            Some(3 | 4) => 2,
            _ => 0,
        },
        None => 0,
    }
}

/// `checkrhy(s, t, imp, req)`: tonal mismatch penalty (≤ 0) of line `s` against line `t`
/// (bodies, punctuation ignored). Per position: `a = pz(s_i)`, `b = pz(t_i)` (1 平, 2 仄,
/// 0 neutral; a 多音 character by its default reading); `req` flips `a` (so equal tones are wanted); if `a + b ≠ 3` add 0.35, +0.35 at
/// odd positions, +0.65 at the last; `d = −5·imp·d/len(t)`; minus `7/len(s)` for every pair of
/// positions `j ≥ i + 2` with the same toneless syllable. Deviation: `pz` uses the 平仄 table
/// ([`tone_of`], 98 % agreement) instead of pypinyin + the hand-made 入声 list (93 %).
pub fn tone_mismatch(s: &str, t: &str, imp: f64, req: bool) -> f64 {
    let sc: Vec<char> = s.chars().filter(|c| super::check::is_cjk(*c)).collect();
    let tc: Vec<char> = t.chars().filter(|c| super::check::is_cjk(*c)).collect();
    if tc.is_empty() || sc.is_empty() {
        return 0.0;
    }
    let mut d = 0.0;
    for (i, (&x, &y)) in sc.iter().zip(&tc).enumerate() {
        let mut a = pz(x);
        let b = pz(y);
        if req {
            a = 3 - a;
        }
        if a + b != 3 {
            d += 0.35;
            if i % 2 == 1 {
                d += 0.35;
            }
            if i + 1 == tc.len() {
                d += 0.65;
            }
        }
    }
    let mut d = -5.0 * imp * d / tc.len() as f64;
    let py: Vec<Option<String>> = sc.iter().map(|&c| plain_pinyin(c)).collect();
    for i in 0..py.len() {
        for j in i + 2..py.len() {
            if py[i].is_some() && py[i] == py[j] {
                d -= 7.0 / sc.len() as f64;
            }
        }
    }
    d
}

fn bigrams(chars: &[char]) -> Vec<(char, char)> {
    chars.windows(2).map(|w| (w[0], w[1])).collect()
}

/// Soft format score (spec §3.5, `check2com`) of `line` as line n = `prev_lines.len() + 1`
/// (n ≥ 3), given the earlier lines with their punctuation. Higher is better:
/// `r + t + imp − 3·#{2-grams of the line found in the poem so far} − 75·#{of those with
/// punctuation}`, with the rhyme term `r` against line n−2 and the tone term `t` against line
/// n−2 (odd n, same pattern) or n−1 (even n, opposite pattern).
///
/// Each entry of `prev_lines` is one line with its end punctuation (`["白日依山尽，",
/// "黄河入海流。"]`, not `["白日依山尽，黄河入海流。"]`), and `line` is one line, with or without
/// its punctuation. `Err` when n < 3, when an entry is not exactly one line (saying how many it
/// holds), and when a line has non-Chinese characters.
pub fn format_score(prev_lines: &[&str], line: &str) -> Result<f64> {
    let mut prev = Vec::with_capacity(prev_lines.len());
    for (j, l) in prev_lines.iter().enumerate() {
        match split_lines(l)?.as_slice() {
            [one] if one.punct.is_some() => prev.push(one.clone()),
            [_] => return Err(Error::input(format!("format_score: earlier line {} `{l}` has no end punctuation (， or 。)", j + 1))),
            many => {
                return Err(Error::input(format!(
                    "format_score: earlier line {} `{l}` holds {} lines; give each line as a separate string with its punctuation",
                    j + 1,
                    many.len()
                )))
            }
        }
    }
    if prev.len() < 2 {
        return Err(Error::input(format!(
            "format_score scores lines 3 and later: it needs at least two earlier lines, got {}",
            prev.len()
        )));
    }
    let cur = match split_lines(line)?.as_slice() {
        [one] => one.clone(),
        many => {
            return Err(Error::input(format!("format_score: the scored line `{line}` holds {} lines; give one line", many.len())));
        }
    };
    let poem: String = prev_lines.concat();
    let n = prev.len() + 1;
    let imp = if n % 2 == 0 { 2.5 } else { 1.0 };
    let a = &cur.body;
    let b = &prev[n - 3].body;
    let num = a.iter().zip(b).filter(|(x, y)| x == y).count() as f64;
    let mut r = 0.5 - 2.5 * num * num;
    if let (Some(&la), Some(&lb)) = (a.last(), b.last()) {
        let (f1, f2) = (final_of(la), final_of(lb));
        if f1 != f2 || la == lb {
            r -= 0.6 * imp;
        }
        if let (Some(f1), Some(f2)) = (&f1, &f2) {
            let grouped = FINAL_GROUPS.iter().any(|g| g.contains(&f1.as_str()) && g.contains(&f2.as_str()));
            if f1 != f2 && la != lb && grouped {
                r += imp;
            }
            if f1 == f2 && toned_pinyin(la) != toned_pinyin(lb) {
                r += imp;
            }
        }
    }
    let a_s: String = a.iter().collect();
    let t = if n % 2 == 1 {
        tone_mismatch(&a_s, &b.iter().collect::<String>(), 1.5, true)
    } else {
        tone_mismatch(&a_s, &prev[n - 2].body.iter().collect::<String>(), 2.5, false)
    };
    // 2-grams of the line (with its punctuation) against the poem so far (with punctuation).
    let poem_chars: Vec<char> = poem.chars().filter(|c| !c.is_whitespace()).collect();
    let mut full = a.clone();
    full.extend(cur.punct);
    let seen = bigrams(&poem_chars.iter().map(|&c| super::to_simplified(c)).collect::<Vec<_>>());
    let mut pen = 0.0;
    for g in bigrams(&full) {
        if seen.contains(&g) {
            pen += 3.0;
            if !super::check::is_cjk(g.0) || !super::check::is_cjk(g.1) {
                pen += 75.0;
            }
        }
    }
    Ok(r + t + imp - pen)
}
