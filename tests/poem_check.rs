//! `wenhui poem --check TEXT`: a user's poem checked against the rules with no model — tones and
//! rhyme groups shown, violations listed, exit status 0 / 1 / 2, stdin, JSON, traditional input.

mod common;

use common::{stderr, stdout, wenhui};
use std::io::Write;
use std::process::{Command, Stdio};

/// 王之涣《登鹳雀楼》: a 五绝 the library passes (its own doc test says so too).
const DENG: &str = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。";
/// The same in traditional characters.
const DENG_T: &str = "白日依山盡，黃河入海流。欲窮千里目，更上一層樓。";
/// 王昌龄《出塞》: a 七绝 that passes.
const CHUSAI: &str = "秦时明月汉时关，万里长征人未还。但使龙城飞将在，不教胡马度阴山。";

fn code(o: &std::process::Output) -> Option<i32> {
    o.status.code()
}

/// Runs `wenhui args…` with `input` on stdin.
fn with_stdin(args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the wenhui binary starts");
    child.stdin.take().expect("stdin is piped").write_all(input.as_bytes()).expect("stdin takes the poem");
    child.wait_with_output().expect("the wenhui binary ends")
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(stdout(o).trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}): {}", stdout(o)))
}

#[test]
fn a_correct_wujue_passes_with_its_tones_and_rhyme_groups() {
    let cache = tempfile::tempdir().unwrap();
    let unused = cache.path().join("cache");
    let t0 = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .args(["poem", "--check", DENG])
        .env("WENHUI_CACHE", &unused)
        .output()
        .expect("the wenhui binary runs");
    let out = stdout(&o);
    assert_eq!(code(&o), Some(0), "{out}{}", stderr(&o));
    assert!(out.starts_with("五言绝句 · 平水韵 (form inferred"), "{out}");
    assert!(out.contains("白日依山尽，  仄仄平平仄"), "tones of line 1: {out}");
    assert!(out.contains("黄河入海流。  平平仄仄平  rhyme 流: 下平声部/十一尤"), "{out}");
    assert!(out.contains("更上一层楼。  *仄仄平平  rhyme 楼: 下平声部/十一尤"), "更 reads either way: {out}");
    assert!(out.trim_end().ends_with("ok: 五言绝句, 平水韵, no violations"), "{out}");
    assert!(!out.contains("violation:"), "{out}");
    // No model: nothing unpacked, and no waiting for one.
    assert!(!unused.exists(), "--check unpacked the embedded model");
    assert!(t0.elapsed().as_secs() < 10, "--check took {:?}", t0.elapsed());
}

#[test]
fn a_broken_rhyme_exits_1_naming_the_rule() {
    // 台 (上平 四支 / 十灰) does not rhyme with 流 (下平 十一尤).
    let o = wenhui(&["poem", "--check", "白日依山尽，黄河入海流。欲穷千里目，更上一层台。"]);
    let out = stdout(&o);
    assert_eq!(code(&o), Some(1), "{out}{}", stderr(&o));
    assert!(out.contains("violation: line 4 char 5: Rhyme: rhyme characters `流台` share no rhyme group"), "{out}");
    assert!(out.contains("rhyme 台: 上平声部/四支 or 上平声部/十灰"), "both groups of 台 are shown: {out}");
    assert!(out.trim_end().ends_with("1 violation (五言绝句, 平水韵)"), "{out}");
    assert!(stderr(&o).is_empty(), "a violation is no error: {}", stderr(&o));
}

#[test]
fn the_form_is_inferred_for_a_qijue_and_can_be_forced() {
    let o = wenhui(&["poem", "--check", CHUSAI]);
    let out = stdout(&o);
    assert_eq!(code(&o), Some(0), "{out}{}", stderr(&o));
    assert!(out.starts_with("七言绝句 · 平水韵 (form inferred"), "{out}");
    assert!(out.contains("rhyme 山: 上平声部/十五删"), "{out}");
    assert!(out.contains("ok: 七言绝句, 平水韵, no violations"), "{out}");
    // A form given is checked as given: a 五绝 read as a 七绝 breaks the line length.
    let o = wenhui(&["poem", "--check", DENG, "--form", "七绝"]);
    let out = stdout(&o);
    assert_eq!(code(&o), Some(1), "{out}");
    assert!(out.starts_with("七言绝句 · 平水韵\n"), "{out}");
    assert!(out.contains("LineLength: 5 characters, the form needs 7"), "{out}");
    assert_eq!(code(&wenhui(&["poem", "--check", DENG, "--form", "auto"])), Some(0));
}

#[test]
fn a_shape_of_no_form_is_refused_with_what_was_found() {
    let o = wenhui(&["poem", "--check", "白日依山尽，黄河入海流。欲穷千里目，"]);
    assert_eq!(code(&o), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("error: --check: 3 lines of 5 characters: not a 五绝/七绝/五律/七律"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    let o = wenhui(&["poem", "--check", "白日依山尽，黄河入海流。欲穷千里目，更上一层高楼。"]);
    assert_eq!(code(&o), Some(2));
    assert!(stderr(&o).contains("4 lines of 5, 5, 5, 6 characters"), "{}", stderr(&o));
    // Lines without punctuation are one line: the message says how lines are split.
    let o = wenhui(&["poem", "--check", "白日依山尽 黄河入海流 欲穷千里目 更上一层楼"]);
    assert_eq!(code(&o), Some(2));
    assert!(stderr(&o).contains("1 line of 20 characters") && stderr(&o).contains("end each line"), "{}", stderr(&o));
}

#[test]
fn unusable_input_exits_2_naming_the_flag() {
    for (args, want) in [
        (vec!["poem", "--check", ""], "--check: empty poem text"),
        (vec!["poem", "--check", "白日依山尽,abc"], "--check: non-Chinese character `a`"),
        (vec!["poem", "--check", DENG, "--form", "六绝"], "--form: unknown poem form `六绝`"),
        (vec!["poem", "--check", DENG, "--rhyme", "foo"], "--rhyme: unknown rhyme table `foo`"),
        (vec!["poem", "--check", DENG, "--acrostic", "白黄"], "--acrostic: acrostic needs one head character per line"),
    ] {
        let o = wenhui(&args);
        assert_eq!(code(&o), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(&format!("error: {want}")), "{args:?}: {}", stderr(&o));
    }
    // `auto` is for --check only.
    let o = wenhui(&["poem", "--title", "春", "--form", "auto"]);
    assert_eq!(code(&o), Some(1));
    assert!(stderr(&o).contains("--form auto") && stderr(&o).contains("--check"), "{}", stderr(&o));
}

#[test]
fn check_reads_stdin_given_dash() {
    let o = with_stdin(&["poem", "--check", "-"], &format!("{}\n{}\n", &DENG[..36], &DENG[36..]));
    assert_eq!(code(&o), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("ok: 五言绝句, 平水韵, no violations"), "{}", stdout(&o));
    assert!(stdout(&o).contains(" 3  欲穷千里目，  仄平平仄仄"), "{}", stdout(&o));
    let o = with_stdin(&["poem", "--check", "-"], "  \n");
    assert_eq!(code(&o), Some(2));
    assert!(stderr(&o).contains("--check - (stdin): empty poem text"), "{}", stderr(&o));
}

#[test]
fn json_parses_and_agrees_with_the_text() {
    for (text, ok) in [(DENG, true), ("白日依山尽，黄河入海流。欲穷千里目，更上一层台。", false), (CHUSAI, true)] {
        let o = wenhui(&["poem", "--check", text, "--json"]);
        let v = json(&o);
        let plain = wenhui(&["poem", "--check", text]);
        let out = stdout(&plain);
        assert_eq!(code(&o), code(&plain), "{text}");
        assert_eq!(v["ok"], ok, "{v}");
        assert_eq!(v["text"], text);
        assert_eq!(v["rhyme_table"], "pingshui");
        assert_eq!(v["form_inferred"], true);
        let form = v["form"].as_str().unwrap();
        assert!(out.starts_with(form), "{out}");
        let lines = v["lines"].as_array().unwrap();
        assert_eq!(lines.len(), 4);
        for (k, l) in lines.iter().enumerate() {
            let (t, tones) = (l["text"].as_str().unwrap(), l["tones"].as_str().unwrap());
            let row = format!("{:>2}  {t}  {tones}", k + 1);
            assert!(out.contains(&row), "{row} not in {out}");
            assert_eq!(l["chars"].as_array().unwrap().len(), tones.chars().count());
            match l["rhyme"].as_object() {
                Some(r) => {
                    let groups: Vec<&str> = r["groups"].as_array().unwrap().iter().map(|g| g.as_str().unwrap()).collect();
                    let shown = format!("rhyme {}: {}", r["char"].as_str().unwrap(), groups.join(" or "));
                    assert!(out.contains(&shown), "{shown} not in {out}");
                }
                None => assert!(!out.lines().nth(k + 1).unwrap().contains("rhyme"), "{out}"),
            }
        }
        let violations = v["violations"].as_array().unwrap();
        assert_eq!(out.matches("violation: ").count(), violations.len(), "{out}");
        for x in violations {
            let pos = x["position"].as_u64().map(|p| format!(" char {p}")).unwrap_or_default();
            let shown = format!("violation: line {}{pos}: {}: {}", x["line"], x["rule"].as_str().unwrap(), x["message"].as_str().unwrap());
            assert!(out.contains(&shown), "{shown} not in {out}");
        }
    }
    let v = json(&wenhui(&["poem", "--check", DENG, "--json"]));
    assert_eq!(v["lines"][0]["chars"][0], serde_json::json!({"char": "白", "read_as": "白", "tone": "仄", "source": "table"}));
    assert_eq!(v["lines"][3]["chars"][0]["tone"], "either");
}

#[test]
fn traditional_input_is_read_simplified_and_shown_as_written() {
    let o = wenhui(&["poem", "--check", DENG_T]);
    let out = stdout(&o);
    assert_eq!(code(&o), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("更上一層樓。  *仄仄平平  rhyme 樓: 下平声部/十一尤"), "{out}");
    assert!(out.contains("ok: 五言绝句"), "{out}");
    let v = json(&wenhui(&["poem", "--check", DENG_T, "--json"]));
    assert_eq!(v["lines"][3]["chars"][4], serde_json::json!({"char": "樓", "read_as": "楼", "tone": "平", "source": "table"}));
    assert_eq!(v["text"], DENG_T);
}

#[test]
fn check_refuses_generation_flags() {
    for other in [["--title", "春日"], ["--titles", "t.jsonl"], ["--seed", "3"], ["--model", "m"]] {
        let o = wenhui(&["poem", "--check", DENG, other[0], other[1]]);
        assert_eq!(code(&o), Some(2), "{other:?}");
        assert!(stderr(&o).contains("cannot be used with"), "{other:?}: {}", stderr(&o));
    }
    let help = stdout(&wenhui(&["poem", "--help"]));
    assert!(help.contains("--check <TEXT>") && help.contains("Exit status with --check: 0"), "{help}");
}

/// 李白《早发白帝城》: 重 in 万重山 is 平 (chóng, "layers"); the tone table gives it 仄 only, but
/// 平水韵 lists it in 二冬 as well as 二肿/二宋, so it reads either way and the poem passes.
/// The same poem with a real 二四六 error (里, 仄 only, at the 6th character against 舟 平) fails.
#[test]
fn zao_fa_baidi_cheng_passes_and_a_real_alternation_error_still_fails() {
    let poem = "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。";
    let o = wenhui(&["poem", "--check", poem]);
    let out = stdout(&o);
    assert_eq!(code(&o), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("轻舟已过万重山。  *平仄*仄*平"), "重 reads either way: {out}");
    assert!(out.contains("ok: 七言绝句, 平水韵, no violations"), "{out}");
    let v = json(&wenhui(&["poem", "--check", poem, "--json"]));
    assert_eq!(v["lines"][3]["chars"][5], serde_json::json!({"char": "重", "read_as": "重", "tone": "either", "source": "table"}));
    let broken = poem.replace("万重山", "万里山");
    let o = wenhui(&["poem", "--check", &broken]);
    let out = stdout(&o);
    assert_eq!(code(&o), Some(1), "{out}{}", stderr(&o));
    assert!(out.contains("violation: line 4 char 6: Alternation: 6th character 仄 but 2nd 平"), "{out}");
}
