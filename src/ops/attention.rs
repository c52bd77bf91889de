//! Fused scaled-dot-product attention with GLM's 0/1 mask, dropout and an analytic backward:
//! per (batch, head) `P = softmax((Q·Kᵀ·scale)·M − 65504·(1−M))`, `O = dropout(P)·V`.
//!
//! One graph node instead of five (QKᵀ, softmax, dropout, PV and the transposed-K copy), so
//! the backward pass neither allocates nor accumulates the `[B, N, S, T]` score gradients
//! through candle's generic machinery. `P` is recomputed in the backward pass (as flash
//! attention does) rather than stored. Work is split over (batch, head) pairs with rayon.

use super::dropout::keep_scale;
use super::softmax::MASKED_SCORE;
use super::{as_slice, Float};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

/// Attention over `q` `[B, N, S, d]`, `k`/`v` `[B, N, T, d]` with `mask` `[B or 1, 1, S, T]`,
/// scores scaled by `scale`, dropout `p` on the probabilities (seeded, training only).
/// Differentiable with respect to `q`, `k` and `v`. f32 and f64 on the CPU.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64, p: f64, seed: u64) -> Result<Tensor> {
    let (b, n, s, d) = q.dims4()?;
    let (kb, kn, t, kd) = k.dims4()?;
    if (kb, kn, kd) != (b, n, d) || v.dims() != k.dims() {
        candle_core::bail!("attention: q {:?}, k {:?}, v {:?} do not fit", q.dims(), k.dims(), v.dims());
    }
    let md = mask.dims4()?;
    if md.1 != 1 || md.2 != s || md.3 != t || (md.0 != b && md.0 != 1) {
        candle_core::bail!("attention: mask {:?} does not fit scores [{b}, {n}, {s}, {t}]", mask.dims());
    }
    let dt = q.dtype();
    let op = Attention { mask: mask.to_dtype(dt)?.contiguous()?, scale, p, seed, grad: None };
    q.contiguous()?.apply_op3(&k.to_dtype(dt)?.contiguous()?, &v.to_dtype(dt)?.contiguous()?, op)
}

#[derive(Clone)]
struct Attention {
    mask: Tensor,
    scale: f64,
    p: f64,
    seed: u64,
    /// Set for the backward kernel: the gradient of the output.
    grad: Option<Tensor>,
}

/// `dst (m×n) = a (m×k) · b (k×n)` with explicit row/column strides, on this thread (the
/// caller parallelises over (batch, head) pairs).
#[allow(clippy::too_many_arguments)]
fn gemm<T: Float>(dst: &mut [T], m: usize, n: usize, k: usize, a: &[T], a_rs: usize, a_cs: usize, b: &[T], b_rs: usize, b_cs: usize) {
    super::linear::gemm_into(dst, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, false, false)
}

/// Per-pair geometry.
struct Dims {
    s: usize,
    t: usize,
    d: usize,
    heads: usize,
    mask_batches: usize,
}

impl Attention {
    /// The mask rows of pair `pair` (`[S, T]`).
    fn mask_of<'a, T: Float>(&self, m: &'a [T], pair: usize, g: &Dims) -> &'a [T] {
        let b = if g.mask_batches == 1 { 0 } else { pair / g.heads };
        &m[b * g.s * g.t..(b + 1) * g.s * g.t]
    }

    /// Probabilities `P` (before dropout) of one pair into `probs` `[S, T]`.
    fn probs<T: Float>(&self, q: &[T], k: &[T], m: &[T], g: &Dims, probs: &mut [T]) {
        gemm(probs, g.s, g.t, g.d, q, g.d, 1, k, 1, g.d);
        let (scale, masked, one) = (T::of_f64(self.scale), T::of_f64(MASKED_SCORE), T::of_f64(1.0));
        for (row, mrow) in probs.chunks_mut(g.t).zip(m.chunks(g.t)) {
            let mut max = f64::NEG_INFINITY;
            for (z, &mv) in row.iter_mut().zip(mrow) {
                *z = *z * scale * mv + masked * (one - mv);
                max = max.max(z.as_f64());
            }
            let max = T::of_f64(max);
            let mut sum = 0f64;
            for z in row.iter_mut() {
                *z = (*z - max).exp();
                sum += z.as_f64();
            }
            let inv = T::of_f64(1.0 / sum);
            row.iter_mut().for_each(|z| *z *= inv);
        }
    }

    /// Applies the dropout mask of pair `pair` to `x` `[S, T]` in place (scaled kept values).
    fn drop<T: Float>(&self, x: &mut [T], pair: usize) {
        if self.p > 0.0 {
            let base = (pair * x.len()) as u64;
            for (i, v) in x.iter_mut().enumerate() {
                *v *= T::of_f64(keep_scale(self.seed, self.p, base + i as u64));
            }
        }
    }

    fn forward<T: Float>(&self, q: &[T], k: &[T], v: &[T], m: &[T], g: &Dims) -> Vec<T> {
        let (sd, td) = (g.s * g.d, g.t * g.d);
        let mut out = vec![T::of_f64(0.0); q.len()];
        out.par_chunks_mut(sd).enumerate().for_each(|(pair, o)| {
            let mut p = vec![T::of_f64(0.0); g.s * g.t];
            self.probs(&q[pair * sd..(pair + 1) * sd], &k[pair * td..(pair + 1) * td], self.mask_of(m, pair, g), g, &mut p);
            self.drop(&mut p, pair);
            gemm(o, g.s, g.d, g.t, &p, g.t, 1, &v[pair * td..(pair + 1) * td], g.d, 1);
        });
        out
    }

    /// `[dQ | dK | dV]` packed one after the other.
    fn backward<T: Float>(&self, q: &[T], k: &[T], v: &[T], m: &[T], go: &[T], g: &Dims) -> Vec<T> {
        let (sd, td) = (g.s * g.d, g.t * g.d);
        let pairs = q.len() / sd;
        let mut dq = vec![T::of_f64(0.0); q.len()];
        let mut dkv = vec![T::of_f64(0.0); 2 * k.len()];
        let (dk, dv) = dkv.split_at_mut(k.len());
        dq.par_chunks_mut(sd).zip(dk.par_chunks_mut(td).zip(dv.par_chunks_mut(td))).enumerate().for_each(|(pair, (dq, (dk, dv)))| {
            let (qp, kp, vp, gp) = (
                &q[pair * sd..(pair + 1) * sd],
                &k[pair * td..(pair + 1) * td],
                &v[pair * td..(pair + 1) * td],
                &go[pair * sd..(pair + 1) * sd],
            );
            let mrows = self.mask_of(m, pair, g);
            let mut p = vec![T::of_f64(0.0); g.s * g.t];
            self.probs(qp, kp, mrows, g, &mut p);
            let mut pd = p.clone();
            self.drop(&mut pd, pair);
            // dV = P'ᵀ · dO
            gemm(dv, g.t, g.d, g.s, &pd, 1, g.t, gp, g.d, 1);
            // dP' = dO · Vᵀ, then through dropout.
            let mut dp = vec![T::of_f64(0.0); g.s * g.t];
            gemm(&mut dp, g.s, g.t, g.d, gp, g.d, 1, vp, 1, g.d);
            self.drop(&mut dp, pair);
            // dZ = P ⊙ (dP − Σ dP·P), times ∂z/∂s = scale·M.
            let scale = T::of_f64(self.scale);
            for ((dr, pr), mr) in dp.chunks_mut(g.t).zip(p.chunks(g.t)).zip(mrows.chunks(g.t)) {
                let dot = T::of_f64(dr.iter().zip(pr).map(|(a, b)| a.as_f64() * b.as_f64()).sum::<f64>());
                for ((dv, &pv), &mv) in dr.iter_mut().zip(pr).zip(mr) {
                    *dv = pv * (*dv - dot) * scale * mv;
                }
            }
            // dQ = dS · K ; dK = dSᵀ · Q
            gemm(dq, g.s, g.d, g.t, &dp, g.t, 1, kp, g.d, 1);
            gemm(dk, g.t, g.d, g.s, &dp, 1, g.t, qp, g.d, 1);
        });
        debug_assert_eq!(pairs * sd, dq.len());
        dq.extend_from_slice(&dkv);
        dq
    }
}

/// The CPU slice behind a tensor held by the op (mask, output gradient).
fn held<T: Float>(t: &Tensor, f: impl FnOnce(&[T]) -> Result<Vec<T>>) -> Result<Vec<T>> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(c) => f(as_slice::<T>(c, layout)?),
        _ => candle_core::bail!("attention: CPU tensors only"),
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        if self.grad.is_some() {
            "wenhui-attention-backward"
        } else {
            "wenhui-attention"
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, heads, s, d) = l1.shape().dims4()?;
        let t = l2.shape().dims4()?.2;
        let g = Dims { s, t, d, heads, mask_batches: self.mask.dims()[0] };
        macro_rules! run {
            ($ty:ty, $variant:ident) => {{
                let (q, k, v) = (as_slice::<$ty>(s1, l1)?, as_slice::<$ty>(s2, l2)?, as_slice::<$ty>(s3, l3)?);
                let out = held::<$ty>(&self.mask, |m| match &self.grad {
                    None => Ok(self.forward(q, k, v, m, &g)),
                    Some(go) => held::<$ty>(go, |go| Ok(self.backward(q, k, v, m, go, &g))),
                })?;
                CpuStorage::$variant(out)
            }};
        }
        let out = match s1 {
            CpuStorage::F32(_) => run!(f32, F32),
            CpuStorage::F64(_) => run!(f64, F64),
            _ => candle_core::bail!("attention: unsupported dtype"),
        };
        if self.grad.is_some() {
            let n = l1.shape().elem_count() + 2 * l2.shape().elem_count();
            return Ok((out, Shape::from(n)));
        }
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let op = Attention { grad: Some(grad.contiguous()?), ..self.clone() };
        let packed = q.apply_op3_no_bwd(k, v, &op)?;
        let (nq, nk) = (q.elem_count(), k.elem_count());
        let dq = packed.narrow(0, 0, nq)?.reshape(q.shape())?;
        let dk = packed.narrow(0, nq, nk)?.reshape(k.shape())?;
        let dv = packed.narrow(0, nq + nk, nk)?.reshape(v.shape())?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}
