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

/// The tile skip flags `flash_tiles` must write (`fa_tile_row` in flash.cuh), from the mask
/// values: 0 for a tile whose mask is all 0, unless its query tile holds a row with no visible key.
fn expected_tiles(mask: &[f64], mask_batches: usize, s: usize, t: usize) -> Vec<f64> {
    let tile = plan::FLASH_TILE;
    let visible = |m: usize, i: usize, keys: std::ops::Range<usize>| keys.into_iter().any(|j| mask[(m * s + i) * t + j] != 0.0);
    let mut flags = Vec::with_capacity(plan::flash_tiles_len(mask_batches, s, t));
    for m in 0..mask_batches {
        for qt in 0..s.div_ceil(tile) {
            let rows = qt * tile..s.min((qt + 1) * tile);
            let every_row = rows.clone().all(|i| visible(m, i, 0..t));
            for kt in 0..t.div_ceil(tile) {
                let any = rows.clone().any(|i| visible(m, i, kt * tile..t.min((kt + 1) * tile)));
                flags.push(if any || !every_row { 1.0 } else { 0.0 });
            }
        }
    }
    flags
}

/// The four kernels as the GPU glue runs them: output, dQ, dK, dV in `[B, N, S|T, d]`, then
/// the log-sum-exp rows. Without a key bias, `flash_tiles` first writes the tile skip flags
/// (checked against [`expected_tiles`]) and the kernels skip what they mark.
fn emulated<T: WithDType>(c: &Case, suffix: &str, x: &Data, packed: bool, rev: bool) -> TestResult<Vec<f64>> {
    let (b, n, s, t, d) = (c.batch, c.heads, c.s, c.t, c.d);
    let (pairs, h) = (b * n, n * d);
    let size = std::mem::size_of::<T>();
    let (mixed, threshold, keep_scale) = if c.p > 0.0 { crate::ops::dropout::Mask::new(x.seed, c.p).kernel_params() } else { (0, 0, 1.0) };
    let mut mask = Buf::of::<T>("mask", &x.mask);
    let mut bias = Buf::of::<f64>("bias", &x.bias.iter().map(|v| v / x.scale).collect::<Vec<_>>());
    let (bias_arg, bias_rows) = if c.bias { (bias.ptr(), c.mask_batches as i32) } else { (Arg::Ptr(0), 0) };
    let mut tiles = Buf::uninit::<u8>("tile flags", plan::flash_tiles_len(c.mask_batches, s, t));
    let tiles_arg = if c.bias {
        Arg::Ptr(0)
    } else {
        let args = [mask.ptr(), Arg::I32(s as i32), Arg::I32(t as i32), tiles.ptr()];
        launch(&format!("flash_tiles_{suffix}"), plan::flash_tiles(s, c.mask_batches), &args, rev)?;
        if tiles.read::<u8>()? != expected_tiles(&x.mask, c.mask_batches, s, t) {
            return Err(format!(
                "flash_tiles wrote {:?}, expected {:?}",
                tiles.read::<u8>()?,
                expected_tiles(&x.mask, c.mask_batches, s, t)
            )
            .into());
        }
        tiles.ptr()
    };
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
        tiles_arg,
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

/// One case against the CPU op; `edit` changes its data first (a −∞ bias, a blank mask row), and
/// `poison` the kernels' copy only (values they must never read).
fn flash_case(c: Case, dtype: DType, suffix: &str, packed: bool, edit: impl Fn(&mut Data), poison: impl Fn(&mut Data)) -> TestResult {
    let mut x = case_data(&c, dtype);
    edit(&mut x);
    let want = cpu_attention(&c, &x)?;
    let mut x = x.clone();
    poison(&mut x);
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
/// queries over three key tiles; both half types; a −∞ key bias over a whole key tile; and
/// skipped tiles: GLM masks without a key bias, with and without a query row that sees no key.
#[test]
fn flash_attention_matches_the_cpu_op() -> TestResult {
    let packed = Case { batch: 2, heads: 2, s: 70, t: 70, d: plan::FLASH_HEAD, mask_batches: 2, bias: true, p: 0.25, keep: true };
    let heads = Case { batch: 1, s: 5, t: 130, mask_batches: 1, bias: false, p: 0.0, ..packed };
    let unchanged = |_: &mut Data| {};
    for (dtype, suffix) in [(DType::BF16, "bf16"), (DType::F16, "f16")] {
        flash_case(packed, dtype, suffix, true, unchanged, unchanged)?;
        flash_case(heads, dtype, suffix, false, unchanged, unchanged)?;
    }
    flash_case(Case { p: 0.1, bias: true, ..heads }, DType::BF16, "bf16", false, unchanged, unchanged)?;
    // A −∞ bias on the whole first key tile (part A, seen by every query): the online softmax
    // starts from a max of −∞ there (exp(−∞ + ∞) would be NaN).
    flash_case(
        Case { bias: true, ..heads },
        DType::BF16,
        "bf16",
        false,
        |x| {
            for row in x.bias.chunks_mut(heads.t) {
                row[..64].fill(f64::NEG_INFINITY);
            }
        },
        unchanged,
    )?;
    // Skipped tiles. S = T = 70: part A's queries skip the second key tile. S = T = 200 over four
    // tiles: 5 of 16 skipped, so the prefetch jumps over tiles in all three kernels.
    let skips = |c: &Case, x: &Data| expected_tiles(&x.mask, c.mask_batches, c.s, c.t).iter().filter(|&&f| f == 0.0).count();
    let glm = Case { bias: false, ..packed };
    let long = Case { batch: 1, heads: 2, s: 200, t: 200, mask_batches: 1, p: 0.1, ..glm };
    assert_eq!((skips(&glm, &case_data(&glm, DType::BF16)), skips(&long, &case_data(&long, DType::BF16))), (2, 5));
    flash_case(glm, DType::BF16, "bf16", true, unchanged, unchanged)?;
    flash_case(long, DType::F16, "f16", true, unchanged, unchanged)?;
    // Query row 3 sees no key (its softmax is uniform over all keys): its query tile skips
    // nothing; the other query tiles still skip theirs.
    let blank_row = |x: &mut Data| x.mask[3 * long.t..4 * long.t].fill(0.0);
    let mut x = case_data(&long, DType::BF16);
    blank_row(&mut x);
    assert_eq!(skips(&long, &x), 3);
    flash_case(long, DType::BF16, "bf16", true, blank_row, unchanged)?;
    // Keys 192..199 masked for every query (padding) and NaN in the kernels' K and V (zero in the
    // CPU op's): skipped in all three kernels, so never read. A kernel that read them would turn
    // its output NaN (a masked score is s·0 − 65504·1).
    let padded = |x: &mut Data| {
        for row in x.mask.chunks_mut(long.t) {
            row[192..].fill(0.0);
        }
        for head in x.k.chunks_mut(long.t * long.d).chain(x.v.chunks_mut(long.t * long.d)) {
            head[192 * long.d..].fill(0.0);
        }
    };
    let poisoned = |x: &mut Data| {
        for head in x.k.chunks_mut(long.t * long.d).chain(x.v.chunks_mut(long.t * long.d)) {
            head[192 * long.d..].fill(f64::NAN);
        }
    };
    let mut x = case_data(&long, DType::BF16);
    padded(&mut x);
    assert_eq!(skips(&long, &x), 6);
    flash_case(long, DType::BF16, "bf16", true, padded, poisoned)
}
