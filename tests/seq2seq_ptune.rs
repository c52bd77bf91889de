//! P-tuning for generation (`ptune --task seq2seq`): pseudo tokens in seq2seq templates, a frozen
//! GLM steered by a trained prompt (its weights untouched), the prompt found by `eval seq2seq`
//! and `generate` in the run's model directory, gradients, exact resume, and bad input.

mod common;

use candle_core::{Device, Tensor};
use common::seq2seq_toy::{string_pairs, tiny_model, write_pairs};
use common::{stderr, stdout, wenhui};
use std::path::{Path, PathBuf};
use wenhui::data::seq2seq::{EncodedTemplate, LayoutConfig, Seq2seqLayout, Seq2seqTokens};
use wenhui::ptuning::seq2seq::{PromptTuning, PROMPT_DIR};
use wenhui::tokenizer::Tokenizer;
use wenhui::train::seq2seq::{finetune, seq2seq_loss, Seq2seqBatch, Seq2seqConfig, Seq2seqRunOptions};

/// The toy's characters: the strings' letters, the two task letters and the template's `>`.
const CHARS: &str = "abcdefRC>";

fn reverse(s: &str) -> String {
    s.chars().rev().collect()
}

/// A tiny GLM fine-tuned on two tasks told apart by the source's first letter: `R` + s → s
/// reversed, `C` + s → s. Returns its model directory (`best/`).
fn two_task_model(tmp: &Path) -> PathBuf {
    tiny_model(tmp, CHARS);
    let mut pairs: Vec<(String, String)> = string_pairs(1000, 1, reverse).into_iter().map(|(s, t)| (format!("R{s}"), t)).collect();
    pairs.extend(string_pairs(1000, 2, |s| s.to_string()).into_iter().map(|(s, t)| (format!("C{s}"), t)));
    let train = tmp.join("two-tasks.jsonl");
    write_pairs(&train, &pairs);
    let layout = LayoutConfig { template: "{source}>[MASK]".into(), max_source_len: 12, max_target_len: 8, ..Default::default() };
    let cfg = Seq2seqConfig {
        train,
        model: tmp.join("model"),
        out_dir: tmp.join("base"),
        layout,
        steps: Some(600),
        batch_size: 32,
        lr: 3e-3,
        dropout: 0.0,
        ..Default::default()
    };
    finetune(&cfg, Seq2seqRunOptions::default()).unwrap().model_dir
}

/// `eval seq2seq --json` of `model` on `data` (with extra flags): exact match, and the run's stderr.
fn exact_match(model: &Path, data: &Path, extra: &[&str]) -> f64 {
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let mut args = vec!["eval", "seq2seq", "--model", m, "--data", d, "--num-beams", "1", "--no-repeat-ngram-size", "0", "--json"];
    args.extend(extra);
    let o = wenhui(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    v["exact_match"].as_f64().unwrap()
}

fn tensors(path: &Path) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

/// The frozen model's `C` task is reached with a trained one-token prompt in place of the task
/// letter: before P-tuning (a random prompt) the copy task fails, after it `eval seq2seq` and
/// `generate`, given only the run's `best/`, copy the strings; the model's weights are the base
/// model's bit for bit.
#[test]
#[cfg_attr(debug_assertions, ignore = "trains a model: run with --release")]
fn a_frozen_model_is_steered_by_its_trained_prompt() {
    let tmp = tempfile::tempdir().unwrap();
    let base = two_task_model(tmp.path());
    let p = |n: &str| tmp.path().join(n);
    // The two tasks were learned (with their letters).
    let letters: Vec<(String, String)> = string_pairs(100, 3, reverse).into_iter().map(|(s, t)| (format!("R{s}"), t)).collect();
    write_pairs(&p("reverse-test.jsonl"), &letters);
    let reverse_em = exact_match(&base, &p("reverse-test.jsonl"), &[]);
    write_pairs(&p("copy-train.jsonl"), &string_pairs(400, 4, |s| s.to_string()));
    write_pairs(&p("copy-dev.jsonl"), &string_pairs(32, 5, |s| s.to_string()));
    write_pairs(&p("copy-test.jsonl"), &string_pairs(100, 6, |s| s.to_string()));
    let lettered: Vec<(String, String)> = string_pairs(100, 6, |s| s.to_string()).into_iter().map(|(s, t)| (format!("C{s}"), t)).collect();
    write_pairs(&p("copy-lettered.jsonl"), &lettered);
    let copy_em = exact_match(&base, &p("copy-lettered.jsonl"), &[]);
    assert!(reverse_em >= 90.0 && copy_em >= 90.0, "the base model did not learn its tasks: reverse {reverse_em}, copy {copy_em}");

    let (b, train, dev, run) = (base.to_str().unwrap(), p("copy-train.jsonl"), p("copy-dev.jsonl"), p("pt"));
    let args = [
        "ptune",
        "--task",
        "seq2seq",
        "--model",
        b,
        "--train",
        train.to_str().unwrap(),
        "--dev",
        dev.to_str().unwrap(),
        "-o",
        run.to_str().unwrap(),
        "--template",
        "[P]{source}>[MASK]",
        "--steps",
        "150",
        "--batch-size",
        "16",
        "--lr",
        "1e-2",
        "--dropout",
        "0",
        "--eval-every",
        "50",
        "--metric",
        "rouge-l",
        "--num-beams",
        "1",
        "--no-repeat-ngram-size",
        "0",
        "--quiet",
    ];
    let t0 = std::time::Instant::now();
    let o = wenhui(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = stdout(&o);
    assert!(summary.contains("prompt-encoder parameters trained, model frozen"), "{summary}");
    let best = run.join("best");
    assert!(best.join(PROMPT_DIR).join(wenhui::ptuning::STATE_WEIGHTS).is_file());
    // The model was not touched.
    let (before, after) = (tensors(&base.join("model.safetensors")), tensors(&best.join("model.safetensors")));
    assert_eq!(before.len(), after.len());
    for (name, t) in &before {
        let diff = (t - &after[name]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0, "{name} changed in a frozen-model run");
    }
    let tuned = exact_match(&best, &p("copy-test.jsonl"), &[]);
    // The same frozen model reading the bare strings (no task letter, no prompt).
    let bare = exact_match(&base, &p("copy-test.jsonl"), &[]);
    eprintln!("P-tuning: copy exact match {bare:.0}% without a prompt → {tuned:.0}% with it ({:.1} s; base: reverse {reverse_em:.0}%, copy {copy_em:.0}%)", t0.elapsed().as_secs_f64());
    assert!(tuned >= 90.0, "exact match {tuned}% after P-tuning");
    assert!(bare < 60.0, "the bare strings were already copied ({bare}%): the prompt proves nothing");

    // `generate` reads the prompt as the source, with the run's template and prompt.
    let o = wenhui(&["generate", "--model", best.to_str().unwrap(), "--prompt", "cafe", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["text"], "cafe", "{v}");
    let o = wenhui(&["generate", "--model", best.to_str().unwrap(), "--prompt", "bead"]);
    assert!(o.status.success() && stdout(&o).trim() == "bead", "{} {}", stdout(&o), stderr(&o));
    // A file of prompts goes the same way; --no-layout reads the prompt as plain GLM text.
    std::fs::write(p("prompts.txt"), "cafe\nbead\n").unwrap();
    let o = wenhui(&["generate", "--model", best.to_str().unwrap(), "--input", p("prompts.txt").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let texts: Vec<serde_json::Value> =
        stdout(&o).lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].clone()).collect();
    assert_eq!(texts, ["cafe", "bead"]);
    let o = wenhui(&["generate", "--model", best.to_str().unwrap(), "--prompt", "cafe", "--no-layout", "--max-new-tokens", "3", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_ne!(v["text"], "cafe", "--no-layout still read the seq2seq layout: {v}");
    // A template without the prompt's slot is refused, with what to do.
    let o = wenhui(&[
        "eval",
        "seq2seq",
        "--model",
        best.to_str().unwrap(),
        "--data",
        p("copy-test.jsonl").to_str().unwrap(),
        "--template",
        "{source}>[MASK]",
    ]);
    assert!(!o.status.success() && stderr(&o).contains("no [P] pseudo tokens"), "{}", stderr(&o));
}

/// The tiny random GLM's tokenizer and a layout of `template` for it.
fn toy_layout(tmp: &Path, template: &str) -> (Tokenizer, Seq2seqLayout) {
    tiny_model(tmp, CHARS);
    let tok = Tokenizer::from_dir(&tmp.join("model")).unwrap();
    let cfg = LayoutConfig { template: template.into(), max_source_len: 12, max_target_len: 8, ..Default::default() };
    let layout = Seq2seqLayout::new(&tok, cfg, 32).unwrap();
    (tok, layout)
}

/// `[P]` / `[P*n]` become pad-id slots whose positions follow the source's length; a template
/// without them encodes as before; malformed counts are errors naming the template.
#[test]
fn pseudo_tokens_in_seq2seq_templates() {
    let tmp = tempfile::tempdir().unwrap();
    let (tok, layout) = toy_layout(tmp.path(), "[MASK] [P*2]{source}[P]>");
    let tokens = Seq2seqTokens::from_special(&tok.special).unwrap();
    assert_eq!(layout.num_pseudo(), 3);
    let src = layout.encode_source(&tok, "abc").unwrap();
    let part = layout.source_part(&src).unwrap();
    // [CLS] [MASK] P P a b c P >
    assert_eq!(part.pseudo, vec![2, 3, 7]);
    assert_eq!(part.tokens.len(), 9);
    assert_eq!(part.mask_position, 1);
    assert!(part.pseudo.iter().all(|&i| part.tokens[i] == tokens.pad));
    let sample = layout
        .encode_pair(&tok, &wenhui::data::seq2seq::Seq2seqPair { source: "abcd".into(), target: "dcba".into(), origin: "x:1".into() });
    assert_eq!(sample.unwrap().pseudo, vec![2, 3, 8]);
    // Without markers: exactly the one-piece encoding.
    let plain = EncodedTemplate::new(&tok, &tokens, "{source}>[MASK]").unwrap();
    let mut want = tok.encode(">[MASK]", false).unwrap();
    assert_eq!(plain.suffix, std::mem::take(&mut want));
    assert_eq!((plain.prefix.as_slice(), plain.pseudo.len()), (&[tokens.cls][..], 0));
    // Whitespace next to a marker is dropped: the same ids as without it.
    let spaced = EncodedTemplate::new(&tok, &tokens, "[MASK] [P*2] {source}").unwrap();
    let tight = EncodedTemplate::new(&tok, &tokens, "[MASK][P*2]{source}").unwrap();
    assert_eq!((spaced.prefix, spaced.pseudo), (tight.prefix, tight.pseudo));
    for (bad, says) in [
        ("[P*0]{source}[MASK]", "malformed `[P*0]`"),
        ("[P*x]{source}[MASK]", "malformed `[P*x]`"),
        ("[MASK]{source}[P*2", "`[P*` is never closed"),
    ] {
        let e = EncodedTemplate::new(&tok, &tokens, bad).unwrap_err().to_string();
        assert!(e.contains(says) && e.contains(bad), "{e}");
    }
    let e = EncodedTemplate::new(&tok, &tokens, "[P*5000]{source}[MASK]").unwrap_err().to_string();
    assert!(e.contains("more than 4096 pseudo tokens"), "{e}");
}

/// Every prompt-encoder parameter receives a gradient from the seq2seq loss through the spliced
/// prompt (the candle trap: an op without backward would leave them at none).
#[test]
fn every_prompt_encoder_parameter_gets_a_gradient() {
    let tmp = tempfile::tempdir().unwrap();
    let (tok, layout) = toy_layout(tmp.path(), "[P*3]{source}>[MASK]");
    let m = wenhui::model::load_model(&tmp.path().join("model"), &Default::default()).unwrap();
    let model = m.backbone.as_ref();
    let pairs = string_pairs(4, 9, reverse);
    let samples: Vec<_> = pairs
        .iter()
        .enumerate()
        .map(|(i, (s, t))| {
            let pair = wenhui::data::seq2seq::Seq2seqPair { source: s.clone(), target: t.clone(), origin: format!("toy:{i}") };
            layout.encode_pair(&tok, &pair).unwrap()
        })
        .collect();
    let refs: Vec<_> = samples.iter().collect();
    let batch = Seq2seqBatch::new(&refs, layout.tokens.pad, false, &Device::Cpu).unwrap();
    for kind in [wenhui::ptuning::EncoderKind::Lstm, wenhui::ptuning::EncoderKind::Mlp, wenhui::ptuning::EncoderKind::Embedding] {
        let cfg = PromptTuning { encoder: kind, ..Default::default() }.encoder_config(3, 64);
        let (enc, map) = wenhui::ptuning::PromptEncoder::seeded(&cfg, 3, &Device::Cpu).unwrap().to_trainable().unwrap();
        let prompt = enc.prompt_embeddings().unwrap();
        let (loss, n) = seq2seq_loss(model, &batch, Some(&prompt), 0.1, None).unwrap();
        assert!(n > 0);
        let grads = loss.backward().unwrap();
        let vars = map.all_vars();
        assert!(!vars.is_empty());
        for v in vars {
            let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{kind:?}: a parameter of shape {:?} got no gradient", v.dims()));
            let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(norm > 0.0 && norm.is_finite(), "{kind:?}: gradient norm {norm} for a parameter of shape {:?}", v.dims());
        }
        // Without the prompt the template's slots are an error, not silent pad embeddings.
        let e = seq2seq_loss(model, &batch, None, 0.0, None).unwrap_err().to_string();
        assert!(e.contains("no prompt was given"), "{e}");
    }
}

/// A P-tuning run stopped and resumed ends with the same prompt encoder and optimizer state as
/// one run straight through; a joint run (model not frozen) changes the model and saves its prompt.
#[test]
#[cfg_attr(debug_assertions, ignore = "trains a model: run with --release")]
fn p_tuning_resumes_exactly_and_joint_runs_tune_both() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_model(tmp.path(), CHARS);
    let train = tmp.path().join("train.jsonl");
    write_pairs(&train, &string_pairs(64, 11, reverse));
    let layout = LayoutConfig { template: "[P*2]{source}>[MASK]".into(), max_source_len: 12, max_target_len: 8, ..Default::default() };
    let base = Seq2seqConfig {
        train,
        model: tmp.path().join("model"),
        layout,
        steps: Some(6),
        batch_size: 8,
        lr: 1e-2,
        eval_every: 3,
        prompt: Some(PromptTuning { freeze_model: true, ..Default::default() }),
        ..Default::default()
    };
    let whole = Seq2seqConfig { out_dir: tmp.path().join("whole"), ..base.clone() };
    let a = finetune(&whole, Seq2seqRunOptions::default()).unwrap();
    assert!(a.model_frozen && a.trainable_parameters > 0);
    // A second run resumed from the first one's step-3 checkpoint.
    let resumed = Seq2seqConfig { out_dir: tmp.path().join("split"), ..base.clone() };
    let from = tmp.path().join("whole/checkpoints/step-00000003");
    let b = finetune(&resumed, Seq2seqRunOptions { resume: Some(from), ..Default::default() }).unwrap();
    assert_eq!((a.steps, b.steps), (6, 6));
    let last = |run: &str| tmp.path().join(run).join("checkpoints").join("step-00000006");
    for file in [PathBuf::from(PROMPT_DIR).join(wenhui::ptuning::STATE_WEIGHTS), PathBuf::from("optimizer.safetensors")] {
        let (x, y) = (tensors(&last("whole").join(&file)), tensors(&last("split").join(&file)));
        assert_eq!(x.len(), y.len());
        for (name, t) in &x {
            common::assert_close(&format!("{}: {name} after resuming", file.display()), t, &y[name], 0.0);
        }
    }
    // Joint: the model trains too (its own parameters and the encoder's are counted).
    let joint = Seq2seqConfig { out_dir: tmp.path().join("joint"), steps: Some(2), prompt: None, ..base };
    let j = finetune(&joint, Seq2seqRunOptions::default()).unwrap();
    let model_parameters: usize = tensors(&tmp.path().join("model/model.safetensors")).values().map(|t| t.elem_count()).sum();
    assert!(!j.model_frozen && j.trainable_parameters == a.trainable_parameters + model_parameters, "{j:?}");
    let ck = tmp.path().join("joint/checkpoints/step-00000002");
    assert!(ck.join(PROMPT_DIR).join(wenhui::ptuning::STATE_CONFIG).is_file());
    let (before, after) = (tensors(&tmp.path().join("model/model.safetensors")), tensors(&ck.join("model.safetensors")));
    assert!(before.iter().any(|(n, t)| (t - &after[n]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 0.0));
}

/// Bad P-tuning requests are refused before training, with what to do.
#[test]
fn bad_p_tuning_requests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_model(tmp.path(), CHARS);
    let train = tmp.path().join("train.jsonl");
    write_pairs(&train, &string_pairs(8, 12, reverse));
    let (m, t, o) = (tmp.path().join("model"), train.to_str().unwrap().to_string(), tmp.path().join("run"));
    let base = ["ptune", "--task", "seq2seq", "--model", m.to_str().unwrap(), "--train", &t, "-o", o.to_str().unwrap(), "--steps", "1"];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend(extra);
        wenhui(&args)
    };
    let o1 = run(&["--template", "{source}>[MASK]"]);
    assert!(!o1.status.success() && stderr(&o1).contains("no [P] pseudo tokens"), "{}", stderr(&o1));
    let o2 = run(&["--prompt-lr", "1e-3"]);
    assert!(!o2.status.success() && stderr(&o2).contains("--lr is the encoder's rate"), "{}", stderr(&o2));
    let o3 = run(&["--prompt-hidden", "0"]);
    assert!(!o3.status.success() && stderr(&o3).contains("--prompt-hidden must be at least 1"), "{}", stderr(&o3));
    let o4 = run(&["--template", "[P*0]{source}>[MASK]"]);
    assert!(!o4.status.success() && stderr(&o4).contains("malformed `[P*0]`"), "{}", stderr(&o4));
    assert!(!o.exists(), "a refused run left {}", o.display());
    // The default P-tuning template needs no flag; one step trains the encoder only.
    let ok = run(&["--max-source-len", "24", "--max-target-len", "6", "--quiet"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("model frozen"), "{}", stdout(&ok));
    let layout: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(o.join("checkpoints/step-00000001/seq2seq_layout.json")).unwrap()).unwrap();
    assert_eq!(layout["layout"]["template"], "[P*8] [MASK] Content: {source}");
}
