//! Attention of new query rows over a K/V cache on the CPU, for inference (no backward).
//!
//! Per (batch, head) pair the scores are dot products with the cached key rows, read in place
//! from the cache's `[B, N, capacity, d]` buffers; then the masked softmax of
//! [`super::softmax`]; then the probability-weighted sum of the value rows. It replaces, in each
//! layer of each decoding step, candle's two batched matmuls (two small GEMM calls per pair,
//! each with its own packing and thread hand-off: 1,152 calls per step for four beams of a
//! 12-layer model) and the separate softmax node.

use super::softmax::softmax_row_in_place;
use super::{held, Float};
use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

/// `softmax((q·kᵀ·scale + bias)·M − 65504·(1−M))·v` for `q` `[B, N, S, d]` over the first `t`
/// positions of the cache buffers `k`, `v` (`[B, N, capacity, d]`, contiguous), with `mask`
/// `[B or 1, 1, S, t]` and `bias` `[B or 1, 1, 1, t]`; returns `[B, N, S, d]`. The same math
/// as [`super::attention`] without dropout; f32 and f64 CPU tensors.
pub(crate) fn cached_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    t: usize,
    mask: &Tensor,
    bias: Option<&Tensor>,
    scale: f64,
) -> Result<Tensor> {
    let (b, n, s, d) = q.dims4()?;
    let (kb, kn, cap, kd) = k.dims4()?;
    if (kb, kn, kd) != (b, n, d) || v.dims() != k.dims() || t > cap || !k.is_contiguous() || !v.is_contiguous() {
        candle_core::bail!("cached attention: q {:?}, k {:?}, v {:?}, {t} positions do not fit", q.dims(), k.dims(), v.dims());
    }
    let md = mask.dims4()?;
    if md.1 != 1 || md.2 != s || md.3 != t || (md.0 != b && md.0 != 1) {
        candle_core::bail!("cached attention: mask {:?} does not fit scores [{b}, {n}, {s}, {t}]", mask.dims());
    }
    let bias = match bias {
        Some(bias) => {
            let bd = bias.dims4()?;
            if bd.1 != 1 || bd.2 != 1 || bd.3 != t || (bd.0 != b && bd.0 != 1) {
                candle_core::bail!("cached attention: key bias {:?} does not fit [{b} or 1, 1, 1, {t}]", bias.dims());
            }
            // Added before the scaling, as in the fused attention: (s + b/scale)·scale = s·scale + b.
            Some(bias.affine(1.0 / scale, 0.0)?.to_dtype(q.dtype())?.contiguous()?)
        }
        None => None,
    };
    if b * n * s * d == 0 || t == 0 {
        // Nothing to attend with or to (no query rows, or no keys: the rows would be all masked).
        return Tensor::zeros((b, n, s, d), q.dtype(), q.device());
    }
    let geometry = Geometry { b, n, s, d, t, cap, mask_batches: md.0, bias_batches: bias.as_ref().map_or(1, |x| x.dims()[0]) };
    let mask = mask.to_dtype(q.dtype())?.contiguous()?;
    let q = q.contiguous()?;
    match q.dtype() {
        DType::F32 => run::<f32>(&q, k, v, &mask, bias.as_ref(), scale, &geometry),
        DType::F64 => run::<f64>(&q, k, v, &mask, bias.as_ref(), scale, &geometry),
        other => candle_core::bail!("cached attention: {other:?} on the CPU (f32 or f64 only)"),
    }
}

/// Sizes: batch, heads, query rows, head size, cached positions, buffer capacity, and the
/// batch sizes of the mask and the bias (1: shared by every row).
struct Geometry {
    b: usize,
    n: usize,
    s: usize,
    d: usize,
    t: usize,
    cap: usize,
    mask_batches: usize,
    bias_batches: usize,
}

fn run<T: Float>(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, bias: Option<&Tensor>, scale: f64, g: &Geometry) -> Result<Tensor> {
    let Geometry { b, n, s, d, t, cap, mask_batches, bias_batches } = *g;
    let out = held::<T, _>(q, |q| {
        held::<T, _>(k, |k| {
            held::<T, _>(v, |v| {
                held::<T, _>(mask, |m| {
                    let with_bias = |bias: Option<&[T]>| {
                        let mut out = vec![T::of_f64(0.0); b * n * s * d];
                        out.par_chunks_mut(s * d).enumerate().for_each(|(pair, o)| {
                            let batch = pair / n;
                            let (kv, mb, bb) = (pair * cap * d, batch % mask_batches, batch % bias_batches);
                            pair_attention(
                                o,
                                &q[pair * s * d..(pair + 1) * s * d],
                                &k[kv..kv + t * d],
                                &v[kv..kv + t * d],
                                &m[mb * s * t..(mb + 1) * s * t],
                                bias.map(|x| &x[bb * t..(bb + 1) * t]),
                                d,
                                scale,
                            )
                        });
                        out
                    };
                    match bias {
                        Some(bias) => held::<T, _>(bias, |x| Ok(with_bias(Some(x)))),
                        None => Ok(with_bias(None)),
                    }
                })
            })
        })
    })?;
    Tensor::from_vec(out, (b, n, s, d), q.device())
}

super::math::simd_kernel! {
    /// One (batch, head) pair: for each query row, the scores over the `t = k.len() / d` keys,
    /// their masked softmax, and the weighted sum of the value rows into `o`.
    #[allow(clippy::too_many_arguments)]
    fn pair_attention<T> [PairAttention] (o: &'a mut [T], q: &'a [T], k: &'a [T], v: &'a [T], mask: &'a [T], bias: Option<&'a [T]>, d: usize, scale: f64) {
        let t = k.len() / d.max(1);
        let zero = T::of_f64(0.0);
        let mut scores = vec![zero; t];
        for ((qrow, orow), mrow) in q.chunks(d).zip(o.chunks_mut(d)).zip(mask.chunks(t)) {
            for (j, (z, krow)) in scores.iter_mut().zip(k.chunks(d)).enumerate() {
                *z = super::linear::dot(qrow, krow, bias.map_or(zero, |x| x[j]));
            }
            softmax_row_in_place(&mut scores, mrow, scale);
            orow.fill(zero);
            for (&p, vrow) in scores.iter().zip(v.chunks(d)) {
                for (o, &x) in orow.iter_mut().zip(vrow) {
                    *o += p * x;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The cache path equals the fused attention over the same keys made contiguous, with and
    /// without a key bias, for a shared and a per-row mask, several query rows, and a head size
    /// that is not a multiple of the 16 lanes.
    #[test]
    fn matches_the_fused_attention_over_the_same_keys() -> Result<()> {
        let dev = Device::Cpu;
        let (b, n, s, d, t, cap) = (3, 2, 2, 20, 7, 16);
        let q = Tensor::randn(0f32, 1.0, (b, n, s, d), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (b, n, cap, d), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (b, n, cap, d), &dev)?;
        let ones = Tensor::ones((1, 1, s, t), DType::F32, &dev)?;
        // Per row: some keys hidden (row 1 sees only its first three).
        let per_row = Tensor::from_vec(
            (0..b * s * t).map(|i| if (i / (s * t)) == 1 && i % t >= 3 { 0f32 } else { 1.0 }).collect::<Vec<_>>(),
            (b, 1, s, t),
            &dev,
        )?;
        let bias = Tensor::randn(0f32, 1.0, (b, 1, 1, t), &dev)?;
        let scale = 1.0 / (d as f64).sqrt();
        let (kt, vt) = (k.narrow(2, 0, t)?.contiguous()?, v.narrow(2, 0, t)?.contiguous()?);
        for (mask, bias) in [(&ones, None), (&per_row, None), (&per_row, Some(&bias)), (&ones, Some(&bias))] {
            let got = cached_attention(&q, &k, &v, t, mask, bias, scale)?;
            let want = super::super::attention(&q, &kt, &vt, mask, bias, scale, 0.0, 0)?;
            let worst = crate::ops::max_abs_diff(&got, &want)?;
            assert!(worst < 1e-5, "max abs difference {worst}");
        }
        // No query rows: an empty result, not a panic.
        let none = cached_attention(&q.narrow(2, 0, 0)?, &k, &v, t, &ones.narrow(2, 0, 0)?, None, scale)?;
        assert_eq!(none.dims(), &[b, n, 0, d]);
        // Misfits are errors, not panics.
        assert!(cached_attention(&q, &k, &v, cap + 1, &ones, None, scale).is_err());
        assert!(cached_attention(&q, &k.narrow(2, 0, t)?, &v, t, &ones, None, scale).is_err());
        Ok(())
    }
}
