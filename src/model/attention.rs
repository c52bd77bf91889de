//! Multi-head attention shared by all backbones, and the per-layer key/value cache.

use crate::ops::masked_softmax;
use crate::Result;
use candle_core::Tensor;

/// Keys and values of earlier positions, one `(K, V)` pair of `[B, N, past, d]` per layer.
///
/// For GLM this is exactly the official "mems": K/V are computed from `LN1(mem)`, so caching them
/// gives the same numbers as re-normalising the memory each step.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// An empty cache for `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self { layers: vec![None; num_layers] }
    }
    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layers.first().and_then(|l| l.as_ref()).map_or(0, |(k, _)| k.dims()[2])
    }
    /// True when nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Batch size of the cached entries (0 when empty).
    pub fn batch(&self) -> usize {
        self.layers.first().and_then(|l| l.as_ref()).map_or(0, |(k, _)| k.dims()[0])
    }
    /// Keeps batch rows in the order of `index` (u32 `[B']`), e.g. the surviving beams.
    pub fn reorder(&mut self, index: &Tensor) -> Result<()> {
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.index_select(index, 0)?;
            *v = v.index_select(index, 0)?;
        }
        Ok(())
    }
    /// Forgets everything.
    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
    }
    pub(crate) fn layer(&mut self, i: usize) -> &mut Option<(Tensor, Tensor)> {
        &mut self.layers[i]
    }
}

/// `[B, S, H]` → `[B, N, S, d]`.
fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, s, h) = x.dims3()?;
    Ok(x.reshape((b, s, heads, h / heads))?.transpose(1, 2)?.contiguous()?)
}

/// Scaled dot-product attention over `q, k, v` (`[B, S, H]` each) with a 0/1 `mask`
/// (`[B or 1, 1, S, past + S]`). New keys/values are appended to `cache` when given.
/// Masked scores are replaced by −65504 before the softmax (see [`crate::ops::masked_softmax`]).
pub(crate) fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    mask: &Tensor,
    cache: Option<&mut Option<(Tensor, Tensor)>>,
) -> Result<Tensor> {
    let (b, s, h) = q.dims3()?;
    let d = h / heads;
    let q = split_heads(q, heads)?;
    let mut k = split_heads(k, heads)?;
    let mut v = split_heads(v, heads)?;
    if let Some(slot) = cache {
        if let Some((pk, pv)) = slot.as_ref() {
            k = Tensor::cat(&[pk, &k], 2)?;
            v = Tensor::cat(&[pv, &v], 2)?;
        }
        *slot = Some((k.clone(), v.clone()));
    }
    let scores = q.matmul(&k.transpose(2, 3)?.contiguous()?)?;
    let probs = masked_softmax(&scores, mask, 1.0 / (d as f64).sqrt())?;
    let ctx = probs.matmul(&v)?;
    Ok(ctx.transpose(1, 2)?.reshape((b, s, h))?)
}
