//! Refinement (GLM-iprompt `refine_poem` / `refine_answer`): every unit in turn is blanked out and
//! re-infilled given both sides; a new unit replaces the current one only when it scores higher in
//! the same context (the current unit competes as one more candidate, the official `excess_beam`).

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;

use super::context::{Context, Prepared};
use super::rules::UnitRules;
use super::sampler::{sample_units, Candidate, SampleSpec};
use super::search::{accepts_with, unit_score, window, ExplainRow, ExplainStep, InverseOptions, UnitHook, UnitScore};
use super::template::{Task, Window};
use crate::generate::GlmBlankInputs;
use crate::{Error, Result};

/// One refinement round over all units; returns how many were replaced. `on_revise(k, text)` is
/// called when unit `k` is replaced; [`InverseOptions::cancel`] is asked before each unit.
#[allow(clippy::too_many_arguments)]
pub(crate) fn refine_round(
    cx: &Context<'_>,
    prep: &Prepared,
    task: &Task,
    fields: &BTreeMap<String, String>,
    rules: &dyn UnitRules,
    opts: &InverseOptions,
    units: &mut [String],
    scores: &mut [UnitScore],
    rng: &mut ChaCha8Rng,
    explain: &mut Vec<ExplainStep>,
    mut on_revise: Option<UnitHook<'_>>,
) -> Result<usize> {
    if !cx.is_glm() {
        return Err(Error::input("refinement needs a GLM model"));
    }
    let mask = cx.tokenizer.special.get("mask")?;
    let allowed = cx.allowed_tokens(rules);
    let mut changed = 0;
    for i in 0..units.len() {
        opts.cancel.check()?;
        let text = units[..i].concat() + "[MASK]" + &units[i + 1..].concat();
        let a = cx.part_a(&task.forward.prompt, task, fields, &text)?;
        let Some(mask_position) = a.iter().position(|&t| t == mask) else {
            return Err(Error::input("refinement: the tokenizer did not keep [MASK] as one token"));
        };
        // The title keeps the emphasis it had while the text was generated.
        let emphasis = match &prep.emphasis {
            Some(e) => cx.target_emphasis(task, fields, &text, e.weight)?,
            None => None,
        };
        let (cache, logits) = cx.blank_pass(&a, mask_position, emphasis.as_ref())?;
        let mut inputs = GlmBlankInputs::new(mask_position, cx.model.info().max_positions);
        inputs.key_bias = cx.key_bias(emphasis.as_ref(), a.len())?;
        let head = rules.head(i).map(|c| cx.head_tokens(c)).transpose()?;
        let before = units[..i].to_vec();
        let check = |t: &str| rules.check(&before, t);
        let spec = SampleSpec {
            allowed: &allowed,
            first: head.as_deref(),
            // Keywords are kept by `accepts_with` (the poem with the new unit must still hold
            // every one); steering would read the lines after this one as empty.
            steer: None,
            stops: &[],
            check: &check,
            decode: &|ids| cx.decode(ids),
            max_tokens: task.units.max_chars + 1,
            temperature: task.search.temperature,
            max_redraws: task.search.max_redraws,
        };
        let mut cands: Vec<Candidate> = sample_units(cx.model, &cache, &logits, &inputs, 1, task.search.per_beam, &spec, rng)?
            .into_iter()
            .filter(|c| c.text != units[i] && accepts_with(rules, units, i, &c.text))
            .collect();
        if cands.is_empty() {
            continue;
        }
        let current = cx.tokenizer.encode(&units[i], false)?;
        let forward = cx.continuation_score(&cache, &logits, &inputs, 1, &current)?;
        cands.insert(0, Candidate { tokens: current, text: units[i].clone(), forward, end: false });
        let with = |text: &str| {
            let mut all = units.to_vec();
            all[i] = text.to_string();
            match task.inverse.window {
                Window::All => all.concat(),
                w => window(w, &units[..i], text),
            }
        };
        let windows: Vec<String> = cands.iter().map(|c| with(&c.text)).collect();
        let ips = if opts.use_inverse {
            // The poem without the line: the new line may stand anywhere in the window.
            let without = vec![with(""); cands.len()];
            cx.inverse_scores(prep, task, &windows, &without)?
        } else {
            vec![0.0; cands.len()]
        };
        let scored: Vec<UnitScore> = cands
            .iter()
            .zip(&ips)
            .zip(&windows)
            .map(|((c, &ip), w)| unit_score(task, rules, &units[..i], c, ip, w, fields, opts.use_inverse))
            .collect();
        let best = (0..scored.len()).max_by(|&x, &y| scored[x].total.total_cmp(&scored[y].total)).unwrap_or(0);
        if opts.explain {
            let mut order: Vec<usize> = (0..scored.len()).collect();
            order.sort_by(|&x, &y| scored[y].total.total_cmp(&scored[x].total));
            let top = order
                .iter()
                .take(opts.explain_top.max(1))
                .map(|&j| ExplainRow {
                    parent: 0,
                    unit: scored[j].clone(),
                    beam_score: scored[j].total,
                    kept: j == best,
                    verdict: rules.describe(&units[..i], &cands[j].text),
                })
                .collect();
            explain.push(ExplainStep { unit: i, refine: true, sampled: cands.len(), top });
        }
        if best != 0 {
            changed += 1;
            units[i] = cands[best].text.clone();
            if let Some(cb) = on_revise.as_deref_mut() {
                cb(i, &units[i]);
            }
        }
        scores[i] = scored[best].clone();
    }
    Ok(changed)
}
