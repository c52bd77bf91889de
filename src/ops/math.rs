//! Vectorizable building blocks of the fused CPU ops: a branch-free `exp` for f32, reductions with
//! independent lanes, and a runtime SIMD dispatch.
//!
//! Why: glibc's `expf` is a scalar call the compiler cannot vectorize (it was 10% of a training
//! step), and a sequential `sum += x` or `max = max(max, x)` is a dependency chain the compiler may
//! not reorder. Writing the loops with these helpers lets LLVM use the widest vectors the CPU has
//! once [`simd_kernel`] has compiled the loop for it (AVX-512 / AVX2+FMA, chosen at run time by `pulp`).

use super::Float;

/// `simd_kernel! { /// docs
///     pub(crate) fn name<T> [NameKernel] (x: &'a [T], ...) -> Out { body } }`
/// defines `fn name<T: Float>(args) -> Out` (borrows use the lifetime `'a`), whose body is compiled once per instruction set
/// (AVX-512, AVX2+FMA, SSE4.2, baseline) and chosen at run time by `pulp`.
///
/// Why a macro and not a closure handed to `pulp::Arch::dispatch`: LLVM does not inline a large
/// closure into pulp's per-instruction-set wrappers, so its loops stay SSE2. Here the body is the
/// `#[inline(always)]` method of a `pulp::WithSimd` struct, which is always inlined. Whatever the
/// body calls must be `#[inline(always)]` too (like [`exp_f32`] and the reductions below).
macro_rules! simd_kernel {
    ($(#[$doc:meta])* $vis:vis fn $name:ident<$T:ident> [$kernel:ident] ($($arg:ident : $ty:ty),* $(,)?) $(-> $out:ty)? $body:block) => {
        struct $kernel<'a, $T> {
            $($arg: $ty,)*
            _borrow: std::marker::PhantomData<&'a $T>,
        }
        impl<'a, $T: $crate::ops::Float> pulp::WithSimd for $kernel<'a, $T> {
            type Output = $crate::ops::math::simd_kernel!(@out $($out)?);
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
                let Self { $($arg,)* .. } = self;
                $body
            }
        }
        $(#[$doc])*
        $vis fn $name<'a, $T: $crate::ops::Float>($($arg: $ty),*) $(-> $out)? {
            pulp::Arch::new().dispatch($kernel { $($arg,)* _borrow: std::marker::PhantomData })
        }
    };
    (@out) => { () };
    (@out $out:ty) => { $out };
}
pub(crate) use simd_kernel;

/// `e^x` in f32 without a libm call (Cephes `expf`: range reduction by ln 2, a degree-6
/// polynomial; ≤ 2 ulp on the whole range). Branch-free, so loops over it vectorize.
/// Below −87.3 it returns 0 (libm returns subnormals there); above 88.3 it returns +∞ (libm only
/// from 88.72: the ops here never get that far, their inputs are ≤ 0 or clamped).
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4; // ln 2 split in two so that n·LN2_HI is exact
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer in the low bits
    let xc = x.clamp(-87.3, 88.3);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_2e-4_f32;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * (r * r) + r + 1.0;
    // 2ⁿ straight from the exponent bits: t's low mantissa bits hold n + 0x40_0000.
    let k = t.to_bits().wrapping_sub(0x4B40_0000);
    let y = y * f32::from_bits(k.wrapping_add(127) << 23);
    if x < -87.3 {
        0.0
    } else if x > 88.3 {
        f32::INFINITY
    } else {
        y
    }
}

/// Lanes of the reductions below: enough independent accumulators for AVX-512 on f64.
const LANES: usize = 8;

/// `Σ x` accumulated in f64, in `LANES` independent partial sums (vectorizable).
#[inline(always)]
pub(crate) fn sum_f64<T: Float>(xs: &[T]) -> f64 {
    let mut acc = [0f64; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail: f64 = chunks.remainder().iter().map(|&v| v.as_f64()).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v.as_f64();
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `Σ f(x)` accumulated in f64, in `LANES` independent partial sums.
///
/// `f` is first mapped over a block into a buffer and the buffer summed after: a map loop
/// vectorizes even when `f` has selects (like [`exp_f32`]'s range checks), whereas mapping inside
/// the unrolled lane sums left `f` scalar (CE's row sums ran at ≈ 3 ns per element).
#[inline(always)]
pub(crate) fn sum_map_f64<T: Float>(xs: &[T], f: impl Fn(T) -> T) -> f64 {
    const BLOCK: usize = 128;
    let mut buf = [T::of_f64(0.0); BLOCK];
    let mut total = 0f64;
    for c in xs.chunks(BLOCK) {
        let buf = &mut buf[..c.len()];
        for (b, &v) in buf.iter_mut().zip(c) {
            *b = f(v);
        }
        total += sum_f64(buf);
    }
    total
}

/// `Σ a·b` accumulated in f64, in `LANES` independent partial sums (vectorizable).
#[inline(always)]
pub(crate) fn dot_f64<T: Float>(a: &[T], b: &[T]) -> f64 {
    let mut acc = [0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x.as_f64() * y.as_f64()).sum();
    for (x, y) in ca.zip(cb) {
        for ((s, p), q) in acc.iter_mut().zip(x).zip(y) {
            *s += p.as_f64() * q.as_f64();
        }
    }
    acc.iter().sum::<f64>() + tail
}

simd_kernel! {
    /// `Σ x²` accumulated in f64, vectorized.
    pub(crate) fn sum_squares<T> [SumSquares] (xs: &'a [T]) -> f64 {
        dot_f64(xs, xs)
    }
}

/// The largest element (−∞ for an empty slice; NaN-ignoring like `f64::max`).
#[inline(always)]
pub(crate) fn max<T: Float>(xs: &[T]) -> T {
    let neg_inf = T::of_f64(f64::NEG_INFINITY);
    let mut acc = [neg_inf; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(neg_inf, |m, &v| if v > m { v } else { m });
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    acc.iter().fold(tail, |m, &v| if v > m { v } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_f32_matches_libm_within_two_ulp() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.3 {
            let (got, want) = (exp_f32(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.000_37;
        }
        assert!(worst < 2.5 * f32::EPSILON as f64, "worst relative error {worst:e}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-65504.0), 0.0);
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn reductions_match_sequential_sums() {
        let xs: Vec<f32> = (0..1003).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let ys: Vec<f32> = xs.iter().map(|v| v * 0.5 - 1.0).collect();
        let seq: f64 = xs.iter().map(|&v| v as f64).sum();
        assert!((sum_f64(&xs) - seq).abs() < 1e-9);
        let seq_dot: f64 = xs.iter().zip(&ys).map(|(&a, &b)| a as f64 * b as f64).sum();
        assert!((dot_f64(&xs, &ys) - seq_dot).abs() < 1e-9);
        assert_eq!(max(&xs), xs.iter().cloned().fold(f32::MIN, f32::max));
        assert_eq!(max::<f32>(&[]), f32::NEG_INFINITY);
        assert_eq!(max(&[3.0f32, -1.0]), 3.0);
    }
}
