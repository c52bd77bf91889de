//! The row and element-wise kernels on the CPU against the CPU ops (f64 references from the
//! same rounded inputs), in all four float types, both thread orders.

use super::{assert_close, both_orders, flat, grads, launch, rounded, t64, tolerance, values, with_float, Arg, Buf, TestResult, FLOATS};
use crate::ops::launch as plan;
use candle_core::{DType, Device, Tensor, Var, WithDType};

fn layer_norm_case<T: WithDType>(dtype: DType, suffix: &str, rows: usize, h: usize, allow_warp: bool) -> TestResult {
    let team = plan::layer_norm_rows(rows, h, allow_warp);
    // The warp kernels take the row count last.
    let rows_arg = team.warp.then_some(Arg::U64(rows as u64));
    let eps = 1e-5;
    let x = rounded(&values(rows * h, 1, 2.0).iter().enumerate().map(|(i, v)| v + (i % 7) as f64 * 0.3).collect::<Vec<_>>(), dtype);
    let g = rounded(&values(h, 2, 1.0).iter().map(|v| 1.0 + v * 0.5).collect::<Vec<_>>(), dtype);
    let b = rounded(&values(h, 3, 0.5), dtype);
    let dy = rounded(&values(rows * h, 4, 1.0), dtype);
    let xv = Var::from_tensor(&t64(&x, &[rows, h])?)?;
    let (gv, bv) = (Var::from_tensor(&t64(&g, &[h])?)?, Var::from_tensor(&t64(&b, &[h])?)?);
    let y = crate::ops::layer_norm(xv.as_tensor(), gv.as_tensor(), bv.as_tensor(), eps)?;
    let want = grads(&y, &t64(&dy, &[rows, h])?, &[&xv, &gv, &bv])?;
    let tol = tolerance(dtype);
    let what = format!("{} [{rows}, {h}]", team.kernel("layer_norm_fwd", suffix));
    let got = both_orders(&what, 0.0, |rev| {
        let (mut xb, mut gb, mut bb, mut yb) =
            (Buf::of::<T>("x", &x), Buf::of::<T>("g", &g), Buf::of::<T>("b", &b), Buf::uninit::<T>("y", rows * h));
        let mut args = vec![xb.ptr(), gb.ptr(), bb.ptr(), yb.ptr(), Arg::I32(h as i32), Arg::F32(eps as f32)];
        args.extend(rows_arg);
        launch(&team.kernel("layer_norm_fwd", suffix), team.launch, &args, rev)?;
        yb.read::<T>()
    })?;
    assert_close(&what, &got, &flat(&y)?, tol)?;
    // dx, then dγ and dβ from the column sums, as `layer_norm_backward` launches them.
    let what = format!("{} + column sums [{rows}, {h}]", team.kernel("layer_norm_bwd_dx", suffix));
    let got = both_orders(&what, 0.0, |rev| {
        let (mut xb, mut gb, mut dyb) = (Buf::of::<T>("x", &x), Buf::of::<T>("g", &g), Buf::of::<T>("dy", &dy));
        let (mut dx, mut stats) = (Buf::uninit::<T>("dx", rows * h), Buf::zeros::<f64>("stats", 2 * rows));
        let mut args = vec![xb.ptr(), gb.ptr(), dyb.ptr(), dx.ptr(), stats.ptr(), Arg::I32(h as i32), Arg::F32(eps as f32)];
        args.extend(rows_arg);
        launch(&team.kernel("layer_norm_bwd_dx", suffix), team.launch, &args, rev)?;
        let mut tail = Buf::uninit::<T>("dγ|dβ", 2 * h);
        column_sums(suffix, Some((&mut xb, &mut stats)), &mut dyb, &mut tail, rows, h, ColumnRun::default(), rev)?;
        let mut all = dx.read::<T>()?;
        all.extend(tail.read::<T>()?);
        stats.read::<f64>()?;
        Ok(all)
    })?;
    assert_close(&format!("{what}: dx"), &got[..rows * h], &want[0], tol)?;
    assert_close(&format!("{what}: dγ"), &got[rows * h..rows * h + h], &want[1], tol)?;
    assert_close(&format!("{what}: dβ"), &got[rows * h + h..], &want[2], tol)
}

/// A decoding step's sublayer end: `xo = x + (y + b)` and `n = layer_norm(xo)` in one row kernel,
/// against the CPU ops (f64 from the same rounded inputs), and n against the layer norm kernel
/// on the kernel's xo, to the bit.
fn bias_residual_layer_norm_case<T: WithDType>(dtype: DType, suffix: &str, rows: usize, h: usize, allow_warp: bool) -> TestResult {
    let team = plan::layer_norm_rows(rows, h, allow_warp);
    let eps = 1e-5;
    let y = rounded(&values(rows * h, 21, 2.0), dtype);
    let b = rounded(&values(h, 22, 0.5), dtype);
    let x = rounded(&values(rows * h, 23, 1.5).iter().enumerate().map(|(i, v)| v + (i % 5) as f64 * 0.2).collect::<Vec<_>>(), dtype);
    let g = rounded(&values(h, 24, 1.0).iter().map(|v| 1.0 + v * 0.5).collect::<Vec<_>>(), dtype);
    let beta = rounded(&values(h, 25, 0.5), dtype);
    let sum = (t64(&x, &[rows, h])? + t64(&y, &[rows, h])?.broadcast_add(&t64(&b, &[h])?)?)?;
    let (gt, bt) = (t64(&g, &[h])?, t64(&beta, &[h])?);
    let what = format!("{} [{rows}, {h}]", team.kernel("bias_residual_layer_norm", suffix));
    let got = both_orders(&what, 0.0, |rev| {
        let mut bufs = [("y", &y), ("b", &b), ("x", &x), ("g", &g), ("beta", &beta)].map(|(n, v)| Buf::of::<T>(n, v));
        let (mut xo, mut n) = (Buf::uninit::<T>("xo", rows * h), Buf::uninit::<T>("n", rows * h));
        let mut args: Vec<Arg> = bufs.iter_mut().map(|b| b.ptr()).collect();
        args.extend([xo.ptr(), n.ptr(), Arg::I32(h as i32), Arg::F32(eps as f32)]);
        // The warp kernel takes the row count last.
        args.extend(team.warp.then_some(Arg::U64(rows as u64)));
        launch(&team.kernel("bias_residual_layer_norm", suffix), team.launch, &args, rev)?;
        let mut all = xo.read::<T>()?;
        all.extend(n.read::<T>()?);
        Ok(all)
    })?;
    let tol = tolerance(dtype);
    assert_close(&format!("{what}: x + (y + b)"), &got[..rows * h], &flat(&sum)?, tol)?;
    // The norm reads the sum as the kernel stored it (rounded to T).
    let normed = crate::ops::layer_norm(&t64(&got[..rows * h], &[rows, h])?, &gt, &bt, eps)?;
    assert_close(&format!("{what}: layer norm"), &got[rows * h..], &flat(&normed)?, tol)?;
    // Exactly the layer norm kernel on the sum the kernel wrote.
    let alone = {
        let (mut xb, mut gb, mut bb, mut yb) =
            (Buf::of::<T>("x", &got[..rows * h]), Buf::of::<T>("g", &g), Buf::of::<T>("b", &beta), Buf::uninit::<T>("y", rows * h));
        let mut args = vec![xb.ptr(), gb.ptr(), bb.ptr(), yb.ptr(), Arg::I32(h as i32), Arg::F32(eps as f32)];
        args.extend(team.warp.then_some(Arg::U64(rows as u64)));
        launch(&team.kernel("layer_norm_fwd", suffix), team.launch, &args, false)?;
        yb.read::<T>()?
    };
    assert_close(&format!("{what}: against layer_norm_fwd"), &got[rows * h..], &alone, 0.0)
}

/// The decoding steps' bias + residual + layer norm at batch 1 and 32 of GLM-Large's 1,024
/// channels (a warp per row, and a block per row), an odd width and a wide row.
#[test]
fn bias_residual_layer_norm_matches_the_cpu_ops() -> TestResult {
    every_row_team(&[(1, 1024), (32, 1024), (3, 70), (2, 2100)], |dtype, suffix, rows, h, allow_warp| {
        with_float!(dtype, |T| bias_residual_layer_norm_case::<T>(dtype, suffix, rows, h, allow_warp))
    })
}

/// Runs `case(dtype, suffix, rows, h, allow_warp)` for every float type and `[rows, h]` shape,
/// with a block per row and with a warp per row where the plan allows it.
fn every_row_team(shapes: &[(usize, usize)], case: impl Fn(DType, &str, usize, usize, bool) -> TestResult) -> TestResult {
    for (dtype, suffix) in FLOATS {
        for &(rows, h) in shapes {
            for allow_warp in [false, true] {
                case(dtype, suffix, rows, h, allow_warp)?;
            }
        }
    }
    Ok(())
}

/// How [`column_sums`] runs: `dy` this many bytes into its buffer (a misaligned view), and the
/// packed kernel where the plan picks it or the one-column-per-thread kernel always.
#[derive(Clone, Copy, Default)]
struct ColumnRun {
    dy_at: usize,
    scalar: bool,
}

/// `column_partial` + `column_final` as `ops::cuda::column_sums` launches them: with `x` and the
/// row stats, Σ dy·x̂ and Σ dy into `dst` (2h); without, Σ dy (h).
#[allow(clippy::too_many_arguments)]
fn column_sums(
    suffix: &str,
    xs: Option<(&mut Buf, &mut Buf)>,
    dy: &mut Buf,
    dst: &mut Buf,
    rows: usize,
    h: usize,
    how: ColumnRun,
    rev: bool,
) -> TestResult {
    let blocks = plan::column_blocks(rows);
    let mut part = Buf::zeros::<f64>("column partial sums", blocks * 2 * h);
    let with_stats = xs.is_some();
    let (x, stats) = match xs {
        Some((x, s)) => (x.ptr(), s.ptr()),
        None => (Arg::Ptr(0), Arg::Ptr(0)),
    };
    let args = [
        x,
        dy.ptr_at(how.dy_at),
        stats,
        part.ptr(),
        Arg::I32(rows as i32),
        Arg::I32(h as i32),
        Arg::I32(plan::COLUMN_ROWS_PER_BLOCK as i32),
    ];
    let mut columns = plan::column_partial(rows, h, dy.bytes / (rows * h).max(1));
    if how.scalar {
        let grid = [h.div_ceil(32) as u32, blocks as u32, 1];
        columns = plan::ColumnPlan { launch: plan::Launch { grid, ..columns.launch }, packed: false };
    }
    let packed = launch(&columns.kernel(suffix), columns.launch, &args, rev)?;
    // Packed loads exactly where the plan packs columns and the rows are aligned.
    let aligned = how.dy_at.is_multiple_of(16) && dy.address().is_multiple_of(16);
    assert_eq!(packed > 0, columns.packed && aligned, "{}: {packed} threads read 16-byte packs", columns.kernel(suffix));
    let (first, slots) = if with_stats { (0, 2) } else { (1, 1) };
    let args = [part.ptr(), dst.ptr(), Arg::I32(blocks as i32), Arg::I32(h as i32), Arg::I32(first), Arg::I32(slots)];
    launch(&format!("column_final_{suffix}"), plan::column_final(h), &args, rev)?;
    part.read::<f64>().map(|_| ())
}

/// Layer norm at the three block sizes (128, 256, 1,024 threads) and with a warp per row (9 rows:
/// the last block's other warps have none), with several row blocks of column sums, in every
/// float type.
#[test]
fn layer_norm_matches_the_cpu_op() -> TestResult {
    every_row_team(&[(300, 48), (5, 700), (2, 2100), (9, 768)], |dtype, suffix, rows, h, allow_warp| {
        with_float!(dtype, |T| layer_norm_case::<T>(dtype, suffix, rows, h, allow_warp))
    })
}

/// The bias gradient's column sum (no x̂ term) over several row blocks: the packed kernel on
/// aligned and on misaligned rows, and the one-column-per-thread kernel, all to the bit.
#[test]
fn column_sum_matches_the_cpu_sum() -> TestResult {
    let (rows, h) = (600, 40);
    let g = values(rows * h, 5, 1.0);
    for (dtype, suffix) in FLOATS {
        let g = rounded(&g, dtype);
        let want = flat(&t64(&g, &[rows, h])?.sum(0)?)?;
        let mut results = Vec::new();
        for how in [ColumnRun::default(), ColumnRun { dy_at: 0, scalar: true }, ColumnRun { dy_at: 1, scalar: false }] {
            results.push(both_orders("column sum", 0.0, |rev| {
                with_float!(dtype, |T| {
                    let at = how.dy_at * std::mem::size_of::<T>();
                    let padded = [vec![0.0; how.dy_at], g.clone()].concat();
                    let (mut gb, mut out) = (Buf::of::<T>("g", &padded), Buf::uninit::<T>("Σ g", h));
                    column_sums(suffix, None, &mut gb, &mut out, rows, h, ColumnRun { dy_at: at, ..how }, rev)?;
                    out.read::<T>()
                })
            })?);
        }
        assert_close(&format!("column sum {suffix}"), &results[0], &want, tolerance(dtype))?;
        assert_close(&format!("column sum {suffix}: one column per thread"), &results[1], &results[0], 0.0)?;
        assert_close(&format!("column sum {suffix}: misaligned rows"), &results[2], &results[0], 0.0)?;
    }
    Ok(())
}

/// Masked softmax forward and backward over a per-batch and a shared mask, with rows for 256
/// threads and rows longer than 2,048 (1,024 threads).
#[test]
fn masked_softmax_matches_the_cpu_op() -> TestResult {
    let (b, n, scale) = (2, 3, 0.25);
    for (s, t, mask_batches) in [(5, 300, 1), (5, 300, b), (2, 2100, b)] {
        let mask: Vec<f64> = (0..mask_batches * s * t).map(|i| if (i * 7 + i / t) % 5 == 0 { 0.0 } else { 1.0 }).collect();
        for (dtype, suffix) in FLOATS {
            let sc = rounded(&values(b * n * s * t, 6, 4.0), dtype);
            // Large enough that dS stays clear of f16's subnormals (spacing 6e-8) at 2,100 keys.
            let dy = rounded(&values(b * n * s * t, 7, 64.0), dtype);
            let sv = Var::from_tensor(&t64(&sc, &[b, n, s, t])?)?;
            let p = crate::ops::masked_softmax(sv.as_tensor(), &t64(&mask, &[mask_batches, 1, s, t])?, scale)?;
            let want_ds = grads(&p, &t64(&dy, &[b, n, s, t])?, &[&sv])?;
            let rows = b * n * s;
            let dims = [Arg::I32(n as i32), Arg::I32(s as i32), Arg::I32(t as i32), Arg::I32(mask_batches as i32), Arg::F32(scale as f32)];
            let what = format!("masked_softmax {suffix}, mask batches {mask_batches}");
            let got = both_orders(&what, 0.0, |rev| {
                with_float!(dtype, |T| {
                    let (mut sb, mut mb, mut pb) =
                        (Buf::of::<T>("scores", &sc), Buf::of::<T>("mask", &mask), Buf::uninit::<T>("p", rows * t));
                    let mut args = vec![sb.ptr(), mb.ptr(), pb.ptr()];
                    args.extend(dims);
                    launch(&format!("masked_softmax_fwd_{suffix}"), plan::rows(rows, t), &args, rev)?;
                    let p = pb.read::<T>()?;
                    // The backward from the kernel's own P, as the op's backward pass reads it.
                    let (mut pb2, mut gb, mut ds) = (Buf::of::<T>("p", &p), Buf::of::<T>("dy", &dy), Buf::uninit::<T>("ds", rows * t));
                    let mut args = vec![pb2.ptr(), gb.ptr(), mb.ptr(), ds.ptr()];
                    args.extend(dims);
                    launch(&format!("masked_softmax_bwd_{suffix}"), plan::rows(rows, t), &args, rev)?;
                    Ok(p.into_iter().chain(ds.read::<T>()?).collect())
                })
            })?;
            let tol = tolerance(dtype);
            assert_close(&format!("{what}: P"), &got[..rows * t], &flat(&p)?, tol)?;
            assert_close(&format!("{what}: dS"), &got[rows * t..], &want_ds[0], 2.0 * tol)?;
        }
    }
    Ok(())
}

/// Per-row cross-entropy and its backward at a 1,024-thread vocabulary and a small one, with −∞
/// logits at the start of some rows (a thread's running max starts there), the rows 16-byte
/// aligned and one element off: the loss in the kernel's arithmetic type (f32, f64 for f64),
/// and the backward from the kernel's own loss, as the op chains them.
#[test]
fn cross_entropy_matches_the_cpu_op() -> TestResult {
    for (rows, v) in [(4, 3000), (9, 50)] {
        let targets: Vec<u32> = (0..rows).map(|r| ((r * 37 + 11) % v) as u32).collect();
        for (dtype, suffix) in FLOATS {
            let mut z = rounded(&values(rows * v, 8, 6.0), dtype);
            for r in (0..rows).step_by(2) {
                z[r * v..r * v + 3].fill(f64::NEG_INFINITY);
            }
            // A NaN logit (not the target) makes its row's loss NaN, as on the CPU, even where
            // it is all a thread holds besides −∞.
            z[(rows - 1) * v + 1] = f64::NAN;
            let g = rounded(&values(rows, 9, 1.0), dtype);
            let zv = Var::from_tensor(&t64(&z, &[rows, v])?)?;
            let loss = crate::ops::cross_entropy(zv.as_tensor(), &Tensor::new(targets.as_slice(), &Device::Cpu)?)?;
            let want = [flat(&loss)?, grads(&loss, &t64(&g, &[rows])?, &[&zv])?.remove(0)];
            for skew in [0, 1] {
                let what = format!("cross_entropy {suffix} [{rows}, {v}], z {skew} element(s) off alignment");
                let case = CrossEntropyCase { z: &z, targets: &targets, g: &g, rows, v, skew, suffix, what: &what };
                let got = with_float!(dtype, |T| if dtype == DType::F64 { case.run::<T, f64>()? } else { case.run::<T, f32>()? });
                let tol = tolerance(dtype);
                assert_close(&format!("{what}: loss"), &got[..rows], &want[0], tol)?;
                assert_close(&format!("{what}: dz"), &got[rows..], &want[1], tol)?;
            }
        }
    }
    Ok(())
}

/// One run of the cross-entropy kernels (see [`cross_entropy_matches_the_cpu_op`]): the loss,
/// then dz.
struct CrossEntropyCase<'a> {
    z: &'a [f64],
    targets: &'a [u32],
    g: &'a [f64],
    rows: usize,
    v: usize,
    /// Elements of padding before z (and dz): 1 puts every row off 16-byte alignment here.
    skew: usize,
    suffix: &'a str,
    what: &'a str,
}

impl CrossEntropyCase<'_> {
    /// `T`: the logits' type; `W`: the kernel's arithmetic type, which the loss and (g, loss) take.
    fn run<T: WithDType, W: WithDType>(&self) -> TestResult<Vec<f64>> {
        let (rows, v, skew, suffix) = (self.rows, self.v, self.skew, self.suffix);
        let size = std::mem::size_of::<T>();
        both_orders(self.what, 0.0, |rev| {
            let (mut zb, mut tb) = (Buf::of::<T>("z", &[&vec![0.0; skew], self.z].concat()), Buf::of_raw("targets", self.targets));
            let mut lb = Buf::uninit::<W>("loss", rows);
            let args = [zb.ptr_at(skew * size), tb.ptr(), lb.ptr(), Arg::I32(v as i32)];
            let packed = launch(&format!("cross_entropy_fwd_{suffix}"), plan::rows(rows, v), &args, rev)?;
            // Every row starts aligned exactly where the buffer does (v × size is a multiple of 16)
            // or, at 50 logits, where the row's offset is.
            let aligned_rows = (0..rows).filter(|r| ((r * v + skew) * size).is_multiple_of(16)).count();
            assert_eq!(packed > 0, aligned_rows > 0, "{}: {packed} threads read 16-byte packs", self.what);
            let loss = lb.read::<W>()?;
            let gl: Vec<f64> = self.g.iter().zip(&loss).flat_map(|(&g, &l)| [g, l]).collect();
            let (mut glb, mut dz) = (Buf::of::<W>("(g, loss)", &gl), Buf::uninit::<T>("dz", rows * v + skew));
            let args = [zb.ptr_at(skew * size), tb.ptr(), glb.ptr(), dz.ptr_at(skew * size), Arg::I32(v as i32)];
            let packed = launch(&format!("cross_entropy_bwd_{suffix}"), plan::rows(rows, v), &args, rev)?;
            assert_eq!(packed > 0, aligned_rows > 0, "{}: {packed} threads moved 16-byte packs backward", self.what);
            Ok(loss.into_iter().chain(dz.read::<T>()?.split_off(skew)).collect())
        })
    }
}

/// The element-wise kernels: GELU (both forms) and its backward, the bias additions (alone, with
/// the residual, with GELU), dropout and the residual dropout with the CPU's mask.
#[test]
fn elementwise_kernels_match_the_cpu_ops() -> TestResult {
    let (rows, cols) = (7, 151); // 1,057 elements: whole packs and a ragged tail in every dtype
    let n = rows * cols;
    let (p, seed) = (0.3, 1234);
    let (mixed, threshold, keep) = crate::ops::dropout::Mask::new(seed, p).kernel_params();
    for (dtype, suffix) in FLOATS {
        let x = rounded(&values(n, 10, 3.0), dtype);
        let y = rounded(&values(n, 11, 3.0), dtype);
        let b = rounded(&values(cols, 12, 1.0), dtype);
        let dy = rounded(&values(n, 13, 1.0), dtype);
        let (xt, yt, bt) = (t64(&x, &[rows, cols])?, t64(&y, &[rows, cols])?, t64(&b, &[cols])?);
        let tol = tolerance(dtype);
        // 16-byte aligned buffers (the packed path and its ragged tail: n is odd), then buffers one
        // element off alignment (all, only the last input, only the output: element by element),
        // then a one-block grid (several grid-stride passes): the same numbers every way.
        let run = |kernel: &str, inputs: &[&[f64]], scalars: &[Arg]| -> TestResult<Vec<f64>> {
            let k = inputs.len();
            let mut variants: Vec<(Vec<usize>, bool)> = vec![(vec![0; k + 1], false), (vec![1; k + 1], false)];
            variants.push(((0..=k).map(|b| usize::from(b + 1 == k)).collect(), false));
            variants.push(((0..=k).map(|b| usize::from(b == k)).collect(), false));
            variants.push((vec![0; k + 1], true));
            let mut results: Vec<Vec<f64>> = Vec::new();
            for (skews, one_block) in &variants {
                let what = format!("{kernel}_{suffix}, buffers off alignment by {skews:?} elements, one block: {one_block}");
                let got = both_orders(&what, 0.0, |rev| {
                    with_float!(dtype, |T| {
                        let size = std::mem::size_of::<T>();
                        let mut bufs: Vec<Buf> =
                            inputs.iter().zip(skews).map(|(v, &s)| Buf::of::<T>("input", &[&vec![0.0; s], *v].concat())).collect();
                        let mut out = Buf::uninit::<T>("out", n + skews[k]);
                        let mut args: Vec<Arg> = bufs.iter_mut().zip(skews).map(|(b, &s)| b.ptr_at(s * size)).collect();
                        args.push(out.ptr_at(skews[k] * size));
                        args.push(Arg::U64(n as u64));
                        args.extend_from_slice(scalars);
                        let mut l = plan::elementwise_packed(n, size);
                        if *one_block {
                            l.grid = [1, 1, 1];
                        }
                        let packed = launch(&format!("{kernel}_{suffix}"), l, &args, rev)?;
                        // The 16-byte path runs exactly where every streamed buffer is aligned (the
                        // bias kernels' second input is read by column, not streamed).
                        let bias_at = kernel.contains("bias").then_some(1);
                        let aligned = skews.iter().enumerate().all(|(b, &s)| s == 0 || Some(b) == bias_at);
                        assert_eq!(packed > 0, aligned, "{what}: {packed} threads took the 16-byte path");
                        Ok(out.read::<T>()?.split_off(skews[k]))
                    })
                })?;
                if let Some(first) = results.first() {
                    assert_close(&what, &got, first, 0.0)?;
                }
                results.push(got);
            }
            Ok(results.swap_remove(0))
        };
        for erf in [false, true] {
            let xv = Var::from_tensor(&xt)?;
            let gelu = if erf { crate::ops::gelu_erf(xv.as_tensor())? } else { crate::ops::gelu_tanh(xv.as_tensor())? };
            let what = format!("gelu {suffix}, erf {erf}");
            assert_close(&what, &run("gelu_fwd", &[&x], &[Arg::I32(erf.into())])?, &flat(&gelu)?, tol)?;
            let want = grads(&gelu, &t64(&dy, &[rows, cols])?, &[&xv])?;
            assert_close(&format!("{what}: backward"), &run("gelu_bwd", &[&x, &dy], &[Arg::I32(erf.into())])?, &want[0], tol)?;
            let biased = (yt.broadcast_add(&bt))?;
            let want = if erf { crate::ops::gelu_erf(&biased)? } else { crate::ops::gelu_tanh(&biased)? };
            assert_close(
                &format!("bias_gelu {suffix}"),
                &run("bias_gelu", &[&y, &b], &[Arg::I32(cols as i32), Arg::I32(erf.into())])?,
                &flat(&want)?,
                tol,
            )?;
        }
        let want = flat(&crate::ops::add_bias(&yt, &bt)?)?;
        // add_bias_fwd takes n before cols: (y, b, out, n, cols).
        assert_close(&format!("add_bias {suffix}"), &run("add_bias_fwd", &[&y, &b], &[Arg::I32(cols as i32)])?, &want, tol)?;
        let want = flat(&crate::ops::dropout(&xt, p, seed)?)?;
        let dropout_args = [Arg::U64(mixed), Arg::U64(threshold), Arg::F64(keep)];
        let got = run("dropout_fwd", &[&x], &dropout_args)?;
        assert_close(&format!("dropout {suffix}"), &got, &want, tol)?;
        let zeros = got.iter().zip(&want).filter(|(g, w)| (**g == 0.0) != (**w == 0.0)).count();
        assert_eq!(zeros, 0, "dropout {suffix}: the kernel drops other elements than the CPU");
        let want = flat(&crate::ops::residual_dropout(&xt, &yt, p, seed)?)?;
        assert_close(&format!("residual_dropout {suffix}"), &run("residual_dropout_fwd", &[&x, &y], &dropout_args)?, &want, tol)?;
    }
    Ok(())
}

/// Embedding rows and the table's gradient, with repeated ids (the backward's atomic adds).
#[test]
fn embedding_matches_the_cpu_op() -> TestResult {
    let (vocab, h) = (11, 40);
    let ids: Vec<u32> = vec![3, 0, 3, 10, 7, 3, 0, 5, 5];
    let n = ids.len();
    for (dtype, suffix) in FLOATS {
        let w = rounded(&values(vocab * h, 14, 1.0), dtype);
        let g = rounded(&values(n * h, 15, 1.0), dtype);
        let wv = Var::from_tensor(&t64(&w, &[vocab, h])?)?;
        let rows = crate::ops::embedding(wv.as_tensor(), &Tensor::new(ids.as_slice(), &Device::Cpu)?)?;
        let want_dw = grads(&rows, &t64(&g, &[n, h])?, &[&wv])?;
        // Repeated ids add in thread order: the two orders may round differently in f16/bf16.
        let what = format!("embedding {suffix}");
        let got = both_orders(&what, 4.0 * tolerance(dtype), |rev| {
            with_float!(dtype, |T| {
                let (mut wb, mut ib, mut out) = (Buf::of::<T>("w", &w), Buf::of_raw("ids", &ids), Buf::uninit::<T>("rows", n * h));
                let args = [wb.ptr(), ib.ptr(), out.ptr(), Arg::U64(n as u64), Arg::I32(h as i32)];
                launch(&format!("embedding_fwd_{suffix}"), plan::elementwise(n * h), &args, rev)?;
                let (mut gb, mut dw) = (Buf::of::<T>("g", &g), Buf::zeros::<T>("dw", vocab * h));
                let args = [gb.ptr(), ib.ptr(), dw.ptr(), Arg::U64(n as u64), Arg::I32(h as i32)];
                launch(&format!("embedding_bwd_{suffix}"), plan::elementwise(n * h), &args, rev)?;
                Ok(out.read::<T>()?.into_iter().chain(dw.read::<T>()?).collect())
            })
        })?;
        assert_close(&format!("{what}: rows"), &got[..n * h], &flat(&rows)?, 0.0)?;
        // Up to three adds per element, each rounded to the storage type in half precision.
        assert_close(&format!("{what}: dW"), &got[n * h..], &want_dw[0], 3.0 * tolerance(dtype))?;
    }
    Ok(())
}

/// `permute_rows` for attention's head split and merge layouts, at every word width, bit for
/// bit against candle's strided copy.
#[test]
fn permute_rows_matches_the_strided_copy() -> TestResult {
    let (b, s, heads, d) = (2, 5, 3, 8);
    let h = heads * d;
    let src: Vec<f64> = (0..b * s * 3 * h).map(|i| i as f64).collect();
    for dtype in [DType::F32, DType::F16, DType::F64] {
        let x = Tensor::from_vec(src.clone(), (b, s, 3 * h), &Device::Cpu)?.to_dtype(dtype)?;
        // The Q part of a packed projection as [B, N, S, d], then the context merge [B, S, N, d].
        let split = x.reshape((b, s, 3, heads, d))?.narrow(2, 1, 1)?.squeeze(2)?.transpose(1, 2)?;
        assert_eq!(split.layout().start_offset(), h, "the split must be a view of the projection");
        let split_copy = split.contiguous()?;
        let merge = split_copy.transpose(1, 2)?;
        let narrow_d = split.narrow(3, 2, 2)?; // a row of 2 elements: narrower words
                                               // Each view with the contiguous tensor whose storage it reads.
        for (base, view) in [(&x, &split), (&split_copy, &merge), (&x, &narrow_d)] {
            let want = flat(&view.contiguous()?)?;
            let layout = view.layout();
            let plan = crate::ops::permute::PermutePlan::new(layout, dtype.size_in_bytes()).ok_or("no plan")?;
            let all = flat(base)?;
            let what = format!("permute_rows_w{} {dtype:?} {:?}", plan.word, view.dims());
            let got = both_orders(&what, 0.0, |rev| {
                with_float!(dtype, |T| {
                    let mut from = Buf::of::<T>("source", &all[layout.start_offset()..]);
                    let mut out = Buf::uninit::<T>("out", view.elem_count());
                    let ([_, d1, d2, d3], [s0, s1, s2, s3]) = (plan.dims, plan.strides);
                    let mut args = vec![from.ptr(), out.ptr(), Arg::U64(plan.len() as u64), Arg::U64(plan.row as u64)];
                    args.extend([d1, d2, d3, s0, s1, s2, s3].map(|v| Arg::U64(v as u64)));
                    launch(&format!("permute_rows_w{}", plan.word), plan::elementwise(plan.len()), &args, rev)?;
                    out.read::<T>()
                })
            })?;
            assert_close(&what, &got, &want, 0.0)?;
        }
    }
    Ok(())
}
