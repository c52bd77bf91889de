//! Tests of the emulation itself: every kernel is emulated and declares its shared memory through the
//! macros; the emulated mma, ldmatrix and cp.async follow the PTX ISA; NaN-filled shared memory; and the
//! launch errors, barrier misuse, races and diverged shuffles it must report.

use super::*;

/// Every `__global__` kernel of kernels.cu can be launched here, in each of its instantiations.
#[test]
fn every_kernel_is_emulated() -> TestResult {
    let names = kernel_names()?;
    let expected = declarations()?;
    assert!(expected.len() > 80, "parsed only {} kernel names from kernels.cu", expected.len());
    for (kernel, bound) in [("attn_probs_fwd_warp_bf16", 256), ("flash_fwd_f16", 128), ("bias_residual_layer_norm_warp_f32", 256)] {
        assert!(expected.iter().any(|(n, b)| n == kernel && *b == Some(bound)), "launch bounds of {kernel} not parsed");
    }
    let missing: Vec<&String> = expected.iter().map(|(n, _)| n).filter(|n| !names.contains(n)).collect();
    assert!(missing.is_empty(), "kernels.cu kernels missing from kernels_emu.cpp's table: {missing:?}");
    Ok(())
}

/// The kernels declare static shared memory only through `SHARED` (which the emulation fills
/// with NaN per block): a bare `__shared__` would keep the previous block's bytes here.
#[test]
fn kernels_declare_shared_memory_through_the_macros() -> TestResult {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ops/cuda");
    let mut sources = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if !matches!(path.extension().and_then(|e| e.to_str()), Some("cu" | "cuh")) {
            continue;
        }
        sources += 1;
        for (i, line) in std::fs::read_to_string(&path)?.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            assert!(
                !code.contains("__shared__") || code.trim_start().starts_with("#define"),
                "{}:{}: declare shared memory with SHARED or DYNAMIC_SHARED: {line}",
                path.display(),
                i + 1
            );
        }
    }
    assert!(sources >= 5, "found only {sources} CUDA sources in {}", dir.display());
    Ok(())
}

/// The emulated `mma.sync.m16n8k16` (what flash attention's tests stand on): fragments
/// placed by the PTX ISA's per-element formulas give D = A·B + C.
#[test]
fn the_emulated_tensor_core_product_is_a_matrix_product() -> TestResult {
    let (a, b, c) = (rounded(&values(256, 70, 2.0), DType::BF16), rounded(&values(128, 71, 2.0), DType::BF16), values(128, 72, 1.0));
    let c32: Vec<f64> = c.iter().map(|&v| f64::from(v as f32)).collect();
    let (mut ab, mut bb, mut cb, mut db) =
        (Buf::of::<half::bf16>("a", &a), Buf::of::<half::bf16>("b", &b), Buf::of::<f32>("c", &c32), Buf::uninit::<f32>("d", 128));
    launch("emu_selftest_mma", crate::ops::launch::Launch::linear(1, 32), &[ab.ptr(), bb.ptr(), cb.ptr(), db.ptr()], false)?;
    let want: Vec<f64> = (0..128).map(|e| c32[e] + (0..16).map(|k| a[(e / 8) * 16 + k] * b[k * 8 + e % 8]).sum::<f64>()).collect();
    assert_close("mma.m16n8k16", &db.read::<f32>()?, &want, 1e-6)
}

/// The emulated `ldmatrix.x4` and `ldmatrix.x4.trans` (flash attention's fragment loads) give
/// each lane the elements the PTX ISA's definition names, for all four 8×8 matrices.
#[test]
fn the_emulated_ldmatrix_hands_out_the_isa_elements() -> TestResult {
    // 0..255 are exact in bf16: element (r, c) of the 16×16 matrix holds 16·r + c.
    let m: Vec<f64> = (0..256).map(f64::from).collect();
    let (mut mb, mut out) = (Buf::of::<half::bf16>("m", &m), Buf::uninit::<u32>("out", 32 * 8));
    launch("emu_selftest_ldmatrix", crate::ops::launch::Launch::linear(1, 32), &[mb.ptr(), out.ptr()], false)?;
    let words = out.read::<u32>()?;
    let half = |bits: u32| f64::from(half::bf16::from_bits(bits as u16).to_f32());
    for lane in 0..32usize {
        let (g, t) = (lane / 4, lane % 4);
        for i in 0..4usize {
            // Matrix i is the quadrant at rows 8·(i % 2), columns 8·(i / 2) (the lanes' addresses).
            let at = |r: usize, c: usize| ((8 * (i % 2) + r) * 16 + 8 * (i / 2) + c) as f64;
            for (trans, want) in [(false, [at(g, 2 * t), at(g, 2 * t + 1)]), (true, [at(2 * t, g), at(2 * t + 1, g)])] {
                let w = words[lane * 8 + usize::from(trans) * 4 + i] as u32;
                assert_eq!([half(w & 0xffff), half(w >> 16)], want, "lane {lane}, matrix {i}, trans {trans}");
            }
        }
    }
    Ok(())
}

/// The emulated `cp.async` lands at the thread's wait in the forward run (a read before it
/// sees the old value) and at issue in the reverse run, zero-fills when asked, and a copy
/// never waited for is reported.
#[test]
fn the_emulated_cp_async_lands_at_the_wait_or_at_issue() -> TestResult {
    let src: Vec<f64> = (0..128).map(|v| f64::from(v) + 1.0).collect();
    let landed = |lane: usize| if lane.is_multiple_of(2) { src[lane * 4] } else { 0.0 };
    let mut sb = Buf::of::<f32>("src", &src);
    for at_issue in [false, true] {
        let mut out = Buf::uninit::<f32>("out", 64);
        launch("emu_selftest_cp_async", crate::ops::launch::Launch::linear(1, 32), &[sb.ptr(), out.ptr()], at_issue)?;
        let got = out.read::<f32>()?;
        for lane in 0..32 {
            let before_wait = if at_issue { landed(lane) } else { -1.0 };
            assert_eq!(got[lane], before_wait, "lane {lane} reads its destination before the wait (at issue: {at_issue})");
            let next = (lane + 1) % 32;
            assert_eq!(got[32 + lane], landed(next), "lane {lane} reads lane {next}'s destination");
        }
    }
    // A copy issued while the other warp still reads its destination: invisible when copies
    // land at the wait (the reads all see -1), caught when they land at issue.
    let war = |at_issue: bool| -> TestResult<Vec<f64>> {
        let (mut sb, mut out) = (Buf::of::<f32>("src", &src), Buf::uninit::<f32>("out", 64));
        launch("emu_selftest_cp_async_war", crate::ops::launch::Launch::linear(1, 64), &[sb.ptr(), out.ptr()], at_issue)?;
        out.read::<f32>()
    };
    assert!(war(false)?.iter().all(|&v| v == -1.0));
    let early = war(true)?;
    // The reverse run starts with warp 1, whose copies warp 0 then reads.
    assert!(early[..32].iter().zip(&src[32..64]).all(|(g, s)| g == s) && early[32..].iter().all(|&v| v == -1.0), "{early:?}");
    let err = both_orders("cp.async write-after-read", 0.0, war).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("a race?"), "{err}");
    let mut out = Buf::uninit::<f32>("out", 64);
    let err = launch("emu_selftest_cp_async_unwaited", crate::ops::launch::Launch::linear(1, 32), &[sb.ptr(), out.ptr()], false)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("never waited for"), "{err}");
    Ok(())
}

/// Every block's static shared memory starts as NaN: a block that reads what only an earlier
/// block wrote sees NaN, not the earlier block's values.
#[test]
fn each_block_starts_with_nan_shared_memory() -> TestResult {
    let mut out = Buf::zeros::<f32>("out", 64);
    launch("emu_selftest_stale_shared", crate::ops::launch::Launch::linear(2, 32), &[out.ptr()], false)?;
    let got = out.read::<f32>()?;
    assert!(got[..32].iter().all(|&v| v == 1.0) && got[32..].iter().all(|v| v.is_nan()), "{got:?}");
    Ok(())
}

/// The emulator itself: invalid launches, wrong arguments, a barrier not every thread
/// reaches, a shared-memory race and diverged shuffles are reported (not hung on, not
/// missed); threads that exit early do not hold a barrier.
#[test]
fn the_emulator_reports_what_a_gpu_would_not() -> TestResult {
    fn error<T>(r: TestResult<T>) -> String {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    }
    let l = crate::ops::launch::Launch { grid: [1, 1, 1], block: [2048, 1, 1], shared: 0 };
    let err = error(launch("emu_selftest_race", l, &[], false));
    assert!(err.contains("not a valid CUDA block"), "{err}");
    let err = error(launch("no_such_kernel", crate::ops::launch::elementwise(1), &[], false));
    assert!(err.contains("no kernel named"), "{err}");
    let err = error(launch("attn_probs_bwd_warp_f32", crate::ops::launch::Launch::linear(1, 512), &[], false));
    assert!(err.contains("at most 256 threads"), "{err}");
    let err = error(launch("gelu_fwd_f32", crate::ops::launch::Launch::linear(1, 512), &[], false));
    assert!(err.contains("declares no __launch_bounds__"), "{err}");
    // gelu_fwd takes (x, y, size_t n, int erf): an int where the size_t goes is caught.
    let mut x = Buf::zeros::<f32>("x", 4);
    let args = [x.ptr(), x.ptr(), Arg::I32(4), Arg::I32(0)];
    let err = error(launch("gelu_fwd_f32", crate::ops::launch::elementwise(4), &args, false));
    assert!(err.contains("takes 4 arguments of 8, 8, 8, 4 bytes"), "{err}");
    let err = error(launch("gelu_fwd_f32", crate::ops::launch::elementwise(4), &args[..3], false));
    assert!(err.contains("the launch passed 3"), "{err}");
    let mut out = Buf::zeros::<f32>("out", 64);
    let err = error(launch("emu_selftest_divergence", crate::ops::launch::Launch::linear(1, 32), &[out.ptr()], false));
    assert!(err.contains("barrier divergence"), "{err}");
    let err = error(
        both_orders("race", 0.0, |rev| {
            let mut out = Buf::zeros::<f32>("out", 64);
            launch("emu_selftest_race", crate::ops::launch::Launch::linear(1, 64), &[out.ptr()], rev)?;
            out.read::<f32>()
        })
        .map(|_| ()),
    );
    assert!(err.contains("a race?"), "{err}");
    let err = error(launch("emu_selftest_shuffles", crate::ops::launch::Launch::linear(1, 32), &[out.ptr()], false));
    assert!(err.contains("different shuffles"), "{err}");
    let mut out = Buf::zeros::<f32>("out", 64);
    launch("emu_selftest_early_exit", crate::ops::launch::Launch::linear(1, 64), &[out.ptr()], false)?;
    let ones = out.read::<f32>()?;
    assert!(ones[..40].iter().all(|&v| v == 1.0) && ones[40..].iter().all(|&v| v == 0.0));
    Ok(())
}
