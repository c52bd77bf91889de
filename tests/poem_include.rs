//! `wenhui poem --include 月,酒`: keyword forcing on the embedded poetry GLM — every keyword stands
//! in the poem for several titles, forms and seeds, the JSON output says which line holds each,
//! batches take it, bad keywords are refused naming them, `--check` reports a missing keyword, and
//! the sampler writes a forced character.

mod common;

use common::{stderr, stdout, wenhui};
use wenhui::generate::poetry::{check_poem, Constraints, Rule};

/// 王之涣《登鹳雀楼》.
const DENG: &str = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。";

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(stdout(o).trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}): {}{}", stdout(o), stderr(o)))
}

/// The lines of a `--json` poem.
fn lines(v: &serde_json::Value) -> Vec<String> {
    v["lines"].as_array().unwrap_or_else(|| panic!("no lines: {v}")).iter().map(|l| l.as_str().unwrap_or_default().to_string()).collect()
}

/// Asserts that `v` (a poem's JSON) holds every keyword of `want` (simplified) on the line its
/// `include` names, and that the checker finds no keyword missing.
fn holds(v: &serde_json::Value, want: &[&str], form: &str) {
    let lines = lines(v);
    let include = v["include"].as_array().unwrap_or_else(|| panic!("no include: {v}"));
    assert_eq!(include.len(), want.len(), "{v}");
    for (entry, k) in include.iter().zip(want) {
        let line = entry["line"].as_u64().unwrap_or_else(|| panic!("`{k}` missing: {v}")) as usize;
        assert!(lines[line - 1].contains(k), "`{k}` is not in line {line}: {lines:?}");
    }
    let c = Constraints::parse(form, "pingshui", "").and_then(|c| c.with_keywords(want)).unwrap();
    let text = v["text"].as_str().unwrap_or_default();
    let verdict = check_poem(text, &c).unwrap();
    assert!(!verdict.violates(Rule::Keyword), "{text}: {verdict}");
    assert_eq!(v["constraints_ok"].as_bool(), Some(verdict.is_ok()), "{v}");
}

#[test]
fn every_keyword_is_in_the_poem() {
    let cases: [(&str, &str, &[&str], &str); 6] = [
        ("中秋", "0", &["月", "酒"], "五绝"),
        ("春日", "1", &["花", "酒"], "五绝"),
        ("江雪", "2", &["孤舟"], "五绝"),
        ("山居", "0", &["白云深处"], "五绝"),
        ("秋夜", "3", &["明月", "故乡", "雁"], "七绝"),
        ("虹桥机场", "0", &["飞", "云", "客"], "五绝"),
    ];
    for (title, seed, keywords, form) in cases {
        let list = keywords.join(",");
        let o = wenhui(&["poem", "--title", title, "--include", &list, "--seed", seed, "--form", form, "--json", "--beams", "4"]);
        assert!(o.status.success(), "{title} {list}: {}", stderr(&o));
        let v = json(&o);
        holds(&v, keywords, form);
        // Only the rules of a keyword the tones could not take may break; here none do.
        assert_eq!(v["constraints_ok"], true, "{title} {list}: {v}");
    }
}

#[test]
fn repeated_flags_chinese_commas_and_traditional_keywords() {
    // 東 is simplified as the acrostic heads are (the model knows 东).
    let o = wenhui(&["poem", "--title", "春日", "--include", "花，東风", "--include", "酒", "--json", "--beams", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    holds(&v, &["花", "东风", "酒"], "五绝");
    let given: Vec<&str> = v["include"].as_array().unwrap().iter().filter_map(|e| e["keyword"].as_str()).collect();
    assert_eq!(given, ["花", "東风", "酒"], "keywords are reported as given");
    // Text output: the summary names each keyword's line.
    let o = wenhui(&["poem", "--title", "中秋", "--include", "月、酒", "--beams", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("· include 月 (line ") && err.contains("), 酒 (line "), "{err}");
    let text: String = stdout(&o).lines().skip(1).take(4).collect();
    assert!(text.contains('月') && text.contains('酒'), "{text}");
}

#[test]
fn with_an_acrostic_both_hold() {
    let o = wenhui(&["poem", "--title", "四季", "--acrostic", "春夏秋冬", "--include", "花,雪", "--json", "--beams", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    holds(&v, &["花", "雪"], "五绝");
    let heads: String = lines(&v).iter().filter_map(|l| l.chars().next()).collect();
    assert_eq!(heads, "春夏秋冬", "{v}");
}

#[test]
fn bad_keywords_are_refused_naming_them() {
    let cases: [(&[&str], &[&str]); 8] = [
        (&["--include", "月,,酒"], &["keyword 2 of 3 is empty"]),
        (&["--include", ""], &["keyword 1 of 1 is empty"]),
        (&["--include", "moon"], &["`moon`", "not a Chinese character"]),
        (&["--include", "春眠不觉晓"], &["`春眠不觉晓`", "5 characters"]),
        (&["--include", "明月光,白云飞,清风来,山水间,鸟语声"], &["`鸟语声`", "does not fit"]),
        (&["--include", "一,二,三,四,五,六,七,八,九"], &["9 keywords", "`九`"]),
        (&["--include", "龘"], &["`龘`", "not one token"]),
        (
            &["--acrostic", "春夏秋冬", "--include", "明月清风,白云流水,高山远树,落日孤城,酒"],
            &["`酒`", "conflicts with the acrostic heads"],
        ),
    ];
    for (args, needles) in cases {
        let mut all = vec!["poem", "--title", "春"];
        all.extend_from_slice(args);
        let o = wenhui(&all);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("--include: "), "{args:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: `{n}` not in {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(stdout(&o), "", "{args:?}: printed before the error");
    }
    // The keywords that do not fit a 五绝 fit a 五律 (one 3-character keyword a line).
    let five = ["明月光", "白云飞", "清风来", "山水间", "鸟语声"];
    assert!(Constraints::parse("五律", "pingshui", "").and_then(|c| c.with_keywords(&five)).is_ok());
}

#[test]
fn a_keyword_the_tones_cannot_take_is_written_and_its_fault_reported() {
    // 江南春风 is 平平平平: wherever it stands in a line of five, the 2nd and 4th characters
    // are both 平 (二四六分明). The poem still holds it, and says what it breaks.
    let o = wenhui(&["poem", "--title", "春日", "--include", "江南春风", "--json", "--beams", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    holds(&v, &["江南春风"], "五绝");
    assert_eq!(v["constraints_ok"], false, "{v}");
    let violations: Vec<&str> = v["violations"].as_array().unwrap().iter().filter_map(|x| x.as_str()).collect();
    assert!(violations.iter().any(|x| x.contains("Alternation")), "{violations:?}");
    // Text output reports it as other rule violations are reported.
    let o = wenhui(&["poem", "--title", "春日", "--include", "江南春风", "--beams", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("constraints error: line "), "{}", stderr(&o));
    assert!(stderr(&o).contains("Alternation"), "{}", stderr(&o));
}

#[test]
fn a_batch_takes_the_keywords_for_every_title() {
    let tmp = tempfile::tempdir().unwrap();
    let titles = tmp.path().join("titles.jsonl");
    std::fs::write(&titles, "{\"title\": \"中秋\"}\n{\"title\": \"江上\", \"form\": \"七绝\"}\n").unwrap();
    let path = titles.to_string_lossy().to_string();
    let o = wenhui(&["poem", "--titles", &path, "--include", "月", "--beams", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "{}", stdout(&o));
    for row in &rows {
        let text = row["text"].as_str().unwrap_or_default();
        assert!(text.contains('月'), "{row}");
        let line = row["include"][0]["line"].as_u64().unwrap_or_else(|| panic!("{row}"));
        assert!(text.split(['，', '。']).nth(line as usize - 1).is_some_and(|l| l.contains('月')), "{row}");
    }
    assert_eq!(rows[1]["form"], "七言绝句");
    // A keyword that fits no title's form is refused before the first poem, naming the title.
    let o = wenhui(&["poem", "--titles", &path, "--include", "明月光,白云飞,清风来,山水间,鸟语声"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("(title 1): --include: keyword `鸟语声` does not fit"), "{err}");
    assert_eq!(stdout(&o), "");
}

#[test]
fn check_reports_a_missing_keyword_as_a_violation() {
    let o = wenhui(&["poem", "--check", DENG, "--include", "黄河,酒"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert!(out.contains("include: 黄河 (line 2), 酒 (missing)"), "{out}");
    assert!(out.contains("violation: line 4: Keyword: keyword `酒` occurs in no line"), "{out}");
    assert!(out.trim_end().ends_with("1 violation (五言绝句, 平水韵)"), "{out}");
    // A keyword across two lines is not in the poem: it must stand within one.
    let o = wenhui(&["poem", "--check", DENG, "--include", "流欲", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["include"], serde_json::json!([{"keyword": "流欲", "line": null}]));
    assert_eq!(v["ok"], false);
    assert_eq!(v["violations"][0]["rule"], "Keyword", "{v}");
    // Present keywords (traditional too) pass.
    let o = wenhui(&["poem", "--check", DENG, "--include", "黃河", "--include", "层楼", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(json(&o)["include"], serde_json::json!([{"keyword": "黃河", "line": 2}, {"keyword": "层楼", "line": 4}]));
    // A bad keyword is unusable input (exit 2), named.
    let o = wenhui(&["poem", "--check", DENG, "--include", "moon"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--include: keyword `moon`"), "{}", stderr(&o));
}

/// The library's sampler writes a forced keyword character even when the model all but
/// refuses it, and draws a due one with its share.
#[test]
fn the_sampler_writes_what_the_steering_forces() {
    use rand::SeedableRng;
    use wenhui::generate::inverse::{keyword_tokens, sample_units, NextTokens, PoemRules, SampleSpec, UnitRules};
    use wenhui::generate::poetry::LineStatus;
    use wenhui::generate::CausalInputs;
    use wenhui::model::{load_model, LoadOptions};
    let dir = wenhui::embedded::poetry_model_dir().unwrap();
    let model = load_model(&dir, &LoadOptions::default()).unwrap().backbone;
    let tok = wenhui::tokenizer::Tokenizer::from_dir(&dir).unwrap();
    let rules = PoemRules::new(Constraints::parse("五绝", "pingshui", "").and_then(|c| c.with_keywords(&["酒"])).unwrap());
    let units: Vec<String> = ["床前明月光，", "疑是地上霜。", "举头望明月，"].map(String::from).to_vec();
    // The last line has one place left for 酒: the rules force it.
    let steer = rules.steer(&units, "低头思故");
    assert_eq!(steer.only, Some(vec!['酒']));
    assert_eq!(rules.check(&units, "低头思故乡"), LineStatus::Rejected);
    let jiu = keyword_tokens(&tok, "酒").unwrap();
    let xiang = keyword_tokens(&tok, "乡").unwrap()[0] as usize;
    let vocab = model.info().vocab_size;
    let mut logits = vec![-1e4f32; vocab];
    logits[xiang] = 20.0;
    logits[jiu[0] as usize] = -20.0;
    let allowed = vec![true; vocab];
    let check = |_: &str| LineStatus::Complete;
    let decode = |ids: &[u32]| tok.decode(ids, true);
    let force = |_: &str| NextTokens { only: Some(jiu.clone()), ..Default::default() };
    let spec = SampleSpec {
        allowed: &allowed,
        first: None,
        steer: Some(&force),
        stops: &[],
        check: &check,
        decode: &decode,
        max_tokens: 1,
        temperature: 1.0,
        max_redraws: 8,
    };
    let inputs = CausalInputs::new(model.as_ref());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let out = sample_units(model.as_ref(), &model.new_cache(), &logits, &inputs, 0, 4, &spec, &mut rng).unwrap();
    assert_eq!(out.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(), ["酒"]);
    // Its forward score is the model's, not the steering's.
    assert!(out[0].forward < -30.0, "{}", out[0].forward);
    // A preferred token is drawn with its share although the model gives it 0.7%.
    let mut unlikely = vec![-1e4f32; vocab];
    unlikely[xiang] = 0.0;
    unlikely[jiu[0] as usize] = -5.0;
    let prefer = |_: &str| NextTokens { only: None, prefer: jiu.clone(), share: 0.5 };
    let spec = SampleSpec { steer: Some(&prefer), ..spec };
    let drawn = (0..60)
        .filter(|&seed| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let out = sample_units(model.as_ref(), &model.new_cache(), &unlikely, &inputs, 0, 1, &spec, &mut rng).unwrap();
            out.iter().any(|c| c.text == "酒")
        })
        .count();
    assert!((18..=42).contains(&drawn), "酒 drawn {drawn} times of 60 with a share of 0.5");
}
