//! The toy seq2seq tasks of the seq2seq and P-tuning-for-generation tests: a tiny random GLM over
//! a few characters, and string pairs (reverse, copy) from a seed.
#![allow(dead_code)]

use std::path::Path;

/// A tiny GLM (random init, seed 7) with a character tokenizer over `chars`, saved as the model
/// directory `<dir>/model`.
pub fn tiny_model(dir: &Path, chars: &str) {
    use wenhui::data::reader::ReadOptions;
    use wenhui::tokenizer::train::{train_tokenizer, TrainKind, TrainOptions};
    let text = dir.join("chars.txt");
    std::fs::write(&text, format!("{chars}\n")).unwrap();
    let tok = train_tokenizer(
        &[text],
        &TrainOptions { kind: TrainKind::Chars, vocab_size: 64, min_frequency: 1, read: ReadOptions::default(), progress: false },
    )
    .unwrap();
    let vocab = wenhui::tokenizer::padded_vocab_size(tok.vocab_size(true));
    let mut g = wenhui::model::glm::GlmConfig::new(2, 64, 4, vocab, 32);
    g.gelu = wenhui::model::Gelu::Tanh;
    let cfg = wenhui::model::ModelConfig::Glm(g);
    let w = cfg.init_weights(7).unwrap();
    let model_dir = dir.join("model");
    std::fs::create_dir_all(&model_dir).unwrap();
    candle_core::safetensors::save(&w, model_dir.join("model.safetensors")).unwrap();
    std::fs::write(model_dir.join("config.json"), serde_json::to_string(&cfg.to_json()).unwrap()).unwrap();
    tok.save(&model_dir).unwrap();
}

/// `n` random strings of 3–5 letters from `a`–`f` (from `seed`), each as `(string, map(string))`.
pub fn string_pairs(n: usize, seed: u64, map: impl Fn(&str) -> String) -> Vec<(String, String)> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = rng.random_range(3..=5);
            let s: String = (0..len).map(|_| (b'a' + rng.random_range(0..6u8)) as char).collect();
            let t = map(&s);
            (s, t)
        })
        .collect()
}

/// Writes `pairs` as `{source, target}` JSONL.
pub fn write_pairs(path: &Path, pairs: &[(String, String)]) {
    let out: String = pairs.iter().map(|(s, t)| format!("{}\n", serde_json::json!({"source": s, "target": t}))).collect();
    std::fs::write(path, out).unwrap();
}

/// `n` string-reversal pairs from `seed`, as JSONL.
pub fn reverse_pairs(path: &Path, n: usize, seed: u64) {
    write_pairs(path, &string_pairs(n, seed, |s| s.chars().rev().collect()));
}
