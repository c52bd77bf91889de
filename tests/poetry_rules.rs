//! Rules of regulated verse: table accuracy on real Tang poems, one crafted violation per hard
//! rule, acrostics, traditional input, incremental line checks and bad input.

use wenhui::generate::poetry::{
    check_line, check_poem, format_score, rhyme_index, tone_of, Constraints, Form, LineStatus, RhymeTable, Rule, Strictness, Tone,
};

const DENG: &str = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。";
const DENG_T: &str = "白日依山盡，黃河入海流。欲窮千里目，更上一層樓。";

struct Poem {
    form: Form,
    text: String,
    text_t: String,
    strains: String,
}

fn sample() -> Vec<Poem> {
    let src = include_str!("fixtures/poetry-rules-sample.jsonl");
    src.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let get = |k: &str| v[k].as_str().unwrap().to_string();
            Poem { form: get("form").parse().unwrap(), text: get("text"), text_t: get("text_t"), strains: get("strains") }
        })
        .collect()
}

fn wujue() -> Constraints {
    Constraints::new(Form::WuJue)
}

/// `DENG` with line `k` (0-based) replaced.
fn deng_with(k: usize, line: &str) -> String {
    let mut l: Vec<String> = ["白日依山尽，", "黄河入海流。", "欲穷千里目，", "更上一层楼。"].iter().map(|s| s.to_string()).collect();
    l[k] = line.to_string();
    l.concat()
}

fn verdict(text: &str, c: &Constraints) -> wenhui::generate::poetry::Verdict {
    check_poem(text, c).unwrap()
}

#[test]
fn tone_table_agrees_with_strains() {
    let (mut total, mut agree, mut either, mut fallback) = (0usize, 0usize, 0usize, 0usize);
    for p in sample() {
        let t: Vec<char> = p.text.chars().collect();
        let s: Vec<char> = p.strains.chars().collect();
        if t.len() != s.len() {
            continue;
        }
        for (&c, &lab) in t.iter().zip(&s) {
            let want = match lab {
                '平' => Tone::Ping,
                '仄' => Tone::Ze,
                _ => continue,
            };
            if !wenhui::generate::poetry::in_tone_table(c) {
                fallback += 1;
            }
            match tone_of(c) {
                Some(Tone::Either) | None => either += 1,
                Some(x) if x == want => agree += 1,
                _ => {}
            }
            total += 1;
        }
    }
    let determined = total - either;
    let rate = agree as f64 / determined as f64;
    println!(
        "tone agreement: {agree}/{determined} = {:.4} (determined); {either} of {total} either/unknown; \
         {fallback} looked up via pinyin; counting either as agreeing: {:.4}",
        rate,
        (agree + either) as f64 / total as f64
    );
    // Measured 64,582 / 64,700 = 0.9982; 10,299 of 74,999 either/unknown (13.7%). Before the
    // characters 平水韵 lists under both tones were read either way (`tables.rs`): 65,050 / 66,098
    // = 0.9841, 8,901 either/unknown (11.9%).
    assert!(rate >= 0.998, "tone agreement {rate}");
    assert!(either as f64 / (total as f64) < 0.15);
}

#[test]
fn rhyme_acceptance_on_tang_poems() {
    let (mut n, mut rhyme_ok, mut level_ok, mut covered, mut covered_ok, mut all_ok) = (0, 0, 0, 0, 0, 0);
    let mut by_rule = std::collections::BTreeMap::new();
    for p in sample() {
        let mut c = Constraints::new(p.form);
        c.strictness = Strictness::Loose;
        let v = verdict(&p.text, &c);
        n += 1;
        let ok = !v.violates(Rule::Rhyme);
        rhyme_ok += ok as usize;
        if !v.violates(Rule::RhymeUnknown) {
            covered += 1;
            covered_ok += ok as usize;
        }
        c.strictness = Strictness::Standard;
        let v = verdict(&p.text, &c);
        level_ok += (!v.violates(Rule::Rhyme) && !v.violates(Rule::RhymeTone)) as usize;
        all_ok += v.is_ok() as usize;
        let mut rules: Vec<Rule> = v.violations.iter().map(|x| x.rule).collect();
        rules.dedup();
        for r in rules {
            *by_rule.entry(format!("{r:?}")).or_insert(0usize) += 1;
        }
    }
    println!("poems rejected per rule (Standard): {by_rule:?}");
    let rate = rhyme_ok as f64 / n as f64;
    println!(
        "平水韵 rhyme accepted: {rhyme_ok}/{n} = {rate:.4}; with all rhyme chars in the table: \
         {covered_ok}/{covered} = {:.4}; level-tone rhyme: {level_ok}/{n} = {:.4}; every Standard rule: {all_ok}/{n} = {:.4}",
        covered_ok as f64 / covered as f64,
        level_ok as f64 / n as f64,
        all_ok as f64 / n as f64
    );
    assert!(rate >= RHYME_ACCEPT_MIN, "rhyme acceptance {rate}");
    for table in [RhymeTable::Cilin, RhymeTable::Xinyun] {
        let ok = sample()
            .iter()
            .filter(|p| {
                let c = Constraints { rhyme: table, strictness: Strictness::Loose, ..Constraints::new(p.form) };
                !verdict(&p.text, &c).violates(Rule::Rhyme)
            })
            .count();
        println!("{table:?} rhyme accepted: {ok}/{n}");
        // Measured: 词林正韵 1,874 / 2,000; 中华新韵 (modern finals) 1,508 / 2,000.
        let min = if table == RhymeTable::Cilin { 0.93 } else { 0.75 };
        assert!(ok as f64 >= min * n as f64, "{table:?}: {ok}/{n}");
    }
}

/// Measured on the fixture: 1,899 / 2,000 = 0.9495 (1,897 before 先 joined its group 一先; the
/// full corpus: 94.5 % of covered poems).
const RHYME_ACCEPT_MIN: f64 = 0.948;

#[test]
fn real_jueju_passes_strict() {
    let mut c = wujue();
    c.strictness = Strictness::Strict;
    let v = verdict(DENG, &c);
    assert!(v.is_ok() && v.warnings.is_empty(), "{v}");
    for table in [RhymeTable::Cilin, RhymeTable::Xinyun] {
        c.rhyme = table;
        assert!(verdict(DENG, &c).is_ok(), "{table:?}");
    }
}

#[test]
fn each_hard_rule_rejects_a_crafted_poem() {
    let c = wujue();
    let cases: &[(Rule, String)] = &[
        (Rule::LineCount, "白日依山尽，黄河入海流。".to_string()),
        (Rule::LineLength, deng_with(0, "白日依山尽了，")),
        (Rule::Punctuation, deng_with(0, "白日依山尽。")),
        (Rule::Rhyme, deng_with(3, "更上一层台。")),
        (Rule::Alternation, deng_with(0, "白日依水尽，")),
        (Rule::Dui, deng_with(1, "黄海入河流。")),
        (Rule::Nian, deng_with(2, "欲去千里目，")),
        (Rule::TripleTail, deng_with(1, "黄河无声流。")),
        (Rule::NonRhymeEnd, deng_with(2, "欲穷千里眸，")),
        (Rule::RepeatedLine, deng_with(2, "白日依山尽，")),
        (Rule::RepeatedTrigram, deng_with(2, "欲穷依山尽，")),
        (Rule::RepeatedBigram, deng_with(0, "白日白日尽，")),
        (Rule::SamePosition, deng_with(1, "黄日入海流。")),
        (Rule::Banned, deng_with(0, "白日的山尽，")),
        (Rule::RhymeUnknown, deng_with(3, "更上一层疎。")),
        (Rule::ToneUnknown, deng_with(0, "白兙依山尽，")),
    ];
    for (rule, text) in cases {
        let v = verdict(text, &c);
        assert!(v.violates(*rule), "{rule:?} not found in `{text}`:\n{v}");
        let hit = v.violations.iter().find(|x| x.rule == *rule).unwrap();
        assert!(!hit.message.is_empty());
    }
    // 仄 rhyme (柳宗元《江雪》): a rhyme group, but not a level one.
    let jiangxue = "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。";
    assert!(verdict(jiangxue, &c).violates(Rule::RhymeTone));
    let loose = Constraints { strictness: Strictness::Loose, ..wujue() };
    assert!(verdict(jiangxue, &loose).is_ok(), "{}", verdict(jiangxue, &loose));
    // 孤平: a warning by default, an error when strict.
    let guping = deng_with(1, "万河入海流。");
    let v = verdict(&guping, &c);
    assert!(v.warns(Rule::GuPing) && !v.violates(Rule::GuPing), "{v}");
    let strict = Constraints { strictness: Strictness::Strict, ..wujue() };
    assert!(verdict(&guping, &strict).violates(Rule::GuPing));
    // Character limit (静夜思 uses 明, 头 twice).
    let jys = "床前明月光，疑是地上霜。举头望明月，低头思故乡。";
    let lim = Constraints { max_char_repeats: Some(1), strictness: Strictness::Loose, ..wujue() };
    let v = verdict(jys, &lim);
    assert!(v.violates(Rule::CharLimit), "{v}");
    assert_eq!(v.violations.iter().find(|x| x.rule == Rule::CharLimit).unwrap().line, 2);
    assert!(verdict(DENG, &lim).is_ok());
    // 静夜思 is a 古绝: 头 at the same position in lines 3 and 4 (also 对 broken there).
    let v = verdict(jys, &c);
    assert!(v.violates(Rule::SamePosition) && v.violates(Rule::Dui), "{v}");
    // Lǜshi shape.
    assert!(verdict(DENG, &Constraints::new(Form::WuLv)).violates(Rule::LineCount));
    assert!(verdict(DENG, &Constraints::new(Form::QiJue)).violates(Rule::LineLength));
}

#[test]
fn violation_locations() {
    let v = verdict(&deng_with(0, "白日依水尽，"), &wujue());
    let a = v.violations.iter().find(|x| x.rule == Rule::Alternation).unwrap();
    assert_eq!((a.line, a.pos), (0, Some(3)));
    let v = verdict(&deng_with(3, "更上一层台。"), &wujue());
    let r = v.violations.iter().find(|x| x.rule == Rule::Rhyme).unwrap();
    assert_eq!((r.line, r.pos), (3, Some(4)));
    assert!(r.message.contains("流台"), "{}", r.message);
}

#[test]
fn characters_the_tables_lack_are_errors_where_a_rule_reads_them() {
    // 疎 (a variant of 疏 the traditional map does not fold) is in no rhyme table: at a rhyme
    // position it is an error at every strictness and with every table, never a mere warning.
    let text = deng_with(3, "更上一层疎。");
    for strictness in [Strictness::Loose, Strictness::Standard, Strictness::Strict] {
        for rhyme in [RhymeTable::Pingshui, RhymeTable::Cilin, RhymeTable::Xinyun] {
            let v = verdict(&text, &Constraints { strictness, rhyme, ..wujue() });
            let r = v.violations.iter().find(|x| x.rule == Rule::RhymeUnknown).unwrap_or_else(|| panic!("{strictness:?} {rhyme:?}: {v}"));
            assert_eq!((r.line, r.pos), (3, Some(4)));
            assert!(r.message.contains('疎') && !v.warns(Rule::RhymeUnknown) && !v.is_ok(), "{v}");
        }
    }
    // The sampler's incremental filter rejects it as well; a line that need not rhyme may end on it.
    let p = ["白日依山尽，", "黄河入海流。", "欲穷千里目，"];
    let lv = check_line(&p, "更上一层疎。", &wujue()).unwrap();
    assert_eq!(lv.status, LineStatus::Rejected);
    assert!(lv.verdict.violates(Rule::RhymeUnknown));
    assert!(!verdict(&deng_with(0, "白日依山疎，"), &wujue()).violates(Rule::RhymeUnknown));
    // A table entry written traditional serves its simplified form: 平水韵 lists 釐, not 厘.
    let ps = rhyme_index(RhymeTable::Pingshui);
    assert!(!ps.groups_of('厘').is_empty());
    assert_eq!(ps.groups_of('厘'), ps.groups_of('釐'));
    assert!(!verdict(&deng_with(3, "更上一层厘。"), &wujue()).violates(Rule::RhymeUnknown));
    // 兙 has no 平仄 (neither the tone table nor pinyin knows it): an error where a tone rule
    // reads the tone (the 2nd character), but not at the free 1st one, nor under Loose.
    assert_eq!(tone_of('兙'), None);
    let v = verdict(&deng_with(0, "白兙依山尽，"), &wujue());
    let t = v.violations.iter().find(|x| x.rule == Rule::ToneUnknown).unwrap_or_else(|| panic!("{v}"));
    assert_eq!((t.line, t.pos), (0, Some(1)));
    let loose = Constraints { strictness: Strictness::Loose, ..wujue() };
    assert!(verdict(&deng_with(0, "白兙依山尽，"), &loose).is_ok());
    let first = deng_with(0, "兙日依山尽，");
    assert!(verdict(&first, &wujue()).is_ok(), "{}", verdict(&first, &wujue()));
    // Strict reads the 1st character of a 5-character line for 孤平, unless it is an acrostic head.
    let strict = Constraints { strictness: Strictness::Strict, ..wujue() };
    assert!(verdict(&first, &strict).violates(Rule::ToneUnknown));
    let strict_head = Constraints { strictness: Strictness::Strict, ..Constraints::parse("五绝", "pingshui", "兙黄欲更").unwrap() };
    assert!(!verdict(&first, &strict_head).violates(Rule::ToneUnknown));
}

#[test]
fn acrostic_heads() {
    let c = Constraints::parse("五绝", "pingshui", "白黄欲更").unwrap();
    assert!(verdict(DENG, &c).is_ok());
    let c = Constraints::parse("五绝", "pingshui", "白黄欲上").unwrap();
    let v = verdict(DENG, &c);
    let a = v.violations.iter().find(|x| x.rule == Rule::Acrostic).unwrap();
    assert_eq!((a.line, a.pos), (3, Some(0)));
    // Relaxed at the head position: same first character as the previous line, banned head.
    let text = deng_with(1, "白河入海流。");
    assert!(verdict(&text, &wujue()).violates(Rule::SamePosition));
    let c = Constraints::parse("五绝", "pingshui", "白白欲更").unwrap();
    assert!(verdict(&text, &c).is_ok(), "{}", verdict(&text, &c));
    let text = deng_with(0, "的日依山尽，");
    assert!(verdict(&text, &wujue()).violates(Rule::Banned));
    let c = Constraints::parse("五绝", "pingshui", "的黄欲更").unwrap();
    assert!(!verdict(&text, &c).violates(Rule::Banned));
    // Incremental: the first character must be the head.
    let c = Constraints::parse("五绝", "pingshui", "白黄欲更").unwrap();
    assert_eq!(check_line(&["白日依山尽，"], "河", &c).unwrap().status, LineStatus::Rejected);
    assert_eq!(check_line(&["白日依山尽，"], "黄", &c).unwrap().status, LineStatus::Incomplete);
    // Traditional heads.
    let c = Constraints::parse("五絕", "平水韻", "白黃欲更").unwrap();
    assert!(verdict(DENG_T, &c).is_ok());
}

#[test]
fn traditional_input_gives_the_same_verdict() {
    assert_eq!(verdict(DENG, &wujue()), verdict(DENG_T, &wujue()));
    let bad = deng_with(3, "更上一层台。");
    let bad_t = "白日依山盡，黃河入海流。欲窮千里目，更上一層臺。";
    assert_eq!(verdict(&bad, &wujue()), verdict(bad_t, &wujue()));
    let (mut same, mut n) = (0, 0);
    for p in sample() {
        let c = Constraints::new(p.form);
        n += 1;
        same += (verdict(&p.text, &c) == verdict(&p.text_t, &c)) as usize;
    }
    println!("traditional vs simplified verdicts identical: {same}/{n}");
    assert!(same as f64 >= 0.99 * n as f64, "{same}/{n}");
}

#[test]
fn incremental_line_check() {
    let c = wujue();
    let st = |prefix: &[&str], cand: &str| check_line(prefix, cand, &c).unwrap().status;
    assert_eq!(st(&[], ""), LineStatus::Incomplete);
    assert_eq!(st(&[], "白日"), LineStatus::Incomplete);
    assert_eq!(st(&[], "白日依山尽，"), LineStatus::Complete);
    assert_eq!(st(&[], "白日依山尽。"), LineStatus::Rejected);
    assert_eq!(st(&[], "白日依山尽好"), LineStatus::Rejected);
    assert_eq!(st(&[], "白日a"), LineStatus::Rejected);
    assert_eq!(st(&[], "白，日"), LineStatus::Rejected);
    assert_eq!(st(&["白日依山尽，"], "黄河入海流。"), LineStatus::Complete);
    // 对 broken at the 2nd character: pruned before the line is finished.
    let lv = check_line(&["白日依山尽，"], "黄海", &c).unwrap();
    assert_eq!(lv.status, LineStatus::Rejected);
    assert_eq!(lv.verdict.violations[0].rule, Rule::Dui);
    // A 仄 final on the first rhyming line.
    let lv = check_line(&["白日依山尽，"], "黄河入海去。", &c).unwrap();
    assert!(lv.verdict.violates(Rule::RhymeTone), "{}", lv.verdict);
    let p = ["白日依山尽，", "黄河入海流。", "欲穷千里目，"];
    assert_eq!(st(&p, "更上一层楼。"), LineStatus::Complete);
    assert_eq!(st(&p, "更上一层台。"), LineStatus::Rejected);
    let full = ["白日依山尽，", "黄河入海流。", "欲穷千里目，", "更上一层楼。"];
    assert_eq!(st(&full, "白"), LineStatus::Rejected);
    assert!(check_line(&["white day，"], "黄", &c).is_err());
    assert!(check_line(&["白日依山尽"], "黄", &c).is_err());
    assert!(check_line(&["白日依山尽，黄河入海流。"], "欲", &c).is_err());
    assert!(check_line(&[""], "黄", &c).is_err());
    // check_poem and check_line agree on real poems.
    for p in sample().into_iter().take(300) {
        let c = Constraints::new(p.form);
        let whole = check_poem(&p.text, &c).unwrap().is_ok();
        let lines: Vec<String> = split_keep(&p.text);
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let inc = (0..refs.len()).all(|k| check_line(&refs[..k], refs[k], &c).unwrap().status == LineStatus::Complete);
        assert_eq!(whole, inc && refs.len() == p.form.lines(), "{}", p.text);
    }
}

fn split_keep(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        cur.push(ch);
        if "，。？！；".contains(ch) {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

#[test]
fn soft_format_score() {
    let p = ["白日依山尽，", "黄河入海流。", "欲穷千里目，"];
    let good = format_score(&p, "更上一层楼。").unwrap();
    let off = format_score(&p, "更上一层山。").unwrap();
    assert!((good - off - 2.5).abs() < 1e-9, "{good} {off}");
    // Reusing a 2-gram of the poem costs 3 (+75 with punctuation).
    let reuse = format_score(&p, "更上千里楼。").unwrap();
    assert!(reuse < good - 2.9, "{reuse} {good}");
    assert!(format_score(&p[..1], "黄河入海流。").is_err());
    assert!(format_score(&p, "abc").is_err());
}

#[test]
fn tables_and_names() {
    assert_eq!(tone_of('东'), Some(Tone::Ping));
    assert_eq!(tone_of('白'), Some(Tone::Ze));
    assert_eq!(tone_of('中'), Some(Tone::Either));
    assert_eq!(tone_of('東'), Some(Tone::Ping));
    let ps = rhyme_index(RhymeTable::Pingshui);
    assert_eq!(ps.groups.len(), 105);
    let common: Vec<_> = ps.groups_of('流').iter().filter(|g| ps.groups_of('楼').contains(g)).collect();
    assert_eq!(common.len(), 1);
    assert!(ps.groups[*common[0]].name.ends_with("十一尤") && ps.groups[*common[0]].level);
    assert!(!rhyme_index(RhymeTable::Cilin).groups.is_empty());
    assert_eq!(rhyme_index(RhymeTable::Xinyun).groups.len(), 28);
    assert_eq!("七律".parse::<Form>().unwrap(), Form::QiLv);
    assert_eq!("qijue".parse::<Form>().unwrap().line_len(), 7);
    assert_eq!("中华新韵".parse::<RhymeTable>().unwrap(), RhymeTable::Xinyun);
}

#[test]
fn bad_input_is_an_error() {
    let c = wujue();
    let msg = |r: Result<(), wenhui::Error>| format!("{}", r.expect_err("expected an error"));
    assert!(msg(check_poem("", &c).map(|_| ())).contains("empty"));
    assert!(msg(check_poem("  \n ", &c).map(|_| ())).contains("empty"));
    assert!(msg(check_poem("白日依山尽, yellow river.", &c).map(|_| ())).contains("non-Chinese"));
    assert!(msg(check_poem("白日依山尽，黄河入海流1。", &c).map(|_| ())).contains("non-Chinese"));
    assert!(msg(Constraints::parse("五绝", "pingshui", "白黄").map(|_| ())).contains("2 heads"));
    assert!(msg(Constraints::parse("五绝", "pingshui", "白黄欲a").map(|_| ())).contains("not a Chinese"));
    assert!(msg(Constraints::parse("六绝", "pingshui", "").map(|_| ())).contains("unknown poem form"));
    assert!(msg(Constraints::parse("五绝", "guangyun", "").map(|_| ())).contains("unknown rhyme table"));
    let bad_heads = Constraints { heads: vec!['白'], ..wujue() };
    assert!(check_poem(DENG, &bad_heads).is_err());
    assert!(check_line(&[], "白", &bad_heads).is_err());
}

/// 首句入韵: a first line ending on 平 rhymes with the even lines, or may borrow a neighbouring
/// group (东/冬 merged by 词林正韵); a 仄 ending needs no rhyme.
#[test]
fn a_first_line_ending_on_ping_rhymes() {
    let c = Constraints::new(Form::QiJue);
    // 登科后-like openings: 来 (灰) against 娟/圆 (先): neither the rhyme nor 仄.
    let off = "寂寞愁来美酒来，东山柳色碧婵娟。风吹细草连天碧，送槛晴风日复圆。";
    let v = verdict(off, &c);
    assert!(v.violates(Rule::Rhyme), "{v}");
    assert!(v.violations.iter().any(|x| x.message.contains("首句入韵") && x.line == 1), "{v}");
    // The same poem with a 仄 first ending, and one with a rhyming first ending, pass the rule.
    for first in ["寂寞愁来饮美酒，", "寂寞愁来醉管弦，"] {
        let text = off.replacen("寂寞愁来美酒来，", first, 1);
        assert!(!verdict(&text, &c).violations.iter().any(|x| x.message.contains("首句入韵")), "{text}: {}", verdict(&text, &c));
    }
    // A neighbouring group (邕 冬 against 风 东): 首句借邻韵, accepted under 平水韵.
    let borrow = "边让今朝忆蔡邕，无心裁曲卧春风。舍南有竹堪书字，老去溪头作钓翁。";
    assert!(!verdict(borrow, &c).violations.iter().any(|x| x.message.contains("首句入韵")), "{}", verdict(borrow, &c));
    // Loose strictness reads no tones: no rule about the first line.
    let loose = Constraints { strictness: Strictness::Loose, ..Constraints::new(Form::QiJue) };
    assert!(!verdict(off, &loose).violations.iter().any(|x| x.message.contains("首句入韵")));
}

/// Traditional forms read as their simplified form even where the table lists them: 沈 as 沉
/// (平), as the Tang poems use it (the table's own 仄 entry, the surname, agrees less with the
/// corpus labels).
#[test]
fn a_traditional_form_reads_as_its_simplified_form() {
    assert_eq!(tone_of('沈'), tone_of('沉'));
    assert_eq!(tone_of('沈'), Some(Tone::Ping));
}

/// The soft format score reads a 多音 character by its default reading (中 zhōng: 平), as the
/// official code's pypinyin does, instead of counting it as a mismatch against every tone.
#[test]
fn format_tones_read_a_character_of_two_tones_by_its_default_reading() {
    assert_eq!(tone_of('中'), Some(Tone::Either));
    // Against a 仄 character (月) with req = false, 平 is what is wanted: no penalty.
    assert_eq!(wenhui::generate::poetry::tone_mismatch("中", "月", 1.0, false), 0.0);
    // Against a 平 character (风) it is a mismatch.
    assert!(wenhui::generate::poetry::tone_mismatch("中", "风", 1.0, false) < 0.0);
}

/// The 首句入韵 violation is reported once (with line 2, which sets the rhyme), not again with
/// every later rhyme line.
#[test]
fn the_first_line_rhyme_violation_is_reported_once() {
    let c = Constraints::new(Form::QiJue);
    let v = verdict("寂寞愁来美酒来，东山柳色碧婵娟。风吹细草连天碧，送槛晴风日复圆。", &c);
    assert_eq!(v.violations.iter().filter(|x| x.message.contains("首句入韵")).count(), 1, "{v}");
}
