//! Moving batch rows of a K/V cache buffer in place on the CPU (beam search reorders its beams
//! every step). Only the filled positions move: a gather into a fresh tensor and a copy back
//! moved every row's whole capacity twice and allocated (and page-faulted) a new buffer per
//! layer and step.

use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Result, Tensor};

/// Whether [`move_rows_in_place`] takes `buf`: a contiguous `[B, N, capacity, d]` CPU tensor in
/// f32 or f64 (elsewhere the caller copies another way).
pub(crate) fn moves_in_place(buf: &Tensor) -> bool {
    buf.device().is_cpu() && matches!(buf.dtype(), DType::F32 | DType::F64) && buf.is_contiguous() && buf.rank() == 4
}

/// Copies, in `buf` (see [`moves_in_place`]), the first `len` positions of row `src[i]` into row
/// `dst[i]` for every `i`, all sources read before any row is written (a row may be both).
pub(crate) fn move_rows_in_place(buf: &Tensor, dst: &[usize], src: &[usize], len: usize) -> Result<()> {
    if !moves_in_place(buf) {
        candle_core::bail!("kv rows: a {:?} {:?} buffer on {:?} is not moved in place", buf.dtype(), buf.dims(), buf.device());
    }
    let (rows, _, cap, _) = buf.dims4()?;
    if dst.len() != src.len() || len > cap || dst.iter().chain(src).any(|&r| r >= rows) {
        candle_core::bail!("kv rows: moving rows {src:?} to {dst:?} ({len} positions) in a buffer of {:?}", buf.dims());
    }
    buf.inplace_op1(&MoveRows { dst: dst.to_vec(), src: src.to_vec(), len })
}

struct MoveRows {
    dst: Vec<usize>,
    src: Vec<usize>,
    len: usize,
}

impl MoveRows {
    fn apply<T: Copy>(&self, buf: &mut [T], heads: usize, cap: usize, d: usize) {
        let (row, head, part) = (heads * cap * d, cap * d, self.len * d);
        let block = |r: usize, h: usize| r * row + h * head..r * row + h * head + part;
        let mut staged = Vec::with_capacity(self.src.len() * heads * part);
        for &r in &self.src {
            for h in 0..heads {
                staged.extend_from_slice(&buf[block(r, h)]);
            }
        }
        for (parts, &r) in staged.chunks((heads * part).max(1)).zip(&self.dst) {
            for (h, from) in parts.chunks(part.max(1)).enumerate() {
                buf[block(r, h)].copy_from_slice(from);
            }
        }
    }
}

impl InplaceOp1 for MoveRows {
    fn name(&self) -> &'static str {
        "wenhui-kv-move-rows"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let (_, heads, cap, d) = layout.shape().dims4()?;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("kv rows: the buffer must be contiguous");
        };
        match storage {
            CpuStorage::F32(v) => self.apply(&mut v[start..end], heads, cap, d),
            CpuStorage::F64(v) => self.apply(&mut v[start..end], heads, cap, d),
            _ => candle_core::bail!("kv rows: only f32 and f64 buffers are moved in place"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    /// Rows move as an `index_select` would move them, for the filled positions; positions past
    /// `len` and rows not named stay as they were; a cycle (rows that are both source and
    /// destination) reads every source before writing.
    #[test]
    fn moves_the_filled_positions_of_the_named_rows() -> Result<()> {
        let (rows, heads, cap, d, len) = (4, 3, 8, 5, 6);
        let before = Tensor::arange(0f32, (rows * heads * cap * d) as f32, &Device::Cpu)?.reshape((rows, heads, cap, d))?;
        let buf = before.copy()?;
        // 0 ← 2, 2 ← 0 (a swap), 3 ← 0; row 1 untouched.
        let (dst, src) = ([0usize, 2, 3], [2usize, 0, 0]);
        move_rows_in_place(&buf, &dst, &src, len)?;
        for r in 0..rows {
            let from = dst.iter().position(|&x| x == r).map_or(r, |i| src[i]);
            let got = buf.i(r)?;
            assert_eq!(got.narrow(1, 0, len)?.to_vec3::<f32>()?, before.i(from)?.narrow(1, 0, len)?.to_vec3::<f32>()?, "row {r}");
            assert_eq!(got.narrow(1, len, cap - len)?.to_vec3::<f32>()?, before.i(r)?.narrow(1, len, cap - len)?.to_vec3::<f32>()?);
        }
        // Out-of-range rows are an error; a strided buffer or another dtype is left to the caller.
        assert!(move_rows_in_place(&buf, &[4], &[0], len).is_err());
        assert!(move_rows_in_place(&buf, &[0], &[1], cap + 1).is_err());
        assert!(!moves_in_place(&buf.narrow(2, 0, len)?) && move_rows_in_place(&buf.narrow(2, 0, len)?, &[0], &[1], len).is_err());
        assert!(!moves_in_place(&buf.to_dtype(DType::F16)?) && moves_in_place(&buf));
        Ok(())
    }
}
