//! `wenhui export`: a pretraining checkpoint becomes a clean model directory whose f32 weights
//! give exactly the checkpoint's logits and whose f16 / bf16 weights load back into f32 compute.

use candle_core::{DType, Tensor};
use std::collections::HashMap;
use std::path::Path;
use wenhui::data::stream::Cursor;
use wenhui::model::glm::GlmConfig;
use wenhui::model::{load_model, Attention, BackboneInput, LoadOptions, ModelConfig};
use wenhui::tokenizer::chars::CharVocab;
use wenhui::train::checkpoint::{self, TrainerState};
use wenhui::train::export::{export_model, parse_dtype};

/// A run directory with one checkpoint of a random tiny GLM (as `wenhui pretrain` writes it).
fn run_dir(root: &Path) -> std::path::PathBuf {
    let tokenizer = CharVocab::from_chars("abcdefghijklmnopqrstuvwxyz".chars()).build().unwrap();
    let cfg = ModelConfig::Glm(GlmConfig::new(2, 32, 4, 40, 32));
    let params = cfg.init_weights(3).unwrap();
    let optim: HashMap<String, Tensor> =
        [("m.word_embeddings.weight".to_string(), Tensor::ones((40, 32), DType::F32, &candle_core::Device::Cpu).unwrap())].into();
    let state = TrainerState {
        step: 7,
        cursor: Cursor::default(),
        tokens_seen: 0,
        elapsed_s: 0.0,
        config: serde_json::json!({}),
        wenhui_version: "test".into(),
    };
    let run = root.join("run");
    checkpoint::save(&run, &params, &cfg, &tokenizer, &optim, &state, 2, |_| Ok(())).unwrap();
    run
}

fn logits(dir: &Path) -> Vec<f32> {
    let m = load_model(dir, &LoadOptions::default()).unwrap();
    let ids = Tensor::new(&[[1u32, 12, 13, 14, 2, 15, 16, 7, 0, 5, 20]], m.backbone.device()).unwrap();
    let out = m.backbone.forward(&BackboneInput::ids(ids).with_attention(Attention::Sep(vec![9])), None).unwrap();
    assert_eq!(out.logits.dtype(), DType::F32);
    out.logits.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn export_f32_is_identical_and_f16_is_close() {
    let tmp = tempfile::tempdir().unwrap();
    let run = run_dir(tmp.path());
    let ckpt = checkpoint::latest(&run).unwrap().unwrap();
    let reference = logits(&ckpt);

    let f32_dir = tmp.path().join("model-f32");
    let r = export_model(&run, &f32_dir, DType::F32, false).unwrap();
    assert_eq!((r.step, r.tokenizer, r.dtype.as_str()), (Some(7), true, "f32"));
    assert_eq!(logits(&f32_dir), reference);
    for absent in ["optimizer.safetensors", "trainer_state.json"] {
        assert!(!f32_dir.join(absent).exists(), "{absent} exported");
    }
    wenhui::tokenizer::Tokenizer::from_dir(&f32_dir).unwrap();
    // Readable by others like the files beside it (safetensors writes a private temp file).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f32_dir.join("model.safetensors")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "{mode:o}");
    }

    for (name, tol) in [("f16", 1e-2f32), ("bf16", 5e-2)] {
        let dir = tmp.path().join(format!("model-{name}"));
        let r = export_model(&ckpt, &dir, parse_dtype(name).unwrap(), false).unwrap();
        let m = load_model(&dir, &LoadOptions::default()).unwrap();
        assert!(m.stored_dtypes.iter().all(|(d, _)| *d == parse_dtype(name).unwrap()), "{:?}", m.stored_dtypes);
        let got = logits(&dir);
        let worst = got.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!("{name}: max |Δlogit| = {worst:.2e}");
        assert!(worst < tol, "{name}: max |Δlogit| = {worst}");
        assert!(r.bytes < std::fs::metadata(f32_dir.join("model.safetensors")).unwrap().len());
    }
}

#[test]
fn export_refuses_bad_input_and_replaces_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let run = run_dir(tmp.path());
    let out = tmp.path().join("out");
    export_model(&run, &out, DType::F32, false).unwrap();
    let err = export_model(&run, &out, DType::F16, false).unwrap_err().to_string();
    assert!(err.contains("--force") && err.contains("out"), "{err}");
    export_model(&run, &out, DType::F16, true).unwrap();
    assert!(load_model(&out, &LoadOptions::default()).unwrap().stored_dtypes.iter().all(|(d, _)| *d == DType::F16));
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = export_model(&empty, &tmp.path().join("x"), DType::F32, false).unwrap_err().to_string();
    assert!(err.contains("nothing to export") && err.contains("empty"), "{err}");
    assert!(parse_dtype("f8").unwrap_err().to_string().contains("f16"));
    // Never over the checkpoint it reads, nor into the run's checkpoints/ (even with --force).
    let ck = run.join("checkpoints/step-00000007");
    let err = export_model(&run, &ck, DType::F32, true).unwrap_err().to_string();
    assert!(err.contains("holds the input"), "{err}");
    let err = export_model(&run, &run.join("checkpoints/other"), DType::F32, true).unwrap_err().to_string();
    assert!(err.contains("inside the run's checkpoints/"), "{err}");
    assert!(ck.join("optimizer.safetensors").is_file() && ck.join("trainer_state.json").is_file(), "the checkpoint was touched");
    // A ptune/finetune checkpoint (no config.json of its own) is explained, not an OS error.
    let tuning = tmp.path().join("tuning/checkpoints/step-00000003");
    std::fs::create_dir_all(tuning.join("prompt")).unwrap();
    std::fs::write(tuning.join("trainer_state.json"), "{}").unwrap();
    let err = export_model(&tmp.path().join("tuning"), &tmp.path().join("y"), DType::F32, false).unwrap_err().to_string();
    assert!(err.contains("checkpoint of `wenhui ptune`/`finetune`") && err.contains("best/"), "{err}");
    // No temporary directory is left beside the output.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn cli_export() {
    let tmp = tempfile::tempdir().unwrap();
    let run = run_dir(tmp.path());
    let bin = env!("CARGO_BIN_EXE_wenhui");
    let out = std::process::Command::new(bin)
        .arg("export")
        .arg(&run)
        .arg("-o")
        .arg(tmp.path().join("m"))
        .args(["--dtype", "bf16", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["dtype"], "bf16");
    let out = std::process::Command::new(bin)
        .arg("export")
        .arg(&run)
        .arg("-o")
        .arg(tmp.path().join("n"))
        .args(["--dtype", "int8"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dtype"));
    // --force replaces an exported model, never a folder of something else.
    let other = tmp.path().join("thesis");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("thesis.tex"), "important").unwrap();
    let out = std::process::Command::new(bin).arg("export").arg(&run).arg("-o").arg(&other).arg("--force").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not a model directory") && err.contains("thesis.tex"), "{err}");
    assert_eq!(std::fs::read_to_string(other.join("thesis.tex")).unwrap(), "important");
    let out = std::process::Command::new(bin).arg("export").arg(&run).arg("-o").arg(tmp.path().join("m")).arg("--force").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `export --best` picks the kept checkpoint of lowest validation loss: not a lower loss logged
/// at a step whose checkpoint was pruned, not a step without a validation line.
#[test]
fn best_is_the_kept_checkpoint_of_lowest_validation_loss() {
    let run = tempfile::tempdir().unwrap();
    for step in [10, 20, 30, 40] {
        let d = run.path().join(format!("checkpoints/step-{step:08}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("trainer_state.json"), "{}").unwrap();
    }
    let lines = [(5, 1.0), (10, 3.0), (20, 2.5), (30, 2.7), (20, 2.6)];
    let mut metrics: String = lines.iter().map(|(s, l)| format!("{{\"step\": {s}, \"val_loss\": {l}}}\n")).collect();
    metrics += "{\"step\": 40, \"loss\": 0.5}\n";
    std::fs::write(run.path().join("metrics.jsonl"), &metrics).unwrap();
    let (dir, step, loss) = wenhui::train::checkpoint::best_by_val_loss(run.path()).unwrap();
    assert_eq!((step, loss), (20, 2.5));
    assert!(dir.ends_with("checkpoints/step-00000020"), "{}", dir.display());
    std::fs::write(run.path().join("metrics.jsonl"), "{\"step\": 5, \"val_loss\": 1.0}\n").unwrap();
    let e = wenhui::train::checkpoint::best_by_val_loss(run.path()).unwrap_err().to_string();
    assert!(e.contains("metrics.jsonl") && e.contains("no validation loss was logged"), "{e}");
    let e = wenhui::train::checkpoint::best_by_val_loss(&run.path().join("checkpoints")).unwrap_err().to_string();
    assert!(e.contains("missing: --best needs the run directory"), "{e}");
}

/// `wenhui export RUN --best` exports that checkpoint; without it, the newest.
#[test]
fn cli_export_best() {
    let tmp = tempfile::tempdir().unwrap();
    let run = run_dir(tmp.path());
    let (seven, nine) = (run.join("checkpoints/step-00000007"), run.join("checkpoints/step-00000009"));
    std::fs::create_dir_all(&nine).unwrap();
    for e in std::fs::read_dir(&seven).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), nine.join(e.file_name())).unwrap();
    }
    let state = std::fs::read_to_string(nine.join("trainer_state.json")).unwrap().replace("\"step\": 7,", "\"step\": 9,");
    assert!(state.contains("\"step\": 9,"), "{state}");
    std::fs::write(nine.join("trainer_state.json"), state).unwrap();
    std::fs::write(run.join("latest"), "step-00000009").unwrap();
    std::fs::write(run.join("metrics.jsonl"), "{\"step\": 7, \"val_loss\": 2.0}\n{\"step\": 9, \"val_loss\": 3.0}\n").unwrap();
    let export = |extra: &[&str], out: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
            .arg("export")
            .arg(&run)
            .arg("-o")
            .arg(tmp.path().join(out))
            .args(extra)
            .arg("--json")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["step"].as_u64()
    };
    assert_eq!(export(&[], "newest"), Some(9));
    assert_eq!(export(&["--best"], "best"), Some(7));
}
