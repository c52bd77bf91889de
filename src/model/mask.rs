//! Attention descriptions and the 0/1 masks they produce.

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// Which keys each query position may attend to.
#[derive(Debug, Clone)]
pub enum Attention {
    /// GLM's `sep` form, one entry per batch row: keys before `sep` are visible to every query
    /// (Part A, bidirectional); from `sep` on, attention is causal (Part B). `sep = S` is fully
    /// bidirectional, `sep = 0` fully causal. Cached keys are always visible.
    Sep(Vec<usize>),
    /// Left to right (cached keys visible).
    Causal,
    /// Every query sees every key.
    Bidirectional,
    /// An explicit 0/1 mask `[B or 1, 1, S, K]` with `K ≥ past + S`; the last `past + S` columns
    /// are used (as the official GLM code does).
    Explicit(Tensor),
}

/// Builds the `[B or 1, 1, S, past + S]` 0/1 mask for `attention` and optional key padding
/// (`[B, past + S]`, 1 = real token), in `dtype` on `device`. An empty batch (`batch` 0) gives an
/// empty mask (`[0, 1, S, past + S]`, or the explicit mask's own first dimension).
pub fn build_mask(
    attention: &Attention,
    key_padding: Option<&Tensor>,
    batch: usize,
    seq: usize,
    past: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let total =
        past.checked_add(seq).ok_or_else(|| Error::input(format!("attention mask: {past} cached + {seq} new positions overflow")))?;
    let mask = match attention {
        Attention::Explicit(m) => {
            let dims = m.dims();
            if dims.len() != 4 || dims[1] != 1 || dims[2] != seq || dims[3] < total || (dims[0] != batch && dims[0] != 1) {
                return Err(Error::input(format!(
                    "explicit attention mask has shape {dims:?}; expected [{batch} or 1, 1, {seq}, ≥{total}]"
                )));
            }
            m.narrow(3, dims[3] - total, total)?.to_dtype(dtype)?.to_device(device)?
        }
        other => {
            let seps: Vec<usize> = match other {
                Attention::Sep(seps) => {
                    if seps.len() != batch {
                        return Err(Error::input(format!("{} sep values given for a batch of {batch}", seps.len())));
                    }
                    if let Some(bad) = seps.iter().find(|&&s| s > seq) {
                        return Err(Error::input(format!("sep {bad} is beyond the sequence length {seq}")));
                    }
                    seps.clone()
                }
                Attention::Causal => vec![0; batch],
                Attention::Bidirectional => vec![seq; batch],
                Attention::Explicit(_) => unreachable!("handled above"),
            };
            // Identical rows collapse to a single broadcast mask; an empty batch gets an empty
            // `[0, 1, S, past + S]` mask (the fused ops take empty batches).
            let rows = match seps.first() {
                Some(&first) if seps.iter().all(|&s| s == first) => &seps[..1],
                _ => &seps[..],
            };
            let size = rows.len().checked_mul(seq).and_then(|n| n.checked_mul(total)).filter(|&n| n <= isize::MAX as usize / 4);
            let size = size.ok_or_else(|| {
                Error::input(format!("attention mask of {} × {seq} × {total} entries is too large to allocate", rows.len()))
            })?;
            // Large masks on a GPU are built there; a decoding step's one row is cheaper to upload.
            if !device.is_cpu() && size > 1 << 16 {
                return finish_mask(device_sep_mask(rows, seq, past, device)?.to_dtype(dtype)?, key_padding, batch, total, dtype, device);
            }
            let mut data = Vec::with_capacity(size);
            for &sep in rows {
                for i in 0..seq {
                    data.extend((0..past).map(|_| 1f32));
                    data.extend((0..seq).map(|j| if j < sep || j <= i { 1f32 } else { 0f32 }));
                }
            }
            // Cast on the host: a GPU step then uploads the mask in its dtype, with no cast launch.
            Tensor::from_vec(data, (rows.len(), 1, seq, total), &Device::Cpu)?.to_dtype(dtype)?.to_device(device)?
        }
    };
    finish_mask(mask, key_padding, batch, total, dtype, device)
}

/// Applies the optional key padding to a built mask.
fn finish_mask(mask: Tensor, key_padding: Option<&Tensor>, batch: usize, total: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    match key_padding {
        None => Ok(mask),
        Some(pad) => {
            let (pb, pk) = pad.dims2()?;
            if pb != batch || pk != total {
                return Err(Error::input(format!(
                    "key padding has shape [{pb}, {pk}]; expected [{batch}, {total}] (cached + new positions)"
                )));
            }
            let pad = pad.to_dtype(dtype)?.to_device(device)?.reshape((batch, 1, 1, total))?;
            Ok(mask.broadcast_mul(&pad)?)
        }
    }
}

/// The `[B or 1, 1, 1, total]` attention logit bias from [`crate::model::BackboneInput::key_bias`]
/// (`[B or 1, K]`, `K ≤ total`, zero-padded to the `total` keys), in `dtype` on `device`.
pub(crate) fn build_key_bias(bias: Option<&Tensor>, batch: usize, total: usize, dtype: DType, device: &Device) -> Result<Option<Tensor>> {
    let Some(bias) = bias else { return Ok(None) };
    let (bb, k) = bias.dims2().map_err(|_| Error::input(format!("key bias must be [batch or 1, keys], got {:?}", bias.dims())))?;
    if (bb != batch && bb != 1) || k > total {
        return Err(Error::input(format!("key bias has shape [{bb}, {k}]; expected [{batch} or 1, ≤{total}] (cached + new positions)")));
    }
    let bias = bias.to_dtype(dtype)?.to_device(device)?;
    let bias = if k < total { Tensor::cat(&[&bias, &Tensor::zeros((bb, total - k), dtype, device)?], 1)? } else { bias };
    Ok(Some(bias.reshape((bb, 1, 1, total))?))
}

/// The `[rows, 1, seq, past + seq]` sep mask built on the device itself (no host loop and
/// no upload of an S×S tensor per forward pass): column `c` of row `i` is visible when
/// `c < past + sep` or `c ≤ past + i`.
fn device_sep_mask(seps: &[usize], seq: usize, past: usize, device: &Device) -> Result<Tensor> {
    let total = past + seq;
    let cols = Tensor::arange(0u32, total as u32, device)?.reshape((1, 1, 1, total))?;
    let rows = Tensor::arange(past as u32, total as u32, device)?.reshape((1, 1, seq, 1))?;
    let limits: Vec<u32> = seps.iter().map(|&s| (past + s) as u32).collect();
    let limits = Tensor::from_vec(limits, (seps.len(), 1, 1, 1), device)?;
    let a = cols.broadcast_lt(&limits)?.broadcast_as((seps.len(), 1, seq, total))?;
    let b = cols.broadcast_le(&rows)?.broadcast_as((seps.len(), 1, seq, total))?;
    Ok(a.to_dtype(DType::F32)?.maximum(&b.to_dtype(DType::F32)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn rows(m: &Tensor) -> candle_core::Result<Vec<Vec<f32>>> {
        m.squeeze(0)?.squeeze(0)?.to_vec2()
    }

    #[test]
    fn device_built_mask_equals_the_host_loop() -> TestResult {
        for (seps, seq, past) in [(vec![2usize, 5, 0], 6usize, 0usize), (vec![3], 4, 3), (vec![0, 1], 1, 7)] {
            let m = build_mask(&Attention::Sep(seps.clone()), None, seps.len(), seq, past, DType::F32, &Device::Cpu)?;
            let d = device_sep_mask(&seps, seq, past, &Device::Cpu)?;
            let diff = (m.broadcast_as(d.shape())? - &d)?.abs()?.sum_all()?.to_scalar::<f32>()?;
            assert_eq!(diff, 0.0, "seps {seps:?} seq {seq} past {past}");
        }
        Ok(())
    }

    #[test]
    fn sep_mask_is_bidirectional_then_causal() -> TestResult {
        let m = build_mask(&Attention::Sep(vec![2]), None, 1, 4, 0, DType::F32, &Device::Cpu)?;
        assert_eq!(rows(&m)?, vec![vec![1., 1., 0., 0.], vec![1., 1., 0., 0.], vec![1., 1., 1., 0.], vec![1., 1., 1., 1.]]);
        Ok(())
    }

    #[test]
    fn cached_keys_are_visible() -> TestResult {
        let m = build_mask(&Attention::Causal, None, 1, 2, 3, DType::F32, &Device::Cpu)?;
        assert_eq!(rows(&m)?, vec![vec![1., 1., 1., 1., 0.], vec![1., 1., 1., 1., 1.]]);
        Ok(())
    }

    #[test]
    fn key_bias_is_zero_padded_and_checked() -> TestResult {
        let b = Tensor::new(&[[0.5f32, 0.0, 1.0]], &Device::Cpu)?;
        let t = build_key_bias(Some(&b), 2, 5, DType::F32, &Device::Cpu)?.ok_or("no bias")?;
        assert_eq!(t.dims(), &[1, 1, 1, 5]);
        assert_eq!(t.flatten_all()?.to_vec1::<f32>()?, vec![0.5, 0.0, 1.0, 0.0, 0.0]);
        assert!(build_key_bias(Some(&b), 2, 2, DType::F32, &Device::Cpu).is_err());
        let two = Tensor::zeros((3, 2), DType::F32, &Device::Cpu)?;
        assert!(build_key_bias(Some(&two), 2, 5, DType::F32, &Device::Cpu).is_err());
        assert!(build_key_bias(None, 2, 5, DType::F32, &Device::Cpu)?.is_none());
        Ok(())
    }

    #[test]
    fn bad_sep_is_an_error() {
        assert!(build_mask(&Attention::Sep(vec![5]), None, 1, 4, 0, DType::F32, &Device::Cpu).is_err());
        assert!(build_mask(&Attention::Sep(vec![1, 1]), None, 1, 4, 0, DType::F32, &Device::Cpu).is_err());
    }
}
