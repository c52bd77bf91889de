//! `wenhui export`: a pretraining checkpoint becomes a clean model directory whose f32 weights
//! give exactly the checkpoint's logits and whose f16 / bf16 weights load back into f32 compute;
//! so does any checkpoint wenhui loads (THUDM Megatron shards, `pytorch_model.bin`, sharded
//! safetensors), hub keys kept.

mod common;

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

// Any checkpoint wenhui loads exports: THUDM Megatron shards, `pytorch_model.bin`, sharded
// safetensors, a weights file; hub keys survive.

fn glm_dir() -> std::path::PathBuf {
    common::fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny")
}

fn megatron_dir() -> std::path::PathBuf {
    common::fixture_dir("WENHUI_GLM_MEGATRON_FIXTURE", "glm-tiny-megatron")
}

/// The logits of the fixture's `blank_infill` case (2D positions, Part A / Part B) for the model in `dir`.
fn case_logits(dir: &Path) -> Tensor {
    let m = load_model(dir, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let t = common::tensors(&glm_dir().join("cases.safetensors"));
    let input = BackboneInput::ids(common::u32s(&t["blank_infill.input_ids"]))
        .with_positions(common::u32s(&t["blank_infill.position_ids"]))
        .with_attention(Attention::Sep(common::usizes(&t["blank_infill.sep"])));
    m.backbone.forward(&input, None).unwrap_or_else(|e| panic!("{e}")).logits
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Model-parallel THUDM checkpoints (fp16 shards, config from the pickled args, no tokenizer)
/// export to a model directory that gives the source's logits: exactly in f32, and in f16 too
/// (the weights are fp16 already); both splits export the same weights.
#[test]
fn megatron_checkpoints_export_to_the_same_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let expected = common::tensors(&glm_dir().join("cases.safetensors"))["blank_infill.logits_gelu_tanh"].clone();
    let mut exported = Vec::new();
    for sub in ["mp1", "mp2"] {
        let src = megatron_dir().join(sub);
        if !src.is_dir() {
            eprintln!("note: {} absent; skipped", src.display());
            continue;
        }
        let reference = case_logits(&src);
        let out = tmp.path().join(format!("{sub}-f32"));
        let r = export_model(&src, &out, DType::F32, false).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.format.contains("Megatron") && r.dtype == "f32" && r.step.is_none(), "{r:?}");
        assert!(!r.tokenizer && r.warnings.iter().any(|w| w.contains("no tokenizer found") && w.contains("wenhui inspect")), "{r:?}");
        let got = case_logits(&out);
        common::assert_close(&format!("{sub}: f32 export vs source"), &got, &reference, 1e-6);
        common::assert_close(&format!("{sub}: f32 export vs official"), &got, &expected, 1e-2);
        // The names a model directory is read by, nothing else.
        let stored = common::tensors(&out.join("model.safetensors"));
        let cfg = ModelConfig::from_file(&out.join("config.json")).unwrap();
        let mut names: Vec<String> = cfg.parameter_shapes().into_iter().map(|(n, _)| n).collect();
        let mut have: Vec<String> = stored.keys().cloned().collect();
        names.sort();
        have.sort();
        assert_eq!(have, names);
        exported.push(stored);

        let f16 = tmp.path().join(format!("{sub}-f16"));
        export_model(&src, &f16, DType::F16, false).unwrap_or_else(|e| panic!("{e}"));
        let m = load_model(&f16, &LoadOptions::default()).unwrap();
        assert!(m.stored_dtypes.iter().all(|(d, _)| *d == DType::F16), "{:?}", m.stored_dtypes);
        common::assert_close(&format!("{sub}: f16 export vs source"), &case_logits(&f16), &reference, 1e-6);
    }
    if let [a, b] = exported.as_slice() {
        for (name, t) in a {
            assert_eq!(common::max_abs_diff(t, &b[name]), 0.0, "{name}: mp1 and mp2 export different weights");
        }
    }
}

/// A `pytorch_model.bin` directory, a sharded `model.safetensors.index.json` directory and a
/// bare weights file export to the source's weights and logits.
#[test]
fn pytorch_bin_sharded_and_file_sources_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = case_logits(&glm_dir());
    let original = common::tensors(&glm_dir().join("model.safetensors"));

    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for f in ["config.json", "pytorch_model.bin"] {
        std::fs::copy(glm_dir().join(f), bin.join(f)).unwrap();
    }
    let sharded = tmp.path().join("sharded");
    std::fs::create_dir_all(&sharded).unwrap();
    std::fs::copy(glm_dir().join("config.json"), sharded.join("config.json")).unwrap();
    let mut names: Vec<&String> = original.keys().collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for (i, part) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", i + 1);
        let shard: HashMap<String, Tensor> = part.iter().map(|n| ((*n).clone(), original[*n].clone())).collect();
        candle_core::safetensors::save(&shard, sharded.join(&file)).unwrap();
        for n in part {
            weight_map.insert((*n).clone(), serde_json::json!(file));
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(sharded.join("model.safetensors.index.json"), index.to_string()).unwrap();

    for (what, src) in [("pytorch_model.bin dir", bin.clone()), ("sharded dir", sharded), ("weights file", bin.join("pytorch_model.bin"))] {
        let out = tmp.path().join(format!("out-{}", what.replace(' ', "-")));
        export_model(&src, &out, DType::F32, false).unwrap_or_else(|e| panic!("{what}: {e}"));
        let stored = common::tensors(&out.join("model.safetensors"));
        assert_eq!(stored.len(), original.len(), "{what}");
        for (name, t) in &original {
            assert_eq!(common::max_abs_diff(&stored[name], t), 0.0, "{what}: {name}");
        }
        common::assert_close(what, &case_logits(&out), &reference, 1e-6);
    }
}

/// A hub GLM keeps `architectures`, `auto_map` and its own fields, `torch_dtype` says the
/// exported dtype, and the `auto_map` Python files come along; the export loads back with
/// wenhui, within f16 rounding.
#[test]
fn hub_keys_and_remote_code_survive_the_export() {
    let tmp = tempfile::tempdir().unwrap();
    let source = read_json(&glm_dir().join("config.json"));
    let reference = case_logits(&glm_dir());
    for (name, dtype, torch) in [("f16", DType::F16, "float16"), ("bf16", DType::BF16, "bfloat16"), ("f32", DType::F32, "float32")] {
        let out = tmp.path().join(name);
        let r = export_model(&glm_dir(), &out, dtype, false).unwrap_or_else(|e| panic!("{e}"));
        let cfg = read_json(&out.join("config.json"));
        assert_eq!(cfg["torch_dtype"], torch);
        for key in ["architectures", "auto_map", "spell_func", "pool_token", "output_predict"] {
            assert_eq!(cfg[key], source[key], "{key}");
        }
        assert!(r.warnings.iter().any(|w| w.contains("modeling_glm.py") && w.contains("configuration_glm.py")), "{r:?}");
        let tol = match dtype {
            DType::F32 => 1e-6,
            DType::F16 => 1e-2,
            _ => 5e-2,
        };
        common::assert_close(&format!("hub {name}"), &case_logits(&out), &reference, tol);
    }
    // With the remote code beside the weights, it is copied (and no warning about it).
    let hub = tmp.path().join("hub");
    std::fs::create_dir_all(&hub).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(glm_dir().join(f), hub.join(f)).unwrap();
    }
    for f in ["modeling_glm.py", "configuration_glm.py"] {
        std::fs::write(hub.join(f), format!("# {f}\n")).unwrap();
    }
    let out = tmp.path().join("with-code");
    let r = export_model(&hub, &out, DType::F32, false).unwrap();
    assert!(r.warnings.iter().all(|w| !w.contains("auto_map")), "{r:?}");
    assert_eq!(std::fs::read_to_string(out.join("modeling_glm.py")).unwrap(), "# modeling_glm.py\n");
    assert!(out.join("configuration_glm.py").is_file());
    // A source key that clashes with wenhui's own (an alias) is dropped; the hub keys stay.
    let mut aliased = source.clone();
    let layers = aliased["num_layers"].take();
    let obj = aliased.as_object_mut().unwrap();
    obj.remove("num_layers");
    obj.insert("num_hidden_layers".into(), layers);
    std::fs::write(hub.join("config.json"), aliased.to_string()).unwrap();
    let out = tmp.path().join("aliased");
    export_model(&hub, &out, DType::F32, false).unwrap_or_else(|e| panic!("{e}"));
    let cfg = read_json(&out.join("config.json"));
    assert!(cfg.get("num_hidden_layers").is_none() && cfg["num_layers"] == 2, "{cfg}");
    assert_eq!(
        (&cfg["architectures"], &cfg["auto_map"], &cfg["torch_dtype"]),
        (&source["architectures"], &source["auto_map"], &source["torch_dtype"])
    );
    common::assert_close("aliased", &case_logits(&out), &reference, 1e-6);
}

/// A folder with nothing loadable names every accepted source; an existing output is refused
/// without --force whatever the source; the CLI says there is no tokenizer and how to add one.
#[test]
fn any_source_refuses_bad_input_and_the_cli_explains_a_missing_tokenizer() {
    let tmp = tempfile::tempdir().unwrap();
    let stray = tmp.path().join("stray");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("notes.txt"), "no model here").unwrap();
    let err = export_model(&stray, &tmp.path().join("x"), DType::F32, false).unwrap_err().to_string();
    for needle in [
        "nothing to export",
        "stray",
        "pytorch_model.bin",
        "model.safetensors.index.json",
        "latest_checkpointed_iteration.txt",
        "weights file",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let mp2 = megatron_dir().join("mp2");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("mine.txt"), "keep").unwrap();
    let err = export_model(&mp2, &out, DType::F32, false).unwrap_err().to_string();
    assert!(err.contains("already exists") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(out.join("mine.txt")).unwrap(), "keep");

    let o = common::wenhui(&["export", mp2.to_str().unwrap(), "-o", tmp.path().join("m").to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let err = common::stderr(&o);
    assert!(err.contains("no tokenizer found") && err.contains("wenhui inspect"), "{err}");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((r["tokenizer"].as_bool(), r["parameters"].as_u64()), (Some(false), Some(116096)), "{r}");
    let o = common::wenhui(&["export", mp2.to_str().unwrap(), "-o", tmp.path().join("m").to_str().unwrap()]);
    assert!(!o.status.success() && common::stderr(&o).contains("--force"), "{}", common::stderr(&o));
    // --gelu is recorded in the exported config (a hub GLM computes with erf).
    let erf = tmp.path().join("erf");
    let o = common::wenhui(&["export", mp2.to_str().unwrap(), "-o", erf.to_str().unwrap(), "--gelu", "erf"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(read_json(&erf.join("config.json"))["gelu"], "erf");
    let help = common::stdout(&common::wenhui(&["export", "--help"]));
    assert!(help.contains("pytorch_model.bin") && help.contains("mp_rank_XX_model_states.pt"), "{help}");
}
