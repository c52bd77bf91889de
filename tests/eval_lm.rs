//! `eval lm` on the glm-tiny fixture: perplexity equals exp(mean token loss) computed here
//! independently (a hand-built left-to-right GLM input and a float64 log-softmax), the sliding
//! window scores every token but the first exactly once, and last-word accuracy.

mod common;

use candle_core::{DType, Tensor};
use common::fixture_dir;
use wenhui::eval::lm::{last_word_accuracy, perplexity, windows, LmMode, LmTokens, Passage, PplOptions};
use wenhui::model::{load_model, Attention, BackboneInput, LoadOptions};

const T: LmTokens = LmTokens { cls: 103, mask: 107, sop: 101, pad: 100 };

fn text(n: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 37 + 11) % 97) as u32).collect()
}

/// Mean NLL of `doc[1..]` given the preceding tokens, from one hand-built unidirectional input:
/// `[CLS] d0 [gMASK] [sop] d1 … d_{n-2}`, positions `0 1 2 2 2 …`, blocks `0 0 0 1 2 …`, sep 3.
fn independent_mean_nll(model: &dyn wenhui::model::Backbone, doc: &[u32]) -> f64 {
    let n = doc.len();
    let mut ids = vec![103, doc[0], 107, 101];
    ids.extend(&doc[1..n - 1]);
    let len = ids.len();
    let mut pos: Vec<u32> = vec![0, 1, 2];
    pos.extend(std::iter::repeat_n(2, len - 3));
    pos.extend([0, 0, 0]);
    pos.extend(1..=(len - 3) as u32);
    let input = BackboneInput::ids(Tensor::new(ids.as_slice(), model.device()).unwrap().unsqueeze(0).unwrap())
        .with_positions(Tensor::from_vec(pos, (1, 2, len), model.device()).unwrap())
        .with_attention(Attention::Sep(vec![3]));
    let logits = model.forward(&input, None).unwrap().logits.to_dtype(DType::F64).unwrap().squeeze(0).unwrap();
    let rows = logits.to_vec2::<f64>().unwrap();
    let mut sum = 0.0;
    for (k, target) in doc[1..].iter().enumerate() {
        let row = &rows[3 + k];
        let max = row.iter().cloned().fold(f64::MIN, f64::max);
        let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        sum += lse - row[*target as usize];
    }
    sum / (n - 1) as f64
}

#[test]
fn perplexity_is_exp_of_the_independently_computed_mean_loss() {
    let dir = fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny");
    let m = load_model(&dir, &LoadOptions::default()).unwrap();
    let model = m.backbone.as_ref();
    let doc = text(30);
    let bar = indicatif::ProgressBar::hidden();
    let r = perplexity(
        model,
        std::slice::from_ref(&doc),
        &T,
        &PplOptions { mode: LmMode::Unidirectional, seq_len: 40, stride: 40, batch_size: 4 },
        &bar,
    )
    .unwrap();
    let want = independent_mean_nll(model, &doc);
    assert_eq!((r.tokens, r.windows), (29, 1));
    assert!((r.loss - want).abs() < 1e-5, "loss {} vs independent {want}", r.loss);
    assert!((r.ppl - want.exp()).abs() < 1e-4 * want.exp(), "ppl {} vs {}", r.ppl, want.exp());
}

#[test]
fn sliding_windows_score_every_token_once() {
    for mode in [LmMode::Unidirectional, LmMode::Bidirectional] {
        for (n, seq, stride) in [(50, 16, 8), (50, 16, 16), (17, 16, 5), (5, 16, 4), (40, 10, 3)] {
            let doc = text(n);
            let w = windows(&doc, seq, stride, mode, &T).unwrap();
            let scored: usize = w.iter().map(|s| s.loss_mask.iter().filter(|&&m| m > 0.0).count()).sum();
            assert_eq!(scored, n - 1, "{mode:?} n {n} seq {seq} stride {stride}");
            assert!(w.iter().all(|s| s.tokens.len() <= seq + 2), "{mode:?}: window longer than seq_len + 2");
            // The scored targets, in order, are the document after its first token.
            let targets: Vec<u32> =
                w.iter().flat_map(|s| s.targets.iter().zip(&s.loss_mask).filter(|(_, &m)| m > 0.0).map(|(t, _)| *t)).collect();
            assert_eq!(targets, doc[1..].to_vec(), "{mode:?} n {n} seq {seq} stride {stride}");
        }
    }
    let dir = fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny");
    let m = load_model(&dir, &LoadOptions::default()).unwrap();
    let bar = indicatif::ProgressBar::hidden();
    let docs = vec![text(100), text(7)];
    for mode in [LmMode::Unidirectional, LmMode::Bidirectional] {
        let r = perplexity(m.backbone.as_ref(), &docs, &T, &PplOptions { mode, seq_len: 32, stride: 8, batch_size: 4 }, &bar).unwrap();
        assert_eq!(r.tokens, 99 + 6);
        assert!(r.loss.is_finite() && r.ppl > 1.0, "{r:?}");
    }
    let e = perplexity(
        m.backbone.as_ref(),
        &docs,
        &T,
        &PplOptions { mode: LmMode::Unidirectional, seq_len: 64, stride: 8, batch_size: 4 },
        &bar,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--seq-len"), "{e}");
    let e = perplexity(
        m.backbone.as_ref(),
        &docs,
        &T,
        &PplOptions { mode: LmMode::Unidirectional, seq_len: 16, stride: 0, batch_size: 4 },
        &bar,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--stride"), "{e}");
}

#[test]
fn last_word_accuracy_counts_greedy_hits() {
    let dir = fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny");
    let m = load_model(&dir, &LoadOptions::default()).unwrap();
    let model = m.backbone.as_ref();
    let bar = indicatif::ProgressBar::hidden();
    // The model's own greedy prediction at [sop] (context in Part A) as the answer is right;
    // any other token is wrong.
    let context = text(12);
    let ids: Vec<u32> = [103].iter().chain(&context).chain(&[107, 101]).copied().collect();
    let len = ids.len();
    let mut pos: Vec<u32> = (0..len as u32 - 1).collect();
    pos.push(len as u32 - 2);
    pos.extend(std::iter::repeat_n(0, len - 1));
    pos.push(1);
    let input = BackboneInput::ids(Tensor::new(ids.as_slice(), model.device()).unwrap().unsqueeze(0).unwrap())
        .with_positions(Tensor::from_vec(pos, (1, 2, len), model.device()).unwrap())
        .with_attention(Attention::Sep(vec![len - 1]));
    let logits = model.forward(&input, None).unwrap().logits.squeeze(0).unwrap();
    let best = logits.get(len - 1).unwrap().argmax(0).unwrap().to_scalar::<u32>().unwrap();
    let other = (best + 1) % 100;
    let passages =
        vec![Passage { context: context.clone(), answer: vec![best] }, Passage { context: context.clone(), answer: vec![other] }];
    let r = last_word_accuracy(model, &passages, &T, LmMode::Bidirectional, 1, &bar).unwrap();
    assert_eq!((r.passages, r.truncated), (2, 0));
    assert!((r.accuracy - 50.0).abs() < 1e-9, "{r:?}");
    // Contexts longer than the positions are cut on the left, not an error.
    let long = vec![Passage { context: text(200), answer: vec![best] }];
    let r = last_word_accuracy(model, &long, &T, LmMode::Unidirectional, 1, &bar).unwrap();
    assert_eq!(r.truncated, 1);
}

/// The answer is the last word or character without its closing punctuation: a poem's rhyme
/// character, not its final `。`; an English passage's last word, not its period.
#[test]
fn passages_split_before_closing_punctuation() {
    use wenhui::eval::lm::split_passage;
    use wenhui::tokenizer::CharVocab;
    let tok = CharVocab::from_chars("白日依山尽黄河入海流，。abcdehilorstw .!\"".chars()).build().unwrap();
    let enc = |s: &str| tok.encode(s, false).unwrap();
    let p = split_passage(&tok, "白日依山尽，黄河入海流。").unwrap();
    assert_eq!((p.context, p.answer), (enc("白日依山尽，黄河入海"), enc("流")));
    let p = split_passage(&tok, "  the bird is here.\" \n").unwrap();
    assert_eq!((p.context, p.answer), (enc("the bird is"), enc(" here")));
    assert!(split_passage(&tok, "。。").is_err());
}
