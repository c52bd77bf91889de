//! Invariants of the blank-infilling objectives, over many seeds.

use super::spans::segments;
use super::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const IDS: ObjectiveTokens = ObjectiveTokens { cls: 1, eos: 2, mask: 3, smask: 4, gmask: 5, sop: 6, eop: 7, dblock: Some(9) };
const PERIOD: u32 = 8;

fn is_end(t: u32) -> bool {
    t == PERIOD
}

/// `[CLS]` + `docs` random documents of random lengths with sentence ends, separated by eos.
fn random_text(rng: &mut ChaCha8Rng, docs: usize) -> Vec<u32> {
    let mut t = vec![IDS.cls];
    for d in 0..docs {
        let n = rng.random_range(5..120);
        for _ in 0..n {
            t.push(if rng.random::<f64>() < 0.08 { PERIOD } else { rng.random_range(10..60) });
        }
        if d + 1 < docs {
            t.push(IDS.eos);
        }
    }
    t
}

/// Rebuilds the original text from Part A and Part B, checking the layout on the way.
fn reconstruct(s: &Sample, mask_ids: &[u32]) -> Vec<u32> {
    let n = s.tokens.len();
    assert!(n == s.targets.len() && n == s.loss_mask.len() && n == s.positions.len() && n == s.blocks.len());
    let a = &s.tokens[..s.sep];
    assert!(s.loss_mask[..s.sep].iter().all(|&m| m == 0.0), "loss on Part A");
    assert!(s.blocks[..s.sep].iter().all(|&b| b == 0));
    assert_eq!(s.positions[..s.sep], (0..s.sep as u32).collect::<Vec<_>>()[..]);
    // Part B pieces: [sop] span, targets span [eop], constant position, blocks 1..
    let mut fills: Vec<(usize, Vec<u32>)> = Vec::new();
    let mut i = s.sep;
    while i < n {
        assert_eq!(s.tokens[i], IDS.sop, "Part B piece starts with sop");
        let pos = s.positions[i];
        let mut j = i;
        while j < n && s.tokens[j] != IDS.sop || j == i {
            assert_eq!(s.positions[j], pos);
            assert_eq!(s.blocks[j] as usize, j - i + 1);
            assert_eq!(s.loss_mask[j], 1.0);
            j += 1;
        }
        let span = s.tokens[i + 1..j].to_vec();
        assert_eq!(&s.targets[i..j - 1], &span[..], "targets = span");
        assert_eq!(s.targets[j - 1], IDS.eop, "last target is eop");
        assert!(mask_ids.contains(&a[pos as usize]), "Part B position points at a mask");
        fills.push((pos as usize, span));
        i = j;
    }
    let masks = a.iter().filter(|t| mask_ids.contains(t)).count();
    assert_eq!(masks, fills.len(), "one mask token per span");
    fills.sort();
    let mut out = Vec::new();
    let mut k = 0;
    for (p, t) in a.iter().enumerate() {
        if k < fills.len() && fills[k].0 == p {
            out.extend_from_slice(&fills[k].1);
            k += 1;
        } else {
            out.push(*t);
        }
    }
    out
}

fn check_spans_sorted_separated(spans: &[(usize, usize)]) {
    let mut s = spans.to_vec();
    s.sort();
    for w in s.windows(2) {
        assert!(w[1].0 > w[0].1, "spans {:?} and {:?} not separated", w[0], w[1]);
    }
    assert!(s.iter().all(|&(a, b)| a >= 1 && b > a), "first token masked or empty span: {s:?}");
}

#[test]
fn token_objective_invariants() {
    let cfg = ObjectiveConfig::default();
    let mut lengths = Vec::new();
    for seed in 0..400 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let text = random_text(&mut rng, 1 + (seed as usize % 3));
        let s = make_sample(&text, Objective::Token, &cfg, &IDS, &is_end, &mut rng).unwrap();
        assert_eq!(reconstruct(&s, &[IDS.mask]), text, "seed {seed}");
        check_spans_sorted_separated(&s.spans);
        assert!(s.spans.iter().all(|&(_, b)| b < text.len()), "seed {seed}: the last token is masked");
        assert!(s.spans.iter().all(|&(a, b)| text[a..b].iter().all(|&t| t != IDS.eos)), "seed {seed}: eos masked");
        // One 15% count for the whole sample (THUDM); it only falls short when the longest
        // document cannot hold the rest (not with these lengths).
        let covered: usize = s.spans.iter().map(|(a, b)| b - a).sum();
        let target = (0.15 * text.len() as f64) as usize;
        assert!(covered >= target && covered < target + cfg.max_span, "seed {seed}: {covered} masked for {target}");
        // A document other than the longest gets at most 15% of its own tokens.
        let mut docs: Vec<(usize, usize)> =
            segments(&text, &IDS).into_iter().map(|(a, b)| if b == text.len() { (a, b - 1) } else { (a, b) }).collect();
        docs.sort_by_key(|&(a, b)| (b - a, std::cmp::Reverse(a)));
        for &(a, b) in &docs[..docs.len() - 1] {
            let own: usize = s.spans.iter().filter(|&&(x, _)| x >= a && x < b).map(|(x, y)| y - x).sum();
            assert!(own <= (0.15 * (b - a) as f64) as usize, "seed {seed}: {own} masked in a document of {}", b - a);
        }
        lengths.extend(s.spans.iter().map(|(a, b)| (b - a) as f64));
    }
    // Poisson(3) conditioned on ≥ 1 has mean 3/(1 − e⁻³) ≈ 3.157.
    let mean = lengths.iter().sum::<f64>() / lengths.len() as f64;
    assert!(lengths.len() > 1000, "{} spans", lengths.len());
    assert!((mean - 3.157).abs() < 0.15, "mean span length {mean}");
}

#[test]
fn short_documents_share_the_sample_count() {
    // Seven tokens: int(0.15 · 7) = 1 masked token, which the old per-segment floor (a segment of
    // six tokens gets int(0.9) = 0) dropped; never the last token.
    let text = [IDS.cls, 10, 11, 12, 13, 14, 15];
    for seed in 0..50 {
        let s =
            make_sample(&text, Objective::Token, &ObjectiveConfig::default(), &IDS, &is_end, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
        let covered: usize = s.spans.iter().map(|(a, b)| b - a).sum();
        assert!(covered >= 1, "seed {seed}: nothing masked");
        assert!(s.spans.iter().all(|&(a, b)| a >= 1 && b <= 6), "seed {seed}: {:?}", s.spans);
    }
}

#[test]
fn sentence_objective_masks_whole_sentences() {
    let cfg = ObjectiveConfig::glm_10b();
    for seed in 0..300 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let text = random_text(&mut rng, 1 + (seed as usize % 2));
        let s = make_sample(&text, Objective::Sentence, &cfg, &IDS, &is_end, &mut rng).unwrap();
        assert_eq!(reconstruct(&s, &[IDS.smask]), text, "seed {seed}");
        let mut spans = s.spans.clone();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[1].0 >= w[0].1, "seed {seed}: overlapping spans");
        }
        for &(a, b) in &spans {
            // Starts after a sentence end, eos or [CLS]; ends with its punctuation or at the end.
            let starts_sentence = text[a - 1] == PERIOD || text[a - 1] == IDS.eos || text[a - 1] == IDS.cls;
            let ends_sentence = b == text.len() || text[b - 1] == PERIOD;
            assert!(starts_sentence && ends_sentence, "seed {seed}: span {a}..{b} is not a whole sentence");
            assert!(text[a..b - 1].iter().all(|&t| t != PERIOD) && text[a..b].iter().all(|&t| t != IDS.eos));
        }
        let covered: usize = spans.iter().map(|(a, b)| b - a).sum();
        assert!(covered > 0, "seed {seed}");
    }
}

#[test]
fn sentence_spans_match_thudm_by_hand() {
    // [CLS] a b . c d e . f g [eos] h . i j k . l m n o . p q
    //   0   1 2 3 4 5 6 7 8 9  10   11 12 ...
    let text: Vec<u32> = vec![1, 10, 11, 8, 12, 13, 14, 8, 15, 16, 2, 17, 8, 18, 19, 20, 8, 21, 22, 23, 24, 8, 25, 26];
    // Every sentence with its `.`; `f g` before the eos is no sentence; the tail `p q` is.
    let all = [(1, 4), (4, 8), (11, 13), (13, 17), (17, 22), (22, 24)];
    // A ratio close to 1 takes every sentence (in random order, then sorted).
    let cfg = ObjectiveConfig { sentence_mask_ratio: Some(0.99), ..ObjectiveConfig::glm_10b() };
    let s = make_sample(&text, Objective::Sentence, &cfg, &IDS, &is_end, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    let mut got = s.spans.clone();
    got.sort();
    assert_eq!(got, all);
    // Part A: one [sMASK] per sentence, adjacent ones side by side; f g and the eos stay.
    assert_eq!(&s.tokens[..s.sep], &[1, 4, 4, 15, 16, 2, 4, 4, 4, 4]);
    // Each Part B piece holds the sentence's punctuation as its last input and target.
    for (k, &(a, b)) in s.spans.iter().enumerate() {
        let start = s.sep + s.spans[..k].iter().map(|(x, y)| y - x + 1).sum::<usize>();
        assert_eq!(&s.tokens[start + 1..start + 1 + b - a], &text[a..b]);
        assert_eq!(&s.targets[start..start + b - a], &text[a..b]);
        assert_eq!(s.targets[start + b - a], IDS.eop);
    }
    // 15% of 24 tokens = 3: one sentence of length ≥ 3, or two.
    for seed in 0..40 {
        let s = make_sample(&text, Objective::Sentence, &ObjectiveConfig::glm_10b(), &IDS, &is_end, &mut ChaCha8Rng::seed_from_u64(seed))
            .unwrap();
        assert!(s.spans.iter().all(|sp| all.contains(sp)), "seed {seed}: {:?}", s.spans);
        // Taken until the count is reached: without the last one taken it was not.
        let covered: usize = s.spans.iter().map(|(a, b)| b - a).sum();
        let longest = s.spans.iter().map(|(a, b)| b - a).max().unwrap_or(0);
        assert!(covered >= 3 && covered - longest < 3, "seed {seed}: {:?}", s.spans);
    }
}

#[test]
fn sentence_mask_ratio_masks_more_sentences() {
    // Share of masked tokens over many samples: the sentence objective's own ratio raises it
    // (every sample stays a valid layout of whole sentences).
    let share = |ratio: Option<f64>| {
        let cfg = ObjectiveConfig { sentence_mask_ratio: ratio, ..ObjectiveConfig::glm_10b() };
        let (mut masked, mut total) = (0usize, 0usize);
        for seed in 0..300 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let text = random_text(&mut rng, 1);
            let s = make_sample(&text, Objective::Sentence, &cfg, &IDS, &is_end, &mut rng).unwrap();
            assert_eq!(reconstruct(&s, &[IDS.smask]), text, "seed {seed}");
            masked += s.spans.iter().map(|(a, b)| b - a).sum::<usize>();
            total += text.len() - 1;
        }
        masked as f64 / total as f64
    };
    let (base, high) = (share(None), share(Some(0.4)));
    assert!(base > 0.12 && base < 0.35, "default sentence share {base}");
    assert!(high > base + 0.12 && high >= 0.38, "sentence_mask_ratio 0.4 gave {high} (default {base})");
    let bad = ObjectiveConfig { sentence_mask_ratio: Some(1.5), ..ObjectiveConfig::glm_10b() };
    assert!(bad.validate().is_err());
}

#[test]
fn document_objective_spans_half_to_all() {
    let cfg = ObjectiveConfig { task_masks: true, ..ObjectiveConfig::default() };
    let (mut prefix, mut block) = (0, 0);
    for seed in 0..400 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let text = random_text(&mut rng, 1);
        let s = make_sample(&text, Objective::Document, &cfg, &IDS, &is_end, &mut rng).unwrap();
        assert_eq!(s.spans.len(), 1);
        let (a, b) = s.spans[0];
        let ratio = (b - a) as f64 / text.len() as f64;
        assert!(a >= 1 && (0.5 - 1.0 / text.len() as f64..=1.0).contains(&ratio), "seed {seed}: ratio {ratio}");
        if s.targets.contains(&IDS.eop) {
            block += 1;
            assert_eq!(reconstruct(&s, &[IDS.gmask]), text);
            assert!(b < text.len(), "seed {seed}: the infilled span covers the last token");
        } else {
            prefix += 1;
            // source + [gMASK] | [sop] target[..g-1]; targets = source + [gMASK] + target.
            assert_eq!(s.sep, a + 1);
            assert_eq!(s.tokens[a], IDS.gmask);
            assert_eq!(s.tokens[a + 1], IDS.sop);
            assert_eq!(&s.targets[s.sep..], &text[a..b]);
            assert_eq!(&s.tokens[s.sep + 1..], &text[a..b - 1]);
            assert!(s.positions[s.sep..].iter().all(|&p| p as usize == a));
            assert_eq!(s.blocks[s.sep..].to_vec(), (1..=(b - a) as u32).collect::<Vec<_>>());
            assert!(s.loss_mask[..s.sep].iter().all(|&m| m == 0.0) && s.loss_mask[s.sep..].iter().all(|&m| m == 1.0));
        }
    }
    assert!(prefix > 100 && block > 100, "prefix {prefix} block {block}");
    // Several documents in one sample always use the prefix-LM form.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let text = random_text(&mut rng, 3);
    for _ in 0..20 {
        assert!(!make_sample(&text, Objective::Document, &cfg, &IDS, &is_end, &mut rng).unwrap().targets.contains(&IDS.eop));
    }
    // Without task masks (THUDM's default) the span is a [MASK].
    let plain = ObjectiveConfig::default();
    let s = make_sample(&text, Objective::Document, &plain, &IDS, &is_end, &mut rng).unwrap();
    assert_eq!(s.tokens[s.sep - 1], IDS.mask);
}

#[test]
fn part_a_never_sees_part_b() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let text = random_text(&mut rng, 1);
    let s = make_sample(&text, Objective::Token, &ObjectiveConfig::default(), &IDS, &is_end, &mut rng).unwrap();
    let n = s.tokens.len();
    let mask = crate::model::build_mask(
        &crate::model::Attention::Sep(vec![s.sep]),
        None,
        1,
        n,
        0,
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let m: Vec<Vec<f32>> = mask.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
    for (i, row) in m.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let want = if i < s.sep { j < s.sep } else { j < s.sep || j <= i };
            assert_eq!(v == 1.0, want, "mask[{i}][{j}] with sep {}", s.sep);
        }
    }
}

#[test]
fn same_seed_same_sample_and_objective_mix() {
    let cfg = ObjectiveConfig::glm_10b();
    let text = random_text(&mut ChaCha8Rng::seed_from_u64(1), 2);
    let a = make_sample(&text, Objective::Token, &cfg, &IDS, &is_end, &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
    let b = make_sample(&text, Objective::Token, &cfg, &IDS, &is_end, &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
    assert_eq!(a, b);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let draws: Vec<Objective> = (0..10000).map(|_| draw_objective(&cfg, &mut rng)).collect();
    let share = |o| draws.iter().filter(|&&d| d == o).count() as f64 / 1e4;
    assert!((share(Objective::Token) - 0.5).abs() < 0.02);
    assert!((share(Objective::Sentence) - 0.3).abs() < 0.02);
    assert!((share(Objective::Document) - 0.2).abs() < 0.02);
}
