//! Cloze-task audit fixes: COPA's official pattern text, scikit-learn's macro-F1, MultiRC-only
//! metrics, task-field JSON for every reader, answers longer than the limit, Python's
//! `rstrip(string.punctuation)`, odd task files, and `--limit` over question groups. On the tiny
//! committed fixtures (glm-tiny) with a character-level tokenizer; the FewGLUE part reads
//! `../shared/data/fewglue` (or `WENHUI_FEWGLUE`) and skips with a note when it is absent.

mod common;
use common::{fewglue_dir, CLOZE_CHARS, LONG_TASK};
use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;
use wenhui::cloze::fewglue::{lower_first, strip_final_punct, take_limit};
use wenhui::cloze::{compile, evaluate, metrics, parse_jsonl, ClassifyOptions, ClozeTask, CompileOptions, Example, Part, Reader};
use wenhui::model::{load_model, Backbone, LoadOptions, ModelKind};
use wenhui::tokenizer::{CharVocab, Tokenizer};

/// Letters, `.,!?:'*-`, capitals and digits, one token each (spaces are dropped).
fn chars() -> Tokenizer {
    CharVocab::from_chars(CLOZE_CHARS.chars()).build().unwrap()
}

fn model(name: &str) -> Box<dyn Backbone> {
    load_model(&Path::new("tests/fixtures").join(name), &LoadOptions::default()).unwrap().backbone
}

fn names(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn labelled(pairs: &[(&str, &str)], label: &str) -> Example {
    Example { fields: fields(pairs), label: Some(label.to_string()), group: None }
}

// 1. COPA ---------------------------------------------------------------------------------------

#[test]
fn copa_pattern_shows_the_choices_lower_first_without_final_punctuation() {
    let task = ClozeTask::builtin("copa").unwrap();
    let parts: Vec<&Part> = task.template.segments().iter().map(|s| &s.part).collect();
    assert_eq!(
        &parts[..4],
        &[&Part::Field("answer1".into()), &Part::Text("or".into()), &Part::Field("answer2".into()), &Part::Text("?".into())]
    );
    // CopaPVP: [choice1, 'or', choice2, '?', premise, joiner, P, mask, '.'] with
    // choice = remove_final_punc(lowercase_first(choice)), premise = remove_final_punc(premise).
    let line = r#"{"premise": "My body cast a shadow over the grass.", "choice1": "The sun was rising.", "choice2": "The grass was cut.", "question": "cause", "idx": 0, "label": 0}"#;
    let ex = &parse_jsonl(line, Reader::Copa, "copa.jsonl").unwrap()[0];
    let tok = chars();
    let c = compile(&task.template.without_pseudo(), ModelKind::Glm, &tok, &ex.fields, &CompileOptions::new(512)).unwrap();
    let mask = c.mask.unwrap();
    let want = tok.encode("the sun was rising or the grass was cut ? My body cast a shadow over the grass because", false).unwrap();
    assert_eq!(&c.ids[1..mask], want.as_slice(), "the prompt before the slot");
    assert_eq!(c.ids[mask + 1], tok.encode(".", false).unwrap()[0]);
    // The answers scored are the same texts the pattern shows.
    assert_eq!((ex.fields["answer1"].as_str(), ex.fields["answer2"].as_str()), ("the sun was rising", "the grass was cut"));
    assert_eq!(task.spec.verbalizer[0].words, vec!["{answer1}".to_string()]);
}

// 2. macro-F1 -----------------------------------------------------------------------------------

#[test]
fn macro_f1_averages_over_the_labels_present_like_sklearn() {
    let s = |xs: &[&str]| names(xs);
    // sklearn.metrics.f1_score(gold, pred, average="macro"), computed by hand:
    // one positive example predicted positive: labels present = {positive} → 1.0.
    assert_eq!(metrics::macro_f1(&s(&["positive"]), &s(&["positive"])).unwrap(), 1.0);
    let all =
        metrics::compute(&s(&["acc", "f1-macro"]), &s(&["positive"]), &s(&["positive"]), &s(&["negative", "positive"]), None).unwrap();
    assert_eq!((all["acc"], all["f1-macro"]), (1.0, 1.0));
    // gold a a b, pred a c b: a 2/3, b 1, c (predicted, never gold) 0 → 5/9.
    let v = metrics::macro_f1(&s(&["a", "c", "b"]), &s(&["a", "a", "b"])).unwrap();
    assert!((v - 5.0 / 9.0).abs() < 1e-12, "{v}");
    // gold a b b c, pred a b c c: a 1, b 2/3, c 2/3 → 7/9.
    let v = metrics::macro_f1(&s(&["a", "b", "c", "c"]), &s(&["a", "b", "b", "c"])).unwrap();
    assert!((v - 7.0 / 9.0).abs() < 1e-12, "{v}");
    // A task label that is neither gold nor predicted does not count (CB's `neutral` here).
    let cb = s(&["contradiction", "entailment", "neutral"]);
    let all =
        metrics::compute(&s(&["f1-macro"]), &s(&["entailment", "entailment"]), &s(&["entailment", "contradiction"]), &cb, None).unwrap();
    // entailment: tp 1 fp 1 → 2/3; contradiction: fn 1 → 0; mean 1/3.
    assert!((all["f1-macro"] - 1.0 / 3.0).abs() < 1e-12, "{all:?}");
}

// 3. em / f1a -----------------------------------------------------------------------------------

const SENTIMENT: &str = r#"
name = "sentiment"
fields = ["review"]
template = "{review} all in all [MASK] ."
metrics = ["acc"]
[[verbalizer]]
label = "negative"
words = ["b"]
[[verbalizer]]
label = "positive"
words = ["g"]
"#;

#[test]
fn em_and_f1a_need_the_multirc_reader() {
    for m in ["em", "f1a"] {
        let text = SENTIMENT.replace(r#"metrics = ["acc"]"#, &format!(r#"metrics = ["acc", "{m}"]"#));
        let e = ClozeTask::from_toml(&text, "sentiment.toml").unwrap_err().to_string();
        for want in ["sentiment.toml", "`metrics`", &format!("metric `{m}`"), "reader = \"multirc\"", "`acc`", "`f1`", "`positive`"] {
            assert!(e.contains(want), "{m}: `{want}` missing from: {e}");
        }
    }
    // With the MultiRC reader they are fine; f1a still needs a label `1`.
    let multirc_like = |labels: (&str, &str)| {
        format!(
            "name = \"mrc\"\nfields = [\"passage\", \"question\", \"answer\"]\ntemplate = \"{{passage}} {{question}} {{answer}} [MASK]\"\n\
             reader = \"multirc\"\nmetrics = [\"acc\", \"em\", \"f1a\"]\n[[verbalizer]]\nlabel = \"{}\"\nwords = [\"n\"]\n\
             [[verbalizer]]\nlabel = \"{}\"\nwords = [\"y\"]\n",
            labels.0, labels.1
        )
    };
    assert!(ClozeTask::from_toml(&multirc_like(("0", "1")), "mrc.toml").is_ok());
    let e = ClozeTask::from_toml(&multirc_like(("no", "yes")), "mrc.toml").unwrap_err().to_string();
    assert!(e.contains("`f1a`") && e.contains("label `1`") && e.contains("use `f1`"), "{e}");
    for name in wenhui::cloze::task::BUILTIN {
        ClozeTask::builtin(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // `em` without question groups is an error, not one group of everything.
    let s = |xs: &[&str]| names(xs);
    let e = metrics::compute(&s(&["em"]), &s(&["1"]), &s(&["1"]), &s(&["0", "1"]), None).unwrap_err().to_string();
    assert!(e.contains("`em`") && e.contains("`acc`"), "{e}");
}

#[test]
fn f1_positive_label_is_the_last_one_and_documented() {
    let s = |xs: &[&str]| names(xs);
    // Positive = `positive` (the last label): tp 1, fn 1 → 2/3.
    let all =
        metrics::compute(&s(&["f1"]), &s(&["positive", "negative"]), &s(&["positive", "positive"]), &s(&["negative", "positive"]), None)
            .unwrap();
    assert!((all["f1"] - 2.0 / 3.0).abs() < 1e-12);
    let readme = std::fs::read_to_string("README.md").unwrap();
    let cloze = &readme[readme.find("## Cloze tasks").unwrap()..];
    let cloze = &cloze[..cloze[3..].find("\n## ").map_or(cloze.len(), |i| i + 3)];
    assert!(
        cloze.contains("`f1`, binary F1 with the **last** `[[verbalizer]]` label as the positive class"),
        "the Cloze tasks section documents f1's positive label"
    );
}

// 4. classify: task-field JSON ------------------------------------------------------------------

#[test]
fn json_with_the_task_fields_works_for_every_reader() {
    let mrc = ClozeTask::builtin("multirc").unwrap();
    let ex =
        mrc.examples_from_json(&json!({"passage": "The sky is blue.", "question": "What color is the sky?", "answer": "blue"})).unwrap();
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].fields, fields(&[("passage", "The sky is blue."), ("question", "What color is the sky?"), ("answer", "blue")]));
    // A SuperGLUE line still goes through the reader.
    let line = json!({"idx": 0, "passage": {"text": "P.", "questions": [{"question": "Q?", "idx": 0, "answers": [{"text": "A", "idx": 0}, {"text": "B", "idx": 1}]}]}});
    assert_eq!(mrc.examples_from_json(&line).unwrap().len(), 2);

    let copa = ClozeTask::builtin("copa").unwrap();
    assert_eq!(copa.used_fields(), names(&["premise", "connective", "answer1", "answer2"]));
    let direct =
        json!({"premise": "The man broke his toe", "connective": "because", "answer1": "he dropped a hammer", "answer2": "he got a hole"});
    assert_eq!(copa.examples_from_json(&direct).unwrap()[0].fields["answer1"], "he dropped a hammer");
    let line = json!({"premise": "The man broke his toe.", "choice1": "He dropped a hammer on his foot.", "choice2": "He got a hole in his sock.", "question": "cause"});
    assert_eq!(copa.examples_from_json(&line).unwrap()[0].fields["answer1"], "he dropped a hammer on his foot");

    let wsc = ClozeTask::builtin("wsc").unwrap();
    let direct = json!({"text": "Mark told Pete many lies about *himself*.", "pronoun": "himself", "span1_text": "Mark"});
    assert_eq!(wsc.examples_from_json(&direct).unwrap()[0].fields["span1_text"], "Mark");

    // RTE: a SuperGLUE line is also a task-field object; the reader's official preprocessing wins.
    let rte = ClozeTask::builtin("rte").unwrap();
    let ex = rte.examples_from_json(&json!({"premise": "A cat sat.", "hypothesis": "A cat sat."})).unwrap();
    assert_eq!(ex[0].fields["hypothesis"], "A cat sat");

    // Neither: the error names what the reader needs and the task's fields.
    let e = mrc.examples_from_json(&json!({"passage": "The sky is blue.", "question": "What color?"})).unwrap_err().to_string();
    for want in
        ["reader `multirc`", "`passage` with `text` and `questions`", "lacks `answer`", "task `multirc` uses passage, question, answer"]
    {
        assert!(e.contains(want), "`{want}` missing from: {e}");
    }
    let toy = ClozeTask::from_toml(SENTIMENT, "sentiment.toml").unwrap();
    let e = toy.examples_from_json(&json!({"text": "great"})).unwrap_err().to_string();
    assert!(e.contains("lacks the field(s) `review`") && e.contains("uses review"), "{e}");
}

#[test]
fn cli_classify_takes_multirc_task_fields() {
    let dir = tempfile::tempdir().unwrap();
    let chars_txt = dir.path().join("chars.txt");
    std::fs::write(&chars_txt, CLOZE_CHARS.chars().map(|c| format!("{c}\n")).collect::<String>()).unwrap();
    // The built-in MultiRC task with one-letter words (the character vocabulary spells "Yes" in 3 tokens).
    let task = include_str!("../assets/cloze/multirc.toml")
        .replace(r#"words = ["No"]"#, r#"words = ["n"]"#)
        .replace(r#"words = ["Yes"]"#, r#"words = ["y"]"#);
    let task_file = dir.path().join("mrc.toml");
    std::fs::write(&task_file, task).unwrap();
    let run = |input: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
            .args(["classify", "--task", task_file.to_str().unwrap(), "--model", "tests/fixtures/glm-tiny", "--tokenizer"])
            .arg(&chars_txt)
            .args(["--json", input])
            .output()
            .unwrap()
    };
    let out = run(r#"{"passage":"The sky is blue.","question":"What color is the sky?","answer":"blue"}"#);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["predictions"].as_array().unwrap().len(), 1);
    assert_eq!(v["predictions"][0]["fields"]["answer"], "blue");
    let bad = run(r#"{"passage":"The sky is blue.","question":"What color is the sky?"}"#);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("reader `multirc`") && err.contains("uses passage, question, answer"), "{err}");
}

// 5. Answers longer than the limit ------------------------------------------------------------------

#[test]
fn an_answer_too_long_names_the_limit_the_answer_and_the_example() {
    let tok = chars();
    let glm = model("glm-tiny");
    assert_eq!(glm.info().max_positions, 64);
    let task = ClozeTask::from_toml(LONG_TASK, "long.toml").unwrap();
    let long = "abcdefghij klmnopqrst uvwxyz"; // 26 tokens; the template's fixed parts are 6
    let examples = [
        labelled(&[("premise", "it rained"), ("c1", "wet"), ("c2", "dry")], "0"),
        labelled(&[("premise", "it rained"), ("c1", "wet"), ("c2", long)], "1"),
    ];
    let e = evaluate(glm.as_ref(), &tok, &task, &examples, &ClassifyOptions::default()).unwrap_err().to_string();
    for want in [
        "example 2:",
        &format!("the answer \"{long}\" (26 tokens) is too long"),
        "needs 32 tokens",
        "the task's max_seq_length of 20 tokens (the model itself takes 64 positions)",
        "raise `[train] max_seq_length`",
    ] {
        assert!(e.contains(want), "`{want}` missing from: {e}");
    }
    assert!(!e.contains("shorten the template"), "the template is not the problem: {e}");
    // Limited by the model itself: say so; a long answer shows its first words only.
    let no_limit = ClozeTask::from_toml(&LONG_TASK.replace("max_seq_length = 20", ""), "long.toml").unwrap();
    let words = "aaa bbb ccc ddd eee fff ggg hhh iii jjj kkk lll mmm nnn ooo ppp qqq rrr sss ttt uuu vvv www xxx yyy zzz";
    let examples = [labelled(&[("premise", "p"), ("c1", "wet"), ("c2", words)], "1")];
    let e = evaluate(glm.as_ref(), &tok, &no_limit, &examples, &ClassifyOptions::default()).unwrap_err().to_string();
    for want in [
        "example 1:",
        "the answer \"aaa bbb ccc ddd eee fff ggg hhh …\" (78 tokens)",
        "the model's 64 positions",
        "cannot score an answer that long",
    ] {
        assert!(e.contains(want), "`{want}` missing from: {e}");
    }
    // A template too long for the limit still says so.
    let long_template = LONG_TASK.replace("{premise} ? [MASK] .", "{premise} a very long anchor that does not fit ? [MASK] .");
    let task = ClozeTask::from_toml(&long_template, "long.toml").unwrap();
    let examples = [labelled(&[("premise", "p"), ("c1", "a"), ("c2", "b")], "1")];
    let e = evaluate(glm.as_ref(), &tok, &task, &examples, &ClassifyOptions::default()).unwrap_err().to_string();
    assert!(e.contains("fixed parts") && e.contains("max_seq_length of 20") && e.contains("shorten the template"), "{e}");
}

// 6. Final punctuation --------------------------------------------------------------------------

#[test]
fn final_punctuation_is_stripped_like_python_rstrip() {
    // Python: s.rstrip(string.punctuation).
    for (s, want) in [
        ("He left.", "He left"),
        ("He left?!", "He left"),
        ("He said \"no.\"", "He said \"no"),
        ("a (b)", "a (b"),
        ("x.)]}>~`|^_@&%$#*+/\\='-", "x"),
        ("it ends with a space. ", "it ends with a space. "),
        ("数据。", "数据。"),
        ("...", ""),
    ] {
        assert_eq!(strip_final_punct(s), want, "{s:?}");
    }
    assert_eq!(lower_first("The Sun"), "the Sun");
    // Every official reader that removes final punctuation uses this rule.
    let rte = parse_jsonl(r#"{"premise": "p", "hypothesis": "He said \"no.\"", "label": "entailment"}"#, Reader::Rte, "rte").unwrap();
    assert_eq!(rte[0].fields["hypothesis"], "He said \"no");
    let copa =
        r#"{"premise": "The man said \"stop!\"", "choice1": "He was 'angry'.", "choice2": "(He left)", "question": "effect", "label": 0}"#;
    let ex = &parse_jsonl(copa, Reader::Copa, "copa").unwrap()[0];
    assert_eq!(ex.fields["premise"], "The man said \"stop");
    assert_eq!((ex.fields["answer1"].as_str(), ex.fields["answer2"].as_str()), ("he was 'angry", "(He left"));
}

// 7. Odd tasks ----------------------------------------------------------------------------------

#[test]
fn odd_tasks_are_refused_at_load() {
    let one_label = SENTIMENT.replace("[[verbalizer]]\nlabel = \"negative\"\nwords = [\"b\"]\n", "");
    for (text, want) in [
        (SENTIMENT.replace(r#"words = ["g"]"#, r#"words = ["b"]"#), "share the word `b`"),
        (SENTIMENT.replace(r#"words = ["g"]"#, r#"words = ["g", " b "]"#), "share the word `b`"),
        (one_label, "only one label (`positive`)"),
        (SENTIMENT.replace(r#"label = "negative""#, r#"label = """#), "label 1 (`[[verbalizer]]` table 1) is empty"),
        (SENTIMENT.replace(r#"label = "negative""#, r#"label = "  ""#), "is empty"),
        (SENTIMENT.replace("{review} all in all [MASK] .", "all in all [MASK] ."), "uses none of the task's fields (review)"),
    ] {
        let e = ClozeTask::from_toml(&text, "sentiment.toml").unwrap_err().to_string();
        assert!(e.contains("sentiment.toml") && e.contains(want), "`{want}` missing from: {e}");
    }
    // Fields used by the words alone still make the input count (a multi-token choice task).
    let words_only = LONG_TASK.replace("{premise} ? [MASK] .", "which ? [MASK] .");
    assert!(ClozeTask::from_toml(&words_only, "long.toml").is_ok());
    // WSC has one verbalizer label; its second is the referent label.
    assert_eq!(ClozeTask::builtin("wsc").unwrap().data_labels(), names(&["true", "false"]));
}

// 8. --limit over question groups ---------------------------------------------------------------

#[test]
fn limit_completes_the_last_question_group() {
    let line = r#"{"idx": 0, "passage": {"text": "P.", "questions": [
        {"question": "Q1?", "idx": 0, "answers": [{"text": "a", "label": 1}, {"text": "b", "label": 0}, {"text": "c", "label": 0}]},
        {"question": "Q2?", "idx": 1, "answers": [{"text": "d", "label": 0}, {"text": "e", "label": 1}]}]}}"#
        .replace('\n', " ");
    let all = parse_jsonl(&line, Reader::Multirc, "multirc").unwrap();
    assert_eq!(all.len(), 5);
    let answers = |xs: &[Example]| xs.iter().map(|e| e.fields["answer"].clone()).collect::<Vec<_>>();
    assert_eq!(answers(&take_limit(all.clone(), 1)), names(&["a", "b", "c"]));
    assert_eq!(answers(&take_limit(all.clone(), 3)), names(&["a", "b", "c"]));
    assert_eq!(answers(&take_limit(all.clone(), 4)), names(&["a", "b", "c", "d", "e"]));
    assert_eq!(take_limit(all.clone(), 100).len(), 5);
    // em over a limited set scores whole questions: Q1 right, never half of Q2.
    let limited = take_limit(all, 4);
    let gold: Vec<String> = limited.iter().map(|e| e.label.clone().unwrap()).collect();
    let groups: Vec<String> = limited.iter().map(|e| e.group.clone().unwrap()).collect();
    let mut pred = gold.clone();
    pred[4] = "0".into();
    assert_eq!(metrics::exact_match(&pred, &gold, &groups).unwrap(), 0.5);
    // Examples without groups are cut exactly; a group met again later joins its start.
    let plain: Vec<Example> = (0..5).map(|i| labelled(&[("a", &i.to_string())], "x")).collect();
    assert_eq!(take_limit(plain, 2).len(), 2);
    let mut scattered: Vec<Example> =
        ["g1", "g2", "g1", "g3"].iter().map(|g| Example { group: Some(g.to_string()), ..labelled(&[("a", g)], "x") }).collect();
    scattered.push(labelled(&[("a", "none")], "x"));
    let kept: Vec<String> = take_limit(scattered, 1).iter().map(|e| e.fields["a"].clone()).collect();
    assert_eq!(kept, names(&["g1", "g1"]));
    // On the real MultiRC dev32 set: the first 10 options extend to the end of their question.
    if let Some(dir) = fewglue_dir() {
        let task = ClozeTask::builtin("multirc").unwrap();
        let all = wenhui::cloze::read_jsonl(&dir.join("FewGLUE_32dev/MultiRC/dev32.jsonl"), task.spec.reader).unwrap();
        let limited = take_limit(all.clone(), 10);
        assert!(limited.len() >= 10);
        let last = limited.last().unwrap().group.clone();
        assert_eq!(limited.len(), all.iter().filter(|e| e.group == last).count() + all.iter().take_while(|e| e.group != last).count());
    }
}

/// A typo'd pseudo-token count is refused at parse time, and a template with `[P]` tokens cannot
/// be trained without the prompt that fills them.
#[test]
fn pseudo_token_limits_and_missing_prompts_are_errors() {
    let toml = |template: &str| {
        format!(
            "name = \"t\"\nfields = [\"w\"]\ntemplate = \"{template}\"\n[[verbalizer]]\nlabel = \"x\"\nwords = [\"x\"]\n\
             [[verbalizer]]\nlabel = \"z\"\nwords = [\"z\"]\n"
        )
    };
    let e = ClozeTask::from_toml(&toml("[P*18446744073709551615][P*1] {w} [MASK]"), "huge").unwrap_err().to_string();
    assert!(e.contains("pseudo tokens: at most 65536"), "{e}");
    let e = ClozeTask::from_toml(&toml("[P*65536][P] {w} [MASK]"), "over").unwrap_err().to_string();
    assert!(e.contains("65537 pseudo tokens"), "{e}");
    let task = ClozeTask::from_toml(&toml("[P*2] {w} [MASK] ."), "p2").unwrap();
    let example = labelled(&[("w", "abxcd")], "x");
    let e = wenhui::cloze::batch_loss(model("glm-tiny").as_ref(), &chars(), &task, &task.template, &[&example], None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 [P] pseudo tokens but no prompt"), "{e}");
}
