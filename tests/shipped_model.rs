//! The embedded poetry GLM (`models/poetry-glm`): it loads, its config and tokenizer agree, its model
//! card is complete, `wenhui poem` on it meets the requested form, rhyme and acrostic heads with a
//! fixed seed, `wenhui fill` works on it, and `wenhui eval poems` runs on a 3-title subset.

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
