//! `wenhui bench generate`: greedy and beam-search tokens/s on a tiny random GLM and on the tiny
//! GPT-2 fixture, from the library and the CLI.

use wenhui::bench::{bench_generate, bench_generate_on, GenerateBench};
use wenhui::model::{load_model, LoadOptions};

fn tiny() -> GenerateBench {
    GenerateBench { layers: 2, hidden: 32, heads: 4, vocab: 64, prompt: 12, new_tokens: 6, beams: 4, reps: 2, ..Default::default() }
}

#[test]
fn random_glm_and_gpt2_give_positive_rates() {
    let r = bench_generate(&tiny()).unwrap();
    assert!(r.greedy_tokens_per_s > 0.0 && r.beam_tokens_per_s > 0.0 && r.prompt_ms > 0.0, "{r:?}");
    assert!(r.params > 0);
    let m = load_model(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tiny"), &LoadOptions::default())
        .unwrap();
    let r = bench_generate_on(m.backbone.as_ref(), None, &tiny()).unwrap();
    assert!(r.greedy_tokens_per_s > 0.0 && r.beam_tokens_per_s > 0.0, "{r:?}");
    let err = bench_generate_on(m.backbone.as_ref(), None, &GenerateBench { prompt: 60, ..tiny() }).unwrap_err();
    assert!(err.to_string().contains("--new-tokens"), "{err}");
}

#[test]
fn cli_prints_one_json_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .args(["bench", "generate", "--layers", "2", "--hidden", "32", "--heads", "4", "--vocab", "64", "--prompt", "8"])
        .args(["--new-tokens", "4", "--reps", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1);
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(r["greedy_tokens_per_s"].as_f64().unwrap() > 0.0 && r["beam_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(r["kind"], "glm");
}

#[test]
fn batched_decode_loop_runs_on_glm_and_gpt2() {
    let c = GenerateBench { batch: 3, decode_only: true, ..tiny() };
    let r = bench_generate(&c).unwrap();
    let d = r.decode.as_ref().expect("decode report");
    assert!(d.batch == 3 && d.tokens_per_s > 0.0 && d.prefill_ms > 0.0 && d.decode_ms_per_token > 0.0, "{d:?}");
    assert!(r.greedy_ms.is_nan(), "decode_only skips the library runs");
    let m = load_model(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tiny"), &LoadOptions::default())
        .unwrap();
    let r = bench_generate_on(m.backbone.as_ref(), None, &GenerateBench { batch: 2, ..tiny() }).unwrap();
    assert!(r.decode.unwrap().tokens_per_s > 0.0 && r.greedy_tokens_per_s > 0.0);
}

#[test]
fn cuda_without_the_feature_is_a_clear_error() {
    if cfg!(feature = "cuda") {
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .args(["--device", "cuda", "bench", "train", "--layers", "1", "--hidden", "16", "--heads", "2", "--vocab", "64"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scripts/build-cuda.sh"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .args(["--dtype", "bf16", "bench", "train", "--layers", "1", "--hidden", "16", "--heads", "2", "--vocab", "64"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("GPU"), "bf16 on the CPU is refused");
}

/// A loaded model's report gives its own shape, not the random model's flags; a BERT, which does
/// not generate, is refused; `decode_only` without a batch would measure nothing.
#[test]
fn loaded_model_reports_its_shape_and_bert_is_refused() {
    let fixtures = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let m = load_model(&fixtures.join("gpt2-tiny"), &LoadOptions::default()).unwrap();
    let c = GenerateBench { layers: 12, hidden: 768, heads: 12, vocab: 30592, ..tiny() };
    let r = bench_generate_on(m.backbone.as_ref(), None, &c).unwrap();
    let info = m.backbone.info();
    assert_eq!(
        (r.config.layers, r.config.hidden, r.config.heads, r.config.vocab),
        (info.num_layers, info.hidden_size, info.num_heads, info.vocab_size)
    );
    let bert = load_model(&fixtures.join("bert-mlm-tiny"), &LoadOptions::default()).unwrap();
    let e = bench_generate_on(bert.backbone.as_ref(), None, &tiny()).unwrap_err();
    assert!(e.to_string().contains("BERT"), "{e}");
    let e = bench_generate(&GenerateBench { decode_only: true, batch: 0, ..tiny() }).unwrap_err();
    assert!(e.to_string().contains("--batch N"), "{e}");
}

/// `wenhui bench poem` refines as `wenhui poem` does unless told otherwise, reports each title's
/// times, and its ratios are the median of the titles' own ratios (never one title's time over
/// another's).
#[test]
fn bench_poem_reports_paired_ratios_with_the_tasks_refinement() {
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
            .args(["bench", "poem", "--titles", "春日,江雪", "--beams", "2", "--reps", "1"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (r, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (r, stderr) = run(&[]);
    let task_rounds = wenhui::bench::PoemBench::task_refine_rounds().unwrap();
    assert!(task_rounds >= 1, "the shipped poem task refines");
    assert_eq!(r["config"]["refine_rounds"], task_rounds, "{r}");
    assert!(stderr.contains(&format!("{task_rounds} refinement round")), "{stderr}");
    let titles = r["titles"].as_array().unwrap();
    assert_eq!(titles.len(), 2);
    let ratio = |t: &serde_json::Value, den: &str| t["inverse_ms"].as_f64().unwrap() / t[den].as_f64().unwrap();
    for (field, den) in [("ratio_vs_search_baseline", "search_baseline_ms"), ("ratio_vs_token_beam", "token_beam_ms")] {
        // Two titles: the median is the mean of their ratios.
        let want = (ratio(&titles[0], den) + ratio(&titles[1], den)) / 2.0;
        let got = r[field].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9 * want, "{field}: {got} vs {want}");
    }
    let (r, _) = run(&["--refine", "0"]);
    assert_eq!(r["config"]["refine_rounds"], 0);
}
