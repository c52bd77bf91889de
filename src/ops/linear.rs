//! `y = x·Wᵀ + b` as one graph node: the weight stays in torch's `[out, in]` layout (no
//! transposed copy), the bias is written into the output before the GEMM accumulates on top,
//! and the backward computes `dx = dy·W`, `dW = dyᵀ·x` and `db = Σ_rows dy` directly with the
//! `gemm` crate (multi-threaded), instead of four candle nodes with their own gradient buffers.

use super::{as_slice, float_dispatch, held, Float};
use candle_core::{CpuStorage, CustomOp3, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

/// `x [.., in] · wᵀ + b` with `w [out, in]`, `b [out]`. Differentiable in all three.
/// CPU in f32/f64, and every float type on CUDA (`cuda` feature, `src/ops/cuda/linear.rs`).
/// With no input features (`in = 0`) every row is `b` (zeros without a bias), on any device.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    apply(x, w, b, None)
}

/// `x [.., in] · wᵀ` with `w [out, in]` (no bias), e.g. output logits against a tied embedding
/// table. Differentiable in both; devices and dtypes as [`linear`].
pub fn linear_no_bias(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    apply(x, w, &Tensor::zeros(0, x.dtype(), x.device())?, None)
}

/// `gelu(x·Wᵀ + b)` (the `erf` or tanh variant) as one graph node, for an MLP's first layer:
/// the `[.., out]` pre-activation is kept by the op for its backward instead of being a node
/// whose gradient candle would allocate and accumulate. Same numbers as [`linear`] then
/// [`super::gelu_tanh`] / [`super::gelu_erf`]. CPU, f32/f64, like [`linear`].
pub fn linear_gelu(x: &Tensor, w: &Tensor, b: &Tensor, erf: bool) -> Result<Tensor> {
    // The pre-activation is kept only when a backward pass can follow.
    let keep = x.track_op() || w.track_op() || b.track_op() || super::tape::recording();
    apply(x, w, b, Some(Activation { erf, pre: keep.then(|| Arc::new(Mutex::new(None))) }))
}

fn apply(x: &Tensor, w: &Tensor, b: &Tensor, act: Option<Activation>) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    if x.dim(candle_core::D::Minus1)? != inp || (b.dims() != [out] && b.dims() != [0]) {
        candle_core::bail!("linear: x {:?}, w {:?}, b {:?} do not fit", x.dims(), w.dims(), b.dims());
    }
    let dt = x.dtype();
    if inp == 0 {
        return no_inputs(x, w, b, act.map(|a| a.erf));
    }
    super::tape::apply_op3(&x.contiguous()?, &w.to_dtype(dt)?.contiguous()?, &b.to_dtype(dt)?.contiguous()?, Linear { grad: None, act })
}

/// [`apply`] with no input features: every row is the bias (the sums over no inputs are 0), then
/// the GELU if any (`Some(erf)`). Built from candle ops, before any device kernel (neither the
/// CPU kernels nor the GPU's take a zero inner dimension), so the bias gets its gradient (the
/// sum of the rows' gradients) and the empty `x` and `w` theirs.
fn no_inputs(x: &Tensor, w: &Tensor, b: &Tensor, gelu: Option<bool>) -> Result<Tensor> {
    let dt = x.dtype();
    let out = w.dim(0)?;
    let mut dims = x.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = out;
    }
    // Zeros `[.., 1]` and `[out]` that depend on `x` and `w`: their sums over no elements.
    let from_x = x.sum_keepdim(candle_core::D::Minus1)?;
    let from_w = w.to_dtype(dt)?.sum(1)?;
    let mut y = from_x.broadcast_add(&from_w)?.broadcast_as(dims.as_slice())?;
    if b.elem_count() > 0 {
        y = y.broadcast_add(&b.to_dtype(dt)?)?;
    }
    match gelu {
        None => Ok(y),
        Some(true) => super::gelu_erf(&y),
        Some(false) => super::gelu_tanh(&y),
    }
}

/// A GELU applied to the linear output, and where its input is kept for the backward pass.
#[derive(Clone)]
struct Activation {
    erf: bool,
    /// The pre-activation `x·Wᵀ + b`, set by the forward kernel (`None`: not needed).
    pre: Option<Arc<Mutex<Option<Tensor>>>>,
}

impl Activation {
    /// `gelu(y)`, keeping `y` (shaped `dims`) when a backward pass may need it.
    fn apply<T: Float>(&self, y: Vec<T>, dims: &[usize]) -> Result<Vec<T>> {
        let g = super::gelu::forward(&y, self.erf);
        if let Some(pre) = &self.pre {
            let kept = Tensor::from_vec(y, dims, &Device::Cpu)?;
            *pre.lock().map_err(|_| candle_core::Error::Msg("linear_gelu: poisoned lock".into()))? = Some(kept);
        }
        Ok(g)
    }

    /// `dy ⊙ gelu'(pre)`: the gradient at the linear output.
    fn backward(&self, grad: &Tensor) -> Result<Tensor> {
        let pre = self.pre.as_ref().and_then(|p| p.lock().ok().and_then(|k| k.clone()));
        let pre = pre.ok_or_else(|| candle_core::Error::Msg("linear_gelu: backward without the kept pre-activation".into()))?;
        super::gelu::backward_of(&pre, grad, self.erf)
    }
}

/// Up to this many rows (decoding steps, beams), `y = x·Wᵀ + b` is computed as dot products of
/// each weight row with the rows of `x`: both are contiguous along `in`, so the weight streams
/// through once, instead of being packed into GEMM panels on every call (which cost more than
/// the arithmetic at these sizes, and more still with AVX-512 panels).
const FEW_ROWS: usize = 16;

/// Weight rows per parallel task of [`few_rows_forward`].
const FEW_ROWS_CHUNK: usize = 64;

fn few_rows_forward<T: Float>(x: &[T], w: &[T], b: &[T], rows: usize, inp: usize, out: usize) -> Vec<T> {
    // yᵀ [out × rows] first, so that each task owns a contiguous block.
    let mut yt = vec![T::of_f64(0.0); out * rows];
    yt.par_chunks_mut(FEW_ROWS_CHUNK * rows)
        .zip(w.par_chunks(FEW_ROWS_CHUNK * inp))
        .zip(b.par_chunks(FEW_ROWS_CHUNK))
        .for_each(|((yt, w), b)| weight_row_dots(yt, w, b, x, inp, rows));
    let mut y = vec![T::of_f64(0.0); rows * out];
    for (o, col) in yt.chunks(rows).enumerate() {
        for (i, &v) in col.iter().enumerate() {
            y[i * out + o] = v;
        }
    }
    y
}

super::math::simd_kernel! {
    /// `yt[o, i] = b[o] + Σ_k w[o, k]·x[i, k]` for a block of weight rows `o`, vectorized
    /// (16 independent lanes per dot product). Rows of `x` go through a weight row four (then
    /// two) at a time: each loaded weight chunk feeds four accumulators, where one row at a time reloaded
    /// it and waited on a single accumulator. Every dot product sums in the same order either
    /// way, so the result does not depend on the grouping.
    fn weight_row_dots<T> [WeightRowDots] (yt: &'a mut [T], w: &'a [T], b: &'a [T], x: &'a [T], inp: usize, rows: usize) {
        for ((yrow, wrow), &bias) in yt.chunks_mut(rows).zip(w.chunks(inp)).zip(b) {
            let (y4, y1) = yrow.as_chunks_mut::<4>();
            let (x4, x1) = x.split_at(y4.len() * 4 * inp);
            for (ys, xs) in y4.iter_mut().zip(x4.chunks_exact(4 * inp)) {
                *ys = dot4(wrow, xs, bias);
            }
            // Two or three rows left: a pair shares its weight loads too.
            let (y2, y1) = y1.as_chunks_mut::<2>();
            let (x2, x1) = x1.split_at(y2.len() * 2 * inp);
            for (ys, xs) in y2.iter_mut().zip(x2.chunks_exact(2 * inp)) {
                *ys = dot2(wrow, xs, bias);
            }
            for (y, xrow) in y1.iter_mut().zip(x1.chunks_exact(inp)) {
                *y = dot(wrow, xrow, bias);
            }
        }
    }
}

/// Lanes per dot product of [`weight_row_dots`].
const LANES: usize = 16;

/// `bias + w·x` summed as 16 lanes over the whole chunks, plus the remainder first, the lanes
/// folded last (the order [`dot4`] keeps, so that both give the same bits). Inlined into the
/// caller's [`super::math::simd_kernel`], which vectorizes it.
#[inline(always)]
pub(super) fn dot<T: Float>(w: &[T], x: &[T], bias: T) -> T {
    let (wc, wt) = w.as_chunks::<LANES>();
    let (xc, xt) = x.as_chunks::<LANES>();
    let mut acc = [T::of_f64(0.0); LANES];
    for (p, q) in wc.iter().zip(xc) {
        for l in 0..LANES {
            acc[l] += p[l] * q[l];
        }
    }
    finish(&acc, wt, xt, bias)
}

/// [`dot`] of one weight row with four rows of `xs` (`4 × w.len()`), loading each weight chunk once.
#[inline(always)]
fn dot4<T: Float>(w: &[T], xs: &[T], bias: T) -> [T; 4] {
    let inp = w.len();
    let (wc, wt) = w.as_chunks::<LANES>();
    let (x0, rest) = xs.split_at(inp);
    let (x1, rest) = rest.split_at(inp);
    let (x2, x3) = rest.split_at(inp);
    let (c0, c1, c2, c3) = (x0.as_chunks::<LANES>(), x1.as_chunks::<LANES>(), x2.as_chunks::<LANES>(), x3.as_chunks::<LANES>());
    // Four separate arrays, not one `[[T; 16]; 4]`: LLVM keeps these in registers, the array
    // on the stack (measured: 2× slower).
    let zero = [T::of_f64(0.0); LANES];
    let (mut a0, mut a1, mut a2, mut a3) = (zero, zero, zero, zero);
    for ((p, (q0, q1)), (q2, q3)) in wc.iter().zip(c0.0.iter().zip(c1.0)).zip(c2.0.iter().zip(c3.0)) {
        for l in 0..LANES {
            a0[l] += p[l] * q0[l];
            a1[l] += p[l] * q1[l];
            a2[l] += p[l] * q2[l];
            a3[l] += p[l] * q3[l];
        }
    }
    [finish(&a0, wt, c0.1, bias), finish(&a1, wt, c1.1, bias), finish(&a2, wt, c2.1, bias), finish(&a3, wt, c3.1, bias)]
}

/// [`dot`] of one weight row with two rows of `xs` (`2 × w.len()`), as [`dot4`].
#[inline(always)]
fn dot2<T: Float>(w: &[T], xs: &[T], bias: T) -> [T; 2] {
    let (wc, wt) = w.as_chunks::<LANES>();
    let (x0, x1) = xs.split_at(w.len());
    let (c0, c1) = (x0.as_chunks::<LANES>(), x1.as_chunks::<LANES>());
    let zero = [T::of_f64(0.0); LANES];
    let (mut a0, mut a1) = (zero, zero);
    for (p, (q0, q1)) in wc.iter().zip(c0.0.iter().zip(c1.0)) {
        for l in 0..LANES {
            a0[l] += p[l] * q0[l];
            a1[l] += p[l] * q1[l];
        }
    }
    [finish(&a0, wt, c0.1, bias), finish(&a1, wt, c1.1, bias)]
}

/// The dot product's end: `bias + Σ tail products`, then the lanes in order.
#[inline(always)]
fn finish<T: Float>(acc: &[T; LANES], wt: &[T], xt: &[T], bias: T) -> T {
    let mut tail = T::of_f64(0.0);
    for (&p, &q) in wt.iter().zip(xt) {
        tail += p * q;
    }
    acc.iter().fold(bias + tail, |s, &a| s + a)
}

#[derive(Clone)]
struct Linear {
    /// Set for the backward kernel: dy.
    grad: Option<Tensor>,
    /// A GELU on the output ([`linear_gelu`]).
    act: Option<Activation>,
}

/// The product `a (m×k) · b (k×n)`, each operand a slice read with row and column strides
/// (`a[i, p] = a[i·a_rs + p·a_cs]`), computed by the `gemm` crate into a row-major `m×n` result.
#[derive(Clone, Copy)]
pub(crate) struct Product<'a, T> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: &'a [T],
    pub a_rs: usize,
    pub a_cs: usize,
    pub b: &'a [T],
    pub b_rs: usize,
    pub b_cs: usize,
}

impl<T: Float> Product<'_, T> {
    /// `dst (+)= a·b`, multi-threaded when `threads`.
    pub(crate) fn add_to(self, dst: &mut [T], accumulate: bool, threads: bool) {
        assert!(dst.len() >= self.m * self.n, "gemm: destination too small");
        if self.k == 0 {
            if !accumulate {
                dst[..self.m * self.n].iter_mut().for_each(|v| *v = T::of_f64(0.0));
            }
            return;
        }
        // SAFETY: `dst` is exclusive, initialised and holds m·n elements.
        unsafe { self.run(dst.as_mut_ptr(), accumulate, threads) }
    }

    /// `dst = a·b` into uninitialised memory: the GEMM writes every element and reads none, so
    /// a fresh buffer needs no zero fill first.
    pub(crate) fn write_to(self, dst: &mut [MaybeUninit<T>], threads: bool) {
        assert!(dst.len() >= self.m * self.n, "gemm: destination too small");
        if self.k == 0 {
            dst[..self.m * self.n].iter_mut().for_each(|v| {
                v.write(T::of_f64(0.0));
            });
            return;
        }
        // SAFETY: `dst` is exclusive and holds m·n elements; with `accumulate` false the kernel
        // only writes them (gemm-common zeroes alpha and never loads dst).
        unsafe { self.run(dst.as_mut_ptr().cast::<T>(), false, threads) }
    }

    /// `a·b` as a new vector, written straight by the GEMM (see [`Product::write_to`]).
    pub(crate) fn to_vec(self, threads: bool) -> Vec<T> {
        let len = self.m * self.n;
        let mut v = Vec::with_capacity(len);
        self.write_to(&mut v.spare_capacity_mut()[..len], threads);
        // SAFETY: write_to initialised all m·n elements.
        unsafe { v.set_len(len) };
        v
    }

    /// # Safety
    /// `dst` must be valid for writes of `m·n` elements (row stride `n`) and not aliased; when
    /// `accumulate` it must also be initialised. The operands are bounds-checked here.
    unsafe fn run(self, dst: *mut T, accumulate: bool, threads: bool) {
        let Self { m, n, k, a, a_rs, a_cs, b, b_rs, b_cs } = self;
        if m == 0 || n == 0 || k == 0 {
            return;
        }
        assert!((m - 1) * a_rs + (k - 1) * a_cs < a.len() && (k - 1) * b_rs + (n - 1) * b_cs < b.len(), "gemm: operand out of bounds");
        let par = if threads { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
        let one = T::of_f64(1.0);
        // SAFETY: the operands were bounds-checked above; `dst` is the caller's promise.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst,
                1,
                n as isize,
                accumulate,
                a.as_ptr(),
                a_cs as isize,
                a_rs as isize,
                b.as_ptr(),
                b_cs as isize,
                b_rs as isize,
                one,
                one,
                false,
                false,
                false,
                par,
            )
        }
    }
}

impl Linear {
    /// An empty `b` means no bias.
    fn forward<T: Float>(x: &[T], w: &[T], b: &[T], rows: usize, inp: usize, out: usize) -> Vec<T> {
        let zeros;
        let b = if b.is_empty() {
            zeros = vec![T::of_f64(0.0); out];
            &zeros[..]
        } else {
            b
        };
        if rows == 0 {
            return Vec::new();
        }
        // (No input features: the GEMM below leaves the bias rows, and the dot products' chunks
        // would be empty.)
        if rows <= FEW_ROWS && inp > 0 {
            return few_rows_forward(x, w, b, rows, inp, out);
        }
        // The bias rows are the GEMM's starting value (written once, no zero fill first).
        let mut y = Vec::with_capacity(rows * out);
        (0..rows).for_each(|_| y.extend_from_slice(b));
        // y += x (rows×in) · wᵀ (in×out): wᵀ[i, o] = w[o, i] → row stride 1, column stride `inp`.
        Product { m: rows, n: out, k: inp, a: x, a_rs: inp, a_cs: 1, b: w, b_rs: 1, b_cs: inp }.add_to(&mut y, true, true);
        y
    }

    /// `[dx | dW | db]` packed (`db` only when there is a bias).
    fn backward<T: Float>(x: &[T], w: &[T], dy: &[T], rows: usize, inp: usize, out: usize, bias: bool) -> Vec<T> {
        let len = rows * inp + out * inp + if bias { out } else { 0 };
        let mut packed = Vec::with_capacity(len);
        let (dx, rest) = packed.spare_capacity_mut()[..len].split_at_mut(rows * inp);
        let (dw, db) = rest.split_at_mut(out * inp);
        // dx (rows×in) = dy (rows×out) · w (out×in)
        Product { m: rows, n: inp, k: out, a: dy, a_rs: out, a_cs: 1, b: w, b_rs: inp, b_cs: 1 }.write_to(dx, true);
        // dW (out×in) = dyᵀ (out×rows) · x (rows×in)
        Product { m: out, n: inp, k: rows, a: dy, a_rs: 1, a_cs: out, b: x, b_rs: inp, b_cs: 1 }.write_to(dw, true);
        if bias {
            // db = Σ_rows dy
            db.iter_mut().zip(super::bias::column_sum(dy, out)).for_each(|(d, v)| {
                d.write(v);
            });
        }
        // SAFETY: dx, dW and (with a bias) db, together all `len` elements, were written above.
        unsafe { packed.set_len(len) };
        packed
    }
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        if self.grad.is_some() {
            "wenhui-linear-backward"
        } else {
            "wenhui-linear"
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
        let (out, inp) = l2.shape().dims2()?;
        // (`apply` takes `inp = 0` before any kernel; the guard keeps this division defined.)
        let rows = l1.shape().elem_count() / inp.max(1);
        let has_bias = l3.shape().elem_count() > 0;
        let mut out_dims = l1.dims().to_vec();
        *out_dims.last_mut().expect("rank ≥ 1") = out;
        let storage = float_dispatch!(s1, "linear", |T| {
            let (x, w) = (as_slice::<T>(s1, l1)?, as_slice::<T>(s2, l2)?);
            match (&self.grad, &self.act) {
                (None, None) => Self::forward(x, w, as_slice::<T>(s3, l3)?, rows, inp, out),
                (None, Some(act)) => act.apply(Self::forward(x, w, as_slice::<T>(s3, l3)?, rows, inp, out), &out_dims)?,
                (Some(g), _) => held::<T, _>(g, |dy| Ok(Self::backward(x, w, dy, rows, inp, out, has_bias)))?,
            }
        });
        let shape = match &self.grad {
            None => Shape::from(out_dims),
            Some(_) => Shape::from(rows * inp + out * inp + l3.shape().elem_count()),
        };
        Ok((storage, shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda::linear as gpu;
        let (out, inp) = l2.shape().dims2()?;
        let rows = l1.shape().elem_count() / inp.max(1);
        match (&self.grad, &self.act) {
            (None, None) => {
                let mut dims = l1.dims().to_vec();
                *dims.last_mut().expect("rank ≥ 1") = out;
                Ok((gpu::forward((s1, l1), (s2, l2), (s3, l3))?, Shape::from(dims)))
            }
            (None, Some(_)) => candle_core::bail!("linear_gelu runs on the CPU; on CUDA use linear, then gelu"),
            (Some(g), _) => {
                let (guard, gl) = g.storage_and_layout();
                let gs = super::cuda::cuda_storage(&guard, "linear backward: the output gradient")?;
                let bias = l3.shape().elem_count() > 0;
                let packed = gpu::backward((s1, l1), (s2, l2), (gs, gl), bias)?;
                Ok((packed, Shape::from(rows * inp + out * inp + l3.shape().elem_count())))
            }
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = match &self.act {
            None => grad.contiguous()?,
            Some(act) => act.backward(grad)?,
        };
        let op = Linear { grad: Some(grad), act: None };
        let packed = x.apply_op3_no_bwd(w, b, &op)?;
        let (nx, nw) = (x.elem_count(), w.elem_count());
        let dx = packed.narrow(0, 0, nx)?.reshape(x.shape())?;
        let dw = packed.narrow(0, nx, nw)?.reshape(w.shape())?;
        let db = if b.elem_count() > 0 { Some(packed.narrow(0, nx + nw, b.elem_count())?) } else { None };
        Ok((Some(dx), Some(dw), db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The few-rows path (decoding) equals the GEMM path on the same numbers.
    #[test]
    fn few_rows_dot_products_match_the_gemm_path() {
        for (inp, out) in [(37, 150), (40, 151)] {
            let w: Vec<f32> = (0..out * inp).map(|i| ((i * 7919 % 211) as f32 - 105.0) / 97.0).collect();
            let b: Vec<f32> = (0..out).map(|i| (i as f32 - 70.0) / 50.0).collect();
            for rows in [1, 3, 6, 9, FEW_ROWS] {
                let x: Vec<f32> = (0..rows * inp).map(|i| ((i * 104_729 % 173) as f32 - 86.0) / 61.0).collect();
                let fast = few_rows_forward(&x, &w, &b, rows, inp, out);
                let mut slow = vec![0f32; rows * out];
                slow.chunks_mut(out).for_each(|r| r.copy_from_slice(&b));
                Product { m: rows, n: out, k: inp, a: &x, a_rs: inp, a_cs: 1, b: &w, b_rs: 1, b_cs: inp }.add_to(&mut slow, true, false);
                let worst = fast.iter().zip(&slow).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(worst < 1e-5, "rows {rows}: max abs difference {worst}");
            }
        }
    }

    /// Rows that go through the weights four at a time give the same bits as each row alone:
    /// a beam's scores must not depend on how many beams share the step.
    #[test]
    fn grouped_rows_give_the_bits_of_single_rows() {
        // Odd and even output counts: the last parallel task's block of weight rows varies.
        for (inp, out) in [(5, 70), (16, 71), (37, 70), (64, 71), (384, 129)] {
            let w: Vec<f32> = (0..out * inp).map(|i| ((i * 7919 % 211) as f32 - 105.0) / 97.0).collect();
            let b: Vec<f32> = (0..out).map(|i| (i as f32 - 35.0) / 50.0).collect();
            let rows = 11; // two groups of four, a pair, then one alone
            let x: Vec<f32> = (0..rows * inp).map(|i| ((i * 104_729 % 173) as f32 - 86.0) / 61.0).collect();
            let together = few_rows_forward(&x, &w, &b, rows, inp, out);
            for (r, row) in x.chunks(inp).enumerate() {
                let alone = few_rows_forward(row, &w, &b, 1, inp, out);
                let same = alone.iter().zip(&together[r * out..(r + 1) * out]).all(|(a, t)| a.to_bits() == t.to_bits());
                assert!(same, "in {inp}, row {r}: grouped result differs from the row alone");
            }
        }
    }
}
