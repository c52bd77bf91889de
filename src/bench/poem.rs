//! The cost of inverse prompting: the time of an inverse-prompted poem against (a) the same unit beam
//! search of the same width without the inverse pass (the paper's search baseline) and (b) plain
//! token-level beam search of the same width writing as many tokens (GLM long generation).

use std::collections::BTreeMap;

use super::{median, median_ms};
use crate::generate::inverse::{generate_inverse, Context, InverseOptions, PoemRules, Task};
use crate::generate::poetry::Constraints;
use crate::generate::{fill_blanks, BlankTokens, GenerationConfig};
use crate::Result;

/// What to measure (`wenhui bench poem`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoemBench {
    /// Titles, each timed with every method.
    pub titles: Vec<String>,
    /// Form (`五绝`, …).
    pub form: String,
    /// Live beams (the width of all three methods).
    pub beams: usize,
    /// Refinement rounds of both searches (the baseline refines by forward scores alone);
    /// [`PoemBench::task_refine_rounds`] is what `wenhui poem` runs.
    pub refine_rounds: usize,
    /// Timed runs per title and method (median).
    pub reps: usize,
}

impl PoemBench {
    /// The refinement rounds of the built-in poem task (what `wenhui poem` runs by default).
    pub fn task_refine_rounds() -> Result<usize> {
        Ok(Task::builtin("poem")?.search.refine_rounds)
    }
}

/// One title's median times (ms).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoemTitleTimes {
    /// The title.
    pub title: String,
    /// Inverse-prompted poem.
    pub inverse_ms: f64,
    /// The same search without the inverse pass.
    pub search_baseline_ms: f64,
    /// Token-level beam search.
    pub token_beam_ms: f64,
}

/// Medians over titles (ms) and the ratios.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoemBenchReport {
    /// The settings.
    pub config: PoemBench,
    /// Inverse-prompted poem.
    pub inverse_ms: f64,
    /// The same search ranked by forward log-probability (no inverse pass).
    pub search_baseline_ms: f64,
    /// Token-level beam search of the same width, as many tokens as the poem.
    pub token_beam_ms: f64,
    /// The median over titles of each title's `inverse_ms / search_baseline_ms` (goal ≤ 1.3):
    /// paired per title, so that one title's time is never divided by another's.
    pub ratio_vs_search_baseline: f64,
    /// The median over titles of each title's `inverse_ms / token_beam_ms`.
    pub ratio_vs_token_beam: f64,
    /// Each title's times.
    pub titles: Vec<PoemTitleTimes>,
    /// Compute threads.
    pub threads: usize,
}

/// Times the three methods on `cx`'s model.
pub fn bench_poem(cx: &Context<'_>, c: &PoemBench) -> Result<PoemBenchReport> {
    if c.titles.is_empty() {
        return Err(crate::Error::input("bench poem: no titles to time (pass --titles 虹桥机场,咏相对论)"));
    }
    if c.beams == 0 || c.reps == 0 {
        return Err(crate::Error::input("bench poem: --beams and --reps must be at least 1"));
    }
    // As `poem`: a title the model cannot read would time poems for no title.
    for title in &c.titles {
        if title.trim().is_empty() {
            return Err(crate::Error::input("bench poem: --titles holds an empty title; give every title some text"));
        }
        if let Some(refusal) =
            crate::generate::blank::unknown_text(cx.tokenizer, title)?.warn_or_refusal(&format!("bench poem: title `{title}`"))
        {
            return Err(crate::Error::input(refusal));
        }
    }
    let constraints = Constraints::parse(&c.form, "pingshui", "")?;
    let mut task = Task::builtin("poem")?;
    task.search.set_beams(c.beams);
    task.search.refine_rounds = c.refine_rounds;
    let blank = BlankTokens::from_special(&cx.tokenizer.special)?;
    let tokens = constraints.form.lines() * (constraints.form.line_len() + 1);
    let (mut ip, mut base, mut tok) = (vec![], vec![], vec![]);
    for title in &c.titles {
        let fields = task
            .fields(&BTreeMap::from([("title".to_string(), title.clone()), ("form".to_string(), constraints.form.name().to_string())]))?;
        for (use_inverse, out) in [(true, &mut ip), (false, &mut base)] {
            let opts = InverseOptions { use_inverse, ..Default::default() };
            out.push(median_ms(1, c.reps, || {
                generate_inverse(cx, &task, &fields, &mut PoemRules::new(constraints.clone()), &opts, None).map(|_| ())
            })?);
        }
        let prep = cx.prepare(&task, &fields)?;
        let cfg = GenerationConfig { num_beams: c.beams, max_new_tokens: tokens, min_new_tokens: tokens, ..Default::default() };
        tok.push(median_ms(1, c.reps, || fill_blanks(cx.model, prep.prompt(), &blank, &cfg).map(|_| ()))?);
    }
    let med = |mut v: Vec<f64>| median(&mut v).unwrap_or(f64::NAN);
    let ratios = |den: &[f64]| med(ip.iter().zip(den).map(|(a, b)| a / b).collect());
    let (ratio_vs_search_baseline, ratio_vs_token_beam) = (ratios(&base), ratios(&tok));
    let titles = c
        .titles
        .iter()
        .zip(ip.iter().zip(&base).zip(&tok))
        .map(|(title, ((&i, &b), &t))| PoemTitleTimes { title: title.clone(), inverse_ms: i, search_baseline_ms: b, token_beam_ms: t })
        .collect();
    Ok(PoemBenchReport {
        config: c.clone(),
        inverse_ms: med(ip),
        search_baseline_ms: med(base),
        token_beam_ms: med(tok),
        ratio_vs_search_baseline,
        ratio_vs_token_beam,
        titles,
        threads: candle_core::utils::get_num_threads(),
    })
}
