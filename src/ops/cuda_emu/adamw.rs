//! The optimizer kernels on the CPU: the gradient norm and the AdamW update, per parameter and
//! multi-tensor (one launch over a table of pointers), against `train::optim`'s host loop.

use super::{assert_close, both_orders, launch, values, Arg, Buf, TestResult};
use crate::ops::launch::{self as plan, AdamWJob, ADAMW_CHUNK, ADAMW_JOB_WORDS};
use crate::train::optim::{decays, AdamW, AdamWConfig};
use candle_core::{Device, Tensor, Var};

/// Parameter sizes: a chunk boundary on each side, a multi-chunk tensor, a bias (no decay).
const PARAMS: [(&str, usize); 4] = [("a.weight", ADAMW_CHUNK + 5), ("b.weight", 700), ("c.weight", 2 * ADAMW_CHUNK + 1), ("c.bias", 33)];
const CFG: AdamWConfig = AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
const LR: f64 = 1e-2;
const CLIP: f64 = 5.0;

/// Weights and the gradients of two steps (the second step has moments to carry).
fn setup() -> (Vec<Vec<f64>>, [Vec<Vec<f64>>; 2]) {
    let w = PARAMS.iter().enumerate().map(|(i, &(_, n))| values(n, 20 + i as u64, 1.0)).collect();
    let g = [0u64, 1].map(|s| PARAMS.iter().enumerate().map(|(i, &(_, n))| values(n, 40 + 10 * s + i as u64, 0.2)).collect());
    (w, g)
}

/// Two steps of the CPU optimizer: the final weights and each step's (norm, clip scale).
/// Per parameter its final weights, and per step (grad norm, clip scale).
type Steps = (Vec<Vec<f64>>, Vec<(f64, f64)>);

fn cpu_steps(w: &[Vec<f64>], g: &[Vec<Vec<f64>>; 2]) -> TestResult<Steps> {
    let vars: Vec<Var> = w
        .iter()
        .map(|w| Var::from_tensor(&Tensor::from_vec(w.iter().map(|&v| v as f32).collect::<Vec<_>>(), w.len(), &Device::Cpu)?))
        .collect::<candle_core::Result<_>>()?;
    let mut opt = AdamW::new(PARAMS.iter().zip(&vars).map(|((name, _), v)| (name.to_string(), v.clone())).collect(), CFG)?;
    let mut stats = Vec::new();
    for grads in g {
        // Σ w ⊙ c has gradient c with respect to w.
        let mut loss = Tensor::zeros((), candle_core::DType::F32, &Device::Cpu)?;
        for (v, c) in vars.iter().zip(grads) {
            let c = Tensor::from_vec(c.iter().map(|&x| x as f32).collect::<Vec<_>>(), c.len(), &Device::Cpu)?;
            loss = (loss + (v.as_tensor() * c)?.sum_all()?)?;
        }
        let s = opt.step(&loss.backward()?, LR, Some(CLIP))?;
        stats.push((s.grad_norm, s.clip_scale));
    }
    let w = vars.iter().map(|v| Ok(v.as_tensor().to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?)).collect::<TestResult<_>>()?;
    Ok((w, stats))
}

/// The step's shared kernel arguments after `t` steps: β₁, β₂, ε, 1 − β₁ᵗ, 1 − β₂ᵗ, clip scale.
fn shared(t: i32, clip_scale: f64) -> [Arg; 6] {
    let f = |v: f64| Arg::F32(v as f32);
    [f(CFG.beta1), f(CFG.beta2), f(CFG.eps), f(1.0 - CFG.beta1.powi(t)), f(1.0 - CFG.beta2.powi(t)), f(clip_scale)]
}

fn decay(name: &str) -> f32 {
    (1.0 - LR * if decays(name) { CFG.weight_decay } else { 0.0 }) as f32
}

/// Both steps on fresh buffers (weights, zero moments, each step's gradients) through `step`,
/// which launches the kernels of one step and returns its gradient norm: the norms, then the
/// final weights.
fn two_steps(
    w: &[Vec<f64>],
    g: &[Vec<Vec<f64>>; 2],
    mut step: impl FnMut(usize, &mut [Buf], &mut [Buf], &mut [Buf]) -> TestResult<f64>,
) -> TestResult<Vec<f64>> {
    let mut wb: Vec<Buf> = w.iter().map(|w| Buf::of::<f32>("w", w)).collect();
    let mut mv: Vec<Buf> = w.iter().map(|w| Buf::zeros::<f32>("mv", 2 * w.len())).collect();
    let mut out = Vec::new();
    for (t, grads) in g.iter().enumerate() {
        let mut gb: Vec<Buf> = grads.iter().map(|g| Buf::of::<f32>("g", g)).collect();
        out.push(step(t, &mut wb, &mut mv, &mut gb)?);
        for b in gb.iter().chain(&mv) {
            b.read::<f32>()?;
        }
    }
    for b in &wb {
        out.extend(b.read::<f32>()?);
    }
    Ok(out)
}

/// Both steps through the multi-tensor kernels, as `ops::cuda::adamw::multi_tensor_step` runs
/// them (norm, then the update with the CPU's clip scale).
fn multi_tensor(w: &[Vec<f64>], g: &[Vec<Vec<f64>>; 2], clip: &[(f64, f64)], rev: bool) -> TestResult<Vec<f64>> {
    two_steps(w, g, |step, wb, mv, gb| {
        let jobs: Vec<AdamWJob> = (0..PARAMS.len())
            .map(|i| AdamWJob {
                pointers: [wb[i].address(), mv[i].address(), gb[i].address()],
                n: PARAMS[i].1,
                lr: LR as f32,
                decay: decay(PARAMS[i].0),
            })
            .collect();
        let (table, blocks) = plan::adamw_job_table(&jobs);
        let split = jobs.len() * ADAMW_JOB_WORDS;
        let (mut jb, mut cb) = (Buf::of_raw("jobs", &table[..split]), Buf::of_raw("chunks", &table[split..]));
        let mut acc = Buf::zeros::<f64>("Σ g²", 1);
        let chunk = Arg::U64(ADAMW_CHUNK as u64);
        launch("sum_squares_multi_f32", plan::adamw_multi(blocks), &[jb.ptr(), cb.ptr(), chunk, acc.ptr()], rev)?;
        let mut args = vec![jb.ptr(), cb.ptr(), chunk];
        args.extend(shared(step as i32 + 1, clip[step].1));
        launch("adamw_multi_f32", plan::adamw_multi(blocks), &args, rev)?;
        Ok(acc.read::<f64>()?[0].sqrt())
    })
}

/// Both steps through the per-parameter kernels (`WENHUI_ADAMW_MULTI=0`).
fn per_parameter(w: &[Vec<f64>], g: &[Vec<Vec<f64>>; 2], clip: &[(f64, f64)], rev: bool) -> TestResult<Vec<f64>> {
    two_steps(w, g, |step, wb, mv, gb| {
        let mut acc = Buf::zeros::<f64>("Σ g²", 1);
        for (i, &(_, n)) in PARAMS.iter().enumerate() {
            launch("sum_squares_f32", plan::sum_squares(n), &[gb[i].ptr(), Arg::U64(n as u64), acc.ptr()], rev)?;
        }
        for (i, &(name, n)) in PARAMS.iter().enumerate() {
            let mut args = vec![wb[i].ptr(), mv[i].ptr(), gb[i].ptr(), Arg::U64(n as u64), Arg::F32(LR as f32), Arg::F32(decay(name))];
            args.extend(shared(step as i32 + 1, clip[step].1));
            launch("adamw_f32", plan::elementwise(n), &args, rev)?;
        }
        Ok(acc.read::<f64>()?[0].sqrt())
    })
}

/// Two clipped steps (moments carried) match the CPU optimizer, the norm included, through
/// both GPU paths.
#[test]
fn adamw_kernels_match_the_cpu_optimizer() -> TestResult {
    let (w, g) = setup();
    let (want_w, stats) = cpu_steps(&w, &g)?;
    assert!(stats[0].1 < 1.0, "the test means to clip: norm {}", stats[0].0);
    let want_w: Vec<f64> = want_w.concat();
    for (what, run) in [("multi-tensor", multi_tensor as fn(&_, &_, &_, bool) -> _), ("per-parameter", per_parameter)] {
        // The norm adds block sums atomically: another order rounds differently (in f64).
        let got = both_orders(what, 1e-12, |rev| run(&w, &g, &stats, rev))?;
        for (step, &(norm, _)) in stats.iter().enumerate() {
            assert_close(&format!("{what}: norm of step {}", step + 1), &got[step..step + 1], &[norm], 1e-9)?;
        }
        // f32 arithmetic against the CPU's f64 (rounded to f32 after each step).
        assert_close(&format!("{what}: weights after two steps"), &got[2..], &want_w, 2e-6)?;
    }
    Ok(())
}

/// The bf16 gradient norm kernel of mixed-precision training.
#[test]
fn bf16_sum_of_squares_matches() -> TestResult {
    let g = super::rounded(&values(3000, 60, 1.0), candle_core::DType::BF16);
    let want: f64 = g.iter().map(|v| v * v).sum();
    let got = both_orders("sum_squares_bf16", 1e-12, |rev| {
        let (mut gb, mut acc) = (Buf::of::<half::bf16>("g", &g), Buf::zeros::<f64>("Σ g²", 1));
        launch("sum_squares_bf16", plan::sum_squares(g.len()), &[gb.ptr(), Arg::U64(g.len() as u64), acc.ptr()], rev)?;
        acc.read::<f64>()
    })?;
    assert_close("sum_squares_bf16", &got, &[want], 1e-12)
}
