//! ROUGE parity with Google's `rouge-score` (PyPI 0.1.2) on `tests/fixtures/rouge/pairs.jsonl`
//! (125 pairs: English with rouge-score's default tokenizer, Chinese character-level; made by
//! `scripts/make-rouge-fixture.py`).

use std::path::PathBuf;
use wenhui::eval::rouge::{corpus_scores, score, RougeTokenizer, Score};

fn check(what: &str, got: Score, want: &serde_json::Value) {
    for (name, g) in [("precision", got.precision), ("recall", got.recall), ("fmeasure", got.fmeasure)] {
        let w = want[name].as_f64().unwrap_or_else(|| panic!("{what}: no {name}"));
        assert!((g - w).abs() <= 1e-6, "{what} {name}: {g} vs rouge-score {w}");
    }
}

#[test]
fn rouge_matches_rouge_score_on_the_fixture() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rouge/pairs.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let tok = match row["tokenizer"].as_str().unwrap() {
            "default" => RougeTokenizer::Default,
            "chars" => RougeTokenizer::Chars,
            other => panic!("line {}: tokenizer {other}", i + 1),
        };
        let (p, t) = (row["prediction"].as_str().unwrap(), row["target"].as_str().unwrap());
        let s = score(p, t, tok);
        let at = format!("line {} ({p:?} vs {t:?})", i + 1);
        check(&format!("{at} rouge1"), s.rouge1, &row["rouge1"]);
        check(&format!("{at} rouge2"), s.rouge2, &row["rouge2"]);
        check(&format!("{at} rougeL"), s.rouge_l, &row["rougeL"]);
        n += 1;
    }
    assert!(n >= 50, "only {n} pairs");
}

#[test]
fn corpus_scores_are_mean_f1_times_100() {
    let pairs = [("春风", "春风"), ("春风", "秋月")];
    let s = corpus_scores(pairs, RougeTokenizer::Chars);
    assert_eq!(s.pairs, 2);
    assert!((s.rouge1 - 50.0).abs() < 1e-9 && (s.rouge2 - 50.0).abs() < 1e-9 && (s.rouge_l - 50.0).abs() < 1e-9);
    assert_eq!(RougeTokenizer::guess(&["春风又绿江南岸"]), RougeTokenizer::Chars);
    assert_eq!(RougeTokenizer::guess(&["the cat sat"]), RougeTokenizer::Default);
}
