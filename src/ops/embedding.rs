//! Embedding lookup `weight[ids]` with a backward that scatters the gradient rows back into a
//! `[V, H]` table. candle's `index_select` backward (`index_add`) runs one CUDA thread per
//! hidden column looping over every id in turn — 768 threads for a whole GLM-Base batch — so
//! on a GPU the three embedding tables' gradients took a large share of the step; here every
//! (id, column) pair has its own thread (atomic adds), and the CPU splits the table by columns.

use super::{as_slice, float_dispatch, in_kernel_dtype, Float};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Rows of `weight` `[V, H]` for `ids` (any shape, integer) → `[..ids, H]`. Differentiable with
/// respect to `weight`. An id ≥ V is an error on the CPU; callers check ids before a GPU lookup.
pub fn embedding(weight: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (_, h) = weight.dims2()?;
    let flat = ids.flatten_all()?.to_dtype(DType::U32)?.contiguous()?;
    let rows = in_kernel_dtype(weight, |w| super::tape::apply_op2(&w.contiguous()?, &flat, Embedding))?;
    let mut shape = ids.dims().to_vec();
    shape.push(h);
    rows.reshape(shape)
}

struct Embedding;

fn gather<T: Float>(w: &[T], ids: &[u32], h: usize) -> Result<Vec<T>> {
    let v = w.len() / h.max(1);
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= v) {
        candle_core::bail!("embedding: id {bad} is out of range for a table of {v} rows");
    }
    let mut out = vec![T::of_f64(0.0); ids.len() * h];
    out.par_chunks_mut(h.max(1)).zip(ids.par_iter()).for_each(|(o, &i)| o.copy_from_slice(&w[i as usize * h..(i as usize + 1) * h]));
    Ok(out)
}

impl CustomOp2 for Embedding {
    fn name(&self) -> &'static str {
        "wenhui-embedding"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, h) = l1.shape().dims2()?;
        let ids = as_slice::<u32>(s2, l2)?;
        let out = float_dispatch!(s1, "embedding", |T| gather::<T>(as_slice(s1, l1)?, ids, h)?);
        Ok((out, Shape::from((ids.len(), h))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (_, h) = l1.shape().dims2()?;
        let n = l2.shape().elem_count();
        let out = super::cuda::float_kernel!(s1, "embedding", |T| super::cuda::embedding::<T>((s1, l1), (s2, l2), h)?);
        Ok((out, Shape::from((n, h))))
    }

    fn bwd(&self, weight: &Tensor, ids: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let v = weight.dim(0)?;
        let g = grad.to_dtype(weight.dtype())?.contiguous()?;
        Ok((Some(g.apply_op2_no_bwd(ids, &EmbeddingBackward { v })?), None))
    }
}

/// `dW[ids[r]] += g[r]` into a zero `[V, H]` table.
struct EmbeddingBackward {
    v: usize,
}

/// `g` holds one row of `h` per id (`h` given: with no ids it cannot be read off `g`).
fn scatter<T: Float>(g: &[T], ids: &[u32], v: usize, h: usize) -> Vec<T> {
    let mut out = vec![T::of_f64(0.0); v * h];
    // Threads own column ranges and add the rows in id order: deterministic, no atomics.
    let cols = (h / rayon::current_num_threads().max(1)).max(64);
    let mut blocks: Vec<(usize, Vec<T>)> = (0..h).step_by(cols).map(|c0| (c0, Vec::new())).collect();
    blocks.par_iter_mut().for_each(|(c0, acc)| {
        let w = cols.min(h - *c0);
        *acc = vec![T::of_f64(0.0); v * w];
        for (r, &id) in ids.iter().enumerate() {
            let src = &g[r * h + *c0..r * h + *c0 + w];
            let dst = &mut acc[id as usize * w..(id as usize + 1) * w];
            dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
        }
    });
    for (c0, acc) in blocks {
        let w = acc.len() / v.max(1);
        for row in 0..v {
            out[row * h + c0..row * h + c0 + w].copy_from_slice(&acc[row * w..(row + 1) * w]);
        }
    }
    out
}

impl CustomOp2 for EmbeddingBackward {
    fn name(&self) -> &'static str {
        "wenhui-embedding-backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let ids = as_slice::<u32>(s2, l2)?;
        let h = l1.shape().dims2()?.1;
        let out = float_dispatch!(s1, "embedding backward", |T| scatter::<T>(as_slice(s1, l1)?, ids, self.v, h));
        Ok((out, Shape::from((self.v, h))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let h = l1.shape().dims2()?.1;
        let out =
            super::cuda::float_kernel!(s1, "embedding backward", |T| super::cuda::embedding_backward::<T>((s1, l1), (s2, l2), self.v)?);
        Ok((out, Shape::from((self.v, h))))
    }
}
