//! The attention kernels on the CPU: the fused attention's two row kernels composed with the
//! GEMMs exactly as `ops::cuda::attention` composes them (the GEMMs here in f64, rounded to the
//! storage type as cuBLAS's output is), and the one-token decoding kernel; both against the CPU
//! attention op, forward and backward, with and without dropout, key bias and per-batch masks.

use super::{
    assert_close, assert_close_to_scale, both_orders, flat, grads, launch, rounded, t64, tolerance, values, with_float, Arg, Buf,
    TestResult, FLOATS,
};
use crate::ops::launch as plan;
use candle_core::{DType, Var, WithDType};

/// `a` `[pairs, m, k]` · `b` `[pairs, k, n]` (or `bᵀ` when `b_t`: `[pairs, n, k]`), `a` likewise
/// transposed when `a_t`, in f64, rounded to `dtype`.
#[allow(clippy::too_many_arguments)]
fn bmm(a: &[f64], a_t: bool, b: &[f64], b_t: bool, pairs: usize, m: usize, n: usize, k: usize, dtype: DType) -> Vec<f64> {
    let mut out = vec![0.0; pairs * m * n];
    for p in 0..pairs {
        let (ap, bp) = (&a[p * m * k..(p + 1) * m * k], &b[p * k * n..(p + 1) * k * n]);
        for i in 0..m {
            for j in 0..n {
                let at = |l: usize| if a_t { ap[l * m + i] } else { ap[i * k + l] };
                let bt = |l: usize| if b_t { bp[j * k + l] } else { bp[l * n + j] };
                out[(p * m + i) * n + j] = (0..k).map(|l| at(l) * bt(l)).sum();
            }
        }
    }
    rounded(&out, dtype)
}

/// One attention configuration.
#[derive(Debug, Clone, Copy)]
pub(super) struct Case {
    pub batch: usize,
    pub heads: usize,
    pub s: usize,
    pub t: usize,
    pub d: usize,
    pub mask_batches: usize,
    pub bias: bool,
    pub p: f64,
    /// The forward pass keeps P (and P') for the backward (else the backward recomputes them).
    pub keep: bool,
}

/// The inputs of one case: Q, K, V, the output gradient, the mask and key bias rows (f64 values
/// already rounded to the storage type), the scale and the dropout seed.
#[derive(Clone)]
pub(super) struct Data {
    pub q: Vec<f64>,
    pub k: Vec<f64>,
    pub v: Vec<f64>,
    pub go: Vec<f64>,
    pub mask: Vec<f64>,
    pub bias: Vec<f64>,
    pub scale: f64,
    pub seed: u64,
}

/// The CPU op's output and gradients of q, k, v for the output gradient `go`.
pub(super) fn cpu_attention(c: &Case, x: &Data) -> TestResult<Vec<Vec<f64>>> {
    let Data { q, k, v, go, mask, bias, scale, seed } = x;
    let (scale, seed) = (*scale, *seed);
    let (b, n, s, t, d) = (c.batch, c.heads, c.s, c.t, c.d);
    let qv = Var::from_tensor(&t64(q, &[b, n, s, d])?)?;
    let kv = Var::from_tensor(&t64(k, &[b, n, t, d])?)?;
    let vv = Var::from_tensor(&t64(v, &[b, n, t, d])?)?;
    let bias_t = if c.bias { Some(t64(bias, &[c.mask_batches, 1, 1, t])?) } else { None };
    let out = crate::ops::attention(
        qv.as_tensor(),
        kv.as_tensor(),
        vv.as_tensor(),
        &t64(mask, &[c.mask_batches, 1, s, t])?,
        bias_t.as_ref(),
        scale,
        c.p,
        seed,
    )?;
    let mut all = vec![flat(&out)?];
    all.extend(grads(&out, &t64(go, &[b, n, s, d])?, &[&qv, &kv, &vv])?);
    Ok(all)
}

/// The GPU glue's forward and backward (`ops::cuda::attention::{forward, backward}`) with the
/// row kernels emulated: output, dQ, dK, dV, concatenated.
fn emulated<T: WithDType>(c: &Case, dtype: DType, suffix: &str, x: &Data, allow_warp: bool, rev: bool) -> TestResult<Vec<f64>> {
    let Data { q, k, v, go, mask, bias, scale, seed } = x;
    let (scale, seed) = (*scale, *seed);
    let (pairs, s, t, d) = (c.batch * c.heads, c.s, c.t, c.d);
    let rows = pairs * s;
    let team = plan::attention_rows(rows, t, allow_warp);
    let rows_arg = team.warp.then_some(Arg::U64(rows as u64)); // the warp kernels' last argument
    let (mixed, threshold, keep_scale) = if c.p > 0.0 { crate::ops::dropout::Mask::new(seed, c.p).kernel_params() } else { (0, 0, 1.0) };
    let dropout = threshold > 0;
    let mut mask_b = Buf::of::<T>("mask", mask);
    // The key bias on the device is f64 rows, divided by scale.
    let mut bias_b = Buf::of::<f64>("bias", &bias.iter().map(|x| x / scale).collect::<Vec<_>>());
    let (bias_arg, bias_rows) = if c.bias { (bias_b.ptr(), c.mask_batches as i32) } else { (Arg::Ptr(0), 0) };
    let row_args = |mask_b: &mut Buf| {
        [
            mask_b.ptr(),
            bias_arg,
            Arg::I32(bias_rows),
            Arg::I32(c.heads as i32),
            Arg::I32(s as i32),
            Arg::I32(t as i32),
            Arg::I32(c.mask_batches as i32),
            Arg::F64(scale),
        ]
    };
    let probs_fwd = |scores: &[f64], mode: i32, mask_b: &mut Buf| -> TestResult<(Vec<f64>, Option<Vec<f64>>)> {
        let mut sc = Buf::of::<T>("scores", scores);
        let mut pd = Buf::uninit::<T>("P'", rows * t);
        let pd_arg = if mode == 3 { pd.ptr() } else { Arg::Ptr(0) };
        let mut args = vec![sc.ptr(), pd_arg];
        args.extend(row_args(mask_b));
        args.extend([Arg::U64(mixed), Arg::U64(threshold), Arg::F64(keep_scale), Arg::I32(mode)]);
        args.extend(rows_arg);
        launch(&team.kernel("attn_probs_fwd", suffix), team.launch, &args, rev)?;
        let dropped = if mode == 3 { Some(pd.read::<T>()?) } else { pd.read::<u8>().map(|_| None)? };
        Ok((sc.read::<T>()?, dropped))
    };
    let dropout_of = |probs: &[f64]| -> TestResult<Vec<f64>> {
        let (mut x, mut y) = (Buf::of::<T>("P", probs), Buf::uninit::<T>("P'", rows * t));
        let args = [x.ptr(), y.ptr(), Arg::U64((rows * t) as u64), Arg::U64(mixed), Arg::U64(threshold), Arg::F64(keep_scale)];
        launch(&format!("dropout_fwd_{suffix}"), plan::elementwise_packed(rows * t, std::mem::size_of::<T>()), &args, rev)?;
        y.read::<T>()
    };
    // Forward: scores = Q·Kᵀ, the row kernel, out = P'·V.
    let scores = bmm(q, false, k, true, pairs, s, t, d, dtype);
    let mode = match (dropout, c.keep) {
        (false, _) => 0,
        (true, false) => 1,
        (true, true) => 3,
    };
    let (probs, dropped) = probs_fwd(&scores, mode, &mut mask_b)?;
    let out = bmm(dropped.as_ref().unwrap_or(&probs), false, v, false, pairs, s, d, t, dtype);
    // Backward: P and P' kept, or recomputed (P by the row kernel, P' by the dropout kernel).
    let (probs, dropped) = if c.keep || !dropout {
        if c.keep {
            (probs, dropped)
        } else {
            (probs_fwd(&scores, 0, &mut mask_b)?.0, None)
        }
    } else {
        let p = probs_fwd(&scores, 0, &mut mask_b)?.0;
        let pd = dropout_of(&p)?;
        (p, Some(pd))
    };
    let weights = dropped.as_ref().unwrap_or(&probs);
    let dv = bmm(weights, true, go, false, pairs, t, d, s, dtype);
    let dp = bmm(go, false, v, true, pairs, s, t, d, dtype);
    let (mut dp_b, mut p_b) = (Buf::of::<T>("dP'", &dp), Buf::of::<T>("P", &probs));
    let mut pd_b = dropped.as_ref().map(|pd| Buf::of::<T>("P'", pd));
    let pd_arg = pd_b.as_mut().map_or(Arg::Ptr(0), Buf::ptr);
    let mut args = vec![
        dp_b.ptr(),
        p_b.ptr(),
        pd_arg,
        mask_b.ptr(),
        Arg::I32(c.heads as i32),
        Arg::I32(s as i32),
        Arg::I32(t as i32),
        Arg::I32(c.mask_batches as i32),
        Arg::F64(scale),
    ];
    args.extend(rows_arg);
    launch(&team.kernel("attn_probs_bwd", suffix), team.launch, &args, rev)?;
    let ds = dp_b.read::<T>()?;
    p_b.read::<T>()?;
    let dq = bmm(&ds, false, k, false, pairs, s, d, t, dtype);
    let dk = bmm(&ds, true, q, false, pairs, t, d, s, dtype);
    bias_b.read::<f64>()?;
    mask_b.read::<T>()?;
    Ok([out, dq, dk, dv].concat())
}

/// The inputs of case `c` in `dtype`: Q, K, V and the output gradient in `[B, N, S|T, d]`, GLM's
/// mask (part A, the first t/2 keys less the mask batch's index, seen by every query; part B
/// causally) and key bias rows.
pub(super) fn case_data(c: &Case, dtype: DType) -> Data {
    let (b, n, s, t, d) = (c.batch, c.heads, c.s, c.t, c.d);
    let (scale, seed) = (1.0 / (d as f64).sqrt(), 77);
    let q = rounded(&values(b * n * s * d, 30, 1.5), dtype);
    let k = rounded(&values(b * n * t * d, 31, 1.5), dtype);
    let v = rounded(&values(b * n * t * d, 32, 1.0), dtype);
    let go = rounded(&values(b * n * s * d, 33, 1.0), dtype);
    let mask: Vec<f64> = (0..c.mask_batches * s * t)
        .map(|i| {
            let (mb, row, col) = (i / (s * t), (i / t) % s, i % t);
            let prefix = t / 2 - mb.min(t / 4);
            f64::from(u8::from(col < prefix || col <= row + (t - s)))
        })
        .collect();
    let bias = rounded(&values(c.mask_batches * t, 34, 0.5), dtype);
    Data { q, k, v, go, mask, bias, scale, seed }
}

fn attention_case(c: Case, dtype: DType, suffix: &str) -> TestResult {
    let (b, n, s, t, d) = (c.batch, c.heads, c.s, c.t, c.d);
    let x = case_data(&c, dtype);
    let want = cpu_attention(&c, &x)?;
    // Scores, probabilities and gradients pass through the storage type between the GEMMs.
    let tol = match dtype {
        DType::F64 => 1e-9,
        DType::F32 => 2e-5,
        DType::F16 => 4e-3,
        _ => 3e-2,
    };
    let (nq, nk) = (b * n * s * d, b * n * t * d);
    let parts = [("output", 0, nq), ("dQ", nq, 2 * nq), ("dK", 2 * nq, 2 * nq + nk), ("dV", 2 * nq + nk, 2 * nq + 2 * nk)];
    // A block per row, and a warp per row where the row fits.
    for allow_warp in [false, true] {
        let what = format!("attention {suffix} {c:?}, warp rows allowed: {allow_warp}");
        let got = both_orders(&what, 0.0, |rev| with_float!(dtype, |T| emulated::<T>(&c, dtype, suffix, &x, allow_warp, rev)))?;
        for ((name, from, to), want) in parts.into_iter().zip(&want) {
            assert_close_to_scale(&format!("{what}: {name}"), &got[from..to], want, tol)?;
        }
    }
    Ok(())
}

/// The fused attention's row kernels as the GPU pass composes them, against the CPU op: every
/// float type, with dropout (P' kept, or recomputed by the backward), key bias and per-batch
/// masks.
#[test]
fn fused_attention_matches_the_cpu_op() -> TestResult {
    let base = Case { batch: 2, heads: 2, s: 12, t: 12, d: 8, mask_batches: 1, bias: false, p: 0.0, keep: true };
    for (dtype, suffix) in FLOATS {
        attention_case(base, dtype, suffix)?;
        attention_case(Case { p: 0.25, mask_batches: 2, bias: true, ..base }, dtype, suffix)?;
        attention_case(Case { p: 0.25, keep: false, bias: true, ..base }, dtype, suffix)?;
    }
    // Longer key rows (256 threads per row), and queries fewer than keys (a prefix of memory);
    // the longest rows a warp keeps in registers (every lane's last slot), and one key more
    // (a block per row again).
    for (t, dtype, suffix) in [(300, DType::F32, "f32"), (1024, DType::BF16, "bf16"), (1025, DType::F32, "f32")] {
        attention_case(Case { batch: 1, s: 3, t, mask_batches: 1, p: 0.1, ..base }, dtype, suffix)?;
    }
    attention_case(Case { s: 3, t: 300, mask_batches: 2, p: 0.1, ..base }, DType::F32, "f32")
}

/// Rows longer than the registers hold (over 8 × 1,024 keys): the kernels' three-pass path.
#[test]
fn fused_attention_long_rows_match() -> TestResult {
    let c = Case { batch: 1, heads: 1, s: 2, t: 8200, d: 4, mask_batches: 1, bias: true, p: 0.1, keep: true };
    attention_case(c, DType::F32, "f32")
}

/// One decoding step: `decode_attention` appends the new key and value to the caches and attends
/// over them, as the CPU attention op does over the same keys.
#[test]
fn decode_attention_matches_the_cpu_op() -> TestResult {
    for (dtype, suffix) in FLOATS {
        for (d, mask_batches, key_bias) in [(64, 1, false), (40, 2, true), (256, 2, false)] {
            decode_case(dtype, suffix, d, mask_batches, key_bias)?;
        }
    }
    Ok(())
}

fn decode_case(dtype: DType, suffix: &str, d: usize, mask_batches: usize, key_bias: bool) -> TestResult {
    let (b, n, cap, len) = (2, 2, 12, 9);
    let (h, t, scale) = (n * d, len + 1, 1.0 / (d as f64).sqrt());
    let y = rounded(&values(b * 3 * h, 50, 1.5), dtype);
    let qkv_bias = rounded(&values(3 * h, 51, 0.3), dtype);
    let kc = rounded(&values(b * n * cap * d, 52, 1.5), dtype);
    let vc = rounded(&values(b * n * cap * d, 53, 1.0), dtype);
    let mask: Vec<f64> = (0..mask_batches * t).map(|i| f64::from(u8::from(i % t != 2 + i / t))).collect();
    let kb = rounded(&values(mask_batches * t, 54, 0.5), dtype);
    // The new token's q, k, v with their bias, rounded as the kernel stores the cache entries.
    let part = |bi: usize, which: usize, head: usize| -> Vec<f64> {
        (0..d).map(|e| y[bi * 3 * h + which * h + head * d + e] + qkv_bias[which * h + head * d + e]).collect()
    };
    let mut keys = Vec::new();
    let mut vals = Vec::new();
    let mut q = Vec::new();
    for bi in 0..b {
        for head in 0..n {
            q.extend(part(bi, 0, head));
            let base = (bi * n + head) * cap * d;
            keys.extend_from_slice(&kc[base..base + len * d]);
            keys.extend(rounded(&part(bi, 1, head), dtype));
            vals.extend_from_slice(&vc[base..base + len * d]);
            vals.extend(rounded(&part(bi, 2, head), dtype));
        }
    }
    let bias_t = key_bias.then(|| t64(&kb, &[mask_batches, 1, 1, t])).transpose()?;
    let out = crate::ops::attention(
        &t64(&q, &[b, n, 1, d])?,
        &t64(&keys, &[b, n, t, d])?,
        &t64(&vals, &[b, n, t, d])?,
        &t64(&mask, &[mask_batches, 1, 1, t])?,
        bias_t.as_ref(),
        scale,
        0.0,
        0,
    )?;
    let want = flat(&out.transpose(1, 2)?.contiguous()?)?; // [B, N, 1, d] → [B, H]
    let what = format!("decode_attention_{suffix} d {d}, mask batches {mask_batches}, key bias {key_bias}");
    let got = both_orders(&what, 0.0, |rev| {
        with_float!(dtype, |T| {
            let (mut yb, mut bb, mut kb_c, mut vb_c) =
                (Buf::of::<T>("y", &y), Buf::of::<T>("qkv bias", &qkv_bias), Buf::of::<T>("k cache", &kc), Buf::of::<T>("v cache", &vc));
            let (mut mb, mut kbb, mut ob) = (Buf::of::<T>("mask", &mask), Buf::of::<T>("key bias", &kb), Buf::uninit::<T>("out", b * h));
            let kb_arg = if key_bias { kbb.ptr() } else { Arg::Ptr(0) };
            let kb_rows = if key_bias { mask_batches as i32 } else { 0 };
            let args = [
                yb.ptr(),
                bb.ptr(),
                kb_c.ptr(),
                vb_c.ptr(),
                mb.ptr(),
                Arg::I32(mask_batches as i32),
                kb_arg,
                Arg::I32(kb_rows),
                ob.ptr(),
                Arg::I32(n as i32),
                Arg::I32(d as i32),
                Arg::I32(cap as i32),
                Arg::I32(len as i32),
                Arg::F64(scale),
            ];
            launch(&format!("decode_attention_{suffix}"), plan::decode_attention(b, n, d, t, dtype), &args, rev)?;
            let mut all = ob.read::<T>()?;
            all.extend(kb_c.read::<T>()?);
            all.extend(vb_c.read::<T>()?);
            Ok(all)
        })
    })?;
    assert_close(&format!("{what}: context"), &got[..b * h], &want, tolerance(dtype) * 2.0)?;
    // The caches: position `len` of every (row, head) written, the rest untouched.
    let (kc_got, vc_got) = got[b * h..].split_at(kc.len());
    for (name, cache, old, which) in [("key", kc_got, &kc, 1), ("value", vc_got, &vc, 2)] {
        for bi in 0..b {
            for head in 0..n {
                let base = (bi * n + head) * cap * d;
                let new = rounded(&part(bi, which, head), dtype);
                assert_close(&format!("{what}: new {name}"), &cache[base + len * d..base + t * d], &new, 0.0)?;
                assert_close(&format!("{what}: old {name}s"), &cache[base..base + len * d], &old[base..base + len * d], 0.0)?;
                assert_close(
                    &format!("{what}: free {name} slots"),
                    &cache[base + t * d..base + cap * d],
                    &old[base + t * d..base + cap * d],
                    0.0,
                )?;
            }
        }
    }
    Ok(())
}
