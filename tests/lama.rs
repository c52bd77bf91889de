//! LAMA probing: fact counts on the real data (when `../shared/data/lama` or `WENHUI_LAMA_DIR`
//! is there), and the whole path on a hand-made mini folder: knowledge corpus → tokenizer →
//! corpus → tiny GLM / BERT / GPT-2 → `probe lama` on two relations, resumed, through the CLI.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use wenhui::data::prepare::{prepare, PrepareOptions};
use wenhui::data::reader::ReadOptions;
use wenhui::eval::lama::corpus::{build_corpus, write_corpus, CorpusOptions};
use wenhui::eval::lama::data::{LamaDir, Split};
use wenhui::eval::lama::identity::ModelIdentity;
use wenhui::eval::lama::progress::ProbeProgress;
use wenhui::eval::lama::{in_vocab, manual_scores, run_probe, ProbeContext, ProbeOptions, RelationTask, VocabChoice};
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
    tiny_model_seeded(tmp, lama, objective, objective, 1234)
}

/// [`tiny_model`] in `tmp/<name>` from initial weights drawn with `seed`.
fn tiny_model_seeded(tmp: &Path, lama: &LamaDir, objective: &str, name: &str, seed: u64) -> PathBuf {
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
        "corpus": tmp.join("corpus"), "out_dir": tmp.join(name), "layers": 1, "hidden": 32, "heads": 2, "seq_len": 48,
        "batch_size": 4, "steps": 3, "eval_every": 0, "save_every": 0, "valid_fraction": 0.0, "objective": objective, "seed": seed,
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
            model: ModelIdentity::of(&dir, &m.fingerprint, None, &dir).unwrap(),
            out_dir: Some(out.clone()),
            ..Default::default()
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
        let mut never = |_: &ProbeContext<'_>, _: &RelationTask, _: &ProbeProgress| -> wenhui::Result<_> { panic!("scored again") };
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
        let mut counting = |c: &ProbeContext<'_>, t: &RelationTask, p: &ProbeProgress| {
            scored.push(t.relation.relation.clone());
            manual_scores(c, t, p)
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

/// The mini data plus relations P-tuning cannot train or nothing can score: P190 without a train
/// file (as in the shipped data), P37 whose train objects are all outside the vocabulary, P1376
/// with train and dev facts but no test file and no stand-in.
fn mini_lama_with_gaps(dir: &Path) {
    mini_lama(dir);
    let w = |p: &str, s: &str| {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, s).unwrap();
    };
    let mut rel = std::fs::read_to_string(dir.join("relations.jsonl")).unwrap();
    for (id, template, label) in [
        ("P190", "[X] is a twin city of [Y] .", "twinned administrative body"),
        ("P37", "The official language of [X] is [Y] .", "official language"),
        ("P1376", "[X] is the capital of [Y] .", "capital of"),
    ] {
        rel.push_str(&format!("\n{{\"relation\": \"{id}\", \"template\": \"{template}\", \"label\": \"{label}\", \"type\": \"N-M\"}}"));
    }
    w("relations.jsonl", &rel);
    let fact = |s: &str, o: &str| format!("{{\"obj_label\": \"{o}\", \"sub_label\": \"{s}\"}}\n");
    w("fact-retrieval/original/P190/dev.jsonl", &(fact("Rome", "Paris") + &fact("Oslo", "Lima")));
    w("trex_lms_vocab/P190.jsonl", &(fact("Paris", "Rome") + &fact("Lima", "Oslo")));
    w("fact-retrieval/original/P37/train.jsonl", &(fact("France", "Atlantis") + &fact("Peru", "Lemuria")));
    w("fact-retrieval/original/P37/dev.jsonl", &fact("Italy", "Rome"));
    w("fact-retrieval/original/P37/test.jsonl", &(fact("Norway", "Oslo") + &fact("Egypt", "Cairo")));
    w("fact-retrieval/original/P1376/train.jsonl", &fact("Paris", "France"));
    w("fact-retrieval/original/P1376/dev.jsonl", &fact("Rome", "Italy"));
}

/// The first checkpoint directory of a pretraining run in `tmp/name`.
fn checkpoint(tmp: &Path, name: &str) -> PathBuf {
    std::fs::read_dir(tmp.join(name).join("checkpoints")).unwrap().next().unwrap().unwrap().path()
}

/// `wenhui ARGS` in `cwd`.
fn wenhui(cwd: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wenhui")).args(args).current_dir(cwd).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A result file is reused only for the same model files, settings and data: a model replaced at
/// the same path, another P-tuning setting, or changed facts are refused with what differs and
/// how to go on (`--force` replaces); the same model spelled differently is reused.
#[test]
fn reuse_needs_the_same_model_files_settings_and_data() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    mini_lama(&work.join("lama"));
    let lama = LamaDir::open(&work.join("lama")).unwrap();
    tiny_model(tmp.path(), &lama, "default");
    tiny_model_seeded(tmp.path(), &lama, "default", "other", 99);
    copy_dir(&checkpoint(tmp.path(), "default"), &work.join("m"));
    let probe = |model: &str, extra: &[&str]| {
        let mut args = vec!["probe", "lama", "--model", model, "--lama", "lama", "--relations", "P19", "--json"];
        args.extend_from_slice(extra);
        wenhui(&work, &args)
    };
    let p1 = |out: &std::process::Output| -> f64 {
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["relations"][0]["scores"]["p_at_1"].as_f64().unwrap()
    };
    p1(&probe("m", &["-o", "res"]));
    // Mark the result, so that reading it back shows.
    let file = work.join("res/P19.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(v["model"].as_str(), Some(work.join("m").canonicalize().unwrap().to_str().unwrap()), "canonical path recorded");
    assert!(v["model_weights"].as_str().is_some_and(|f| !f.is_empty()) && v["data_fingerprint"].as_str().is_some(), "{v}");
    v["scores"]["p_at_1"] = serde_json::json!(0.123456);
    std::fs::write(&file, v.to_string()).unwrap();
    // The same model spelled differently: reused.
    assert_eq!(p1(&probe("./m", &["-o", "res"])), 0.123456);
    assert_eq!(p1(&probe(work.join("m/").to_str().unwrap(), &["-o", "res"])), 0.123456);
    // The same files elsewhere (a copy, or the folder moved): the same model, reused.
    copy_dir(&work.join("m"), &work.join("m-copy"));
    let out = probe("m-copy", &["-o", "res"]);
    assert_eq!(p1(&out), 0.123456);
    assert!(text(&out.stderr).contains("the same model, now at"), "{}", text(&out.stderr));
    // An older wenhui's file (mode, vocabulary and model path only) of another model is refused;
    // of this model, probed again.
    let mut old = v.clone();
    for k in ["model_weights", "model_files", "data_fingerprint", "limit", "settings"] {
        old.as_object_mut().unwrap().remove(k);
    }
    old["model"] = serde_json::json!("somewhere/else");
    std::fs::create_dir_all(work.join("old")).unwrap();
    std::fs::write(work.join("old/P19.json"), old.to_string()).unwrap();
    let out = probe("m", &["-o", "old"]);
    assert!(!out.status.success() && text(&out.stderr).contains("model `somewhere/else` there"), "{}", text(&out.stderr));
    old["model"] = serde_json::json!(work.join("m").to_str().unwrap());
    std::fs::write(work.join("old/P19.json"), old.to_string()).unwrap();
    let out = probe("m", &["-o", "old"]);
    assert!(p1(&out) != 0.123456 && text(&out.stderr).contains("older wenhui"), "{}", text(&out.stderr));
    // The precision counts: recorded, and named when it differs.
    assert_eq!(v["settings"]["dtype"], "f32", "{v}");
    // Another model copied over the same path: refused, naming the file and what to do.
    std::fs::remove_dir_all(work.join("m")).unwrap();
    copy_dir(&checkpoint(tmp.path(), "other"), &work.join("m"));
    let out = probe("m", &["-o", "res"]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "a replaced model must not reuse the old numbers: {}", text(&out.stdout));
    for needle in ["P19.json", "weights of model", "--output", "--force"] {
        assert!(err.contains(needle), "`{err}` does not mention `{needle}`");
    }
    // --force probes again and replaces the file.
    assert_ne!(p1(&probe("m", &["-o", "res", "--force"])), 0.123456);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(v["scores"]["p_at_1"].as_f64() != Some(0.123456));
    // Changed facts of the relation: refused.
    let test = work.join("lama/fact-retrieval/original/P19/test.jsonl");
    std::fs::write(&test, std::fs::read_to_string(&test).unwrap() + "{\"obj_label\": \"Oslo\", \"sub_label\": \"Zed\"}\n").unwrap();
    let out = probe("m", &["-o", "res"]);
    assert!(!out.status.success() && text(&out.stderr).contains("LAMA files"), "{}", text(&out.stderr));
    // P-tuning: every setting counts; each differing one is named with its flag.
    let pt = ["--mode", "ptune", "-o", "pt", "--epochs", "1"];
    let first = probe("m", &pt);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(probe("m", &pt).status.success(), "same settings: reused");
    let cases: [(&[&str], &str); 4] = [
        (&["--mode", "ptune", "-o", "pt", "--epochs", "2"], "--epochs 1 there, 2 now"),
        (&["--mode", "ptune", "-o", "pt", "--epochs", "1", "--lr", "0.01"], "--lr 0.001 there, 0.01 now"),
        (&["--mode", "ptune", "-o", "pt", "--epochs", "1", "--seed", "7"], "--seed 34 there, 7 now"),
        (&["--mode", "ptune", "-o", "pt", "--epochs", "1", "--template", "2,2,2"], "--template 3,3,3 there, 2,2,2 now"),
    ];
    for (args, needle) in cases {
        let out = probe("m", args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?}: reused a result of other settings");
        assert!(err.contains(needle) && err.contains("P19.json"), "{args:?}: `{err}` does not say `{needle}`");
    }
}

/// `--mode ptune` skips a relation it cannot train (no train file, or every train fact filtered
/// out), says why in a line and in the table, and goes on with the next relation.
#[test]
fn ptune_skips_relations_without_training_facts_and_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("lama");
    mini_lama_with_gaps(&data);
    tiny_model(tmp.path(), &LamaDir::open(&data).unwrap(), "default");
    let model = checkpoint(tmp.path(), "default");
    let run = |relations: &str, out: &str| {
        let (m, d, o) = (model.to_str().unwrap(), data.to_str().unwrap(), tmp.path().join(out));
        wenhui(
            tmp.path(),
            &[
                "probe",
                "lama",
                "--mode",
                "ptune",
                "--epochs",
                "1",
                "--relations",
                relations,
                "--model",
                m,
                "--lama",
                d,
                "-o",
                o.to_str().unwrap(),
            ],
        )
    };
    let out = run("P19,P190,P37", "pt");
    let (table, err) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{err}");
    let row = |rel: &str| {
        table.lines().find(|l| l.starts_with(&format!("{rel} "))).unwrap_or_else(|| panic!("no {rel} row: {table}")).to_string()
    };
    let p190 = row("P190");
    assert!(p190.contains('—') && p190.contains("skipped") && p190.contains("P190/train.jsonl"), "{p190}");
    let p37 = row("P37");
    assert!(p37.contains("all 2 train facts") && p37.contains("filtered out by the vocabulary"), "{p37}");
    assert!(!row("P19").contains("skipped"));
    assert!(row("macro").contains("1 of 3 relations"), "{table}");
    // A one-line note for each, even where the progress is not shown.
    assert!(err.lines().any(|l| l.starts_with("P190 skipped") && l.contains("no train file")), "{err}");
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tmp.path().join("pt/P190.json")).unwrap()).unwrap();
    assert!(saved["skipped"].as_str().is_some_and(|s| s.contains("train.jsonl")), "{saved}");
    // All relations: the run finishes; the one without test facts is skipped too.
    let out = run("all", "pt");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let p1376 = table.lines().find(|l| l.starts_with("P1376 ")).unwrap_or_default();
    assert!(p1376.contains("no test file") && p1376.contains("stand-in"), "{table}");
    assert!(table.contains("2 of 5 relations"), "{table}");
}

/// `--relations all --mode ptune` on the shipped data finishes: P190, P47 and P530 (no train
/// file) are skipped, not an error.
#[test]
fn ptune_on_all_shipped_relations_finishes() {
    let Some(real) = real_lama() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("lama");
    mini_lama(&data);
    tiny_model(tmp.path(), &LamaDir::open(&data).unwrap(), "default");
    let model = checkpoint(tmp.path(), "default");
    let (m, d, o) = (model.to_str().unwrap(), real.to_str().unwrap(), tmp.path().join("pt"));
    let args = ["probe", "lama", "--mode", "ptune", "--epochs", "1", "--limit", "3", "--relations", "all", "--quiet"];
    let out = wenhui(tmp.path(), &[&args[..], &["--model", m, "--lama", d, "-o", o.to_str().unwrap()]].concat());
    let (table, err) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{err}\n{table}");
    assert_eq!(table.lines().filter(|l| l.starts_with('P')).count(), 41, "{table}");
    for rel in ["P190", "P47", "P530"] {
        let row = table.lines().find(|l| l.starts_with(&format!("{rel} "))).unwrap_or_default();
        assert!(row.contains("skipped"), "{rel}: {row}");
        assert!(err.contains(&format!("{rel} skipped")), "{rel}: a note even with --quiet: {err}");
    }
}

/// `--mode ptune` reports every epoch (a line each when stderr is not a terminal, none with
/// --quiet) and records dev P@1 per epoch, the best epoch and the hyper-parameters.
#[test]
fn ptune_reports_every_epoch_and_records_the_training() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("lama");
    mini_lama(&data);
    tiny_model(tmp.path(), &LamaDir::open(&data).unwrap(), "default");
    let model = checkpoint(tmp.path(), "default");
    let run = |out: &str, extra: &[&str]| {
        let (m, d, o) = (model.to_str().unwrap(), data.to_str().unwrap(), tmp.path().join(out));
        let args = [
            "probe",
            "lama",
            "--mode",
            "ptune",
            "--epochs",
            "3",
            "--relations",
            "P19",
            "--model",
            m,
            "--lama",
            d,
            "-o",
            o.to_str().unwrap(),
        ];
        wenhui(tmp.path(), &[&args[..], extra].concat())
    };
    let out = run("pt", &[]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    for epoch in 0..=3 {
        let line =
            err.lines().find(|l| l.starts_with(&format!("P19 epoch {epoch}/3"))).unwrap_or_else(|| panic!("no epoch {epoch} line: {err}"));
        assert!(line.contains("dev P@1 ") && line.contains("best "), "{line}");
        assert!(epoch == 0 || (line.contains("elapsed") && line.contains(": loss ")), "{line}");
    }
    assert!(err.lines().any(|l| l.starts_with("P19 place of birth") && l.contains("P@1")), "the relation's line: {err}");
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tmp.path().join("pt/P19.json")).unwrap()).unwrap();
    let t = &saved["training"];
    assert_eq!(t["epochs"], 3, "{saved}");
    assert_eq!(t["dev_p1"].as_array().map(Vec::len), Some(4), "dev P@1 before training and after each epoch: {saved}");
    let losses = t["train_loss"].as_array().unwrap_or_else(|| panic!("no train_loss: {saved}"));
    assert!(losses.len() == 3 && losses.iter().all(|l| l.as_f64().is_some_and(|l| l.is_finite() && l > 0.0)), "{saved}");
    assert!(t["best_epoch"].as_u64().is_some_and(|e| e <= 3) && t["best_dev_p1"].as_f64().is_some(), "{saved}");
    let best = t["best_epoch"].as_u64().unwrap() as usize;
    assert_eq!(t["dev_p1"][best], t["best_dev_p1"], "{saved}");
    let s = &saved["settings"];
    for (k, v) in
        [("lr", serde_json::json!(0.001)), ("epochs", 3.into()), ("patience", 20.into()), ("batch_size", 8.into()), ("seed", 34.into())]
    {
        assert_eq!(s[k], v, "{k}: {saved}");
    }
    assert_eq!(s["template"], serde_json::json!([3, 3, 3]), "{saved}");
    assert!(s["gamma"].is_number() && s["weight_decay"].is_number() && s["encoder"].is_string(), "{saved}");
    // --quiet: no progress lines.
    let out = run("pt-quiet", &["--quiet"]);
    assert!(out.status.success());
    assert!(!text(&out.stderr).contains("epoch"), "{}", text(&out.stderr));
}

/// The table lists the relations in the order asked; one without facts shows `—` and why, and
/// the macro line says how many relations it averages.
#[test]
fn table_keeps_the_asked_order_and_marks_unscored_relations() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("lama");
    mini_lama_with_gaps(&data);
    tiny_model(tmp.path(), &LamaDir::open(&data).unwrap(), "default");
    let model = checkpoint(tmp.path(), "default");
    let run = |extra: &[&str]| {
        let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
        let args = ["probe", "lama", "--relations", "P36,P1376,P19,P36", "--model", m, "--lama", d, "-o"];
        wenhui(tmp.path(), &[&args[..], &[tmp.path().join("res").to_str().unwrap()], extra].concat())
    };
    let out = run(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let rows: Vec<&str> = table.lines().skip(2).map(|l| l.split_whitespace().next().unwrap_or_default()).collect();
    assert_eq!(&rows[..4], ["P36", "P1376", "P19", "macro"], "{table}");
    let p1376 = table.lines().find(|l| l.starts_with("P1376 ")).unwrap();
    assert!(p1376.contains('—') && !p1376.contains("0.0") && p1376.contains("no test file"), "{p1376}");
    let mac = table.lines().find(|l| l.starts_with("macro")).unwrap();
    assert!(mac.contains("2 of 3 relations"), "{mac}");
    assert_eq!(table.lines().last(), Some(mac), "the macro line comes last");
    // JSON: the same order, the reason, the macro over the two scored relations.
    let out = run(&["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = v["relations"].as_array().unwrap().iter().map(|r| r["relation"].as_str().unwrap()).collect();
    assert_eq!(ids, ["P36", "P1376", "P19"]);
    assert!(v["relations"][1]["skipped"].as_str().is_some_and(|s| s.contains("no test file")));
    let n = v["relations"][0]["scores"]["n"].as_u64().unwrap() + v["relations"][2]["scores"]["n"].as_u64().unwrap();
    assert_eq!(v["macro_average"]["n"].as_u64(), Some(n));
}
