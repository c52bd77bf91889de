//! LAMA probing: fact counts on the real data (when `../shared/data/lama` or `WENHUI_LAMA_DIR`
//! is there), and the whole path on a hand-made mini folder: knowledge corpus → tokenizer →
//! corpus → tiny GLM / BERT / GPT-2 → `probe lama` on two relations, resumed, through the CLI.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use wenhui::data::prepare::{prepare, PrepareOptions};
use wenhui::data::reader::ReadOptions;
use wenhui::eval::lama::corpus::{build_corpus, write_corpus, CorpusOptions};
use wenhui::eval::lama::data::{LamaDir, Split};
use wenhui::eval::lama::{in_vocab, manual_scores, run_probe, ProbeContext, ProbeOptions, VocabChoice};
use wenhui::model::load_model;
use wenhui::tokenizer::train::{train_tokenizer, TrainKind, TrainOptions};
use wenhui::train::config::PretrainConfig;
use wenhui::train::pretrain::{pretrain, RunOptions};

fn real_lama() -> Option<PathBuf> {
    let dir = std::env::var_os("WENHUI_LAMA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/lama"));
    if dir.join("relations.jsonl").is_file() {
        Some(dir)
    } else {
        eprintln!("skipped: no LAMA data at {} (set WENHUI_LAMA_DIR)", dir.display());
        None
    }
}

#[test]
fn fact_counts_match_the_data_readme() {
    let Some(dir) = real_lama() else { return };
    let lama = LamaDir::open(&dir).unwrap();
    let rels = lama.relations().unwrap();
    assert_eq!(rels.len(), 41, "41 T-REx relations have facts");
    let k29 = lama.vocab("29k").unwrap();
    let common = lama.vocab("common").unwrap();
    assert_eq!((k29.len(), common.len()), (18_154, 21_018));
    let (mut files, mut facts) = ([0usize; 3], [0usize; 3]);
    let (mut in29, mut in_common) = (0, 0);
    let mut per_relation = Vec::new();
    for r in &rels {
        for (k, split) in [Split::Train, Split::Dev, Split::Test].into_iter().enumerate() {
            if let Some(f) = lama.split(&r.relation, split).unwrap() {
                files[k] += 1;
                facts[k] += f.len();
                if split == Split::Test {
                    let n29 = in_vocab(&f, Some(&k29)).len();
                    in29 += n29;
                    in_common += in_vocab(&f, Some(&common)).len();
                    per_relation.push((r.relation.clone(), f.len(), n29));
                }
            }
        }
    }
    // README "Counts": train 26,772 in 38 files, dev 7,055 in 40, test 22,881 in 28, 19,962 in 29k.
    assert_eq!(files, [38, 40, 28]);
    assert_eq!(facts, [26_772, 7_055, 22_881]);
    assert_eq!(in29, 19_962);
    assert_eq!(in_common, 22_881, "every test object is in LAMA's common vocabulary");
    // README per relation (test / test ∩ 29k).
    for (rel, test, n29) in
        [("P19", 944, 780), ("P20", 953, 817), ("P101", 696, 573), ("P264", 429, 53), ("P413", 952, 952), ("P1303", 949, 513)]
    {
        assert!(per_relation.contains(&(rel.to_string(), test, n29)), "{rel}: expected {test}/{n29}, got {per_relation:?}");
    }
    // Stand-ins for the 13 relations without a test file: 9,540 facts (README "Gaps").
    let stand_in: usize = rels
        .iter()
        .filter(|r| lama.split(&r.relation, Split::Test).unwrap().is_none())
        .map(|r| {
            let d = lama.relation_data(&r.relation).unwrap();
            assert_eq!(d.test_source, "trex_lms_vocab", "{}", r.relation);
            d.test.len()
        })
        .sum();
    assert_eq!(stand_in, 9_540);
}

/// Two relations with ParaRel-style patterns, facts in every split, vocab lists.
fn mini_lama(dir: &Path) {
    let w = |p: &str, s: String| {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, s).unwrap();
    };
    w(
        "relations.jsonl",
        [
            r#"{"relation": "P19", "template": "[X] was born in [Y] .", "label": "place of birth", "type": "N-1"}"#,
            r#"{"relation": "P36", "template": "The capital of [X] is [Y] .", "label": "capital", "type": "1-1"}"#,
        ]
        .join("\n"),
    );
    let cities = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Delhi"];
    let people = ["Ann", "Bob", "Cy", "Dan", "Eve", "Fay", "Gus", "Hal", "Ida", "Jo", "Kim", "Lu"];
    let fact = |s: &str, o: &str| format!("{{\"obj_label\": \"{o}\", \"sub_label\": \"{s}\"}}\n");
    let facts = |range: std::ops::Range<usize>| range.map(|i| fact(people[i], cities[i % cities.len()])).collect::<String>();
    w("fact-retrieval/original/P19/train.jsonl", facts(0..6));
    w("fact-retrieval/original/P19/dev.jsonl", facts(6..8));
    w("fact-retrieval/original/P19/test.jsonl", facts(8..12) + &fact("Mo", "Atlantis"));
    let countries = ["France", "Italy", "Norway", "Peru", "Egypt", "India"];
    let caps = |r: std::ops::Range<usize>| r.map(|i| fact(countries[i], cities[i])).collect::<String>();
    w("fact-retrieval/original/P36/train.jsonl", caps(0..3));
    w("fact-retrieval/original/P36/dev.jsonl", caps(3..4));
    w("trex_lms_vocab/P36.jsonl", caps(4..6));
    let pats = |ps: &[&str]| ps.iter().map(|p| format!("{{\"pattern\": \"{p}\"}}\n")).collect::<String>();
    w("pararel_patterns/P19.jsonl", pats(&["[X] was born in [Y].", "[X] is originally from [Y].", "[X] comes from [Y]."]));
    w("pararel_patterns/P36.jsonl", pats(&["The capital of [X] is [Y].", "[X]'s capital is [Y].", "[Y] is the capital city of [X]."]));
    w("29k-vocab.json", format!("{{\"bert-base-cased\": {:?}}}", cities));
    w("common_vocab_cased.txt", cities.join("\n") + "\n");
}

/// A tiny model of `objective` pretrained for a few steps on the mini knowledge corpus.
fn tiny_model(tmp: &Path, lama: &LamaDir, objective: &str) -> PathBuf {
    let text = tmp.join("knowledge.txt");
    if !text.is_file() {
        let (docs, _) = build_corpus(lama, &CorpusOptions { repeats: 3, ..Default::default() }).unwrap();
        write_corpus(&docs, &text).unwrap();
        let tok = train_tokenizer(
            std::slice::from_ref(&text),
            &TrainOptions { kind: TrainKind::Bpe, vocab_size: 400, min_frequency: 1, read: ReadOptions::default(), progress: false },
        )
        .unwrap();
        prepare(std::slice::from_ref(&text), &tok, &tmp.join("corpus"), &PrepareOptions { progress: false, ..Default::default() }).unwrap();
    }
    let o = serde_json::json!({
        "corpus": tmp.join("corpus"), "out_dir": tmp.join(objective), "layers": 1, "hidden": 32, "heads": 2, "seq_len": 48,
        "batch_size": 4, "steps": 3, "eval_every": 0, "save_every": 0, "valid_fraction": 0.0, "objective": objective,
    });
    let cfg = PretrainConfig::load(None, o.as_object().unwrap().clone()).unwrap();
    pretrain(&cfg, &RunOptions::default()).unwrap().model_dir
}

#[test]
fn probe_runs_end_to_end_on_tiny_models() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("lama");
    mini_lama(&data);
    let lama = LamaDir::open(&data).unwrap();
    for objective in ["default", "mlm", "causal"] {
        let dir = tiny_model(tmp.path(), &lama, objective);
        let m = load_model(&dir, &Default::default()).unwrap();
        let tok = wenhui::tokenizer::Tokenizer::from_dir(&dir).unwrap();
        let ctx = ProbeContext::new(m.backbone.as_ref(), &tok, &lama, VocabChoice::K29, 3).unwrap();
        let allowed: HashSet<u32> = ctx.allowed_ids(true).iter().copied().collect();
        assert_eq!(allowed.len(), 6, "{objective}: the six cities are single tokens: {:?}", ctx.allowed_ids(true));
        let out = tmp.path().join(format!("results-{objective}"));
        let opts = ProbeOptions {
            relations: Some(vec!["P19".into(), "P36".into()]),
            mode: "manual".into(),
            model_name: dir.display().to_string(),
            out_dir: Some(out.clone()),
            limit: None,
            progress: false,
        };
        let report = run_probe(&lama, &ctx, &opts, &mut manual_scores).unwrap();
        assert_eq!(report.relations.len(), 2);
        let p19 = &report.relations[0];
        // "Atlantis" is neither in the list nor one token: dropped.
        assert_eq!((p19.facts, p19.test_dropped, p19.test_source.as_str()), ([6, 2, 4], 1, "fact-retrieval"), "{objective}");
        let p36 = &report.relations[1];
        assert_eq!((p36.facts, p36.test_source.as_str()), ([3, 1, 2], "trex_lms_vocab"), "{objective}");
        for r in &report.relations {
            let s = r.scores;
            assert!(s.p_at_1 <= s.p_at_10 && s.p_at_10 == 1.0, "6 allowed answers: all in the top 10 ({s:?})");
            assert!(s.mrr >= 1.0 / 6.0 - 1e-12 && s.mrr <= 1.0);
        }
        assert_eq!(report.macro_average.n, 6);
        assert!(out.join("P19.json").is_file() && out.join("P36.json").is_file());
        // Resume: the result files are read back, nothing is scored again.
        let mut never = |_: &ProbeContext<'_>, _: &wenhui::eval::lama::RelationTask| -> wenhui::Result<_> { panic!("scored again") };
        let again = run_probe(&lama, &ctx, &opts, &mut never).unwrap();
        assert!(again.relations.iter().all(|r| r.cached));
        assert_eq!(again.macro_average, report.macro_average);
        // Another mode in the same folder is refused, naming the file.
        let e = run_probe(&lama, &ctx, &ProbeOptions { mode: "ptune".into(), ..opts.clone() }, &mut manual_scores).unwrap_err();
        assert!(e.to_string().contains("P19.json"), "{e}");
        // So is another --limit: its results would stand for a different set of facts.
        let e = run_probe(&lama, &ctx, &ProbeOptions { limit: Some(2), ..opts.clone() }, &mut manual_scores).unwrap_err();
        assert!(e.to_string().contains("--limit 2"), "{e}");
        // A file from before result files recorded their --limit (no `limit` key) is probed
        // again and replaced, not taken for a run over all facts.
        let p19_file = out.join("P19.json");
        let mut old: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p19_file).unwrap()).unwrap();
        old.as_object_mut().unwrap().remove("limit");
        std::fs::write(&p19_file, serde_json::to_string(&old).unwrap()).unwrap();
        let mut scored = Vec::new();
        let mut counting = |c: &ProbeContext<'_>, t: &wenhui::eval::lama::RelationTask| {
            scored.push(t.relation.relation.clone());
            manual_scores(c, t)
        };
        let third = run_probe(&lama, &ctx, &opts, &mut counting).unwrap();
        assert_eq!(scored, vec!["P19".to_string()], "only the file without its limit is probed again");
        assert_eq!(third.macro_average, report.macro_average);
        assert!(std::fs::read_to_string(&p19_file).unwrap().contains("\"limit\""));
    }

    // P-tuning's query layouts: (3,3,3) and, for GPT-2, (3,3,0).
    let t = wenhui::eval::lama::ptune_template(3, 3, 3).unwrap();
    assert_eq!((t.num_pseudo(), t.space_before_mask()), (9, true));
    let t = wenhui::eval::lama::ptune_template(3, 3, 0).unwrap();
    assert_eq!(t.num_pseudo(), 6);
    let dir = tmp.path().join("causal/checkpoints");
    let gpt = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let m = load_model(&gpt, &Default::default()).unwrap();
    let tok = wenhui::tokenizer::Tokenizer::from_dir(&gpt).unwrap();
    let ctx = ProbeContext::new(m.backbone.as_ref(), &tok, &lama, VocabChoice::K29, 3).unwrap();
    let task = wenhui::eval::lama::relation_task(&lama, &ctx, &lama.relations().unwrap()[0], None).unwrap();
    let q = ctx.queries(&t, &task.test).unwrap();
    assert!(q.iter().all(|c| c.pseudo.len() == 6 && c.answer_row == c.ids.len() - 1 && c.pseudo[5] == c.answer_row));
    let prompt = candle_core::Tensor::zeros((6, m.backbone.info().hidden_size), candle_core::DType::F32, m.backbone.device()).unwrap();
    assert_eq!(ctx.rank_facts(&t, &task.test, Some(&prompt)).unwrap().len(), task.test.len());

    // The CLI: table, JSON, --mode ptune.
    let glm = tmp.path().join("default/checkpoints");
    let model = std::fs::read_dir(&glm).unwrap().next().unwrap().unwrap().path();
    let cli = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
            .args(["probe", "lama", "--relations", "P19,P36", "--vocab", "common", "--model"])
            .arg(&model)
            .arg("--lama")
            .arg(&data)
            .arg("--output")
            .arg(tmp.path().join("cli-results"))
            .args(extra)
            .output()
            .unwrap()
    };
    let out = cli(&["--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["relations"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["vocab"], "common");
    let out = cli(&[]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("P19") && table.contains("macro") && table.contains("stand-in"), "{table}");
    // --mode ptune into the same folder is refused (other mode), into its own folder it trains
    // one prompt per relation and scores the test facts.
    let out = cli(&["--mode", "ptune"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("P19.json"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .args(["probe", "lama", "--relations", "P19,P36", "--vocab", "common", "--mode", "ptune", "--epochs", "3", "--json", "--model"])
        .arg(&model)
        .arg("--lama")
        .arg(&data)
        .arg("--output")
        .arg(tmp.path().join("cli-ptune"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["mode"].as_str(), v["relations"].as_array().unwrap().len()), (Some("ptune"), 2), "{v}");
    for r in v["relations"].as_array().unwrap() {
        let p1 = r["scores"]["p_at_1"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p1), "{r}");
    }
    // `probe corpus` writes the corpus and says what is in it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .args(["probe", "corpus", "--json", "--repeats", "2", "--lama"])
        .arg(&data)
        .arg("-o")
        .arg(tmp.path().join("k.txt"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["fact_sentences"], 2 * (13 + 6));
    // An existing corpus is replaced only with --force.
    let again = |force: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"));
        c.args(["probe", "corpus", "--repeats", "1", "--lama"]).arg(&data).arg("-o").arg(tmp.path().join("k.txt"));
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    let before = std::fs::read_to_string(tmp.path().join("k.txt")).unwrap();
    let out = again(false);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(tmp.path().join("k.txt")).unwrap(), before);
    assert!(again(true).status.success());
    assert_ne!(std::fs::read_to_string(tmp.path().join("k.txt")).unwrap(), before);
}

/// Flags that would make a probe measure nothing, or a corpus fill the memory, are refused by
/// name before any model is loaded.
#[test]
fn probe_flags_name_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("lama");
    mini_lama(&data);
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
            .args(args)
            .arg("--lama")
            .arg(&data)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    let out_file = tmp.path().join("k.txt");
    let cases: [(&[&str], i32, &[&str]); 5] = [
        (&["probe", "corpus", "--repeats", "1000000000", "-o", out_file.to_str().unwrap()], 1, &["--repeats 1000000000", "at most 1000"]),
        (&["probe", "lama", "--model", "tests/fixtures/glm-tiny", "--limit", "0"], 2, &["--limit", "must be at least 1"]),
        (&["probe", "lama", "--model", "tests/fixtures/glm-tiny", "--relations", ""], 1, &["--relations", "P19,P20"]),
        (&["probe", "lama", "--model", "tests/fixtures/glm-tiny", "--relations", " , "], 1, &["--relations", "names no relation"]),
        (&["probe", "lama", "--model", "tests/fixtures/glm-tiny", "--mode", "ptune", "--lr", "nan"], 2, &["--lr", "finite number > 0"]),
    ];
    for (args, code, needles) in cases {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(!err.contains("missing or empty"), "{args:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: `{err}` does not mention `{n}`");
        }
    }
    assert!(!out_file.exists(), "no corpus is written");
    let e = build_corpus(&LamaDir::open(&data).unwrap(), &CorpusOptions { repeats: 1001, ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("at most 1000"), "{e}");
}
