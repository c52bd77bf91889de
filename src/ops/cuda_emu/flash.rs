//! The flash-attention kernels (`src/ops/cuda/flash.cuh`) on the CPU, their tensor-core products
//! emulated by the PTX ISA's fragment layouts (`emu.h`), against the CPU attention op: output,
//! dQ, dK and dV, with GLM's mask, key bias and dropout, tiles cut by the sequence ends, and both
//! a packed `[B, S, 3H]` projection and separate `[B, N, S|T, d]` heads, as
//! `ops::cuda::flash` launches them.

use super::attention::{case_data, cpu_attention, Case, Data};
use super::{assert_close_to_scale, both_orders, launch, with_float, Arg, Buf, TestResult};
use crate::ops::launch as plan;
use candle_core::{DType, WithDType};

fn strides(s: [usize; 3]) -> [Arg; 3] {
    s.map(|v| Arg::U64(v as u64))
}

/// `[B, N, R, d]` values into a `[B, R, W]` buffer at column offset `at` (head n at n·d), or back.
fn to_rows(x: &[f64], (_, n, r, d): (usize, usize, usize, usize), w: usize, at: usize, out: &mut [f64]) {
    for (i, v) in x.iter().enumerate() {
        let (e, row, head, bi) = (i % d, (i / d) % r, (i / (d * r)) % n, i / (d * r * n));
        out[(bi * r + row) * w + at + head * d + e] = *v;
    }
}
fn from_rows(buf: &[f64], (b, n, r, d): (usize, usize, usize, usize), w: usize, at: usize) -> Vec<f64> {
    (0..b * n * r * d)
        .map(|i| {
            let (e, row, head, bi) = (i % d, (i / d) % r, (i / (d * r)) % n, i / (d * r * n));
            buf[(bi * r + row) * w + at + head * d + e]
        })
        .collect()
}

/// The four kernels as the GPU glue runs them: output, dQ, dK, dV in `[B, N, S|T, d]`, then
/// the log-sum-exp rows.
fn emulated<T: WithDType>(c: &Case, suffix: &str, x: &Data, packed: bool, rev: bool) -> TestResult<Vec<f64>> {
    let (b, n, s, t, d) = (c.batch, c.heads, c.s, c.t, c.d);
    let (pairs, h) = (b * n, n * d);
    let size = std::mem::size_of::<T>();
    let (mixed, threshold, keep_scale) = if c.p > 0.0 { crate::ops::dropout::Mask::new(x.seed, c.p).kernel_params() } else { (0, 0, 1.0) };
    let mut mask = Buf::of::<T>("mask", &x.mask);
    let mut bias = Buf::of::<f64>("bias", &x.bias.iter().map(|v| v / x.scale).collect::<Vec<_>>());
    let (bias_arg, bias_rows) = if c.bias { (bias.ptr(), c.mask_batches as i32) } else { (Arg::Ptr(0), 0) };
    let common = [
        mask.ptr(),
        Arg::I32(c.mask_batches as i32),
        bias_arg,
        Arg::I32(bias_rows),
        Arg::I32(n as i32),
        Arg::I32(s as i32),
        Arg::I32(t as i32),
        Arg::F64(x.scale),
        Arg::U64(mixed),
        Arg::U64(threshold),
        Arg::F64(keep_scale),
    ];
    // Inputs, output and gradients: one packed projection (Q | K | V per row, the output and
    // its gradient [B, S, H]) or separate heads, as ops::cuda::flash lays them out.
    let layout = plan::FlashLayout::new(packed, (b, n, s, t, d));
    let (qs, ks, os) = (layout.q, layout.kv, layout.out);
    let (mut qkv, mut qb, mut kb, mut vb, mut gob);
    let (q_arg, k_arg, v_arg, go_arg) = if packed {
        let mut all = vec![0.0; b * s * 3 * h];
        for (part, src) in [&x.q, &x.k, &x.v].into_iter().enumerate() {
            to_rows(src, (b, n, s, d), 3 * h, part * h, &mut all);
        }
        let mut go = vec![0.0; b * s * h];
        to_rows(&x.go, (b, n, s, d), h, 0, &mut go);
        qkv = Buf::of::<T>("qkv", &all);
        gob = Buf::of::<T>("dO", &go);
        (qkv.ptr(), qkv.ptr_at(h * size), qkv.ptr_at(2 * h * size), gob.ptr())
    } else {
        (qb, kb, vb, gob) = (Buf::of::<T>("q", &x.q), Buf::of::<T>("k", &x.k), Buf::of::<T>("v", &x.v), Buf::of::<T>("dO", &x.go));
        (qb.ptr(), kb.ptr(), vb.ptr(), gob.ptr())
    };
    let mut out = Buf::uninit::<T>("out", b * s * h);
    let mut lse = Buf::uninit::<f32>("lse", pairs * s);
    // The dropout bits, kept with dropout as ops::cuda::flash keeps them: the backward kernels
    // read them (they never hash), so a wrong bit layout fails against the CPU op's gradients.
    let mut kept_bits = Buf::uninit::<u32>("dropout bits", plan::flash_bits_len(pairs, s, t));
    let bits_arg = if c.p > 0.0 { kept_bits.ptr() } else { Arg::Ptr(0) };
    let mut args = vec![q_arg, k_arg, v_arg, out.ptr(), lse.ptr(), bits_arg];
    args.extend(strides(qs).into_iter().chain(strides(ks)).chain(strides(os)));
    args.extend(common);
    launch(&format!("flash_fwd_{suffix}"), plan::flash(s, pairs), &args, rev)?;
    // Inference passes no log-sum-exp or bits buffer: the same output.
    let mut bare = Buf::uninit::<T>("out without L", b * s * h);
    (args[3], args[4], args[5]) = (bare.ptr(), Arg::Ptr(0), Arg::Ptr(0));
    launch(&format!("flash_fwd_{suffix}"), plan::flash(s, pairs), &args, rev)?;
    let exact = |v: Vec<f64>| v.into_iter().map(f64::to_bits).collect::<Vec<_>>();
    if exact(bare.read::<T>()?) != exact(out.read::<T>()?) {
        return Err("flash_fwd without a log-sum-exp buffer gave another output".into());
    }

    let mut dd = Buf::uninit::<f32>("D", pairs * s);
    let mut args = vec![out.ptr(), go_arg, dd.ptr()];
    args.extend(strides(os).into_iter().chain(strides(os)));
    args.extend([Arg::I32(n as i32), Arg::I32(s as i32), Arg::I32(d as i32), Arg::U64((pairs * s) as u64)]);
    launch(&format!("flash_bwd_dot_{suffix}"), plan::flash_dot(pairs * s), &args, rev)?;

    // The gradients: [B, S, 3H] like the projection, or [dQ | dK | dV].
    let mut grads = Buf::uninit::<T>("gradients", layout.grad_len);
    let [dq_at, dk_at, dv_at] = layout.grads;
    let (dq, dk, dv) = (grads.ptr_at(dq_at * size), grads.ptr_at(dk_at * size), grads.ptr_at(dv_at * size));
    let mut args = vec![q_arg, k_arg, v_arg, go_arg, lse.ptr(), dd.ptr(), bits_arg, dk, dv];
    args.extend(strides(qs).into_iter().chain(strides(ks)).chain(strides(os)));
    args.extend(common);
    launch(&format!("flash_bwd_kv_{suffix}"), plan::flash(t, pairs), &args, rev)?;
    let mut args = vec![q_arg, k_arg, v_arg, go_arg, lse.ptr(), dd.ptr(), bits_arg, dq];
    args.extend(strides(qs).into_iter().chain(strides(ks)).chain(strides(os)));
    args.extend(common);
    launch(&format!("flash_bwd_q_{suffix}"), plan::flash(s, pairs), &args, rev)?;
    let g = grads.read::<T>()?;

    let o = out.read::<T>()?;
    let mut all = if packed { from_rows(&o, (b, n, s, d), h, 0) } else { o };
    if packed {
        for part in 0..3 {
            all.extend(from_rows(&g, (b, n, s, d), 3 * h, part * h));
        }
    } else {
        all.extend(g);
    }
    all.extend(lse.read::<f32>()?);
    mask.read::<T>()?;
    bias.read::<f64>()?;
    Ok(all)
}

/// `blocked` leading keys get a −∞ key bias (a first key tile no query may see).
fn flash_case(c: Case, dtype: DType, suffix: &str, packed: bool, blocked: usize) -> TestResult {
    let mut x = case_data(&c, dtype);
    for row in x.bias.chunks_mut(c.t) {
        row[..blocked].fill(f64::NEG_INFINITY);
    }
    let want = cpu_attention(&c, &x)?;
    let (nq, nk) = (c.batch * c.heads * c.s * c.d, c.batch * c.heads * c.t * c.d);
    let what = format!("flash attention {suffix} {c:?}, packed {packed}");
    let got = both_orders(&what, 0.0, |rev| with_float!(dtype, |T| emulated::<T>(&c, suffix, &x, packed, rev)))?;
    // P' and dS are rounded to the storage type as the A operands of their products (the GEMM
    // path rounds P, P' and dS likewise). Measured: at most 5.8e-3 of the output's scale in
    // bf16, 4.9e-4 in f16; the bounds leave about 2×.
    let tol = if dtype == DType::F16 { 1e-3 } else { 1.2e-2 };
    let parts = [("output", 0, nq), ("dQ", nq, 2 * nq), ("dK", 2 * nq, 2 * nq + nk), ("dV", 2 * nq + nk, 2 * nq + 2 * nk)];
    for ((name, from, to), want) in parts.into_iter().zip(&want) {
        assert_close_to_scale(&format!("{what}: {name}"), &got[from..to], want, tol)?;
    }
    // The log-sum-exp rows are finite (every row has a key; masked rows see the uniform -65504).
    let lse = &got[2 * nq + 2 * nk..];
    if let Some(bad) = lse.iter().position(|v| !v.is_finite()) {
        return Err(format!("{what}: log-sum-exp row {bad} is {}", lse[bad]).into());
    }
    Ok(())
}

/// Flash attention against the CPU op: a packed self-attention over two query and key tiles
/// (the second cut at 70), with per-batch masks, key bias and dropout; separate heads with few
/// queries over three key tiles; both half types; a −∞ key bias over a whole key tile.
#[test]
fn flash_attention_matches_the_cpu_op() -> TestResult {
    let packed = Case { batch: 2, heads: 2, s: 70, t: 70, d: plan::FLASH_HEAD, mask_batches: 2, bias: true, p: 0.25, keep: true };
    let heads = Case { batch: 1, s: 5, t: 130, mask_batches: 1, bias: false, p: 0.0, ..packed };
    for (dtype, suffix) in [(DType::BF16, "bf16"), (DType::F16, "f16")] {
        flash_case(packed, dtype, suffix, true, 0)?;
        flash_case(heads, dtype, suffix, false, 0)?;
    }
    flash_case(Case { p: 0.1, bias: true, ..heads }, DType::BF16, "bf16", false, 0)?;
    // A −∞ bias on the whole first key tile (part A, seen by every query): the online softmax
    // starts from a max of −∞ there (exp(−∞ + ∞) would be NaN).
    flash_case(Case { bias: true, ..heads }, DType::BF16, "bf16", false, 64)
}
