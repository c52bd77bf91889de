//! Bad input never panics: corrupt or mismatched checkpoints and configs give an `Err` naming the
//! file, tensor or field, and `wenhui inspect` exits non-zero with that message.

mod common;

use candle_core::Tensor;
use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use wenhui::model::{load_model, LoadOptions};

/// Runs the `wenhui` binary from the repository root (fixture paths are relative to it).
fn run_in_repo(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wenhui")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

/// `wenhui args` exits 1 without a panic, its error mentions every needle and none of `never`.
fn refused(args: &[&str], needles: &[&str], never: &[&str]) {
    let out = run_in_repo(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    for n in never {
        assert!(!err.contains(n), "{args:?}: {err}");
    }
    for n in needles {
        assert!(err.contains(n), "{args:?}: `{err}` does not mention `{n}`");
    }
}

fn glm_dir() -> PathBuf {
    fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny")
}

/// A temp model dir with glm-tiny's config and the given weights file contents.
fn model_dir(config: &str, weights: Option<(&str, Vec<u8>)>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    if let Some((name, bytes)) = weights {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

fn glm_config() -> String {
    std::fs::read_to_string(glm_dir().join("config.json")).unwrap()
}

fn safetensors_bytes(map: &std::collections::HashMap<String, Tensor>) -> Vec<u8> {
    let f = tempfile::NamedTempFile::new().unwrap();
    candle_core::safetensors::save(map, f.path()).unwrap();
    std::fs::read(f.path()).unwrap()
}

/// A torch-style zip whose `archive/data.pkl` holds `pickle` bytes.
fn torch_zip(pickle: &[u8]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        z.start_file("archive/data.pkl", opts).unwrap();
        z.write_all(pickle).unwrap();
        z.finish().unwrap();
    }
    buf.into_inner()
}

/// Loading fails with a message containing every one of `needles`; the CLI agrees.
fn assert_load_error(dir: &Path, needles: &[&str]) {
    let err = match load_model(dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded but should not", dir.display()),
        Err(e) => e.to_string(),
    };
    for n in needles {
        assert!(err.contains(n), "error `{err}` does not mention `{n}`");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui")).arg("inspect").arg(dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "inspect succeeded on {}", dir.display());
    assert_eq!(out.status.code(), Some(1), "inspect exit code; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "inspect panicked: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "inspect stderr `{stderr}` does not mention `{n}`");
    }
}

#[test]
fn truncated_safetensors() {
    let bytes = std::fs::read(glm_dir().join("model.safetensors")).unwrap();
    let dir = model_dir(&glm_config(), Some(("model.safetensors", bytes[..bytes.len() / 2].to_vec())));
    assert_load_error(dir.path(), &["model.safetensors", "truncated"]);
}

#[test]
fn pickle_that_is_not_a_state_dict() {
    // pickle protocol 2 of [1, 2]
    let dir = model_dir(&glm_config(), Some(("pytorch_model.bin", torch_zip(b"\x80\x02]q\x00(K\x01K\x02e."))));
    assert_load_error(dir.path(), &["pytorch_model.bin", "not a state dict"]);
    // {"a": 1}: a dict, but no tensors
    let dir = model_dir(&glm_config(), Some(("pytorch_model.bin", torch_zip(b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s."))));
    assert_load_error(dir.path(), &["pytorch_model.bin", "no tensors"]);
    // not a zip at all
    let dir = model_dir(&glm_config(), Some(("pytorch_model.bin", b"definitely not a checkpoint".to_vec())));
    assert_load_error(dir.path(), &["pytorch_model.bin", "not a zip"]);
}

#[test]
fn missing_tensor_and_wrong_shape() {
    let mut map = tensors(&glm_dir().join("model.safetensors"));
    map.remove("transformer.layers.1.mlp.dense_4h_to_h.bias");
    let dir = model_dir(&glm_config(), Some(("model.safetensors", safetensors_bytes(&map))));
    assert_load_error(dir.path(), &["model.safetensors", "transformer.layers.1.mlp.dense_4h_to_h.bias", "missing"]);

    let mut map = tensors(&glm_dir().join("model.safetensors"));
    let t = map["transformer.layers.0.attention.dense.weight"].narrow(0, 0, 10).unwrap();
    map.insert("transformer.layers.0.attention.dense.weight".into(), t);
    let dir = model_dir(&glm_config(), Some(("model.safetensors", safetensors_bytes(&map))));
    assert_load_error(dir.path(), &["transformer.layers.0.attention.dense.weight", "expected [64, 64]", "found [10, 64]"]);
}

#[test]
fn broken_configs() {
    let weights = std::fs::read(glm_dir().join("model.safetensors")).unwrap();
    let dir = model_dir("{ this is not json", Some(("model.safetensors", weights.clone())));
    assert_load_error(dir.path(), &["config.json", "not valid JSON"]);

    let mut cfg: serde_json::Value = serde_json::from_str(&glm_config()).unwrap();
    cfg.as_object_mut().unwrap().remove("hidden_size");
    let dir = model_dir(&cfg.to_string(), Some(("model.safetensors", weights.clone())));
    assert_load_error(dir.path(), &["config.json", "hidden_size"]);

    let mut cfg: serde_json::Value = serde_json::from_str(&glm_config()).unwrap();
    cfg["num_attention_heads"] = serde_json::json!(5);
    let dir = model_dir(&cfg.to_string(), Some(("model.safetensors", weights.clone())));
    assert_load_error(dir.path(), &["config.json", "num_attention_heads"]);

    // A damaged layer count fails at once (not after listing 10¹² layers' tensors); fewer layers
    // than the weights hold is not a silent truncation; a value of the wrong type is not
    // reported as a field named after the value.
    let mut cfg: serde_json::Value = serde_json::from_str(&glm_config()).unwrap();
    cfg["num_layers"] = serde_json::json!(1_000_000_000_000u64);
    let dir = model_dir(&cfg.to_string(), Some(("model.safetensors", weights.clone())));
    assert_load_error(dir.path(), &["config.json", "num_layers", "at most 1024"]);
    cfg["num_layers"] = serde_json::json!(1);
    let dir = model_dir(&cfg.to_string(), Some(("model.safetensors", weights.clone())));
    assert_load_error(dir.path(), &["transformer.layers.1.", "fewer layers than the weights"]);
    cfg["num_layers"] = serde_json::json!(-384);
    let dir = model_dir(&cfg.to_string(), Some(("model.safetensors", weights.clone())));
    assert_load_error(dir.path(), &["config.json", "not a valid glm config", "-384"]);

    let dir = model_dir("", Some(("model.safetensors", weights.clone())));
    assert_load_error(dir.path(), &["config.json", "empty"]);

    let dir = model_dir(&glm_config(), None);
    assert_load_error(dir.path(), &["no weights found"]);
}

#[test]
fn inputs_that_do_not_fit_the_model_are_errors() {
    use wenhui::model::{Attention, BackboneInput};
    let m = load_model(&glm_dir(), &LoadOptions::default()).unwrap();
    let dev = m.backbone.device().clone();
    let too_long = Tensor::zeros((1, 80), candle_core::DType::U32, &dev).unwrap();
    let err = m.backbone.forward(&BackboneInput::ids(too_long), None).expect_err("80 tokens > 64 positions").to_string();
    assert!(err.contains("too long"), "{err}");
    let bad_id = Tensor::new(&[[1u32, 500]], &dev).unwrap();
    let err = m.backbone.forward(&BackboneInput::ids(bad_id), None).expect_err("id 500 ≥ vocab 120").to_string();
    assert!(err.contains("500"), "{err}");
    let ids = Tensor::new(&[[1u32, 2, 3]], &dev).unwrap();
    assert!(m.backbone.forward(&BackboneInput::ids(ids.clone()).with_attention(Attention::Sep(vec![9])), None).is_err());
    assert!(m
        .backbone
        .forward(&BackboneInput::ids(ids).with_positions(Tensor::zeros((1, 3), candle_core::DType::U32, &dev).unwrap()), None)
        .is_err());
}

#[test]
fn unknown_cuda_layer_path_is_a_clear_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .args(["--cuda-ops", "flash", "inspect", "tests/fixtures/glm-tiny"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cuda-ops") && err.contains("`flash`") && err.contains("fused"), "{err}");
    // A valid choice is accepted on the CPU, where it changes nothing.
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .args(["--cuda-ops", "fused", "inspect", "tests/fixtures/glm-tiny"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

#[test]
fn damaged_safetensors_headers_name_the_tensor() {
    let header = br#"{"transformer.final_layernorm.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 8]);
    let dir = model_dir(&glm_config(), Some(("model.safetensors", bytes)));
    assert_load_error(dir.path(), &["transformer.final_layernorm.weight", "data_offsets [0, 12]", "damaged"]);
}

#[test]
fn non_finite_weights_and_shards_outside_the_model_are_errors() {
    let mut map = candle_core::safetensors::load(glm_dir().join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let name = "transformer.final_layernorm.weight";
    let w = map[name].to_vec1::<f32>().unwrap();
    let nan: Vec<f32> = w.iter().enumerate().map(|(i, &v)| if i == 3 { f32::NAN } else { v }).collect();
    map.insert(name.into(), Tensor::new(nan.as_slice(), &candle_core::Device::Cpu).unwrap());
    let dir = model_dir(&glm_config(), Some(("model.safetensors", safetensors_bytes(&map))));
    assert_load_error(dir.path(), &[name, "NaN or infinite"]);
    // A sharded index naming a file outside the model directory is refused, not opened.
    let dir = model_dir(&glm_config(), None);
    let index = serde_json::json!({"weight_map": {name: "../../outside.safetensors"}});
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    assert_load_error(dir.path(), &["../../outside.safetensors", "not a file name"]);
    // A THUDM tracker naming no iteration directory (or one elsewhere).
    for tag in ["abc", "../up"] {
        let dir = model_dir(&glm_config(), None);
        std::fs::write(dir.path().join("latest_checkpointed_iteration.txt"), tag).unwrap();
        assert_load_error(dir.path(), &["latest_checkpointed_iteration.txt", &format!("names `{tag}`")]);
    }
}

/// What a command would destroy or could not survive is refused up front, with the option named:
/// a tokenizer over a model's, a corpus or an export over its own input, a search too wide to fit,
/// an empty title list, an option that does nothing, an unknown task.
#[test]
fn commands_refuse_to_destroy_their_inputs_or_to_run_out_of_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let wenhui = run_in_repo;
    let fails = |args: &[&str], needles: &[&str]| refused(args, needles, &[]);
    let p = |x: &Path| x.to_str().unwrap().to_string();
    // A model directory keeps its tokenizer.
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("config.json"), glm_config()).unwrap();
    std::fs::write(model.join("tokenizer.json"), "{}").unwrap();
    let text = tmp.path().join("text.txt");
    std::fs::write(&text, "春眠不觉晓\n处处闻啼鸟\n").unwrap();
    fails(
        &["tokenizer", "train", "--kind", "chars", "--vocab-size", "50", "-o", &p(&model), &p(&text)],
        &["already holds a tokenizer", "--force"],
    );
    assert_eq!(std::fs::read_to_string(model.join("tokenizer.json")).unwrap(), "{}");
    // --overwrite / --force never delete the command's own input.
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::copy(&text, data.join("in.txt")).unwrap();
    fails(
        &["data", "prepare", "--tokenizer", "models/poetry-glm", "--overwrite", "-o", &p(&data), &p(&data.join("in.txt"))],
        &["holds the input"],
    );
    assert!(data.join("in.txt").is_file());
    let copy = tmp.path().join("glm");
    std::fs::create_dir(&copy).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(glm_dir().join(f), copy.join(f)).unwrap();
    }
    fails(&["export", &p(&copy), "-o", &p(&copy), "--force"], &["holds the input"]);
    assert!(copy.join("model.safetensors").is_file());
    // Searches too wide to fit, an empty title list, an option with no effect, an unknown task.
    // (A usage error from the argument parser: exit 2, naming the flag and its range.)
    let out = run_in_repo(&["fill", "春[MASK]", "--beams", "100000"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(2) && err.contains("--beams") && err.contains("1..=256"), "{err}");
    fails(&["poem", "--title", "春", "--per-beam", "1000000"], &["candidates per beam"]);
    fails(&["bench", "poem", "--titles", ""], &["no titles"]);
    fails(&["poem", "--title", "春", "--output", &p(&tmp.path().join("o.jsonl"))], &["--output", "--titles"]);
    assert!(!tmp.path().join("o.jsonl").exists());
    fails(&["classify", "--model", "tests/fixtures/glm-tiny", "--task", "nosuch", "{}"], &["nosuch", "rte, cb"]);
    // An evaluation example whose label the task does not have is an error, not a wrong answer.
    let rte = tmp.path().join("rte.jsonl");
    std::fs::write(&rte, "{\"premise\":\"a\",\"hypothesis\":\"b\",\"label\":\"maybe\",\"idx\":0}\n").unwrap();
    fails(&["eval", "--task", "rte", "--model", "models/poetry-glm", "--data", &p(&rte)], &["example 1", "`maybe`", "entailment"]);
    fails(
        &["eval", "seq2seq", "--model", "tests/fixtures/glm-tiny", "--data", "x.jsonl", "--min-length", "20", "--max-target-len", "8"],
        &["--min-length 20", "--max-target-len 8"],
    );
    // Counts of zero are command-line errors naming the flag.
    for args in [&["bench", "forward", "--reps", "0"][..], &["bench", "serve", "--clients", "1,0"], &["probe", "lama", "--epochs", "0"]] {
        let out = wenhui(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(args[2]) && err.contains("must be at least 1"), "{args:?}: {err}");
    }
    // An acrostic head outside the vocabulary; a pairs file (votes may refer to it) kept.
    fails(&["poem", "--title", "春", "--acrostic", "龘龘龘龘"], &["龘", "not one token"]);
    let pairs = tmp.path().join("pairs.jsonl");
    std::fs::write(&pairs, "{}\n").unwrap();
    fails(&["turing", "prepare", "--count", "1", "--out", &p(&pairs)], &["already exists", "--force"]);
    assert_eq!(std::fs::read_to_string(&pairs).unwrap(), "{}\n");
    // A batch of poems never replaces its titles file, and an unwritable output is found before
    // the first poem, not after the last.
    let titles = tmp.path().join("titles.jsonl");
    std::fs::write(&titles, "{\"title\": \"春\"}\n").unwrap();
    fails(&["poem", "--titles", &p(&titles), "--output", &p(&titles)], &["is the --titles file"]);
    assert_eq!(std::fs::read_to_string(&titles).unwrap(), "{\"title\": \"春\"}\n");
    fails(&["poem", "--titles", &p(&titles), "--output", &p(&tmp.path().join("no/such/dir/p.jsonl"))], &["cannot write there"]);
    // Sizes that could only exhaust the memory are refused before anything is allocated.
    let vocab = p(&tmp.path().join("v"));
    fails(
        &["tokenizer", "train", "--kind", "bpe", "--vocab-size", "99999999999999", "-o", &vocab, &p(&text)],
        &["vocabulary size", "at most"],
    );
    fails(&["bench", "forward", "--layers", "100000000000"], &["num_layers", "at most 1024"]);
    fails(&["bench", "forward", "--vocab", "0"], &["vocab_size", "must be positive"]);
    let corpus = tmp.path().join("corpus");
    let out = wenhui(&["data", "prepare", "--tokenizer", "models/poetry-glm", "-o", &p(&corpus), &p(&text)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    fails(
        &["eval", "ppl", "--model", "models/poetry-glm", "--corpus", &p(&corpus), "--batch-size", "100000000", "--seq-len", "32"],
        &["lower --batch-size"],
    );
}

/// `wenhui … | head`: a reader that goes away ends the command quietly (SIGPIPE, as other Unix
/// tools), with no panic message about a broken pipe.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let text = "春风又绿江南岸".repeat(2000);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .args(["tokenize", "models/poetry-glm", &text])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader closes before anything is read
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}: {err}", out.status);
}

/// Inference commands refuse what they cannot do, naming the model kind, the flag or the text:
/// blank filling and seq2seq decoding on a GPT-2 or BERT, an empty fill, text the vocabulary
/// does not know, a JSON object with a mistake, benchmark shapes and flags that measure nothing.
#[test]
fn inference_commands_name_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let wenhui = run_in_repo;
    // (An internal positions error means the model kind was not checked first.)
    let fails = |args: &[&str], needles: &[&str]| refused(args, needles, &["positions must be"]);
    // Blank filling and seq2seq decoding need a GLM: said before any tensor shape goes wrong.
    fails(&["fill", "--model", "tests/fixtures/gpt2-tiny", "the [MASK] cat"], &["fill needs a GLM", "GPT-2"]);
    fails(&["fill", "--model", "tests/fixtures/bert-mlm-tiny", "the [MASK] cat"], &["fill needs a GLM", "BERT"]);
    let gpt2 = tmp.path().join("gpt2");
    std::fs::create_dir(&gpt2).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(Path::new("tests/fixtures/gpt2-tiny").join(f), gpt2.join(f)).unwrap();
    }
    let chars: String = ('a'..='z').chain('A'..='Z').chain('\u{4e00}'..).take(101 - 10).flat_map(|c| [c, '\n']).collect();
    std::fs::write(gpt2.join("chars.txt"), chars).unwrap();
    let pairs = tmp.path().join("s2s.jsonl");
    std::fs::write(&pairs, "{\"source\": \"abc\", \"target\": \"ab\"}\n").unwrap();
    let p = |x: &Path| x.to_str().unwrap().to_string();
    fails(&["eval", "seq2seq", "--model", &p(&gpt2), "--data", &p(&pairs), "--limit", "1"], &["needs a GLM", "gpt2"]);
    // eval poems: a method that cannot generate at all is an error, not a table of empty poems;
    // too few titles for --distractors rank among fewer candidates, and the report says so.
    let titles = tmp.path().join("titles.jsonl");
    std::fs::write(&titles, "{\"title\": \"春江\"}\n{\"title\": \"秋夜\"}\n{\"title\": \"江雪\"}\n").unwrap();
    fails(
        &["eval", "poems", "--titles", &p(&titles), "--methods", "inverse", "--model", &p(&gpt2), "--quiet"],
        &["title 1 `春江`, method inverse", "needs a GLM"],
    );
    let out = wenhui(&["eval", "poems", "--titles", &p(&titles), "--methods", "sampling", "--quiet", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("--distractors 19") && err.contains("3 candidates"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["candidates"], 3, "{v}");
    assert!(v["rows"].as_array().unwrap().iter().all(|r| r["rank"].as_u64().unwrap() <= 3 && r["text"] != ""), "{v}");
    let out = wenhui(&["eval", "poems", "--titles", &p(&titles), "--methods", "sampling", "--quiet", "--limit", "2"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("(1 of 2)"), "{}", String::from_utf8_lossy(&out.stdout));
    // Nothing to fill; a text (or title) the vocabulary knows nothing of.
    fails(&["fill", " "], &["nothing to fill", "[MASK]"]);
    fails(&["fill", "😀[MASK]"], &["vocabulary", "\"😀\"", "[UNK]"]);
    fails(&["poem", "--title", "😀"], &["--title", "\"😀\"", "knows none"]);
    // Some unknown characters: a warning names them, the fill goes on.
    let out = wenhui(&["fill", "Hello 床前[MASK]。", "--max-new-tokens", "2", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("WARN") && err.contains("\"Hello\"") && err.contains("[UNK]"), "{err}");
    // Input that starts like a JSON object is read as one, or refused with the parse error.
    let task = tmp.path().join("mood.toml");
    std::fs::write(
        &task,
        "name = \"mood\"\nfields = [\"poem\"]\ntemplate = \"{poem}这首诗的情感是[MASK]。\"\nmetrics = [\"acc\"]\n\
         [[verbalizer]]\nlabel = \"sad\"\nwords = [\"悲\"]\n[[verbalizer]]\nlabel = \"happy\"\nwords = [\"喜\"]\n",
    )
    .unwrap();
    fails(&["classify", "--model", "models/poetry-glm", "--task", &p(&task), "{\"poem\":"], &["not valid JSON", "EOF"]);
    let out = wenhui(&["classify", "--model", "models/poetry-glm", "--task", &p(&task), "--json", "{\"poem\": \"春风\"}"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Benchmarks: a flag at 0 is named; a shape that cannot fit is refused before it is built; a
    // run that would measure nothing is refused; a figure not measured is null.
    fails(&["bench", "forward", "--layers", "0"], &["--layers must be at least 1"]);
    fails(&["bench", "forward", "--seq", "0"], &["--seq must be at least"]);
    fails(&["bench", "forward", "--batch", "0"], &["--batch must be at least 1"]);
    fails(&["bench", "forward", "--hidden", "30", "--heads", "4"], &["--hidden 30 must be a multiple of --heads 4"]);
    fails(
        &["bench", "train", "--layers", "1", "--hidden", "32", "--heads", "4", "--vocab", "100", "--seq", "100000000", "--batch", "2"],
        &["needs about", "GB", "lower --seq"],
    );
    fails(&["bench", "train", "--layers", "0"], &["--layers must be at least 1"]);
    fails(&["bench", "generate", "--decode-only", "--layers", "1", "--hidden", "32", "--heads", "4", "--vocab", "64"], &["--batch N"]);
    fails(&["bench", "generate", "--model", "tests/fixtures/bert-mlm-tiny"], &["needs a GLM or a GPT-2", "BERT"]);
    // More decoding steps than the model has block positions: refused, not silently capped.
    let tiny = ["bench", "forward", "--layers", "1", "--hidden", "32", "--heads", "4", "--vocab", "64", "--seq", "8"];
    fails(&tiny, &["--decode-tokens 32 must be at most --seq 8"]);
    let decoding = |n: &str| wenhui(&[&tiny[..], &["--decode-tokens", n]].concat());
    let (out, ok) = (decoding("8"), decoding("0"));
    for (o, decoded) in [(out, true), (ok, false)] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["decode_ms_per_token"].is_f64(), decoded, "{v}");
        assert_eq!(v["decode_gflops"].is_null(), !decoded, "{v}");
    }
}
