//! Multi-head attention shared by all backbones, and the per-layer key/value cache.

use crate::ops::masked_softmax;
use crate::Result;
use candle_core::Tensor;

/// Keys and values of earlier positions for every layer, `[B, N, past, d]` each.
///
/// For GLM this is exactly the official "mems": K/V are computed from `LN1(mem)`, so caching them
/// gives the same numbers as re-normalising the memory each step. Entries live in buffers with
/// spare capacity that new positions are written into, so a decoding step copies only the new
/// keys, not the whole history. Cloning copies the buffers (clones never share storage).
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
}

/// One layer's keys and values: `[B, N, capacity, d]` buffers, the first `len` positions used.
#[derive(Debug)]
pub(crate) struct LayerKv {
    k: Tensor,
    v: Tensor,
    len: usize,
}

impl LayerKv {
    fn capacity(&self) -> usize {
        self.k.dims()[2]
    }

    /// Appends `[B, N, s, d]` keys and values, growing the buffers geometrically when full.
    fn append(slot: &mut Option<LayerKv>, k: &Tensor, v: &Tensor) -> Result<()> {
        let s = k.dims()[2];
        match slot {
            None => {
                let cap = s.max(64).next_power_of_two();
                let (kb, vb) = (grow(k, cap)?, grow(v, cap)?);
                *slot = Some(LayerKv { k: kb, v: vb, len: s });
            }
            Some(e) => {
                e.reserve(s)?;
                e.k.slice_set(&k.contiguous()?, 2, e.len)?;
                e.v.slice_set(&v.contiguous()?, 2, e.len)?;
                e.len += s;
            }
        }
        Ok(())
    }

    /// Room for `extra` more positions, growing the buffers geometrically when full.
    fn reserve(&mut self, extra: usize) -> Result<()> {
        if self.len + extra > self.capacity() {
            let cap = (self.len + extra).next_power_of_two();
            self.k = grow(&self.k.narrow(2, 0, self.len)?, cap)?;
            self.v = grow(&self.v.narrow(2, 0, self.len)?, cap)?;
        }
        Ok(())
    }

    fn keys(&self) -> Result<Tensor> {
        Ok(self.k.narrow(2, 0, self.len)?)
    }

    fn values(&self) -> Result<Tensor> {
        Ok(self.v.narrow(2, 0, self.len)?)
    }
}

/// A new `[B, N, cap, d]` buffer whose first positions hold `x`.
fn grow(x: &Tensor, cap: usize) -> Result<Tensor> {
    let (b, n, s, d) = x.dims4()?;
    let buf = Tensor::zeros((b, n, cap, d), x.dtype(), x.device())?;
    buf.slice_set(&x.contiguous()?, 2, 0)?;
    debug_assert!(s <= cap);
    Ok(buf)
}

/// A deep copy (see [`KvCache::try_clone`]).
///
/// # Panics
///
/// When the device cannot allocate the copy (a GPU out of memory; the CPU allocator aborts the
/// process instead): a copy of same-shaped buffers on their own device fails in no other way.
/// `Clone` cannot return an error; code that can recover calls [`KvCache::try_clone`].
impl Clone for KvCache {
    fn clone(&self) -> Self {
        match self.try_clone() {
            Ok(c) => c,
            Err(e) => panic!("KvCache::clone: {e} (use KvCache::try_clone to handle this)"),
        }
    }
}

impl KvCache {
    /// A deep copy whose buffers share no storage with this cache's; an error when the device
    /// cannot allocate them (a GPU out of memory).
    pub fn try_clone(&self) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|l| l.as_ref().map(|e| Ok(LayerKv { k: e.k.copy()?, v: e.v.copy()?, len: e.len })).transpose())
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }
    /// Number of layers the cache was made for.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
    /// An empty cache for `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self { layers: (0..num_layers).map(|_| None).collect() }
    }
    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layers.first().and_then(|l| l.as_ref()).map_or(0, |e| e.len)
    }
    /// True when nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Batch size of the cached entries (0 when empty).
    pub fn batch(&self) -> usize {
        self.layers.first().and_then(|l| l.as_ref()).map_or(0, |e| e.k.dims()[0])
    }
    /// Keeps batch rows in the order of `index` (u32 `[B']`), e.g. the surviving beams.
    ///
    /// A beam-search step keeps most beams where they are, so when the batch size stays the
    /// same only the rows that change are copied, in place, instead of every layer's whole
    /// buffers each step; a new batch size copies everything.
    pub fn reorder(&mut self, index: &Tensor) -> Result<()> {
        let rows = self.batch();
        let to: Vec<u32> = index.to_dtype(candle_core::DType::U32)?.to_vec1()?;
        if to.len() != rows {
            for e in self.layers.iter_mut().flatten() {
                e.k = e.k.index_select(index, 0)?;
                e.v = e.v.index_select(index, 0)?;
            }
            return Ok(());
        }
        if let Some(bad) = to.iter().find(|&&j| j as usize >= rows) {
            return Err(crate::Error::input(format!("KvCache::reorder: row {bad} of a batch of {rows}")));
        }
        let (dst, src): (Vec<usize>, Vec<u32>) = to.iter().enumerate().filter(|&(i, &j)| i != j as usize).map(|(i, &j)| (i, j)).unzip();
        if dst.is_empty() {
            return Ok(());
        }
        let src_rows: Vec<usize> = src.iter().map(|&j| j as usize).collect();
        let src = Tensor::new(src, index.device())?;
        for e in self.layers.iter_mut().flatten() {
            // On the CPU only the filled positions move, in place.
            if crate::ops::moves_in_place(&e.k) && crate::ops::moves_in_place(&e.v) {
                crate::ops::move_rows_in_place(&e.k, &dst, &src_rows, e.len)?;
                crate::ops::move_rows_in_place(&e.v, &dst, &src_rows, e.len)?;
                continue;
            }
            // The sources are gathered before any row is overwritten: a row may be both.
            let (k, v) = (e.k.index_select(&src, 0)?, e.v.index_select(&src, 0)?);
            for (n, &row) in dst.iter().enumerate() {
                e.k.slice_set(&k.narrow(0, n, 1)?, 0, row)?;
                e.v.slice_set(&v.narrow(0, n, 1)?, 0, row)?;
            }
        }
        Ok(())
    }

    /// Most positions [`KvCache::left_pad`] lets a cache grow to: about a million, far past the
    /// position table of any model wenhui runs (GLM-130B has 2,048), so a pad this long can only
    /// be a mistake, refused before its buffers are allocated.
    pub const MAX_PADDED_POSITIONS: usize = 1 << 20;

    /// Prepends `n` zero positions to every row, so rows of different lengths can share one
    /// batch: mask those positions with [`crate::model::BackboneInput::key_padding`]. An error
    /// when the cache would then hold more than [`KvCache::MAX_PADDED_POSITIONS`] positions.
    pub fn left_pad(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let have = self.layers.iter().flatten().map(|e| e.len).max().unwrap_or(0);
        if have.checked_add(n).is_none_or(|p| p > Self::MAX_PADDED_POSITIONS) {
            return Err(crate::Error::input(format!(
                "KvCache::left_pad: n = {n} would make {} cached positions (from {have}), more than the {} a cache may \
                 hold; pad by the difference of the lengths being aligned",
                have as u128 + n as u128,
                Self::MAX_PADDED_POSITIONS
            )));
        }
        for e in self.layers.iter_mut().flatten() {
            let (b, h, _, d) = e.k.dims4()?;
            let cap = (e.len + n).max(64).next_power_of_two();
            let zeros = Tensor::zeros((b, h, n, d), e.k.dtype(), e.k.device())?;
            e.k = grow(&Tensor::cat(&[&zeros, &e.keys()?], 2)?, cap)?;
            e.v = grow(&Tensor::cat(&[&zeros, &e.values()?], 2)?, cap)?;
            e.len += n;
        }
        Ok(())
    }
    /// Appends the rows of `other` (same number of cached positions) after this cache's rows.
    pub fn append_rows(&mut self, other: &KvCache) -> Result<()> {
        if self.is_empty() {
            *self = other.try_clone()?;
            return Ok(());
        }
        if other.len() != self.len() || other.layers.len() != self.layers.len() {
            return Err(crate::Error::input(format!(
                "append_rows: caches hold {} and {} positions; left-pad the shorter one first",
                self.len(),
                other.len()
            )));
        }
        for (a, b) in self.layers.iter_mut().zip(&other.layers) {
            match (a.as_mut(), b) {
                (Some(a), Some(b)) => {
                    let cap = a.capacity();
                    a.k = grow(&Tensor::cat(&[&a.keys()?, &b.keys()?], 0)?, cap)?;
                    a.v = grow(&Tensor::cat(&[&a.values()?, &b.values()?], 0)?, cap)?;
                }
                _ => return Err(crate::Error::input("append_rows: a layer is cached in one cache but not the other")),
            }
        }
        Ok(())
    }
    /// Drops the first `n` cached positions of every row (e.g. padding no row needs any more).
    pub fn trim_front(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        for e in self.layers.iter_mut().flatten() {
            let n = n.min(e.len);
            let cap = e.capacity();
            e.k = grow(&e.k.narrow(2, n, e.len - n)?, cap)?;
            e.v = grow(&e.v.narrow(2, n, e.len - n)?, cap)?;
            e.len -= n;
        }
        Ok(())
    }
    /// Forgets everything.
    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
    }
    pub(crate) fn layer(&mut self, i: usize) -> &mut Option<LayerKv> {
        &mut self.layers[i]
    }
}

/// `[B, S, H]` → `[B, N, S, d]`.
fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, s, h) = x.dims3()?;
    Ok(x.reshape((b, s, heads, h / heads))?.transpose(1, 2)?.contiguous()?)
}

/// Up to this many new rows over a cache, attention on the CPU is one pass of dot products per
/// (batch, head) ([`crate::ops::cached_attention`]): decoding steps and short units. A longer
/// chunk takes the GEMMs, which win there (hundreds of rows: about 3× faster).
const CACHED_ROWS: usize = 16;

/// Scaled dot-product attention over `q, k, v` (`[B, S, H]` each) with a 0/1 `mask`
/// (`[B or 1, 1, S, past + S]`). New keys/values are appended to `cache` when given.
/// Masked scores are replaced by −65504 before the softmax (see [`crate::ops::masked_softmax`]).
/// `bias` (`[B or 1, 1, 1, past + S]`) is added to the scaled scores before masking.
/// `dropout` = (probability, step seed, call site) for the attention probabilities.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    mask: &Tensor,
    bias: Option<&Tensor>,
    cache: Option<&mut Option<LayerKv>>,
    dropout: (f64, Option<u64>, u64),
) -> Result<Tensor> {
    let (b, s, h) = q.dims3()?;
    let d = h / heads;
    let q = split_heads(q, heads)?;
    let mut k = split_heads(k, heads)?;
    let mut v = split_heads(v, heads)?;
    let mut fresh = true;
    let mut entry = None;
    if let Some(slot) = cache {
        fresh = slot.is_none();
        LayerKv::append(slot, &k, &v)?;
        let e = slot.as_ref().ok_or_else(|| crate::Error::input("attend: the cache entry is empty after an append"))?;
        k = e.keys()?;
        v = e.values()?;
        entry = Some(e);
    }
    let scale = 1.0 / (d as f64).sqrt();
    let (p, seed, site) = dropout;
    let inference = seed.is_none() || p == 0.0;
    let ctx = if fresh && (q.device().is_cpu() || crate::ops::cuda_fused(&q)) {
        // No history: one fused node (scores, bias, mask, softmax, dropout, PV) with its own backward.
        let (p, seed) = fused_dropout(dropout);
        crate::ops::attention(&q, &k, &v, mask, bias, scale, p, seed)?
    } else if let Some(e) = entry.filter(|e| {
        inference
            && (1..=CACHED_ROWS).contains(&s)
            && !q.track_op()
            && crate::ops::fused_cpu(&q)
            && e.k.is_contiguous()
            && e.v.is_contiguous()
    }) {
        // Decoding on the CPU: the cached keys and values read in place, one pass per (batch, head).
        crate::ops::cached_attention(&q, &e.k, &e.v, e.len, mask, bias, scale)?
    } else {
        // Kᵀ as a strided view: the matmul reads the cached history in place, no copy.
        let mut scores = q.matmul(&k.transpose(2, 3)?)?;
        if let Some(bias) = bias {
            // The softmax scales the scores, so the bias goes in unscaled: (s + b/scale)·scale = s·scale + b.
            scores = scores.broadcast_add(&bias.affine(1.0 / scale, 0.0)?.to_dtype(scores.dtype())?)?;
        }
        let probs = masked_softmax(&scores, mask, scale)?;
        super::dropout(&probs, p, seed, site)?.matmul(&v)?
    };
    Ok(ctx.transpose(1, 2)?.reshape((b, s, h))?)
}

/// Whether a one-token decoding step on `x` (`[B, 1, H]`, B > 0) can take the decoding steps
/// ([`attend_decode`], `ops::decode`) in every layer: they are on for `x`'s device (CUDA with the
/// fused ops, the default), every layer's cache entry is filled and the mask (`[1 or B, 1, 1,
/// len + 1]`) fits it, no gradient flows through `x` (the caller checks the weights), and the head
/// size and key count fit the CUDA kernel. Anything else takes the usual path.
pub(crate) fn decode_fusable(x: &Tensor, heads: usize, mask: &Tensor, cache: &KvCache) -> bool {
    let (Ok((b, 1, h)), Ok((mb, 1, 1, t))) = (x.dims3(), mask.dims4()) else { return false };
    b > 0
        && (mb == 1 || mb == b)
        && !cache.layers.is_empty()
        && cache.layers.iter().all(|e| e.as_ref().is_some_and(|e| t == e.len + 1 && e.k.dims()[0] == b))
        && crate::ops::decode::enabled(x)
        && !x.track_op()
        && heads > 0
        && h % heads == 0
        && crate::ops::launch::decode_fits(h / heads, t, x.dtype())
}

/// One decoding step's attention (see [`decode_fusable`]): `y` is the QKV projection `[B, 1, 3H]`
/// *before* its bias `qkv_bias`; the new key and value are appended to the cache entry in place
/// and the context `[B, 1, H]` returned. On CUDA one kernel (`ops::cuda::decode`) does all of it;
/// on the CPU the bias is added and [`attend_packed`] attends.
pub(crate) fn attend_decode(
    y: &Tensor,
    qkv_bias: &Tensor,
    heads: usize,
    mask: &Tensor,
    bias: Option<&Tensor>,
    slot: &mut Option<LayerKv>,
) -> Result<Tensor> {
    let dt = y.dtype();
    if !y.device().is_cuda() {
        return attend_packed(&y.broadcast_add(&qkv_bias.to_dtype(dt)?)?, heads, mask, bias, Some(slot), (0.0, None, 0));
    }
    #[cfg(not(feature = "cuda"))]
    return Err(crate::Error::input("attend_decode: a CUDA tensor in a build without the cuda feature"));
    #[cfg(feature = "cuda")]
    {
        let e = slot.as_mut().ok_or_else(|| crate::Error::input("attend_decode: the cache entry is empty"))?;
        e.reserve(1)?;
        let d = y.dim(2)? / 3 / heads.max(1);
        let op = crate::ops::cuda::decode::DecodeAttention {
            qkv_bias: qkv_bias.to_dtype(dt)?.contiguous()?,
            k: e.k.clone(),
            v: e.v.clone(),
            mask: mask.to_dtype(dt)?.contiguous()?,
            key_bias: bias.map(|b| b.to_dtype(dt).and_then(|b| b.contiguous())).transpose()?,
            heads,
            len: e.len,
            scale: 1.0 / (d as f64).sqrt(),
        };
        let out = y.contiguous()?.apply_op1_no_bwd(&op)?;
        e.len += 1;
        Ok(out)
    }
}

/// (probability, mask seed) for a fused attention op: no dropout at inference.
fn fused_dropout((p, seed, site): (f64, Option<u64>, u64)) -> (f64, u64) {
    match seed {
        Some(s) => (p, super::dropout_seed(s, site)),
        None => (0.0, 0),
    }
}

/// [`attend`] from a fused projection `qkv` `[B, S, 3H]`. Without a cache (training, full
/// passes) on the CPU this is one fused node reading Q/K/V in place (on CUDA too with
/// the fused CUDA ops, the default); otherwise it splits the projection and goes through [`attend`].
pub(crate) fn attend_packed(
    qkv: &Tensor,
    heads: usize,
    mask: &Tensor,
    bias: Option<&Tensor>,
    cache: Option<&mut Option<LayerKv>>,
    dropout: (f64, Option<u64>, u64),
) -> Result<Tensor> {
    let h = qkv.dim(2)? / 3;
    if cache.is_none() && (crate::ops::fused_cpu(qkv) || crate::ops::cuda_fused(qkv)) {
        let (p, seed) = fused_dropout(dropout);
        return Ok(crate::ops::attention_packed(qkv, heads, mask, bias, 1.0 / ((h / heads) as f64).sqrt(), p, seed)?);
    }
    attend(&qkv.narrow(2, 0, h)?, &qkv.narrow(2, h, h)?, &qkv.narrow(2, 2 * h, h)?, heads, mask, bias, cache, dropout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, IndexOp};

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn cache_grows_reorders_and_clones_without_sharing() -> TestResult {
        let dev = Device::Cpu;
        let parts =
            [50usize, 20, 1, 60].iter().map(|&s| Tensor::randn(0f32, 1., (3, 2, s, 4), &dev)).collect::<candle_core::Result<Vec<_>>>()?;
        let mut slot = None;
        for p in &parts {
            LayerKv::append(&mut slot, p, &p.affine(2.0, 0.0)?)?;
        }
        let e = slot.as_ref().ok_or("empty slot")?;
        let want = Tensor::cat(&parts.iter().collect::<Vec<_>>(), 2)?;
        assert_eq!(e.len, 131);
        let diff = (e.keys()? - &want)?.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);

        let mut cache = KvCache { layers: vec![slot] };
        let snapshot = cache.clone();
        cache.reorder(&Tensor::new(&[2u32, 2, 0], &dev)?)?;
        let e = cache.layers[0].as_ref().ok_or("empty layer")?;
        let row = (e.values()?.i(1)? - want.i(2)?.affine(2.0, 0.0)?)?;
        assert_eq!(row.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0);
        // Appending to the reordered cache leaves the earlier clone untouched.
        let extra = Tensor::ones((3, 2, 1, 4), DType::F32, &dev)?;
        LayerKv::append(cache.layer(0), &extra, &extra)?;
        assert_eq!(cache.len(), 132);
        assert_eq!(snapshot.len(), 131);
        let s = snapshot.layers[0].as_ref().ok_or("empty layer")?;
        let d = (s.keys()? - &want)?.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert_eq!(d, 0.0);
        Ok(())
    }

    /// In-place reordering gives what a full `index_select` gives: identities, swaps, cycles,
    /// repeated rows, and a change of batch size.
    #[test]
    fn reorder_matches_index_select() -> TestResult {
        let dev = Device::Cpu;
        let (k, v) = (Tensor::randn(0f32, 1., (4, 2, 70, 3), &dev)?, Tensor::randn(0f32, 1., (4, 2, 70, 3), &dev)?);
        for order in [vec![0u32, 1, 2, 3], vec![1, 0, 2, 3], vec![3, 0, 1, 2], vec![2, 2, 2, 0], vec![0, 0, 1, 1], vec![3, 1], vec![0; 6]] {
            let mut slot = None;
            LayerKv::append(&mut slot, &k, &v)?;
            let mut cache = KvCache { layers: vec![slot, None] };
            let snapshot = cache.clone();
            let index = Tensor::new(order.as_slice(), &dev)?;
            cache.reorder(&index)?;
            assert_eq!(cache.batch(), order.len());
            let e = cache.layers[0].as_ref().ok_or("empty layer")?;
            for (got, want) in [(e.keys()?, k.index_select(&index, 0)?), (e.values()?, v.index_select(&index, 0)?)] {
                assert_eq!((got - want)?.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0, "{order:?}");
            }
            let s = snapshot.layers[0].as_ref().ok_or("empty layer")?;
            assert_eq!((s.keys()? - &k)?.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0, "the clone was touched: {order:?}");
        }
        let mut slot = None;
        LayerKv::append(&mut slot, &k, &v)?;
        let mut cache = KvCache { layers: vec![slot] };
        let e = cache.reorder(&Tensor::new(&[0u32, 1, 2, 4], &dev)?).map(|_| ()).err().ok_or("row 4 of 4 accepted")?;
        assert!(e.to_string().contains("row 4 of a batch of 4"), "{e}");
        Ok(())
    }

    /// `softmax(Q·Kᵀ·scale + bias, masked)·V` with plain candle ops, `[B, S, H]` in and out.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, mask: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
        let (b, s, h) = q.dims3()?;
        let split = |x: &Tensor| x.reshape((b, s, heads, h / heads))?.transpose(1, 2)?.contiguous();
        let (q, k, v) = (split(q)?, split(k)?, split(v)?);
        let scale = 1.0 / ((h / heads) as f64).sqrt();
        let scores = q.matmul(&k.t()?)?.affine(scale, 0.0)?.broadcast_add(bias)?;
        let scores = scores.broadcast_add(&mask.affine(1e9, -1e9)?)?;
        let p = candle_nn::ops::softmax_last_dim(&scores)?;
        p.matmul(&v)?.transpose(1, 2)?.reshape((b, s, h))
    }

    #[test]
    fn key_bias_is_added_to_the_scaled_scores_of_visible_keys() -> TestResult {
        use crate::model::mask::build_key_bias;
        use crate::model::{build_mask, Attention};
        let dev = Device::Cpu;
        let (b, s, heads, h) = (2, 5, 2, 8);
        let qkv: Vec<Tensor> = (0..3).map(|_| Tensor::randn(0f32, 1., (b, s, h), &dev)).collect::<candle_core::Result<_>>()?;
        let mask = build_mask(&Attention::Sep(vec![3, 1]), None, b, s, 0, DType::F32, &dev)?;
        let raw = Tensor::new(&[[0f32, 2.0, 0.0, 0.0, -1.0], [1.5, 0.0, 0.0, 0.7, 0.0]], &dev)?;
        let bias = build_key_bias(Some(&raw), b, s, DType::F32, &dev)?.ok_or("no bias")?;
        let got = attend(&qkv[0], &qkv[1], &qkv[2], heads, &mask, Some(&bias), None, (0.0, None, 0))?;
        let want = reference(&qkv[0], &qkv[1], &qkv[2], heads, &mask, &bias)?;
        let err = crate::ops::max_abs_diff(&got, &want)?;
        assert!(err < 1e-5, "max abs error {err}");
        // A zero bias changes nothing.
        let zero = bias.zeros_like()?;
        let unfused = attend(&qkv[0], &qkv[1], &qkv[2], heads, &mask, Some(&zero), None, (0.0, None, 0))?;
        let fused = attend(&qkv[0], &qkv[1], &qkv[2], heads, &mask, None, None, (0.0, None, 0))?;
        let err = crate::ops::max_abs_diff(&unfused, &fused)?;
        assert!(err < 1e-5, "fused vs unfused {err}");
        // And the bias does change the result.
        let diff = crate::ops::max_abs_diff(&want, &reference(&qkv[0], &qkv[1], &qkv[2], heads, &mask, &zero)?)?;
        assert!(diff > 1e-3);
        Ok(())
    }
}
