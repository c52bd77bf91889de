//! `ptune`/`finetune --prompt-init`: the prompt encoder's table starts from the backbone's word
//! embeddings (a text's tokens, or vocabulary words mixed with label words, as THUDM/GLM), or
//! randomly, bit-identical to before; misuse is a clear error.

mod common;
use common::ptune_toy::*;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use wenhui::cloze::ClozeTask;
use wenhui::model::{load_model, LoadOptions};
use wenhui::ptuning::train::{tune, TuneConfig, TuneMode};
use wenhui::ptuning::{EncoderKind, PromptEncoder, PromptEncoderConfig};
use wenhui::tokenizer::Tokenizer;
use wenhui::train::pretrain::RunOptions;

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// The run's table `embedding.weight` after one step at learning-rate factor 0 (one warmup
/// step): the table the run started from, read from its step-1 checkpoint.
fn initial_table(mut cfg: TuneConfig, out: &str) -> Vec<Vec<f32>> {
    cfg.out_dir = cfg.out_dir.with_file_name(out);
    (cfg.max_steps, cfg.warmup_steps, cfg.eval_every) = (Some(1), Some(1), 1);
    tune(&cfg, &RunOptions::default()).unwrap();
    let t = tensors_of(&cfg.out_dir.join("checkpoints/step-00000001/prompt"), "prompt_encoder.safetensors");
    t["embedding.weight"].to_vec2::<f32>().unwrap()
}

/// The word embeddings of `ids` in glm-tiny.
fn glm_tiny_rows(ids: &[u32]) -> Vec<Vec<f32>> {
    let model = load_model(Path::new("tests/fixtures/glm-tiny"), &LoadOptions::default()).unwrap().backbone;
    let ids = Tensor::new(ids, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    model.embed(&ids).unwrap().squeeze(0).unwrap().to_vec2::<f32>().unwrap()
}

fn row_bits(rows: &[Vec<f32>]) -> Vec<Vec<u32>> {
    rows.iter().map(|r| r.iter().map(|x| x.to_bits()).collect()).collect()
}

/// `--prompt-init text`: the table starts as the backbone's embeddings of the text's tokens,
/// cycled to the [P] count, for every encoder kind; a resumed run continues exactly (the init
/// is not applied again).
#[test]
fn prompt_init_text_starts_from_the_texts_embeddings_and_resumes_exactly() -> TestResult {
    use wenhui::ptuning::PromptInit;
    let t = toy();
    let model = Path::new("tests/fixtures/glm-tiny");
    let tok = Tokenizer::from_file(&t.tokenizer)?;
    let ids = tok.encode("xz.", false)?;
    assert_eq!(ids.len(), 3);
    // Six [P] tokens: the three tokens twice.
    let expected = glm_tiny_rows(&[ids[0], ids[1], ids[2], ids[0], ids[1], ids[2]]);
    let mut cfg = toy_config(&t, TuneMode::Ptune, model, "text");
    (cfg.prompt_init, cfg.prompt_init_text) = (PromptInit::Text, Some("xz.".into()));
    for kind in [EncoderKind::Lstm, EncoderKind::Mlp, EncoderKind::Embedding] {
        let mut c = cfg.clone();
        c.encoder = kind;
        assert_eq!(row_bits(&initial_table(c, &format!("text-{kind:?}"))), row_bits(&expected), "{kind:?}");
    }
    // A longer text is cut.
    let mut long = cfg.clone();
    long.prompt_init_text = Some("abcdefgh".into());
    let ids = tok.encode("abcdef", false)?;
    assert_eq!(row_bits(&initial_table(long, "text-long")), row_bits(&glm_tiny_rows(&ids)));

    // Resume: straight 4 steps against 1 step, stop, resume to 4.
    (cfg.max_steps, cfg.eval_every) = (Some(4), 2);
    let mut straight = cfg.clone();
    straight.out_dir = t.dir.path().join("text-straight");
    tune(&straight, &RunOptions::default())?;
    let stop = Arc::new(AtomicBool::new(true));
    assert_eq!(tune(&cfg, &RunOptions { stop: Some(stop), ..Default::default() })?.steps, 1);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cfg.out_dir.join("checkpoints/step-00000001/trainer_state.json"))?)?;
    assert_eq!((saved["config"]["prompt_init"].as_str(), saved["config"]["prompt_init_text"].as_str()), (Some("text"), Some("xz.")));
    assert_eq!(tune(&cfg, &RunOptions { resume: Some(cfg.out_dir.clone()), ..Default::default() })?.steps, 4);
    assert_same_tuning_state(&straight.out_dir.join("checkpoints/step-00000004"), &cfg.out_dir.join("checkpoints/step-00000004"));
    Ok(())
}

/// `--prompt-init vocab`: each row mixes a random word's embedding with a label word's
/// (THUDM/GLM), reproducible from the seed; without fixed label words the rows are rows of the
/// backbone's table. `random` is the seeded N(0,1) table of before, from the library and the CLI.
#[test]
fn prompt_init_vocab_draws_words_by_seed_and_random_is_unchanged() -> TestResult {
    use wenhui::ptuning::init::{initial_table as table_for, label_word_ids, vocab_candidates};
    use wenhui::ptuning::PromptInit;
    let t = toy();
    let model_dir = Path::new("tests/fixtures/glm-tiny");
    let tok = Tokenizer::from_file(&t.tokenizer)?;
    let all: Vec<u32> = (0..120).collect();
    let table = glm_tiny_rows(&all);
    let words = vocab_candidates(&tok, 120);
    // Characters only: no command token, no id without a token.
    assert_eq!(words.len(), common::CLOZE_CHARS.chars().count());
    assert!(words.iter().all(|&w| tok.id_to_token(w).is_some_and(|s| s.chars().count() == 1)), "{words:?}");
    let task = ClozeTask::from_toml(TOY_TASK, "toy")?;
    let labels = label_word_ids(&task, &tok)?;
    assert_eq!(labels, vec![tok.encode("x", false)?[0], tok.encode("z", false)?[0]]);

    let mut cfg = toy_config(&t, TuneMode::Ptune, model_dir, "vocab");
    cfg.prompt_init = PromptInit::Vocab;
    let a = initial_table(cfg.clone(), "vocab-a");
    let b = initial_table(cfg.clone(), "vocab-b");
    cfg.seed = 43;
    let c = initial_table(cfg.clone(), "vocab-c");
    assert_eq!(row_bits(&a), row_bits(&b), "the same seed must give the same rows");
    assert_ne!(row_bits(&a), row_bits(&c), "another seed must give other rows");
    // Every row is r·E[w] + (1 − r)·E[t]: a word w, a label token t, r in [0, 1].
    let dist2 = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| f64::from(p - q).powi(2)).sum::<f64>();
    for row in a.iter().chain(&c) {
        let fits = words.iter().any(|&w| {
            labels.iter().any(|&l| {
                let (e_w, e_t) = (&table[w as usize], &table[l as usize]);
                let diff: Vec<f32> = e_w.iter().zip(e_t).map(|(p, q)| p - q).collect();
                let num: f64 = row.iter().zip(e_t).zip(&diff).map(|((v, q), d)| f64::from(v - q) * f64::from(*d)).sum();
                let r = num / diff.iter().map(|d| f64::from(*d).powi(2)).sum::<f64>().max(1e-30);
                let mix: Vec<f32> = e_w.iter().zip(e_t).map(|(p, q)| p * r as f32 + q * (1.0 - r as f32)).collect();
                (-1e-6..=1.0 + 1e-6).contains(&r) && dist2(row, &mix) < 1e-10
            })
        });
        assert!(fits, "a vocab row is no mix of a word and a label word");
    }
    // A task whose label words name fields has none fixed: rows are the words' own embeddings.
    let multi = ClozeTask::from_toml(
        "name = \"pick\"\nfields = [\"a\", \"b\"]\ntemplate = \"{a} or {b} ? [P*4] [MASK] .\"\nanswer = \"multi\"\n\
         [[verbalizer]]\nlabel = \"0\"\nwords = [\"{a}\"]\n[[verbalizer]]\nlabel = \"1\"\nwords = [\"{b}\"]\n",
        "pick",
    )?;
    assert!(label_word_ids(&multi, &tok)?.is_empty());
    let model = load_model(model_dir, &LoadOptions::default())?.backbone;
    let rows = table_for(PromptInit::Vocab, None, model.as_ref(), &tok, &multi, 8, 5)?.expect("a table").to_vec2::<f32>()?;
    for row in &rows {
        let row_bits: Vec<u32> = row.iter().map(|x| x.to_bits()).collect();
        assert!(words.iter().any(|&w| table[w as usize].iter().map(|x| x.to_bits()).eq(row_bits.iter().copied())), "not a word's row");
    }
    assert!(table_for(PromptInit::Random, None, model.as_ref(), &tok, &multi, 8, 5)?.is_none());

    // `random` (the default) is the seeded N(0,1) table of before.
    let random = initial_table(toy_config(&t, TuneMode::Ptune, model_dir, "unused"), "random");
    let ecfg = PromptEncoderConfig {
        kind: EncoderKind::Lstm,
        num_virtual_tokens: 6,
        token_dim: 64,
        hidden: 64,
        layers: 2,
        num_transformer_submodules: 1,
        lstm_head: wenhui::ptuning::LstmHead::FewGlue,
    };
    let seeded = PromptEncoder::seeded(&ecfg, 42, &Device::Cpu)?.embedding().to_vec2::<f32>()?;
    assert_eq!(row_bits(&random), row_bits(&seeded));
    // From the CLI, `--prompt-init random` and no flag give bit-identical runs.
    for (out, extra) in [("cli-default", &[][..]), ("cli-random", &["--prompt-init", "random"][..])] {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
            .args(["ptune", "--task"])
            .arg(&t.task)
            .args(["--model", "tests/fixtures/glm-tiny", "--train"])
            .arg(&t.train)
            .arg("--tokenizer")
            .arg(&t.tokenizer)
            .arg("--no-dev")
            .arg("-o")
            .arg(t.dir.path().join(out))
            .args(["--max-steps", "2", "--quiet"])
            .args(extra)
            .output()?;
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    }
    assert_same_tuning_state(
        &t.dir.path().join("cli-default/checkpoints/step-00000002"),
        &t.dir.path().join("cli-random/checkpoints/step-00000002"),
    );
    Ok(())
}

/// `--prompt-init` misuse is a clear error before anything is written.
#[test]
fn prompt_init_bad_input_is_a_clear_error() -> TestResult {
    use wenhui::ptuning::PromptInit;
    let t = toy();
    let model = Path::new("tests/fixtures/glm-tiny");
    let err = |cfg: &TuneConfig| tune(cfg, &RunOptions::default()).unwrap_err().to_string();
    let mut c = toy_config(&t, TuneMode::Ptune, model, "never");
    c.prompt_init = PromptInit::Text;
    assert!(err(&c).contains("--prompt-init-text"), "{}", err(&c));
    c.prompt_init_text = Some("  ".into());
    assert!(err(&c).contains("prompt_init_text is empty"), "{}", err(&c));
    // A text of which the character vocabulary knows nothing.
    c.prompt_init_text = Some("日本語".into());
    let e = err(&c);
    assert!(e.contains("--prompt-init-text") && e.contains("knows none of it") && e.contains("日本語"), "{e}");
    // Text given without `text`.
    c.prompt_init = PromptInit::Vocab;
    c.prompt_init_text = Some("xz".into());
    assert!(err(&c).contains("only read with prompt_init = text"), "{}", err(&c));
    // A loaded encoder starts trained.
    c.prompt_init_text = None;
    c.init_prompt = Some(t.dir.path().to_path_buf());
    assert!(err(&c).contains("cannot apply to an encoder loaded with init_prompt"), "{}", err(&c));
    assert!(!c.out_dir.exists(), "a refused run wrote its directory");
    // The CLI: --prompt-init-text alone, and --prompt-init with --init-prompt.
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
            .args(["ptune", "--task"])
            .arg(&t.task)
            .args(["--model", "tests/fixtures/glm-tiny", "--train"])
            .arg(&t.train)
            .arg("--tokenizer")
            .arg(&t.tokenizer)
            .arg("-o")
            .arg(t.dir.path().join("never"))
            .args(extra)
            .output()
    };
    let out = run(&["--prompt-init-text", "xz"])?;
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("only read with prompt_init = text (--prompt-init text)"), "{e}");
    let out = run(&["--prompt-init", "vocab", "--init-prompt", "somewhere"])?;
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("--prompt-init") && e.contains("--init-prompt"), "{e}");
    let out = run(&["--prompt-init", "text", "--prompt-init-text", ""])?;
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("prompt_init_text is empty"), "{e}");
    assert!(!t.dir.path().join("never").exists());
    Ok(())
}
