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
/// (`多` in `Word_Tune.json`, e.g. 中 看 过, and the others 平水韵 lists under both tones, e.g.
/// 重 长 行, see [`tone_of`]) or with a neutral tone.
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
                for (g, mut chars) in groups {
                    // A 平水韵 group is named after its first character (一东 → 东): the source
                    // drops 先 from 一先, the one group lacking its name character (先 then
                    // read only as the 去声 霰 xiàn, against 95% of its uses in the corpus).
                    if let Some(name) = g.chars().last().filter(|n| !chars.iter().any(|s| s.contains(*n))) {
                        chars.push(name.to_string());
                    }
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

/// Characters 平水韵 lists in both a level and an oblique group that keep the single 仄 of
/// `Word_Tune.json` (see [`build_tone_table`]): in the 36,487 Tang poems of the corpus their
/// level reading is not in use. Each has at least 100 contextual votes (at a position a tone
/// rule reads, the reading, 平 or 仄, that breaks fewer tone rules of its line and the next,
/// the other characters read as [`tone_of`] reads them) and the level reading wins at most 10%
/// of them: the noise level of ordinary single-tone characters (the 90th percentile of the share
/// they lose to the wrong tone, 1,932 characters with 30 votes or more, is 10.0%; the median
/// 4.1%). For comparison 只 loses 13% (102 votes), 听 32%, 重 50%, 长 77%, 行 90%.
/// `tests/tone_audit.rs` derives this list from the corpus again and checks it is this one.
const OBLIQUE_IN_USE: &[char] = &['与', '几', '暗', '卷', '句', '折', '罢', '种', '渐', '比', '厌', '了', '母', '咽', '澹', '垒', '恶'];

/// Whether 平水韵 lists `c` itself in both a level (平) and an oblique (仄) group.
fn in_both_tone_groups(idx: &RhymeIndex, c: char) -> bool {
    let groups = idx.by_char.get(&c).map(Vec::as_slice).unwrap_or(&[]);
    groups.iter().any(|&g| idx.groups[g].level) && groups.iter().any(|&g| !idx.groups[g].level)
}

/// Parses `Word_Tune.json` (`{字: 平|仄|多}`) and reads every character `pingshui` lists in both
/// a level and an oblique group as `Either`, except those of `keep`.
///
/// `Word_Tune.json` marks `多` exactly the 728 characters of 平水韵 that are in one level group
/// and **one** oblique group; the 157 in a level group and two or more oblique groups (重: 二冬,
/// 二肿, 二宋; 长: 七阳, 二十二养, 二十三漾; 行, 空, 离, 听, 醒, 宁, 强, 干, 泥, …) it marks 仄 only,
/// so 万重山, 长安, 行人 read 仄 and real regulated verse breaks 二四六 and 粘对 (李白《早发白帝城》
/// among them). They are read either way here, as the table's own `多` characters are, except
/// the 17 of [`OBLIQUE_IN_USE`]; so is 先 (一先 and 霰 once the rhyme index gives 一先 its name
/// character, see [`rhyme_index`]). That is 141 more `Either` entries (869 in all), 137 of them
/// read (沈 汎 纚 噞 are read as their simplified forms): 28,046 characters of the corpus (2.0%)
/// are read either way instead of 仄; the corpus labels (`strains`) say 平 for 17,021 of them and
/// 仄 for 8,568, and their contextual votes go 8,536 to the level reading, 3,284 to the oblique.
///
/// Measured by `tests/tone_audit.rs`: `check_poem` (平水韵, standard rules) on all 36,487 poems of
/// the Tang corpus (`shared/data/poetry/tang_jintishi.jsonl`, 4 or 8 equal lines of 5 or 7
/// characters, so some 古绝/古风 too) and on the 31,480 of them whose even lines rhyme in one
/// level group (no `Rhyme`, `RhymeTone` or `RhymeUnknown` violation: regulated verse, as far as
/// the rhyme shows), poems flagged per rule, before → after:
///
/// | rule | all 36,487 poems | 31,480 level-rhymed poems |
/// |---|---|---|
/// | `Alternation` (二四六) | 13,282 → 9,228 | 10,145 → 6,446 |
/// | `Dui` (对) | 13,325 → 9,285 | 10,189 → 6,507 |
/// | `Nian` (粘) | 11,822 → 9,303 | 8,926 → 6,639 |
/// | `TripleTail` (三平尾/三仄尾) | 7,622 → 4,715 | 5,959 → 3,373 |
/// | `NonRhymeEnd` | 2,554 → 2,554 | 402 → 402 |
/// | any tone rule | 19,049 → 13,651 | 15,128 → 10,088 |
/// | no violation at all | 15,792 → 20,648 | |
///
/// (`Rhyme` 2,203 → 2,163 and `RhymeTone` 2,387 → 2,371 by 先.) Before, 行 空 长 离 重 先 干 were
/// the characters most often at a broken tone rule (4,458, 2,986, 2,731, 2,080, 1,648, 902, 707
/// times, against 1,840 for 人, the most frequent ordinary one); after, only ordinary frequent
/// characters (人 山 云 风 日) lead. Agreement with the corpus labels on the characters read with
/// one tone: 98.40% (1,183,847 / 1,203,102) → 99.81% (1,175,279 / 1,177,513); either or unknown:
/// 11.9% → 13.7% of the labelled characters.
fn build_tone_table(word_tune: &str, pingshui: &RhymeIndex, keep: &[char]) -> HashMap<char, Tone> {
    let raw: HashMap<String, String> = serde_json::from_str(word_tune).unwrap_or_default();
    raw.into_iter()
        .filter_map(|(k, v)| {
            let c = k.chars().next()?;
            let t = match v.as_str() {
                _ if in_both_tone_groups(pingshui, c) && !keep.contains(&c) => Tone::Either,
                "平" => Tone::Ping,
                "仄" => Tone::Ze,
                _ => Tone::Either,
            };
            Some((c, t))
        })
        .collect()
}

fn tone_table() -> &'static HashMap<char, Tone> {
    static T: OnceLock<HashMap<char, Tone>> = OnceLock::new();
    T.get_or_init(|| build_tone_table(WORD_TUNE, rhyme_index(RhymeTable::Pingshui), OBLIQUE_IN_USE))
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
/// table's 仄 surname reading (measured on the corpus labels, before the polyphones were read
/// either way: 98.41% agreement, 98.36% with the table's own entries first). A character
/// 平水韵 lists in both a level and an oblique group is `Either` even where `Word_Tune.json` gives
/// it one tone, unless the Tang poems use only its oblique reading (the rule and its measurements
/// on the Tang corpus: `build_tone_table` in `tables.rs`).
/// `None` for characters neither knows.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A small 平水韵: one level group and two oblique groups.
    fn index(entries: &[(char, &[usize])]) -> RhymeIndex {
        let mut idx = RhymeIndex::default();
        for (name, level) in [("上平声部/二冬", true), ("上声部/二肿", false), ("去声部/二宋", false)] {
            idx.groups.push(RhymeGroup { name: name.to_string(), level });
        }
        for (c, g) in entries {
            idx.by_char.insert(*c, g.to_vec());
        }
        idx
    }

    #[test]
    fn a_character_in_level_and_oblique_groups_reads_either_way() {
        let idx = index(&[('重', &[0, 1, 2]), ('中', &[0, 2]), ('冬', &[0]), ('肿', &[1]), ('与', &[0, 1, 2]), ('宋', &[1, 2])]);
        let json = r#"{"重": "仄", "中": "多", "冬": "平", "肿": "仄", "与": "仄", "宋": "仄", "孤": "平"}"#;
        let t = build_tone_table(json, &idx, &['与']);
        // Two oblique groups and a level one: 仄 in the table, either way here.
        assert_eq!(t[&'重'], Tone::Either);
        // The table's own 多 stays either way; single-tone characters keep their tone.
        assert_eq!(t[&'中'], Tone::Either);
        assert_eq!((t[&'冬'], t[&'肿'], t[&'宋']), (Tone::Ping, Tone::Ze, Tone::Ze));
        // A kept character and one the rhyme table lacks keep the table's tone.
        assert_eq!((t[&'与'], t[&'孤']), (Tone::Ze, Tone::Ping));
        assert_eq!(build_tone_table(json, &idx, &[])[&'与'], Tone::Either);
        assert_eq!(t.len(), 7);
    }

    #[test]
    fn the_shipped_tables() {
        let ps = rhyme_index(RhymeTable::Pingshui);
        // 先 joins its own group 一先 (the source lists it only under 去声 十七霰).
        let names: Vec<&str> = ps.groups_of('先').iter().map(|&g| ps.groups[g].name.as_str()).collect();
        assert_eq!(names, ["下平声部/一先", "去声部/十七霰"]);
        // Every group holds its name character.
        for (g, group) in ps.groups.iter().enumerate() {
            let name = group.name.chars().last().unwrap_or_default();
            assert!(ps.groups_of(name).contains(&g), "{}", group.name);
        }
        let t = tone_table();
        let count = |x: Tone| t.values().filter(|&&v| v == x).count();
        // 728 `多` + 141 (158 characters in both tones that the table gives one, less the 17 kept).
        assert_eq!((count(Tone::Either), count(Tone::Ping), count(Tone::Ze)), (869, 3_001, 4_362));
        for c in ['重', '长', '行', '空', '离', '听', '先', '干', '醒'] {
            assert_eq!(tone_of(c), Some(Tone::Either), "{c}");
        }
        for &c in OBLIQUE_IN_USE {
            assert!(in_both_tone_groups(ps, c) && tone_of(c) == Some(Tone::Ze), "{c}");
        }
        assert_eq!((tone_of('东'), tone_of('白'), tone_of('中')), (Some(Tone::Ping), Some(Tone::Ze), Some(Tone::Either)));
    }
}
