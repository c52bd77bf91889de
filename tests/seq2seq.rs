//! Seq2seq: the official GLM layout on a hand-made pair (ids, 2D positions, attention, loss
//! mask, truncation), the first generated token against the glm-tiny fixture's generation case,
//! a tiny GLM learning to reverse strings, and bad input.

mod common;

use candle_core::{IndexOp, Tensor};
use common::{fixture_dir, tensors};
use wenhui::data::seq2seq::{attention_matrix, read_pairs, EncodedTemplate, LayoutConfig, Seq2seqLayout, Seq2seqPair, Seq2seqTokens};
use wenhui::eval::seq2seq::{decode_target, evaluate_pairs, DecodeOptions, System};
use wenhui::generate::GenerationConfig;
use wenhui::model::{load_model, Attention, BackboneInput, LoadOptions};

/// glm-tiny's command ids (cases.json `special_ids`).
fn tiny_tokens() -> Seq2seqTokens {
    Seq2seqTokens { cls: 103, pad: 100, sop: 101, eop: 102, masks: [Some(104), Some(108), Some(107)] }
}

fn layout(prefix: &[u32], suffix: &[u32], cfg: LayoutConfig) -> Seq2seqLayout {
    let t = EncodedTemplate { prefix: prefix.to_vec(), suffix: suffix.to_vec(), source_space: false, pseudo: vec![] };
    Seq2seqLayout::from_parts(cfg, tiny_tokens(), t).unwrap()
}

fn cfg(max_source_len: usize, max_target_len: usize) -> LayoutConfig {
    LayoutConfig { max_source_len, max_target_len, ..Default::default() }
}

#[test]
fn layout_golden_on_a_hand_made_pair() {
    // [CLS] [MASK] "Content:"(50, 51) source(10 11 12) | [sop] 20 21 → targets 20 21 [eop]
    let l = layout(&[103, 104, 50, 51], &[], cfg(16, 8));
    let s = l.sample(&[10, 11, 12], &[20, 21]).unwrap();
    assert_eq!(s.tokens, vec![103, 104, 50, 51, 10, 11, 12, 101, 20, 21]);
    assert_eq!(s.targets, vec![0, 0, 0, 0, 0, 0, 0, 20, 21, 102]);
    assert_eq!(s.loss_mask, vec![0., 0., 0., 0., 0., 0., 0., 1., 1., 1.]);
    assert_eq!(s.positions, vec![0, 1, 2, 3, 4, 5, 6, 1, 1, 1]);
    assert_eq!(s.blocks, vec![0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
    assert_eq!((s.sep, s.mask_position, s.pad_from), (7, 1, 7));
    assert!(!s.source_truncated && !s.target_truncated);
    let m = attention_matrix(&s, false);
    for (i, row) in m.iter().enumerate() {
        let want: Vec<u8> = (0..10).map(|j| u8::from(j < 7 || j <= i)).collect();
        assert_eq!(row, &want, "attention row {i}");
    }

    // Truncation keeps the template and the mask; the target is cut after [eop] is appended.
    let l = layout(&[103, 104, 50, 51], &[], cfg(6, 2));
    let s = l.sample(&[10, 11, 12], &[20, 21]).unwrap();
    assert_eq!(s.tokens, vec![103, 104, 50, 51, 10, 11, 101, 20]);
    assert_eq!(s.targets[6..], [20, 21]);
    assert!(s.source_truncated && s.target_truncated);
    // The older form with the mask last: cutting the source keeps the mask too.
    let l = layout(&[103], &[60, 104], cfg(5, 8));
    let s = l.sample(&[10, 11, 12, 13], &[20]).unwrap();
    assert_eq!(s.tokens, vec![103, 10, 11, 60, 104, 101, 20]);
    assert_eq!((s.positions[5], s.mask_position), (4, 4));

    // Official fixed-length sources: pads visible, or hidden with --mask-pad-token.
    let l = layout(&[103, 104], &[], LayoutConfig { pad_source: true, mask_pad_token: true, ..cfg(6, 4) });
    let s = l.sample(&[10, 11], &[20]).unwrap();
    assert_eq!(s.tokens, vec![103, 104, 10, 11, 100, 100, 101, 20]);
    assert_eq!(s.positions, vec![0, 1, 2, 3, 4, 5, 1, 1]);
    assert_eq!((s.sep, s.pad_from), (6, 4));
    assert_eq!(attention_matrix(&s, true)[6], vec![1, 1, 1, 1, 0, 0, 1, 0]);
    assert_eq!(attention_matrix(&s, false)[0], vec![1, 1, 1, 1, 1, 1, 0, 0]);
}

#[test]
fn layout_with_the_embedded_tokenizer_finds_the_template_mask() {
    let dir = wenhui::embedded::poetry_model_dir().unwrap();
    let tok = wenhui::tokenizer::Tokenizer::from_dir(&dir).unwrap();
    let cfg =
        LayoutConfig {
            template: "题名：[sMASK]；正文：{source}".into(), max_source_len: 40, max_target_len: 8, ..Default::default()
        };
    let l = Seq2seqLayout::new(&tok, cfg, 128).unwrap();
    let pair = Seq2seqPair { source: "床前明月光".into(), target: "静夜思".into(), origin: "test:1".into() };
    let s = l.encode_pair(&tok, &pair).unwrap();
    let smask = tok.special.smask.unwrap();
    assert_eq!(s.tokens[s.mask_position], smask);
    assert_eq!(s.tokens[0], tok.special.cls.unwrap());
    assert_eq!(s.tokens[s.sep], tok.special.sop.unwrap());
    assert_eq!(tok.decode(&s.targets[s.sep..s.sep + 3], true).unwrap().replace(' ', ""), "静夜思");
    assert_eq!(*s.targets.last().unwrap(), tok.special.eop.unwrap());
}

/// The fixture's `hf_generation_4d_mask` case: row 0 = `[CLS] 70 62 34 98 46 [gMASK] eos | [sop] 85 61 11`,
/// row 1 = `[CLS] 21 84 [MASK] 16 eos pad pad | [sop] 4 [eop] pad` with the pads hidden.
#[test]
fn first_token_and_logits_match_the_glm_tiny_generation_case() {
    let dir = fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny");
    let t = tensors(&dir.join("cases.safetensors"));
    let m = load_model(&dir, &LoadOptions { gelu: Some(wenhui::model::Gelu::Erf), ..Default::default() }).unwrap();
    let model = m.backbone.as_ref();
    let want = t["hf_generation_4d_mask.logits"].to_dtype(candle_core::DType::F32).unwrap();
    let greedy = GenerationConfig { max_new_tokens: 1, eos_token_ids: vec![102], ..Default::default() };

    // Row 0: no padding, so the official `sep` layout is the fixture's 4D mask.
    let l0 = layout(&[103], &[107, 100], cfg(16, 8));
    let s0 = l0.sample(&[70, 62, 34, 98, 46], &[85, 61, 11]).unwrap();
    // Exactly the fixture's ids and 2D positions (its target ends with [eop] after 11).
    assert_eq!(s0.tokens, vec![103, 70, 62, 34, 98, 46, 107, 100, 101, 85, 61, 11]);
    assert_eq!(s0.positions, vec![0, 1, 2, 3, 4, 5, 6, 7, 6, 6, 6, 6]);
    assert_eq!(s0.blocks, vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    let n = s0.tokens.len();
    let pos: Vec<u32> = s0.positions.iter().chain(&s0.blocks).copied().collect();
    let input = BackboneInput::ids(Tensor::new(s0.tokens.as_slice(), model.device()).unwrap().unsqueeze(0).unwrap())
        .with_positions(Tensor::from_vec(pos, (1, 2, n), model.device()).unwrap())
        .with_attention(Attention::Sep(vec![s0.sep]));
    let got = model.forward(&input, None).unwrap().logits;
    common::assert_close("seq2seq layout logits (row 0)", &got.i((0, ..n)).unwrap(), &want.i((0, ..n)).unwrap(), 1e-4);

    for (row, l, src) in [
        (0usize, l0.clone(), vec![70u32, 62, 34, 98, 46]),
        (1, layout(&[103], &[104, 16, 100], LayoutConfig { pad_source: true, mask_pad_token: true, ..cfg(8, 8) }), vec![21, 84]),
    ] {
        let first = want.i((row, 8)).unwrap();
        let expected = first.argmax(0).unwrap().to_scalar::<u32>().unwrap();
        let d = decode_target(model, &l, &src, None, &greedy).unwrap();
        let tok = if d.finished { 102 } else { d.tokens[0] };
        assert_eq!(tok, expected, "row {row}: first generated token");
        // And the decoder's first step equals the fixture's logits at [sop].
        let lp = first.to_vec1::<f32>().unwrap();
        let max = lp.iter().cloned().fold(f32::MIN, f32::max);
        let lse = max + lp.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
        assert!((d.score - (lp[expected as usize] - lse)).abs() < 1e-4, "row {row}: score {} vs {}", d.score, lp[expected as usize] - lse);
    }
}

#[test]
#[cfg_attr(debug_assertions, ignore = "trains a model: run with --release")]
fn tiny_glm_learns_to_reverse_strings() {
    use wenhui::train::seq2seq::{finetune, Seq2seqConfig, Seq2seqRunOptions};
    let tmp = tempfile::tempdir().unwrap();
    common::seq2seq_toy::tiny_model(tmp.path(), "abcdef>");
    let (train, dev, test) = (tmp.path().join("train.jsonl"), tmp.path().join("dev.jsonl"), tmp.path().join("test.jsonl"));
    common::seq2seq_toy::reverse_pairs(&train, 2000, 1);
    common::seq2seq_toy::reverse_pairs(&dev, 64, 2);
    common::seq2seq_toy::reverse_pairs(&test, 100, 3);
    let layout = LayoutConfig { template: "{source}>[MASK]".into(), max_source_len: 12, max_target_len: 8, ..Default::default() };
    let cfg = Seq2seqConfig {
        train,
        dev: Some(dev),
        model: tmp.path().join("model"),
        out_dir: tmp.path().join("run"),
        layout: layout.clone(),
        steps: Some(600),
        batch_size: 32,
        lr: 3e-3,
        dropout: 0.0,
        eval_every: 200,
        patience: 2,
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let s = finetune(&cfg, Seq2seqRunOptions::default()).unwrap();
    assert!(s.model_dir.ends_with("best"), "{s:?}");
    let m = load_model(&s.model_dir, &LoadOptions::default()).unwrap();
    let tok = wenhui::tokenizer::Tokenizer::from_dir(&s.model_dir).unwrap();
    let l = Seq2seqLayout::new(&tok, layout, 32).unwrap();
    let pairs = read_pairs(&test, "source", "target", true).unwrap();
    let decode = DecodeOptions { num_beams: 1, no_repeat_ngram_size: 0, ..Default::default() };
    let system = System::Model { model: m.backbone.as_ref(), tokenizer: &tok, layout: &l, decode: &decode, prompt: None };
    let r = evaluate_pairs(&system, &pairs, None, &indicatif::ProgressBar::hidden()).unwrap();
    eprintln!(
        "reverse: exact match {:.1}% after {} steps ({:.1} s), best {:?}",
        r.exact_match,
        s.steps,
        t0.elapsed().as_secs_f64(),
        s.best
    );
    assert!(r.exact_match >= 90.0, "exact match {:.1}% < 90%: {:?}", r.exact_match, &r.predictions[..5]);
}

#[test]
fn bad_input_gives_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("bad.jsonl");
    let err = |text: &str| {
        std::fs::write(&p, text).unwrap();
        read_pairs(&p, "source", "target", true).unwrap_err().to_string()
    };
    let e = err("{\"source\": \"a\", \"target\": \"b\"}\n{\"source\": \"a\"}\n");
    assert!(e.contains("line 2") && e.contains("missing field `target`") && e.contains("bad.jsonl"), "{e}");
    let e = err("{\"source\": \"a\", \"target\": \"  \"}\n");
    assert!(e.contains("line 1") && e.contains("empty target"), "{e}");
    let e = err("{\"src\": \"a\", \"target\": \"b\"}\n");
    assert!(e.contains("missing field `source`") && e.contains("--source-field"), "{e}");
    let e = err("[1, 2]\n");
    assert!(e.contains("JSON object"), "{e}");
    let e = err("{\"source\": 3, \"target\": \"b\"}\n");
    assert!(e.contains("must be a string"), "{e}");
    let e = err("not json\n");
    assert!(e.contains("not JSON"), "{e}");
    let e = err("\n");
    assert!(e.contains("no examples"), "{e}");
    // Renamed fields are accepted.
    std::fs::write(&p, "{\"poem\": \"a\", \"title\": \"b\"}\n").unwrap();
    assert_eq!(read_pairs(&p, "poem", "title", true).unwrap()[0].target, "b");

    // Over-long sources: a template that leaves no room, a limit beyond the model.
    let l = layout(&[103, 104, 50, 51], &[], cfg(4, 8));
    let e = l.sample(&[10], &[20]).unwrap_err().to_string();
    assert!(e.contains("leaves no room for the source"), "{e}");
    assert!(l.sample(&[10], &[]).unwrap_err().to_string().contains("empty target"));
    let dir = wenhui::embedded::poetry_model_dir().unwrap();
    let tok = wenhui::tokenizer::Tokenizer::from_dir(&dir).unwrap();
    let e = Seq2seqLayout::new(&tok, LayoutConfig { max_source_len: 4096, ..Default::default() }, 128).unwrap_err().to_string();
    assert!(e.contains("exceeds the model's 128 positions"), "{e}");
    let e = Seq2seqLayout::new(&tok, LayoutConfig { template: "{source}".into(), ..Default::default() }, 128).unwrap_err().to_string();
    assert!(e.contains("exactly one [MASK]"), "{e}");
    let no_mask_cfg = LayoutConfig { template: "no placeholder [MASK]".into(), ..Default::default() };
    assert!(Seq2seqLayout::new(&tok, no_mask_cfg, 128).unwrap_err().to_string().contains("{source}"));

    // A missing training file names the file.
    let cfg = wenhui::train::seq2seq::Seq2seqConfig {
        train: tmp.path().join("missing.jsonl"),
        model: dir,
        out_dir: tmp.path().join("run"),
        layout: LayoutConfig { max_source_len: 64, ..Default::default() },
        ..Default::default()
    };
    let e = wenhui::train::seq2seq::finetune(&cfg, Default::default()).unwrap_err().to_string();
    assert!(e.contains("missing.jsonl"), "{e}");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "trains a model: run with --release")]
fn resume_continues_exactly() {
    use wenhui::train::seq2seq::{finetune, Seq2seqConfig, Seq2seqRunOptions};
    let tmp = tempfile::tempdir().unwrap();
    common::seq2seq_toy::tiny_model(tmp.path(), "abcdef>");
    let train = tmp.path().join("train.jsonl");
    common::seq2seq_toy::reverse_pairs(&train, 200, 4);
    let base = Seq2seqConfig {
        train,
        model: tmp.path().join("model"),
        out_dir: tmp.path().join("a"),
        layout: LayoutConfig { template: "{source}>[MASK]".into(), max_source_len: 12, max_target_len: 8, ..Default::default() },
        steps: Some(12),
        batch_size: 8,
        lr: 1e-3,
        label_smoothing: 0.1,
        eval_every: 6,
        keep_last: 5,
        ..Default::default()
    };
    let a = finetune(&base, Seq2seqRunOptions::default()).unwrap();
    assert_eq!(a.steps, 12);
    // A second run resumed from the first run's step-6 checkpoint ends with the same weights.
    let b_cfg = Seq2seqConfig { out_dir: tmp.path().join("b"), ..base.clone() };
    let resume = tmp.path().join("a/checkpoints/step-00000006");
    let b = finetune(&b_cfg, Seq2seqRunOptions { resume: Some(resume), ..Default::default() }).unwrap();
    assert_eq!(b.steps, 12);
    let wa = common::tensors(&tmp.path().join("a/checkpoints/step-00000012/model.safetensors"));
    let wb = common::tensors(&tmp.path().join("b/checkpoints/step-00000012/model.safetensors"));
    for (name, t) in &wa {
        common::assert_close(name, t, &wb[name], 0.0);
    }
}

/// Runs the `wenhui` binary; its exit status, stdout and stderr.
fn wenhui(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `finetune --task seq2seq` with a non-default template and JSON fields records them in
/// `best/` and every checkpoint; `eval seq2seq` without the flags then decodes exactly as with
/// them, a different `--template` warns, and a malformed record is an error naming the file.
#[test]
#[cfg_attr(debug_assertions, ignore = "trains a model: run with --release")]
fn eval_uses_the_layout_the_model_was_fine_tuned_with() {
    use wenhui::train::seq2seq::{SavedLayout, LAYOUT_FILE};
    let tmp = tempfile::tempdir().unwrap();
    common::seq2seq_toy::tiny_model(tmp.path(), "abcdef>");
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    // Renamed fields, so that they too must come from the record.
    for (name, n, seed) in [("train.jsonl", 400, 5), ("dev.jsonl", 16, 6), ("test.jsonl", 24, 7)] {
        common::seq2seq_toy::reverse_pairs(&tmp.path().join(name), n, seed);
        let text = std::fs::read_to_string(tmp.path().join(name)).unwrap();
        std::fs::write(tmp.path().join(name), text.replace("\"source\"", "\"s\"").replace("\"target\"", "\"t\"")).unwrap();
    }
    let template = "{source}>[MASK]";
    let (model, train, dev, run) = (p("model"), p("train.jsonl"), p("dev.jsonl"), p("run"));
    let mut args = vec!["finetune", "--task", "seq2seq", "--model", &model, "--train", &train, "--dev", &dev, "-o", &run];
    args.extend(["--template", template]);
    args.extend(
        "--source-field s --target-field t --max-source-len 12 --max-target-len 8 --steps 40 --batch-size 16 --lr 3e-3 \
         --dropout 0 --eval-every 20 --metric rouge-l --num-beams 1 --rouge-tokenizer chars"
            .split_whitespace(),
    );
    let (ok, out, err) = wenhui(&args);
    assert!(ok, "finetune failed: {err}");
    // The summary names its metric.
    assert!(out.contains("best dev ROUGE-L ") && !out.contains("dev_score"), "{out}");
    // stderr is a pipe here: progress comes as lines, with each evaluation.
    assert!(err.lines().any(|l| l.starts_with("step 40/40: loss ") && l.contains(", ETA ")), "{err}");
    for step in [20, 40] {
        assert!(err.lines().any(|l| l.starts_with(&format!("step {step}: dev ROUGE-L "))), "{err}");
    }

    let best = tmp.path().join("run/best");
    let saved = SavedLayout::read(&best).unwrap().expect("best/ records the layout");
    assert_eq!((saved.layout.template.as_str(), saved.source_field.as_str(), saved.target_field.as_str()), (template, "s", "t"));
    assert_eq!((saved.layout.max_source_len, saved.layout.max_target_len), (12, 8));
    for step in ["step-00000020", "step-00000040"] {
        let ck = tmp.path().join("run/checkpoints").join(step);
        assert_eq!(SavedLayout::read(&ck).unwrap().as_ref(), Some(&saved), "{step}");
    }
    // A model that was not fine-tuned here has no record: today's defaults apply.
    assert_eq!(SavedLayout::read(&tmp.path().join("model")).unwrap(), None);

    let test = p("test.jsonl");
    let eval = |tag: &str, extra: &[&str]| {
        let preds = p(&format!("pred-{tag}.jsonl"));
        let mut args = vec!["eval", "seq2seq", "--model", best.to_str().unwrap(), "--data", &test];
        args.extend(["--num-beams", "2", "--rouge-tokenizer", "chars", "--json", "--predictions", &preds]);
        args.extend(extra);
        let (ok, out, err) = wenhui(&args);
        assert!(ok, "eval {tag} failed: {err}");
        let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        (report["rouge"].clone(), report["exact_match"].clone(), std::fs::read_to_string(preds).unwrap(), err)
    };
    let (rouge, exact, preds, err) = eval("saved", &[]);
    let (rouge_t, exact_t, preds_t, err_t) = eval("given", &["--template", template, "--source-field", "s", "--target-field", "t"]);
    eprintln!("without --template: {rouge}; with it: {rouge_t}");
    assert_eq!((&rouge, &exact, &preds), (&rouge_t, &exact_t, &preds_t));
    assert_eq!(rouge["pairs"], 24);
    assert!(rouge["rouge_l"].as_f64().unwrap() > 0.0, "{rouge}");
    assert!(!err.contains("differs") && !err_t.contains("differs"), "{err}\n{err_t}");
    // An explicit template that differs wins, with a warning.
    let (_, _, _, err) = eval("other", &["--template", "{source}>>[MASK]"]);
    assert!(err.contains("--template") && err.contains("differs") && err.contains(LAYOUT_FILE), "{err}");

    // A malformed record is an error naming the file, from the library and the command.
    let file = best.join(LAYOUT_FILE);
    for bad in ["not json", "{\"layout\": 3}", "{\"source_field\": \"s\", \"target_field\": \"t\"}"] {
        std::fs::write(&file, bad).unwrap();
        let e = SavedLayout::read(&best).unwrap_err().to_string();
        assert!(e.contains(&file.display().to_string()), "{e}");
    }
    let (ok, _, err) = wenhui(&["eval", "seq2seq", "--model", best.to_str().unwrap(), "--data", &test, "--template", template]);
    assert!(!ok && err.contains(LAYOUT_FILE), "{err}");
}

/// `finetune --task seq2seq --resume RUN` (from another directory, without repeating the flags)
/// continues RUN with its saved settings into RUN, and ends with the weights of an uninterrupted
/// run; a flag given differently is used and warned about; `--steps 0` is refused before any work.
#[test]
#[cfg_attr(debug_assertions, ignore = "trains a model: run with --release")]
fn cli_resume_continues_the_run_it_names() {
    let tmp = tempfile::tempdir().unwrap();
    common::seq2seq_toy::tiny_model(tmp.path(), "abcdef>");
    common::seq2seq_toy::reverse_pairs(&tmp.path().join("train.jsonl"), 40, 4);
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let (model, train) = (p("model"), p("train.jsonl"));
    let run = |out: &str, steps: &str| {
        let args = ["finetune", "--task", "seq2seq", "--model", &model, "--train", &train, "-o", out, "--steps", steps];
        let (ok, _, err) = wenhui(&[&args[..], &["--batch-size", "4", "--lr", "3e-3", "--eval-every", "3", "--quiet"]].concat());
        assert!(ok, "{err}");
    };
    run(&p("straight"), "6");
    run(&p("split"), "6");
    // The split run as if stopped at step 3: its newer checkpoint removed.
    std::fs::remove_dir_all(tmp.path().join("split/checkpoints/step-00000006")).unwrap();
    let other = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .current_dir(&other)
        .args(["finetune", "--task", "seq2seq", "--quiet", "--resume"])
        .arg(tmp.path().join("split/checkpoints/step-00000003"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("change the resumed run"), "{err}");
    assert!(!other.join("runs").exists(), "the resumed run wrote into the default -o");
    let weights = |run: &str| std::fs::read(tmp.path().join(run).join("checkpoints/step-00000006/model.safetensors")).unwrap();
    assert!(weights("straight") == weights("split"), "the resumed run's weights differ from the uninterrupted run's");
    // A flag given differently is taken, with a warning.
    std::fs::remove_dir_all(tmp.path().join("split/checkpoints/step-00000006")).unwrap();
    let (ok, _, err) = wenhui(&["finetune", "--task", "seq2seq", "--quiet", "--lr", "1e-3", "--steps", "7", "--resume", &p("split")]);
    // Values as typed, not as Rust debug text (`Some(6)`).
    assert!(ok && err.contains("--lr 0.003 → 0.001") && err.contains("--steps 6 → 7"), "{err}");
    // A ROUGE-scored run resumes with its dev set, metric and decoding (none of them repeated).
    let dev = p("dev.jsonl");
    common::seq2seq_toy::reverse_pairs(&tmp.path().join("dev.jsonl"), 8, 9);
    let args = ["finetune", "--task", "seq2seq", "--model", &model, "--train", &train, "--dev", &dev, "-o", &p("rouge")];
    // (Trained enough that decoding stays within the tiny tokenizer's ids, as in the test above.)
    let flags =
        "--steps 40 --batch-size 16 --lr 3e-3 --dropout 0 --eval-every 20 --metric rouge-l --num-beams 1 --rouge-tokenizer chars --quiet";
    let (ok, _, err) = wenhui(&[&args[..], &flags.split_whitespace().collect::<Vec<_>>()].concat());
    assert!(ok, "{err}");
    std::fs::remove_dir_all(tmp.path().join("rouge/checkpoints/step-00000040")).unwrap();
    let (ok, out, err) = wenhui(&["finetune", "--task", "seq2seq", "--resume", &p("rouge"), "--model", &model]);
    assert!(ok && err.contains("--model is ignored") && !err.contains("change the resumed run"), "{err}");
    assert!(out.contains("dev ROUGE-L"), "the resumed run scored another metric: {out}");
    let log = std::fs::read_to_string(tmp.path().join("rouge/metrics.jsonl")).unwrap();
    assert!(log.lines().any(|l| l.contains("\"step\":40") && l.contains("dev_score")), "{log}");
    let (ok, _, err) = wenhui(&["finetune", "--task", "seq2seq", "--train", &train, "--steps", "0"]);
    assert!(!ok && err.contains("--steps must be ≥ 1"), "{err}");
}

/// On a model with few positions (32), the default lengths shrink to fit it, and a limit given
/// that does not fit is an error naming its flag.
#[test]
fn default_lengths_fit_a_small_model() {
    let tmp = tempfile::tempdir().unwrap();
    common::seq2seq_toy::tiny_model(tmp.path(), "abcdef>");
    common::seq2seq_toy::reverse_pairs(&tmp.path().join("train.jsonl"), 8, 3);
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let (model, train, run) = (p("model"), p("train.jsonl"), p("run"));
    let base = ["finetune", "--task", "seq2seq", "--model", &model, "--train", &train, "-o", &run, "--steps", "2", "--quiet"];
    assert_eq!(base[8], run);
    let (ok, _, err) = wenhui(&base);
    assert!(ok, "default lengths on a 32-position model: {err}");
    let saved =
        wenhui::train::seq2seq::SavedLayout::read(&tmp.path().join("run/checkpoints/step-00000002")).unwrap().expect("a saved layout");
    assert_eq!((saved.layout.max_source_len, saved.layout.max_target_len), (32, 31));
    let other = p("run2");
    let mut args = base.to_vec();
    args[8] = &other;
    args.extend(["--max-target-len", "40"]);
    let (ok, _, err) = wenhui(&args);
    assert!(!ok && err.contains("--max-target-len") && err.contains("40"), "{err}");
}

/// `eval seq2seq` also reports SQuAD's normalised exact match and F1: punctuation no longer
/// makes a right answer wrong, and half a Chinese answer earns half the F1.
#[test]
fn reports_carry_squad_exact_match_and_f1() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("qa.jsonl");
    std::fs::write(
        &data,
        "{\"source\": \"北京大学。很好\", \"target\": \"北京大学\"}\n{\"source\": \"清华大学\", \"target\": \"北京大学\"}\n",
    )
    .unwrap();
    let pairs = read_pairs(&data, "source", "target", true).unwrap();
    let system = System::Baseline(wenhui::eval::seq2seq::Baseline::LeadChars(5));
    let r = evaluate_pairs(&system, &pairs, None, &indicatif::ProgressBar::hidden()).unwrap();
    assert_eq!(r.exact_match, 0.0);
    assert_eq!((r.squad.exact_match, r.squad.f1, r.squad.count), (50.0, 75.0, 2), "{:?}", r.squad);
}

/// A run resumed after its early stop is complete: it trains no further step.
#[test]
fn a_run_resumed_after_its_early_stop_trains_no_more() {
    use wenhui::train::seq2seq::{finetune, Seq2seqConfig, Seq2seqRunOptions};
    let tmp = tempfile::tempdir().unwrap();
    common::seq2seq_toy::tiny_model(tmp.path(), "abcdef>");
    let (train, dev) = (tmp.path().join("train.jsonl"), tmp.path().join("dev.jsonl"));
    common::seq2seq_toy::reverse_pairs(&train, 32, 4);
    common::seq2seq_toy::reverse_pairs(&dev, 8, 5);
    // A learning rate too small to move the dev loss: the second evaluation does not improve.
    let cfg = Seq2seqConfig {
        train,
        dev: Some(dev),
        model: tmp.path().join("model"),
        out_dir: tmp.path().join("run"),
        layout: LayoutConfig { template: "{source}>[MASK]".into(), max_source_len: 12, max_target_len: 8, ..Default::default() },
        steps: Some(20),
        batch_size: 4,
        lr: 1e-30,
        dropout: 0.0,
        eval_every: 1,
        patience: 1,
        ..Default::default()
    };
    let a = finetune(&cfg, Seq2seqRunOptions::default()).unwrap();
    assert!(a.early_stopped && a.steps == 2, "{a:?}");
    let b = finetune(&cfg, Seq2seqRunOptions { resume: Some(tmp.path().join("run")), ..Default::default() }).unwrap();
    assert!(b.early_stopped && b.steps == 2 && b.last_loss.is_nan(), "{b:?}");
}
