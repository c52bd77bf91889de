//! The embedded poetry GLM (`models/poetry-glm`): it loads, its config and tokenizer agree, its model
//! card is complete, `wenhui poem` on it meets the requested form, rhyme and acrostic heads with a
//! fixed seed, `wenhui fill` works on it, `wenhui eval poems` runs on a 3-title subset (and one method
//! with a task file, the judge keeping its own layout; an earlier report judged again by another
//! judge), and `wenhui poem --titles` writes one valid
//! poem per title.

use std::process::Command;

use wenhui::generate::poetry::{check_poem, Constraints};
use wenhui::model::{load_model, LoadOptions, ModelKind};
use wenhui::tokenizer::Tokenizer;

fn wenhui() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wenhui"));
    // Unpack the embedded model into this build's target directory, not the user's cache.
    c.env("WENHUI_CACHE", concat!(env!("CARGO_TARGET_TMPDIR"), "/wenhui-cache"));
    c
}

#[test]
fn shipped_model_loads_and_matches_its_tokenizer() {
    let dir = wenhui::embedded::poetry_model_dir().unwrap();
    let m = load_model(&dir, &LoadOptions::default()).unwrap();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let info = m.backbone.info();
    assert_eq!(info.kind, ModelKind::Glm);
    assert!(tok.vocab_size(true) <= info.vocab_size, "tokenizer {} > model vocabulary {}", tok.vocab_size(true), info.vocab_size);
    for name in ["cls", "mask", "smask", "gmask", "sop", "eop", "eos"] {
        let id = tok.special.get(name).unwrap();
        assert!((id as usize) < info.vocab_size, "{name} = {id}");
    }
    // Every character of the prompt layout and of common titles is one known token.
    for text in ["题名：虹桥机场；作者：李白；体裁：五言绝句；正文：", "春夏秋冬"] {
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(ids.len(), text.chars().count(), "{text}");
        assert!(!ids.contains(&tok.special.get("unk").unwrap()), "{text}");
    }
    let bytes: u64 = std::fs::read_dir(env!("CARGO_MANIFEST_DIR").to_string() + "/models/poetry-glm")
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(bytes <= 30_000_000, "the shipped model takes {bytes} bytes");
    let card = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models/poetry-glm/MODEL_CARD.md")).unwrap();
    for section in ["## Data", "## Objectives", "## Shape", "## Training", "## Held-out perplexity", "loss.png"] {
        assert!(card.contains(section), "model card lacks {section}");
    }
}

#[test]
fn poem_command_meets_the_requested_constraints() {
    for (title, form, heads, rhyme) in [
        ("虹桥机场", "五绝", "", "pingshui"),
        ("咏相对论", "七绝", "", "pingshui"),
        ("四季", "五绝", "春夏秋冬", "pingshui"),
        ("登高", "五律", "", "cilin"),
    ] {
        let out = wenhui()
            .args([
                "poem",
                "--title",
                title,
                "--form",
                form,
                "--acrostic",
                heads,
                "--rhyme",
                rhyme,
                "--seed",
                "3",
                "--json",
                "--beams",
                "4",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{title}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let text = v["text"].as_str().unwrap();
        assert_eq!(v["constraints_ok"], true, "{title}: {v}");
        let c = Constraints::parse(form, rhyme, heads).unwrap();
        assert!(check_poem(text, &c).unwrap().is_ok(), "{title}: {text}");
        let lines = v["lines"].as_array().unwrap();
        assert_eq!(lines.len(), c.form.lines());
        for (k, h) in c.heads.iter().enumerate() {
            assert!(lines[k].as_str().unwrap().starts_with(*h), "{text}");
        }
    }
    // Human output: the title, then one line per poem line; the same seed gives the same poem.
    let run = || wenhui().args(["poem", "--title", "虹桥机场", "--seed", "5"]).output().unwrap();
    let (a, b) = (run(), run());
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    let text = String::from_utf8(a.stdout).unwrap();
    assert!(text.starts_with("《虹桥机场》\n"), "{text}");
}

#[test]
fn poem_command_rejects_bad_input() {
    for (args, want) in [
        (vec!["--title", ""], "--title is empty"),
        (vec!["--title", "春", "--acrostic", "春夏"], "one head character per line"),
        (vec!["--title", "春", "--acrostic", "ABCD"], "not a Chinese character"),
        (vec!["--title", "春", "--form", "六言"], "unknown poem form"),
        (vec!["--title", "春", "--rhyme", "x"], "unknown rhyme table"),
        (vec!["--title", &"长".repeat(300)], "positions"),
    ] {
        let out = wenhui().arg("poem").args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn fill_works_on_the_shipped_model() {
    let out = wenhui().args(["fill", "--json", "床前明月光，[MASK]。"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["text"].as_str().unwrap().starts_with("床前明月光，"));
    assert_eq!(v["fills"].as_array().unwrap().len(), 1);
}

#[test]
fn eval_poems_runs_on_three_titles() {
    let titles = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/eval/heldout-titles.jsonl");
    let out = wenhui()
        .args(["eval", "poems", "--titles", titles, "--limit", "3", "--beams", "3", "--distractors", "2", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let all = v["summary"]["all"].as_array().unwrap();
    // baseline, inverse, and the held-out human poem (the titles file carries it).
    let methods: Vec<&str> = all.iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["baseline", "inverse", "human"]);
    for m in all {
        assert_eq!(m["poems"], 3);
        let acc = m["retrieval_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
        assert!(m["mean_rank"].as_f64().unwrap() >= 1.0 && m["mean_rank"].as_f64().unwrap() <= 3.0);
    }
    assert_eq!(v["summary"]["all"][1]["validity"], 1.0, "{v}");
    assert_eq!(v["summary"]["all"][0]["validity"], 1.0, "{v}");
    assert_eq!(v["rows"].as_array().unwrap().len(), 9);
}

/// A scratch directory `name` holding `titles.jsonl` with `lines`.
fn titles_file(name: &str, lines: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let titles = dir.join("titles.jsonl");
    std::fs::write(&titles, lines).unwrap();
    (dir, titles)
}

#[test]
fn eval_poems_runs_one_method_with_a_task_file() {
    let (dir, titles) = titles_file("eval-poems-task", "{\"title\": \"春江\"}\n{\"title\": \"秋夜\"}\n");
    // A task file with fewer beams than the built-in one drives the generator.
    let task = dir.join("poem.toml");
    let builtin = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/tasks/poem.toml")).unwrap();
    std::fs::write(&task, builtin.replace("beams = 6", "beams = 2").replace("refine_rounds = 1", "refine_rounds = 0")).unwrap();
    let run = |methods: &str| {
        wenhui()
            .args(["eval", "poems", "--titles", titles.to_str().unwrap(), "--distractors", "1", "--json", "--methods", methods])
            .args(["--task", task.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = run("inverse");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["method"] == "inverse" && r["valid"] == true), "{v}");
    assert_eq!(v["summary"]["all"].as_array().unwrap().len(), 1);
    // The order given does not matter; an unknown method is refused.
    let both: serde_json::Value = serde_json::from_slice(&run("inverse,baseline").stdout).unwrap();
    let methods: Vec<&str> = both["rows"].as_array().unwrap().iter().map(|r| r["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["baseline", "inverse", "baseline", "inverse"]);
    assert_eq!(both["rows"][1]["text"], v["rows"][0]["text"], "the same seed gives the same inverse poem");
    let bad = run("greedy");
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("greedy"));
}

#[test]
fn eval_poems_judge_reads_its_own_layout_whatever_the_generation_task() {
    let (dir, titles) = titles_file("eval-poems-judge-task", "{\"title\": \"春江\"}\n{\"title\": \"秋夜\"}\n{\"title\": \"边城\"}\n");
    let builtin = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/tasks/poem.toml")).unwrap();
    let write = |name: &str, mask: &str| {
        let path = dir.join(name);
        std::fs::write(&path, builtin.replacen("mask = \"[sMASK]\"", &format!("mask = \"{mask}\""), 1)).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains(mask));
        path
    };
    let (token_mask, unknown) = (write("token-mask.toml", "[MASK]"), write("unknown.toml", "[NOPE]"));
    let run = |extra: &[&str]| {
        wenhui()
            .args(["eval", "poems", "--titles", titles.to_str().unwrap(), "--distractors", "2", "--json", "--methods", "sampling"])
            .args(extra)
            .output()
            .unwrap()
    };
    let rows = |out: std::process::Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["rows"].as_array().unwrap().iter().map(|r| (r["text"].clone(), r["rank"].clone())).collect::<Vec<_>>()
    };
    // Plain sampling never reads the inverse prompt, so another inverse mask in the generation task
    // changes neither the poems nor (the judge keeping its own layout) their ranks.
    let default = rows(run(&[]));
    assert_eq!(rows(run(&["--task", token_mask.to_str().unwrap()])), default);
    assert_eq!(rows(run(&["--judge-task", concat!(env!("CARGO_MANIFEST_DIR"), "/assets/tasks/poem.toml")])), default);
    // `--judge-task` is read (and checked, naming the file).
    let bad = run(&["--judge-task", unknown.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("unknown.toml") && err.contains("inverse.mask"), "{err}");
}

#[test]
fn eval_poems_repeats_are_runs_with_the_next_seeds() {
    let (_dir, titles) = titles_file("eval-poems-repeats", "{\"title\": \"春江\"}\n{\"title\": \"秋夜\"}\n{\"title\": \"边城\"}\n");
    let run = |extra: &[&str]| {
        let out = wenhui()
            .args(["eval", "poems", "--titles", titles.to_str().unwrap(), "--distractors", "1", "--json", "--methods", "sampling"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let two = run(&["--seed", "5", "--repeats", "2"]);
    let second = run(&["--seed", "6"]);
    let rows = two["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    assert_eq!(two["repeats"], 2);
    // Repeat 1 is exactly the run with the next seed: the same poems, the same ranks.
    let key = |r: &serde_json::Value| (r["title"].clone(), r["text"].clone(), r["rank"].clone());
    let repeat1: Vec<_> = rows.iter().filter(|r| r["repeat"] == 1).map(key).collect();
    let next: Vec<_> = second["rows"].as_array().unwrap().iter().map(key).collect();
    assert_eq!(repeat1, next);
    assert!(rows.iter().all(|r| r["method"] == "sampling" && r["valid"] == true), "{two}");
    // Plain sampling is one line per step: different seeds give different poems.
    assert_ne!(rows[0]["text"], rows[3]["text"]);
    let m = &two["summary"]["all"][0];
    assert_eq!(m["poems"], 6);
    let per: Vec<f64> = [&two, &second].iter().map(|v| v["summary"]["all"][0]["retrieval_accuracy"].as_f64().unwrap()).collect();
    let first_acc = rows.iter().filter(|r| r["repeat"] == 0 && r["rank"] == 1).count() as f64 / 3.0;
    let mean = (first_acc + per[1]) / 2.0;
    assert!((m["retrieval_accuracy"].as_f64().unwrap() - mean).abs() < 1e-9, "{m}");
    let sd = ((first_acc - mean).powi(2) + (per[1] - mean).powi(2)).sqrt();
    assert!((m["retrieval_sd"].as_f64().unwrap() - sd).abs() < 1e-9, "{m}");
    let zero = wenhui().args(["eval", "poems", "--titles", titles.to_str().unwrap(), "--repeats", "0"]).output().unwrap();
    assert!(!zero.status.success() && String::from_utf8_lossy(&zero.stderr).contains("--repeats"));
}

#[test]
fn eval_poems_rejudge_is_the_run_with_the_other_judge() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("eval-poems-rejudge");
    std::fs::create_dir_all(&dir).unwrap();
    let titles = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/eval/heldout-titles.jsonl");
    let other_judge = concat!(env!("CARGO_MANIFEST_DIR"), "/models/poetry-glm");
    let run = |extra: &[&str]| {
        wenhui().args(["eval", "poems", "--titles", titles, "--limit", "3", "--distractors", "2", "--json"]).args(extra).output().unwrap()
    };
    let json = |out: std::process::Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let key = |v: &serde_json::Value| {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (r["title"].clone(), r["method"].clone(), r["repeat"].clone(), r["text"].clone(), r["valid"].clone(), r["rank"].clone())
            })
            .collect::<Vec<_>>()
    };
    // Seed 3, two repeats, sampling and the human poems, judged by the default judge.
    let report = dir.join("report.json");
    let sampled = ["--methods", "sampling", "--seed", "3", "--repeats", "2"];
    let first = json(run(&[&sampled[..], &["--output", report.to_str().unwrap()]].concat()));
    assert_eq!(first["rows"].as_array().unwrap().len(), 12);
    assert_eq!((first["seed"].as_u64(), first["form"].as_str(), first["rhyme"].as_str()), (Some(3), Some("五言绝句"), Some("pingshui")));
    // Judged again by the same judge: the same ranks; by another judge: exactly the run with that
    // judge (seed, form and distractors come from the report).
    let r = report.to_str().unwrap();
    assert_eq!(key(&json(run(&["--rejudge", r]))), key(&first));
    // Validity is checked again by today's checker, not copied from the report.
    let mut tampered = first.clone();
    for row in tampered["rows"].as_array_mut().unwrap() {
        let valid = row["valid"].as_bool().unwrap();
        row["valid"] = (!valid).into();
    }
    let tampered_path = dir.join("tampered.json");
    std::fs::write(&tampered_path, tampered.to_string()).unwrap();
    assert_eq!(key(&json(run(&["--rejudge", tampered_path.to_str().unwrap()]))), key(&first));
    // Another rhyme table than the report's is refused, naming the report's.
    let other = run(&["--rejudge", r, "--rhyme", "xinyun"]);
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success() && err.contains("rhyme table pingshui") && err.contains("--rhyme pingshui"), "{err}");
    let rejudged = json(run(&["--rejudge", r, "--judge", other_judge]));
    let direct = json(run(&[&sampled[..], &["--judge", other_judge]].concat()));
    assert_eq!(key(&rejudged), key(&direct));
    // Every summary number but the generation time (the report's, not the direct run's) agrees.
    let untimed = |v: &serde_json::Value| {
        let mut s = v["summary"].clone();
        s.as_object_mut().unwrap().values_mut().flat_map(|m| m.as_array_mut().unwrap()).for_each(|m| m["ms_per_poem"] = 0.into());
        s
    };
    assert_eq!(untimed(&rejudged), untimed(&direct));
    // Reports of one evaluation run method by method merge into the report of a single run,
    // with the paired gains between their methods.
    let baseline = dir.join("baseline.json");
    let searched = ["--methods", "baseline", "--beams", "2", "--seed", "3", "--repeats", "2"];
    json(run(&[&searched[..], &["--output", baseline.to_str().unwrap()]].concat()));
    let merged = json(run(&["--rejudge", r, baseline.to_str().unwrap()]));
    let single = json(run(&["--methods", "sampling,baseline", "--beams", "2", "--seed", "3", "--repeats", "2"]));
    assert_eq!(key(&merged), key(&single));
    assert_eq!(merged["gains"], single["gains"]);
    let gain = &merged["gains"]["all"][0];
    assert_eq!((gain["method"].as_str(), gain["over"].as_str()), (Some("baseline"), Some("sampling")), "{merged}");
    let acc = |m: &str, rep: u64| {
        let rows: Vec<_> = merged["rows"].as_array().unwrap().iter().filter(|x| x["method"] == m && x["repeat"] == rep).collect();
        rows.iter().filter(|x| x["rank"] == 1).count() as f64 / rows.len() as f64
    };
    let diffs = [acc("baseline", 0) - acc("sampling", 0), acc("baseline", 1) - acc("sampling", 1)];
    assert!((gain["mean"].as_f64().unwrap() - (diffs[0] + diffs[1]) / 2.0).abs() < 1e-9, "{gain}");
    assert!((gain["se"].as_f64().unwrap() - (diffs[0] - diffs[1]).abs() / 2.0).abs() < 1e-9, "{gain}");
    // A report from before --repeats (no seed, form, repeats, repeat or spread): give --seed.
    let mut old = first.clone();
    old.as_object_mut().unwrap().retain(|k, _| k == "rows" || k == "summary" || k == "candidates");
    old["rows"].as_array_mut().unwrap().retain(|r| r["repeat"] == 0);
    old["rows"].as_array_mut().unwrap().iter_mut().for_each(|r| drop(r.as_object_mut().unwrap().remove("repeat")));
    old["summary"].as_object_mut().unwrap().values_mut().flat_map(|m| m.as_array_mut().unwrap()).for_each(|m| {
        m.as_object_mut().unwrap().remove("retrieval_sd");
    });
    let old_path = dir.join("old.json");
    std::fs::write(&old_path, old.to_string()).unwrap();
    let again = json(run(&["--rejudge", old_path.to_str().unwrap(), "--seed", "3"]));
    assert_eq!(key(&again)[..], key(&first)[..6]);
    // Mismatches are refused, naming the report.
    let err = |out: std::process::Output| {
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let fewer = err(wenhui().args(["eval", "poems", "--titles", titles, "--limit", "2", "--rejudge", r]).output().unwrap());
    assert!(fewer.contains("report.json") && fewer.contains("not among the titles"), "{fewer}");
    let seed = err(run(&["--rejudge", r, "--seed", "4"]));
    assert!(seed.contains("report.json") && seed.contains("seed"), "{seed}");
    // Fewer distractors than the report's is another measure; more than the 3 titles allow is
    // the same one (every other title is a candidate either way).
    let narrower =
        err(wenhui().args(["eval", "poems", "--titles", titles, "--limit", "3", "--distractors", "1", "--rejudge", r]).output().unwrap());
    assert!(narrower.contains("--distractors 2"), "{narrower}");
    let wider = json(
        wenhui()
            .args(["eval", "poems", "--titles", titles, "--limit", "3", "--distractors", "5", "--json", "--rejudge", r])
            .output()
            .unwrap(),
    );
    assert_eq!(key(&wider), key(&first));
    assert!(err(run(&["--rejudge", r, "--methods", "inverse"])).contains("--methods"));
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{\"rows\": [").unwrap();
    let bad = err(run(&["--rejudge", broken.to_str().unwrap()]));
    assert!(bad.contains("broken.json") && bad.contains("not a report"), "{bad}");
}

#[test]
fn poem_batch_mode_writes_one_poem_per_title() {
    // Line forms and authors are used unless a flag overrides them; blank lines are skipped.
    let (dir, titles) =
        titles_file("poem-batch", "{\"title\": \"春江\", \"form\": \"七言绝句\", \"author\": \"王维\"}\n\n{\"title\": \"秋夜\"}\n");
    let out_file = dir.join("poems.jsonl");
    let run = |extra: &[&str]| {
        wenhui()
            .args(["poem", "--titles", titles.to_str().unwrap(), "--beams", "2", "--refine", "0", "--seed", "3"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--output", out_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(&out_file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0]["form"].as_str().unwrap(), rows[0]["author"].as_str().unwrap()), ("七言绝句", "王维"));
    assert_eq!((rows[1]["form"].as_str().unwrap(), rows[1]["author"].as_str().unwrap()), ("五言绝句", "李白"));
    assert_eq!((rows[0]["seed"].as_u64(), rows[1]["seed"].as_u64()), (Some(3), Some(4)));
    for r in &rows {
        let c = Constraints::parse(r["form"].as_str().unwrap(), "pingshui", "").unwrap();
        assert!(check_poem(r["text"].as_str().unwrap(), &c).unwrap().is_ok(), "{r}");
        assert_eq!(r["constraints_ok"], true);
    }
    // Line i is the single poem of seed + i; --form overrides every line; stdout without --output.
    let single = wenhui().args(["poem", "--title", "秋夜", "--beams", "2", "--refine", "0", "--seed", "4", "--json"]).output().unwrap();
    let single: serde_json::Value = serde_json::from_slice(&single.stdout).unwrap();
    assert_eq!(single["text"], rows[1]["text"]);
    let out = run(&["--form", "五绝"]);
    let forms: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["form"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(forms, ["五言绝句", "五言绝句"]);
    // Bad lines name the file and line.
    std::fs::write(&titles, "{\"title\": \"春江\"}\n{\"name\": 1}\n").unwrap();
    let err = String::from_utf8_lossy(&run(&[]).stderr).to_string();
    assert!(err.contains("titles.jsonl: line 2") && err.contains("`title`"), "{err}");
    std::fs::write(&titles, "{\"title\": \"春江\", \"form\": \"六言\"}\n").unwrap();
    let err = String::from_utf8_lossy(&run(&[]).stderr).to_string();
    assert!(err.contains("title 1") && err.contains("form"), "{err}");
}
