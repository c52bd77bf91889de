//! The toy cloze task of the P-tuning tests: a character vocabulary, random GLMs over it, the
//! task (which of `x` / `z` is hidden in a five-letter string) with train and dev files.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use wenhui::model::glm::GlmConfig;
use wenhui::model::ModelConfig;
use wenhui::ptuning::train::{TuneConfig, TuneMode};

/// Writes the character vocabulary (ids as in tests/cloze.rs) and returns its path.
pub fn chars_file(dir: &Path) -> PathBuf {
    let p = dir.join("chars.txt");
    std::fs::write(&p, super::CLOZE_CHARS.chars().map(|c| format!("{c}\n")).collect::<String>()).unwrap();
    p
}

/// A random GLM over the character vocabulary, saved as a model directory.
pub fn random_glm(dir: &Path, layers: usize, hidden: usize, heads: usize, positions: usize, seed: u64) -> PathBuf {
    let cfg = ModelConfig::Glm(GlmConfig::new(layers, hidden, heads, 120, positions));
    let weights = cfg.init_weights(seed).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    candle_core::safetensors::save(&weights, dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&cfg.to_json()).unwrap()).unwrap();
    dir.to_path_buf()
}

/// A toy task: which of `x` / `z` is hidden in a five-letter string.
pub const TOY_TASK: &str = include_str!("../fixtures/toy-cloze/toy.toml");

/// `n` toy examples as JSONL: two random letters, the label letter, two random letters.
pub fn toy_jsonl(n: usize, seed: u64) -> String {
    let letters: Vec<char> = "abcdefghijklmnopqrstuvw".chars().collect();
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = |m: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % m
    };
    (0..n)
        .map(|_| {
            let label = if next(2) == 0 { 'x' } else { 'z' };
            let w: String = [letters[next(23)], letters[next(23)], label, letters[next(23)], letters[next(23)]].iter().collect();
            format!("{{\"w\": \"{w}\", \"label\": \"{label}\"}}\n")
        })
        .collect()
}

pub struct Toy {
    pub dir: tempfile::TempDir,
    pub task: PathBuf,
    pub tokenizer: PathBuf,
    pub train: PathBuf,
    pub dev: PathBuf,
}

pub fn toy() -> Toy {
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("toy.toml");
    std::fs::write(&task, TOY_TASK).unwrap();
    let tokenizer = chars_file(dir.path());
    let train = dir.path().join("train.jsonl");
    std::fs::write(&train, toy_jsonl(64, 1)).unwrap();
    let dev = dir.path().join("dev.jsonl");
    std::fs::write(&dev, toy_jsonl(64, 2)).unwrap();
    Toy { dir, task, tokenizer, train, dev }
}

pub fn toy_config(t: &Toy, mode: TuneMode, model: &Path, out: &str) -> TuneConfig {
    let mut c = TuneConfig::new(mode, t.task.to_str().unwrap(), model, &t.train, &t.dir.path().join(out));
    c.tokenizer = Some(t.tokenizer.clone());
    c.dev = Some(t.dev.clone());
    c.batch_size = Some(16);
    c.patience = 0;
    c
}

pub fn tensors_of(dir: &Path, file: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join(file), &Device::Cpu).unwrap()
}

pub fn bits(t: &Tensor) -> Vec<u32> {
    t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().map(f32::to_bits).collect()
}

/// The encoder and optimizer states of two checkpoint directories are bit-identical.
pub fn assert_same_tuning_state(a: &Path, b: &Path) {
    for file in ["prompt/prompt_encoder.safetensors", "optimizer.safetensors"] {
        let (x, y) = (tensors_of(a, file), tensors_of(b, file));
        assert_eq!(x.len(), y.len(), "{file}: tensor count");
        for (name, t) in &x {
            assert_eq!(bits(t), bits(&y[name]), "{file}: {name} differs between {} and {}", a.display(), b.display());
        }
    }
}
