//! Embedded character tables: 平仄 per character, rhyme groups (平水韵, 词林正韵, 中华新韵) and a
//! traditional → simplified character map.
//!
//! All tables are compiled into the binary (`assets/poetry/`, see its `README.md` for sources and
//! licenses) and parsed once, lazily, on first use.

use std::collections::HashMap;
use std::sync::OnceLock;

use pinyin::ToPinyin;

use super::RhymeTable;

const WORD_TUNE: &str = include_str!("../../../assets/poetry/Word_Tune.json");
const PINGSHUI: &str = include_str!("../../../assets/poetry/Pingshui_Rhyme.json");
const CILIN: &str = include_str!("../../../assets/poetry/Cilin_Rhyme.json");
const XINYUN: &str = include_str!("../../../assets/poetry/Xinyun_Rhyme.json");
const T2S: &str = include_str!("../../../assets/poetry/t2s_chars.txt");

/// Level (平) or oblique (仄) tone of a character; `Either` for characters read both ways
/// (`多` in `Word_Tune.json`, e.g. 中 看 过) or with a neutral tone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tone {
    /// 平 — level tone.
    Ping,
    /// 仄 — oblique tone (上, 去, 入).
    Ze,
    /// Either reading is possible; never causes a 平仄 violation.
    Either,
}

impl Tone {
    /// `true` when both tones are determined and different.
    pub fn conflicts(self, other: Tone) -> bool {
        matches!((self, other), (Tone::Ping, Tone::Ze) | (Tone::Ze, Tone::Ping))
    }

    /// The opposite tone (`Either` stays `Either`).
    pub fn opposite(self) -> Tone {
        match self {
            Tone::Ping => Tone::Ze,
            Tone::Ze => Tone::Ping,
            Tone::Either => Tone::Either,
        }
    }

    /// The Chinese label: `平`, `仄` or `中` (either).
    pub fn label(self) -> char {
        match self {
            Tone::Ping => '平',
            Tone::Ze => '仄',
            Tone::Either => '中',
        }
    }
}

/// One rhyme group (韵部) of a rhyme table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RhymeGroup {
    /// Name, e.g. `上平声部/一东`, `第一部/平声`, `一麻/平`.
    pub name: String,
    /// Whether the group is a level-tone (平声) group.
    pub level: bool,
}

/// A parsed rhyme table: its groups and, per character, the indices of the groups holding it.
#[derive(Debug, Default)]
pub struct RhymeIndex {
    /// All groups, in table order.
    pub groups: Vec<RhymeGroup>,
    /// Character → indices into `groups` (sorted, deduplicated).
    pub by_char: HashMap<char, Vec<usize>>,
}

impl RhymeIndex {
    /// Group indices of `c` (empty when the table lacks the character). A traditional character
    /// the table lacks is looked up by its simplified form ([`to_simplified`]); a simplified
    /// character the table lists only in a traditional form has that form's groups.
    pub fn groups_of(&self, c: char) -> &[usize] {
        self.by_char.get(&c).or_else(|| self.by_char.get(&to_simplified(c))).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether the table knows `c` (or a traditional/simplified form of it, see
    /// [`RhymeIndex::groups_of`]).
    pub fn knows(&self, c: char) -> bool {
        !self.groups_of(c).is_empty()
    }

    fn add(&mut self, name: String, level: bool, chars: &[String]) {
        let id = self.groups.len();
        self.groups.push(RhymeGroup { name, level });
        for s in chars {
            for c in s.chars() {
                let v = self.by_char.entry(c).or_default();
                if !v.contains(&id) {
                    v.push(id);
                }
            }
        }
    }
}

type Nested = Vec<(String, Vec<(String, Vec<String>)>)>;

/// Parses `{outer: {inner: [chars]}}` keeping key order (serde_json maps are sorted otherwise).
fn parse_nested(src: &str) -> Nested {
    use serde::de::{Deserializer, MapAccess, Visitor};
    struct Ordered<T>(Vec<(String, T)>);
    impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Ordered<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<T>(std::marker::PhantomData<T>);
            impl<'de, T: serde::Deserialize<'de>> Visitor<'de> for V<T> {
                type Value = Ordered<T>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) = m.next_entry::<String, T>()? {
                        out.push((k, v));
                    }
                    Ok(Ordered(out))
                }
            }
            d.deserialize_map(V(std::marker::PhantomData))
        }
    }
    // The assets are fixed at compile time and covered by tests; an unparsable table is empty.
    let parsed: Ordered<Ordered<Vec<String>>> = serde_json::from_str(src).unwrap_or(Ordered(Vec::new()));
    parsed.0.into_iter().map(|(k, v)| (k, v.0)).collect()
}

fn build_index(table: RhymeTable) -> RhymeIndex {
    let mut idx = RhymeIndex::default();
    match table {
        RhymeTable::Pingshui => {
            for (tone, groups) in parse_nested(PINGSHUI) {
                let level = tone.contains("平");
                for (g, chars) in groups {
                    idx.add(format!("{tone}/{g}"), level, &chars);
                }
            }
        }
        RhymeTable::Cilin | RhymeTable::Xinyun => {
            let src = if table == RhymeTable::Cilin { CILIN } else { XINYUN };
            for (bu, tones) in parse_nested(src) {
                for (tone, chars) in tones {
                    let level = tone.starts_with('平');
                    idx.add(format!("{bu}/{tone}"), level, &chars);
                }
            }
        }
    }
    // The checker looks characters up simplified: an entry the table writes only traditional
    // (釐, 沈, …) also serves its simplified form (厘, 沉); a form the table lists itself keeps
    // its own groups.
    let mut extra: HashMap<char, Vec<usize>> = HashMap::new();
    for (&c, groups) in &idx.by_char {
        let s = to_simplified(c);
        if s != c && !idx.by_char.contains_key(&s) {
            extra.entry(s).or_default().extend(groups);
        }
    }
    for (s, mut groups) in extra {
        groups.sort_unstable();
        groups.dedup();
        idx.by_char.insert(s, groups);
    }
    idx
}

/// The parsed index of a rhyme table (built once per table).
pub fn rhyme_index(table: RhymeTable) -> &'static RhymeIndex {
    static P: OnceLock<RhymeIndex> = OnceLock::new();
    static C: OnceLock<RhymeIndex> = OnceLock::new();
    static X: OnceLock<RhymeIndex> = OnceLock::new();
    let cell = match table {
        RhymeTable::Pingshui => &P,
        RhymeTable::Cilin => &C,
        RhymeTable::Xinyun => &X,
    };
    cell.get_or_init(|| build_index(table))
}

fn tone_table() -> &'static HashMap<char, Tone> {
    static T: OnceLock<HashMap<char, Tone>> = OnceLock::new();
    T.get_or_init(|| {
        let raw: HashMap<String, String> = serde_json::from_str(WORD_TUNE).unwrap_or_default();
        raw.into_iter()
            .filter_map(|(k, v)| {
                let c = k.chars().next()?;
                let t = match v.as_str() {
                    "平" => Tone::Ping,
                    "仄" => Tone::Ze,
                    _ => Tone::Either,
                };
                Some((c, t))
            })
            .collect()
    })
}

fn t2s_table() -> &'static HashMap<char, char> {
    static T: OnceLock<HashMap<char, char>> = OnceLock::new();
    T.get_or_init(|| {
        T2S.lines()
            .filter_map(|l| {
                let mut it = l.chars();
                Some((it.next()?, it.next()?))
            })
            .collect()
    })
}

/// Maps a traditional character to its simplified form (identity for characters the map lacks).
pub fn to_simplified(c: char) -> char {
    t2s_table().get(&c).copied().unwrap_or(c)
}

/// Tone number (1–4, 5 = neutral) of the default modern reading, if the `pinyin` crate knows `c`.
pub fn modern_tone(c: char) -> Option<u8> {
    let p = c.to_pinyin()?;
    let s = p.with_tone_num_end();
    Some(match s.chars().last() {
        Some(d @ '1'..='4') => d as u8 - b'0',
        _ => 5,
    })
}

/// 平仄 of a character: `Word_Tune.json` (8,232 characters, 平水韵-based) first, then the modern
/// reading from the `pinyin` crate (tones 1, 2 → 平; 3, 4 → 仄; neutral → either).
/// Traditional characters are mapped to simplified first, even where the table lists the
/// traditional form itself: 沈 is read as 沉 (平), as the Tang poems mostly use it, not as the
/// table's 仄 surname reading (measured on the corpus labels: 98.41% agreement, 98.36% with the
/// table's own entries first). `None` for characters neither knows.
pub fn tone_of(c: char) -> Option<Tone> {
    let c = to_simplified(c);
    if let Some(t) = tone_table().get(&c) {
        return Some(*t);
    }
    Some(match modern_tone(c)? {
        1 | 2 => Tone::Ping,
        3 | 4 => Tone::Ze,
        _ => Tone::Either,
    })
}

/// Whether `Word_Tune.json` itself lists the character (no pinyin fallback).
pub fn in_tone_table(c: char) -> bool {
    tone_table().contains_key(&to_simplified(c))
}

/// Toneless pinyin of the default reading (`ü` written `v`), if known.
pub fn plain_pinyin(c: char) -> Option<String> {
    Some(c.to_pinyin()?.plain().replace('ü', "v"))
}

/// Pinyin of the default reading with the tone digit at the end (`ü` written `v`), if known.
pub fn toned_pinyin(c: char) -> Option<String> {
    Some(c.to_pinyin()?.with_tone_num_end().replace('ü', "v"))
}

/// The final (韵母) of the default reading, in pypinyin's strict `FINALS` spelling
/// (`you` → `iou`, `wei` → `uei`, `ju` → `v`, `gui` → `uei`, `lun` → `uen`).
pub fn final_of(c: char) -> Option<String> {
    let py = plain_pinyin(c)?;
    let (ini, rest) = split_initial(&py);
    let f = match ini {
        "y" => match rest {
            "i" | "in" | "ing" => rest.to_string(),
            "u" | "ue" | "uan" | "un" => format!("v{}", &rest[1..]),
            "ou" => "iou".to_string(),
            _ => format!("i{rest}"),
        },
        "w" => match rest {
            "u" => "u".to_string(),
            "ei" => "uei".to_string(),
            "en" => "uen".to_string(),
            _ => format!("u{rest}"),
        },
        "j" | "q" | "x" if rest.starts_with('u') => format!("v{}", &rest[1..]),
        _ => match rest {
            "iu" => "iou".to_string(),
            "ui" => "uei".to_string(),
            "un" => "uen".to_string(),
            _ => rest.to_string(),
        },
    };
    Some(f)
}

fn split_initial(py: &str) -> (&str, &str) {
    for ini in ["zh", "ch", "sh"] {
        if let Some(rest) = py.strip_prefix(ini) {
            return (ini, rest);
        }
    }
    match py.chars().next() {
        Some(c) if "bpmfdtnlgkhjqxrzcsyw".contains(c) && py.len() > 1 => py.split_at(1),
        _ => ("", py),
    }
}
