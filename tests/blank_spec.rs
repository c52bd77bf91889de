//! GLM pretraining data against THUDM's `ConstructBlockStrategy` (spec glm §4): sentence spans
//! with their punctuation, `[dBLOCK]` Part-B inputs, short-sequence batches, the last token never
//! masked, the presets, and the pretrain settings that reach them.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;
use wenhui::data::blank::{make_sample, split_short_samples, Objective, ObjectiveConfig, ObjectiveTokens, Sample};
use wenhui::data::stream::{BatchStream, Cursor, Documents, StreamConfig};
use wenhui::train::config::PretrainConfig;

const IDS: ObjectiveTokens = ObjectiveTokens { cls: 1, eos: 2, mask: 3, smask: 4, gmask: 5, sop: 6, eop: 7, dblock: Some(9) };
const PERIOD: u32 = 8;

fn is_end(t: u32) -> bool {
    t == PERIOD
}

/// `[CLS] a b . c d e . f g [eos] h . i j k . l m n o . p q`
fn two_docs() -> Vec<u32> {
    vec![1, 10, 11, 8, 12, 13, 14, 8, 15, 16, 2, 17, 8, 18, 19, 20, 8, 21, 22, 23, 24, 8, 25, 26]
}

/// `[CLS]` + `docs` documents of 5..120 tokens with sentence ends, separated by eos.
fn random_text(rng: &mut ChaCha8Rng, docs: usize) -> Vec<u32> {
    let mut t = vec![IDS.cls];
    for d in 0..docs {
        for _ in 0..rng.random_range(5..120) {
            t.push(if rng.random::<f64>() < 0.08 { PERIOD } else { rng.random_range(10..60) });
        }
        if d + 1 < docs {
            t.push(IDS.eos);
        }
    }
    t
}

fn sample(text: &[u32], objective: Objective, cfg: &ObjectiveConfig, seed: u64) -> Sample {
    make_sample(text, objective, cfg, &IDS, &is_end, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap()
}

#[test]
fn sentence_spans_include_their_punctuation_and_skip_tails_before_eos() {
    let text = two_docs();
    // Every sentence through its `.`; `f g` (unterminated, before the eos) is none; `p q` (the
    // sample's tail) is one.
    let sentences = [(1, 4), (4, 8), (11, 13), (13, 17), (17, 22), (22, 24)];
    let cfg = ObjectiveConfig { sentence_mask_ratio: Some(0.3), ..ObjectiveConfig::glm_10b() };
    let mut seen = HashSet::new();
    for seed in 0..200 {
        let s = sample(&text, Objective::Sentence, &cfg, seed);
        for sp in &s.spans {
            assert!(sentences.contains(sp), "seed {seed}: {sp:?} is not a sentence");
            seen.insert(*sp);
        }
        // int(0.3 · 24) = 7 tokens at least, and the last sentence taken was needed.
        let covered: usize = s.spans.iter().map(|(a, b)| b - a).sum();
        let longest = s.spans.iter().map(|(a, b)| b - a).max().unwrap();
        assert!(covered >= 7 && covered - longest < 7, "seed {seed}: {:?}", s.spans);
    }
    assert_eq!(seen.len(), sentences.len(), "every sentence is drawn some time");

    // Over random packed samples: a span never swallows an eos and never stops short of its end.
    for seed in 0..300 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let text = random_text(&mut rng, 1 + seed as usize % 3);
        let s = make_sample(&text, Objective::Sentence, &ObjectiveConfig::glm_10b(), &IDS, &is_end, &mut rng).unwrap();
        for &(a, b) in &s.spans {
            assert!(text[a..b].iter().all(|&t| t != IDS.eos && t != IDS.cls), "seed {seed}");
            assert!(b == text.len() || text[b - 1] == PERIOD, "seed {seed}: {a}..{b} is an unterminated tail");
            assert!(text[a - 1] == PERIOD || text[a - 1] == IDS.eos || text[a - 1] == IDS.cls, "seed {seed}: {a}..{b}");
        }
    }
}

/// Spans (Part B order) and input tokens of one sample.
type Golden = (&'static [(usize, usize)], &'static [u32]);

/// What wenhui made before following THUDM (recorded from that code): sentence spans without
/// their `.`, the tail before the eos a span. `sentence_end_in_span = false` must keep it exactly
/// (the shipped poetry models were trained on it).
#[test]
fn sentence_end_in_span_false_keeps_the_old_samples() {
    let ids = ObjectiveTokens { dblock: None, ..IDS };
    let cfg = ObjectiveConfig { sentence_mask_ratio: Some(0.3), sentence_end_in_span: false, ..ObjectiveConfig::glm_10b() };
    #[rustfmt::skip]
    let golden: [Golden; 6] = [
        (&[(17, 21), (8, 10)], &[1, 10, 11, 8, 12, 13, 14, 8, 4, 2, 17, 8, 18, 19, 20, 8, 4, 8, 25, 26, 6, 21, 22, 23, 24, 6, 15, 16]),
        (&[(8, 10), (13, 16)], &[1, 10, 11, 8, 12, 13, 14, 8, 4, 2, 17, 8, 4, 8, 21, 22, 23, 24, 8, 25, 26, 6, 15, 16, 6, 18, 19, 20]),
        (&[(17, 21), (4, 7)], &[1, 10, 11, 8, 4, 8, 15, 16, 2, 17, 8, 18, 19, 20, 8, 4, 8, 25, 26, 6, 21, 22, 23, 24, 6, 12, 13, 14]),
        (&[(8, 10), (13, 16)], &[1, 10, 11, 8, 12, 13, 14, 8, 4, 2, 17, 8, 4, 8, 21, 22, 23, 24, 8, 25, 26, 6, 15, 16, 6, 18, 19, 20]),
        (&[(11, 12), (17, 21), (8, 10)], &[1, 10, 11, 8, 12, 13, 14, 8, 4, 2, 4, 8, 18, 19, 20, 8, 4, 8, 25, 26, 6, 17, 6, 21, 22, 23, 24, 6, 15, 16]),
        (&[(22, 24), (13, 16), (1, 3)], &[1, 4, 8, 12, 13, 14, 8, 15, 16, 2, 17, 8, 4, 8, 21, 22, 23, 24, 8, 4, 6, 25, 26, 6, 18, 19, 20, 6, 10, 11]),
    ];
    for (seed, (spans, tokens)) in golden.iter().enumerate() {
        let s = make_sample(&two_docs(), Objective::Sentence, &cfg, &ids, &is_end, &mut ChaCha8Rng::seed_from_u64(seed as u64)).unwrap();
        assert_eq!((&s.spans[..], &s.tokens[..]), (*spans, *tokens), "seed {seed}");
    }
}

#[test]
fn the_last_token_is_never_masked() {
    let doc_cfg = ObjectiveConfig { prefix_lm_prob: 0.0, ..ObjectiveConfig::glm_10b() };
    for seed in 0..400 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let text = random_text(&mut rng, 1 + seed as usize % 3);
        let t = sample(&text, Objective::Token, &ObjectiveConfig::glm_large(), seed);
        assert!(t.spans.iter().all(|&(a, b)| a >= 1 && b < text.len()), "seed {seed}: token spans {:?}", t.spans);
        assert!(t.spans.iter().all(|&(a, b)| !text[a..b].contains(&IDS.eos)), "seed {seed}: eos masked");
        let one_doc = random_text(&mut rng, 1);
        let d = sample(&one_doc, Objective::Document, &doc_cfg, seed);
        let (a, b) = d.spans[0];
        assert!(a >= 1 && b < one_doc.len(), "seed {seed}: document span {a}..{b} of {}", one_doc.len());
    }
    // Tiny samples: int(0.15 · 7) = 1 token is masked, inside 1..6.
    for seed in 0..50 {
        let s = sample(&[1, 10, 11, 12, 13, 14, 15], Objective::Token, &ObjectiveConfig::default(), seed);
        assert!(!s.spans.is_empty() && s.spans.iter().all(|&(a, b)| a >= 1 && b <= 6), "seed {seed}: {:?}", s.spans);
    }
}

#[test]
fn block_mask_prob_replaces_token_span_inputs_only() {
    let with = ObjectiveConfig::glm_10b();
    assert_eq!(with.block_mask_prob, 0.1);
    let without = ObjectiveConfig { block_mask_prob: 0.0, ..with.clone() };
    let (mut inputs, mut dblocks) = (0usize, 0usize);
    for seed in 0..400 {
        let text = random_text(&mut ChaCha8Rng::seed_from_u64(seed), 1 + seed as usize % 2);
        let (a, b) = (sample(&text, Objective::Token, &with, seed), sample(&text, Objective::Token, &without, seed));
        // Same spans, Part A, targets, positions; only Part-B span inputs may differ.
        assert_eq!((&a.spans, a.sep, &a.targets, &a.positions, &a.blocks), (&b.spans, b.sep, &b.targets, &b.positions, &b.blocks));
        assert_eq!(a.tokens[..a.sep], b.tokens[..b.sep]);
        for i in a.sep..a.tokens.len() {
            if b.tokens[i] == IDS.sop {
                assert_eq!(a.tokens[i], IDS.sop, "seed {seed}: [sop] replaced");
                continue;
            }
            inputs += 1;
            if a.tokens[i] == 9 {
                dblocks += 1;
            } else {
                assert_eq!(a.tokens[i], b.tokens[i]);
            }
        }
        // The other objectives do not draw for it: identical samples.
        for o in [Objective::Sentence, Objective::Document] {
            assert_eq!(sample(&text, o, &with, seed), sample(&text, o, &without, seed), "seed {seed} {o:?}");
        }
    }
    let share = dblocks as f64 / inputs as f64;
    assert!(inputs > 5000 && (share - 0.1).abs() < 0.015, "{dblocks} of {inputs} inputs are [dBLOCK]");

    // A tokenizer without [dBLOCK] is an error that names the setting and the way out.
    let no_dblock = ObjectiveTokens { dblock: None, ..IDS };
    let e =
        make_sample(&two_docs(), Objective::Token, &with, &no_dblock, &is_end, &mut ChaCha8Rng::seed_from_u64(0)).unwrap_err().to_string();
    assert!(e.contains("block_mask_prob") && e.contains("[dBLOCK]") && e.contains("--block-mask-prob 0"), "{e}");
    let docs: Vec<Vec<u32>> = vec![(10..80).collect(); 4];
    let cfg = StreamConfig { seq_len: 64, batch_size: 2, pack: true, seed: 1, objectives: with, lm: Default::default() };
    let e =
        BatchStream::new(&docs, vec![0, 1, 2, 3], cfg.clone(), no_dblock, HashSet::new(), Cursor::default()).err().map(|e| e.to_string());
    assert!(e.is_some_and(|e| e.contains("[dBLOCK]")));
    // Without token spans it is not needed.
    let sentences_only = StreamConfig { objectives: ObjectiveConfig { token_prob: 0.0, ..cfg.objectives.clone() }, ..cfg };
    assert!(BatchStream::new(&docs, vec![0, 1, 2, 3], sentences_only, no_dblock, HashSet::new(), Cursor::default()).is_ok());
}

#[test]
fn short_samples_are_sentence_aligned_chunks() {
    let seq_len = 128;
    for seed in 0..200 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let texts: Vec<Vec<u32>> = (0..3).map(|_| random_text(&mut rng, 1 + seed as usize % 3)).collect();
        let texts: Vec<Vec<u32>> = texts
            .into_iter()
            .map(|mut t| {
                t.truncate(seq_len);
                t
            })
            .collect();
        let chunks = split_short_samples(&texts, seq_len, &IDS, &is_end, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(chunks, split_short_samples(&texts, seq_len, &IDS, &is_end, &mut ChaCha8Rng::seed_from_u64(seed)), "deterministic");
        // One target length for the batch, (seq_len − 1) / target chunks per sample.
        let per = chunks.len() / texts.len();
        assert!(per >= 1 && chunks.len() == per * texts.len() && per <= (seq_len - 1) / 32, "seed {seed}: {per}");
        let target_max = (seq_len - 1) / per;
        for (k, c) in chunks.iter().enumerate() {
            let body = &texts[k / per][1..];
            assert_eq!(c[0], IDS.cls);
            let c = &c[1..];
            assert!(c.len() < seq_len - 1 && c.len() <= target_max, "seed {seed}: chunk of {}", c.len());
            if c.len() == body.len() {
                assert_eq!(c, body);
                continue;
            }
            assert!(c.len() >= 16, "seed {seed}: chunk of {}", c.len());
            let start = (0..=body.len() - c.len()).find(|&s| &body[s..s + c.len()] == c).expect("a piece of its sample");
            let boundary = |t: u32| t == PERIOD || t == IDS.eos;
            assert!(start == 0 || (boundary(body[start - 1]) && body[start] != IDS.eos), "seed {seed}: starts mid-sentence");
            // Ends at a sentence end, unless that would have left less than half the length.
            assert!(boundary(c[c.len() - 1]) || c.len() >= 32, "seed {seed}: ends mid-sentence");
        }
    }
    // Sequences too short for 32..seq_len−1 are left alone.
    let t = vec![vec![1, 10, 11, 8, 12]];
    assert_eq!(split_short_samples(&t, 33, &IDS, &is_end, &mut ChaCha8Rng::seed_from_u64(0)), t);
}

/// Documents of 10..200 tokens with a sentence end every ~12 tokens.
fn corpus() -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    (0..60)
        .map(|_| {
            (0..rng.random_range(10..200)).map(|_| if rng.random::<f64>() < 0.08 { PERIOD } else { rng.random_range(10..60) }).collect()
        })
        .collect()
}

fn stream(docs: &dyn Documents, objectives: ObjectiveConfig, cursor: Cursor) -> BatchStream<'_> {
    let cfg = StreamConfig { seq_len: 128, batch_size: 4, pack: true, seed: 7, objectives, lm: Default::default() };
    BatchStream::new(docs, (0..docs.num_docs()).collect(), cfg, IDS, HashSet::from([PERIOD]), cursor).unwrap()
}

#[test]
fn short_seq_batches_are_seeded_and_resume_exactly() {
    let docs = corpus();
    let always = ObjectiveConfig { short_seq_prob: 1.0, ..ObjectiveConfig::glm_10b() };
    let mut s = stream(&docs, always.clone(), Cursor::default());
    for _ in 0..10 {
        let b = s.next_batch().unwrap();
        // 4 samples of ≤ 128 tokens → 4 × (127 / target) chunks of ≤ target + 1 tokens.
        let per = b.tokens.len() / 4;
        assert!(b.tokens.len().is_multiple_of(4) && (1..=3).contains(&per), "{} rows", b.tokens.len());
        let text_max = 127 / per + 1;
        for (k, &sep) in b.seps.iter().enumerate() {
            // Part A holds the chunk minus its masked spans plus one mask each: never more.
            assert!(sep <= text_max && b.lengths[k] <= 2 * text_max, "row {k}: sep {sep}, length {}", b.lengths[k]);
        }
    }
    // The same batches again, and from a saved cursor the same continuation.
    let mixed = ObjectiveConfig { short_seq_prob: 0.3, ..ObjectiveConfig::glm_10b() };
    let mut a = stream(&docs, mixed.clone(), Cursor::default());
    let first: Vec<_> = (0..12).map(|_| a.next_batch().unwrap()).collect();
    let mut b = stream(&docs, mixed.clone(), Cursor::default());
    let mut again: Vec<_> = (0..5).map(|_| b.next_batch().unwrap()).collect();
    let mut resumed = stream(&docs, mixed.clone(), b.cursor());
    again.extend((5..12).map(|_| resumed.next_batch().unwrap()));
    assert_eq!(first.iter().map(|x| &x.tokens).collect::<Vec<_>>(), again.iter().map(|x| &x.tokens).collect::<Vec<_>>());
    // Only some batches are re-cut, and the objective draws stay those of short_seq_prob = 0.
    let mut plain = stream(&docs, ObjectiveConfig { short_seq_prob: 0.0, ..mixed }, Cursor::default());
    let mut recut = 0;
    for x in &first {
        let p = plain.next_batch().unwrap();
        assert_eq!(x.objective, p.objective);
        recut += usize::from(x.tokens != p.tokens);
    }
    assert!((1..12).contains(&recut), "{recut} of 12 batches were re-cut at p = 0.3");
}

#[test]
fn presets_follow_thudm() {
    let d = ObjectiveConfig::preset("default").unwrap();
    assert_eq!((d.token_prob, d.sentence_prob, d.doc_min_ratio, d.prefix_lm_prob), (0.5, 0.0, 0.5, 0.5));
    assert_eq!((d.task_masks, d.block_mask_prob, d.short_seq_prob, d.sentence_end_in_span), (false, 0.0, 0.0, true));
    let l = ObjectiveConfig::preset("glm-large").unwrap();
    assert_eq!((l.token_prob, l.sentence_prob, l.task_masks, l.block_mask_prob, l.short_seq_prob), (1.0, 0.0, false, 0.0, 0.0));
    let t = ObjectiveConfig::preset("glm-10b").unwrap();
    assert_eq!((t.token_prob, t.sentence_prob, t.doc_min_ratio, t.task_masks), (0.5, 0.3, 0.25, true));
    assert_eq!((t.block_mask_prob, t.short_seq_prob, t.sentence_end_in_span, t.mask_ratio, t.max_span), (0.1, 0.02, true, 0.15, 39));
    for bad in [ObjectiveConfig { block_mask_prob: 1.5, ..d.clone() }, ObjectiveConfig { short_seq_prob: -0.1, ..d.clone() }] {
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("must be in [0, 1]"), "{e}");
    }
    // Unknown keys are still refused; the new ones have defaults.
    let o: ObjectiveConfig = serde_json::from_str(r#"{"token_prob": 1.0}"#).unwrap();
    assert_eq!((o.block_mask_prob, o.short_seq_prob, o.sentence_end_in_span, o.task_masks), (0.0, 0.0, true, false));
    assert!(serde_json::from_str::<ObjectiveConfig>(r#"{"block_mask": 0.1}"#).is_err());
}

fn pretrain_config(extra: serde_json::Value) -> wenhui::Result<PretrainConfig> {
    let mut o = serde_json::json!({"corpus": "c", "out_dir": "o"});
    o.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    PretrainConfig::load(None, o.as_object().unwrap().clone())
}

#[test]
fn pretrain_settings_override_the_preset() {
    let c = pretrain_config(serde_json::json!({"objective": "glm-10b", "block_mask_prob": 0.0, "short_seq_prob": 0.5,
        "sentence_end_in_span": false, "task_masks": false}))
    .unwrap();
    let o = c.objectives().unwrap();
    assert_eq!((o.block_mask_prob, o.short_seq_prob, o.sentence_end_in_span, o.task_masks), (0.0, 0.5, false, false));
    assert_eq!(o.sentence_prob, 0.3, "the rest stays glm-10b's");
    let e = pretrain_config(serde_json::json!({"block_mask_prob": 2.0})).unwrap_err().to_string();
    assert!(e.contains("block_mask_prob"), "{e}");
    // Blank-infilling settings under a classic objective are reported as unused.
    let c = pretrain_config(serde_json::json!({"objective": "causal", "token_prob": 0.5, "doc_min_ratio": 0.2})).unwrap();
    assert_eq!(c.unused_objective_fields(), ["token_prob", "doc_min_ratio"]);
    assert!(pretrain_config(serde_json::json!({"objective": "glm-10b", "token_prob": 0.5})).unwrap().unused_objective_fields().is_empty());
}

#[test]
fn the_poetry_recipes_keep_the_shipped_layout() {
    for name in ["poetry-generator.toml", "poetry-judge.toml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
        let c = PretrainConfig::load(Some(&path), Default::default()).unwrap();
        let o = c.objectives().unwrap();
        assert_eq!((o.sentence_end_in_span, o.block_mask_prob, o.short_seq_prob, o.task_masks), (false, 0.0, 0.0, true), "{name}");
    }
}

/// A mask ratio above one half (validate accepts (0, 1)) in a sample of several short documents:
/// every document's spans fit with their separators (it used to overflow placing them).
#[test]
fn a_high_mask_ratio_places_separated_spans_in_short_documents() {
    let cfg = ObjectiveConfig { mask_ratio: 0.9, ..ObjectiveConfig::glm_large() };
    let mut with_spans = 0;
    for seed in 0..300 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // [CLS] + 2..6 documents of 2..12 tokens, separated by eos.
        let mut text = vec![IDS.cls];
        let docs = rng.random_range(2..7);
        for d in 0..docs {
            text.extend((0..rng.random_range(2..13)).map(|_| rng.random_range(10..60)));
            if d + 1 < docs {
                text.push(IDS.eos);
            }
        }
        let s = sample(&text, Objective::Token, &cfg, seed);
        // (A sample whose first drawn lengths fit nowhere keeps none.)
        with_spans += usize::from(!s.spans.is_empty());
        let mut spans = s.spans.clone();
        spans.sort_unstable();
        for &(a, b) in &spans {
            assert!(a >= 1 && a < b && b < text.len(), "seed {seed}: span {a}..{b} of {}", text.len());
            assert!(!text[a..b].contains(&IDS.eos), "seed {seed}: eos masked in {a}..{b}");
        }
        for w in spans.windows(2) {
            assert!(w[0].1 < w[1].0, "seed {seed}: spans {:?} and {:?} touch or overlap", w[0], w[1]);
        }
        // Part A: [CLS], the unmasked text and one mask per span, last token included.
        let masked: usize = spans.iter().map(|(a, b)| b - a).sum();
        assert_eq!(s.sep, text.len() - masked + spans.len(), "seed {seed}");
        assert_eq!(s.tokens[s.sep - 1], text[text.len() - 1], "seed {seed}: the last token is masked");
    }
    assert!(with_spans > 250, "{with_spans} of 300 samples have spans");
}

/// Evaluation scores the objective without its training-time augmentations.
#[test]
fn evaluation_leaves_out_dblock_noise_and_short_batches() {
    let t = ObjectiveConfig::glm_10b();
    let e = t.for_evaluation();
    assert_eq!((e.block_mask_prob, e.short_seq_prob), (0.0, 0.0));
    assert_eq!(ObjectiveConfig { block_mask_prob: 0.1, short_seq_prob: 0.02, ..e }, t, "the rest unchanged");
}

/// A run saved before the span-rule settings existed resumes (and `eval ppl` scores it) with the
/// objective it trained with; a run saves them resolved, so a later preset change cannot reach it.
#[test]
fn a_run_saved_before_the_span_rules_keeps_its_objective() {
    let fields = ["block_mask_prob", "short_seq_prob", "sentence_end_in_span", "task_masks"];
    assert_eq!(wenhui::train::config::SPAN_RULE_FIELDS, fields);
    let old = |preset: &str, task_masks: bool| ObjectiveConfig {
        task_masks,
        block_mask_prob: 0.0,
        short_seq_prob: 0.0,
        sentence_end_in_span: false,
        ..ObjectiveConfig::preset(preset).unwrap()
    };
    for (objective, preset, task_masks) in
        [("default", "default", true), ("blank", "default", true), ("glm-10b", "glm-10b", true), ("glm-large", "glm-large", false)]
    {
        // The saved configuration of a new run, then with the keys removed as an older one saved it.
        let new = pretrain_config(serde_json::json!({ "objective": objective })).unwrap();
        let saved = serde_json::to_value(new.with_span_rules_resolved().unwrap()).unwrap();
        assert!(fields.iter().all(|f| !saved[f].is_null()), "{objective}: {saved}");
        let mut older = saved.clone();
        for f in fields {
            older.as_object_mut().unwrap().remove(f);
        }
        let o = PretrainConfig::from_saved(&older).unwrap().objectives().unwrap();
        assert_eq!(o, old(preset, task_masks), "{objective}");
        let mut cfg = PretrainConfig::from_saved(&older).unwrap();
        assert!(cfg.keep_pre_span_rules(&older).is_empty(), "{objective}: filled once");
        // A new run's saved configuration resumes with today's preset.
        let now = PretrainConfig::from_saved(&saved).unwrap().objectives().unwrap();
        assert_eq!(now, ObjectiveConfig::preset(preset).unwrap(), "{objective}");
        // Settings given for the resumed run win over the kept ones.
        let mut cfg = pretrain_config(serde_json::json!({ "objective": objective, "task_masks": !task_masks })).unwrap();
        assert_eq!(cfg.keep_pre_span_rules(&older), ["block_mask_prob", "short_seq_prob", "sentence_end_in_span"]);
        assert_eq!(cfg.objectives().unwrap(), ObjectiveConfig { task_masks: !task_masks, ..old(preset, task_masks) });
    }
    // `mlm` and `causal` do not use them: nothing kept, nothing resolved.
    let mut causal = pretrain_config(serde_json::json!({"objective": "causal"})).unwrap();
    assert!(causal.keep_pre_span_rules(&serde_json::json!({})).is_empty());
    assert!(causal.with_span_rules_resolved().unwrap().unused_objective_fields().is_empty());
}
