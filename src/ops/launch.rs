//! How wenhui's CUDA kernels (`src/ops/cuda/kernels.cu`) are launched: grid and block sizes,
//! dynamic shared memory, and the table the multi-tensor AdamW kernels read. Kept out of the
//! `cuda` feature so that the GPU glue (`ops::cuda`) and the tests that run the same kernels on
//! the CPU (`ops::cuda_emu`) launch them from one plan.

use candle_core::DType;

/// Grid, block and dynamic shared memory (bytes) of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Launch {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub shared: u32,
}

impl Launch {
    /// `blocks` blocks of `threads` threads along x, no dynamic shared memory.
    pub(crate) fn linear(blocks: usize, threads: u32) -> Self {
        Launch { grid: [blocks as u32, 1, 1], block: [threads, 1, 1], shared: 0 }
    }
}

/// Whether a grid of `(x, y, z)` blocks has any: a plan over no rows (an empty batch) has none,
/// and the GPU glue then skips the launch, which CUDA would reject.
pub(crate) fn has_blocks((x, y, z): (u32, u32, u32)) -> bool {
    x > 0 && y > 0 && z > 0
}

/// Threads per block for a kernel that reduces rows of `n` elements.
fn row_block(n: usize) -> u32 {
    match n {
        0..=256 => 128,
        257..=2048 => 256,
        _ => 1024,
    }
}

/// One block per row of `n` elements (layer norm, softmax, attention rows, cross-entropy).
pub(crate) fn rows(rows: usize, n: usize) -> Launch {
    Launch::linear(rows, row_block(n))
}

/// Threads of a warp-per-row block: 8 rows per block.
const WARP_ROW_THREADS: u32 = 256;
/// Longest attention rows the warp-per-row kernels keep in registers (32 keys per lane).
const WARP_ATTENTION_KEYS: usize = 1024;
/// Longest layer-norm rows a warp takes; longer ones keep a block's 256–1,024 threads busy.
const WARP_LAYER_NORM: usize = 2048;

/// A row kernel's plan: one block per row (`{root}_{dtype}`), or one warp per row (the
/// `{root}_warp_{dtype}` kernel, which takes the number of rows as its last argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowPlan {
    pub launch: Launch,
    pub warp: bool,
}

impl RowPlan {
    /// The name of the kernel to launch for `root` in dtype `suffix` (`f32`, `bf16`, …).
    pub(crate) fn kernel(&self, root: &str, suffix: &str) -> String {
        if self.warp {
            format!("{root}_warp_{suffix}")
        } else {
            format!("{root}_{suffix}")
        }
    }

    fn choose(rows: usize, n: usize, warp_limit: usize, allow_warp: bool) -> Self {
        if allow_warp && n <= warp_limit {
            let per_block = (WARP_ROW_THREADS / 32) as usize;
            RowPlan { launch: Launch::linear(rows.div_ceil(per_block).max(1), WARP_ROW_THREADS), warp: true }
        } else {
            RowPlan { launch: self::rows(rows, n), warp: false }
        }
    }
}

/// `attn_probs_fwd`/`attn_probs_bwd` over `rows` score rows of `t` keys: a warp per row when the
/// row fits its registers and `allow_warp` (`WENHUI_WARP_ROWS=0` turns it off on the GPU).
pub(crate) fn attention_rows(rows: usize, t: usize, allow_warp: bool) -> RowPlan {
    RowPlan::choose(rows, t, WARP_ATTENTION_KEYS, allow_warp)
}

/// `layer_norm_fwd`/`layer_norm_bwd_dx` over `rows` rows of `h`.
pub(crate) fn layer_norm_rows(rows: usize, h: usize, allow_warp: bool) -> RowPlan {
    RowPlan::choose(rows, h, WARP_LAYER_NORM, allow_warp)
}

/// A grid-stride loop over `n` elements.
pub(crate) fn elementwise(n: usize) -> Launch {
    Launch::linear(n.div_ceil(256).clamp(1, 1 << 20), 256)
}

/// The element-wise maps of kernels.cu (`map1`/`map2`: GELU, bias, dropout, residual kernels)
/// over `n` elements of `elem` bytes: one thread per 16-byte pack (their grid-stride loops
/// cover the element-by-element path of misaligned buffers too).
pub(crate) fn elementwise_packed(n: usize, elem: usize) -> Launch {
    elementwise(n.div_ceil((16 / elem.max(1)).max(1)))
}

/// Rows of `dy` one `column_partial` block sums.
pub(crate) const COLUMN_ROWS_PER_BLOCK: usize = 256;

/// Row blocks of a column sum over `rows` rows (the partial sums' first dimension).
pub(crate) fn column_blocks(rows: usize) -> usize {
    rows.div_ceil(COLUMN_ROWS_PER_BLOCK).max(1)
}

/// `column_partial` over `[rows, h]` of `elem`-byte values: blocks of 32 columns × 8 row lanes,
/// each thread on one column, or on a 16-byte pack of them (`column_partial_packed`, where `h` is
/// a whole number of packs).
pub(crate) fn column_partial(rows: usize, h: usize, elem: usize) -> ColumnPlan {
    let per_pack = (16 / elem.max(1)).max(1);
    let packed = h.is_multiple_of(per_pack);
    let threads = if packed { h / per_pack } else { h };
    ColumnPlan {
        launch: Launch { grid: [threads.div_ceil(32) as u32, column_blocks(rows) as u32, 1], block: [32, 8, 1], shared: 0 },
        packed,
    }
}

/// A column-sum launch: one column per thread (`column_partial_{dtype}`) or one 16-byte pack
/// (`column_partial_packed_{dtype}`); both take the same arguments and write the same sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ColumnPlan {
    pub launch: Launch,
    pub packed: bool,
}

impl ColumnPlan {
    /// The kernel's name in dtype `suffix`.
    pub(crate) fn kernel(&self, suffix: &str) -> String {
        if self.packed {
            format!("column_partial_packed_{suffix}")
        } else {
            format!("column_partial_{suffix}")
        }
    }
}

/// `column_final` over `h` columns.
pub(crate) fn column_final(h: usize) -> Launch {
    Launch::linear(h.div_ceil(256), 256)
}

/// The per-parameter gradient norm: few blocks, as each ends in one atomic add.
pub(crate) fn sum_squares(n: usize) -> Launch {
    Launch::linear(n.div_ceil(256).clamp(1, 1024), 256)
}

/// Threads per block of `decode_attention`; the head size must not exceed it.
pub(crate) const DECODE_THREADS: usize = 256;
/// Dynamic shared memory `decode_attention` may use without opting in to more: 48 KiB on every
/// GPU, less the static arrays of its block reductions (2 × 32 words, 512 bytes in f64).
const DECODE_SHARED_LIMIT: usize = (48 << 10) - 1024;

/// Shared memory of one `decode_attention` block for `t` keys of head size `d`, in bytes: q [d],
/// scores [t] and the context's partial sums [groups · d], in the arithmetic type.
fn decode_shared_bytes(d: usize, t: usize, dtype: DType) -> usize {
    let groups = (DECODE_THREADS / d.max(1)).max(1);
    let word = if dtype == DType::F64 { 8 } else { 4 };
    word * (d + t + groups * d)
}

/// Whether `decode_attention` handles a step over `t` keys with head size `d`.
pub(crate) fn decode_fits(d: usize, t: usize, dtype: DType) -> bool {
    d > 0 && d <= DECODE_THREADS && decode_shared_bytes(d, t, dtype) <= DECODE_SHARED_LIMIT
}

/// `decode_attention` for `batch · heads` (row, head) blocks over `t` keys of head size `d`.
pub(crate) fn decode_attention(batch: usize, heads: usize, d: usize, t: usize, dtype: DType) -> Launch {
    Launch { shared: decode_shared_bytes(d, t, dtype) as u32, ..Launch::linear(batch * heads, DECODE_THREADS as u32) }
}

/// Queries (or keys) one flash-attention block owns, and its threads (`flash.cuh`'s FA_TILE,
/// FA_THREADS: 4 warps of 16 rows).
pub(crate) const FLASH_TILE: usize = 64;
const FLASH_THREADS: u32 = 128;
/// Channels per head the flash kernels are instantiated for.
pub(crate) const FLASH_HEAD: usize = 64;

/// Whether the flash kernels take `pairs` (batch, head) pairs of `s` queries over `t` keys: the
/// pairs go along the grid's y (at most 65,535), the tiles along x (at most 2³¹ − 1), and there
/// is a query and a key.
pub(crate) fn flash_fits(pairs: usize, s: usize, t: usize) -> bool {
    let tiles_fit = |rows: usize| rows > 0 && rows.div_ceil(FLASH_TILE) <= i32::MAX as usize;
    pairs > 0 && pairs <= 65_535 && tiles_fit(s) && tiles_fit(t) && (pairs * s).div_ceil(8) <= i32::MAX as usize
}

/// `flash_fwd` / `flash_bwd_q` (over query tiles) or `flash_bwd_kv` (over key tiles): a block per
/// 64 rows of each pair.
pub(crate) fn flash(rows: usize, pairs: usize) -> Launch {
    Launch { grid: [rows.div_ceil(FLASH_TILE) as u32, pairs as u32, 1], block: [FLASH_THREADS, 1, 1], shared: 0 }
}

/// Where the flash kernels find each (batch, head) pair's rows: (batch, head, row) strides in
/// elements of Q (and dQ), of K and V (and dK, dV), and of the output (and its gradient); and
/// the element offsets of dQ, dK and dV in the gradient buffer. A packed projection `[B, S, 3H]`
/// (Q | K | V per row, head n at channels n·d) is read, and its gradient written, in place, with
/// the output `[B, S, H]`; separate heads are `[B, N, S|T, d]`, their gradients `[dQ | dK | dV]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlashLayout {
    pub q: [usize; 3],
    pub kv: [usize; 3],
    pub out: [usize; 3],
    pub grads: [usize; 3],
    /// Elements of the gradient buffer.
    pub grad_len: usize,
}

impl FlashLayout {
    pub(crate) fn new(packed: bool, (batch, heads, s, t, d): (usize, usize, usize, usize, usize)) -> Self {
        let h = heads * d;
        if packed {
            let qkv = [s * 3 * h, d, 3 * h];
            Self { q: qkv, kv: qkv, out: [s * h, d, h], grads: [0, h, 2 * h], grad_len: batch * s * 3 * h }
        } else {
            let q = [heads * s * d, s * d, d];
            let (nq, nk) = (batch * heads * s * d, batch * heads * t * d);
            Self { q, kv: [heads * t * d, t * d, d], out: q, grads: [0, nq, nq + nk], grad_len: nq + 2 * nk }
        }
    }
}

/// Words of flash attention's kept dropout bits: one per thread of a block per (query tile, key
/// tile) of each pair (`fa_bits_tile` in flash.cuh).
pub(crate) fn flash_bits_len(pairs: usize, s: usize, t: usize) -> usize {
    pairs * s.div_ceil(FLASH_TILE) * t.div_ceil(FLASH_TILE) * FLASH_THREADS as usize
}

/// `flash_tiles`: a block per query tile of each mask batch; it writes the tile skip flags, one
/// byte per (query tile, key tile) of each mask batch ([`flash_tiles_len`]).
pub(crate) fn flash_tiles(s: usize, mask_batches: usize) -> Launch {
    Launch { grid: [s.div_ceil(FLASH_TILE) as u32, mask_batches as u32, 1], block: [FLASH_THREADS, 1, 1], shared: 0 }
}

/// Bytes of flash attention's tile skip flags (`fa_tile_row` in flash.cuh).
pub(crate) fn flash_tiles_len(mask_batches: usize, s: usize, t: usize) -> usize {
    mask_batches * s.div_ceil(FLASH_TILE) * t.div_ceil(FLASH_TILE)
}

/// `flash_bwd_dot`: a warp per query row.
pub(crate) fn flash_dot(rows: usize) -> Launch {
    Launch::linear(rows.div_ceil((WARP_ROW_THREADS / 32) as usize), WARP_ROW_THREADS)
}

/// Elements one block of the multi-tensor AdamW kernels handles.
pub(crate) const ADAMW_CHUNK: usize = 1 << 14;
/// u64 words of one `AdamWJob` in kernels.cu: w, mv, g, n, then lr and decay as two f32.
pub(crate) const ADAMW_JOB_WORDS: usize = 5;

/// One parameter's entry in the multi-tensor AdamW table: device pointers to its weight,
/// moments and gradient, its length, learning rate and decay factor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamWJob {
    pub pointers: [u64; 3],
    pub n: usize,
    pub lr: f32,
    pub decay: f32,
}

/// The table the multi-tensor kernels read, and the number of blocks to launch:
/// `ADAMW_JOB_WORDS` words per job (kernels.cu's `AdamWJob`: w, mv, g, n, then lr in the low and
/// decay in the high half of a word, little-endian as the GPU reads it), then one word per block,
/// `job << 32 | chunk`, block `i` handling elements `[chunk·CHUNK, min(n, (chunk + 1)·CHUNK))`
/// of its job.
pub(crate) fn adamw_job_table(jobs: &[AdamWJob]) -> (Vec<u64>, usize) {
    let mut table: Vec<u64> = Vec::with_capacity(jobs.len() * ADAMW_JOB_WORDS);
    let mut chunks = Vec::new();
    for (j, job) in jobs.iter().enumerate() {
        table.extend_from_slice(&job.pointers);
        table.push(job.n as u64);
        table.push(u64::from(job.lr.to_bits()) | (u64::from(job.decay.to_bits()) << 32));
        chunks.extend((0..job.n.div_ceil(ADAMW_CHUNK) as u64).map(|c| ((j as u64) << 32) | c));
    }
    let blocks = chunks.len();
    table.extend(chunks);
    (table, blocks)
}

/// Both multi-tensor kernels over `blocks` chunks.
pub(crate) fn adamw_multi(blocks: usize) -> Launch {
    Launch::linear(blocks, 256)
}

/// `cublasGemmStridedBatchedEx`'s shape arguments for row-major `C [pairs, m, n] = op(A) ·
/// op(B)`, as candle passes them
/// (`ops/cuda/gemm.rs` makes the call): cuBLAS reads the row-major buffers as column-major
/// transposes and computes `Cᵀ = op(B)ᵀ · op(A)ᵀ`, so its first operand is B.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StridedGemm {
    pub transa: bool,
    pub transb: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
}

impl StridedGemm {
    pub(crate) fn new(a_transposed: bool, b_transposed: bool, m: usize, n: usize, k: usize) -> Self {
        Self {
            transa: b_transposed,
            transb: a_transposed,
            m: n,
            n: m,
            k,
            lda: if b_transposed { k } else { n },
            ldb: if a_transposed { m } else { k },
            ldc: n,
            stride_a: n * k,
            stride_b: m * k,
            stride_c: m * n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty batch plans grids without blocks (which the GPU glue then skips); any row gives
    /// every plan at least one block.
    #[test]
    fn plans_over_no_rows_have_no_blocks() {
        let grid = |l: Launch| (l.grid[0], l.grid[1], l.grid[2]);
        assert!(!has_blocks(grid(rows(0, 3000))));
        assert!(!has_blocks(grid(decode_attention(0, 16, 64, 10, DType::F32))));
        assert!(!has_blocks((4, 0, 1)) && !has_blocks((4, 1, 0)));
        // Warp-per-row plans keep a block (their kernels take the row count); longer rows fall
        // back to a block per row, with none.
        assert!(has_blocks(grid(layer_norm_rows(0, 300, true).launch)));
        assert!(!has_blocks(grid(layer_norm_rows(0, 3000, true).launch)));
        assert!(has_blocks(grid(elementwise(0))));
        for n in [1, 300, 3000] {
            assert!(has_blocks(grid(rows(1, n))));
        }
    }

    /// The table read the way the kernels read it (`chunk_job` in kernels.cu) covers every
    /// element of every job exactly once and gives each job its own pointers, length and rates.
    #[test]
    fn job_table_covers_every_element_once() {
        let sizes = [1, ADAMW_CHUNK - 1, ADAMW_CHUNK, ADAMW_CHUNK + 1, 3 * ADAMW_CHUNK + 7, 768];
        let jobs: Vec<AdamWJob> = sizes
            .iter()
            .enumerate()
            .map(|(j, &n)| AdamWJob {
                pointers: [100 * j as u64, 100 * j as u64 + 1, 100 * j as u64 + 2],
                n,
                lr: 0.5 + j as f32,
                decay: 1.0 - j as f32 / 8.0,
            })
            .collect();
        let (table, blocks) = adamw_job_table(&jobs);
        assert_eq!(table.len(), jobs.len() * ADAMW_JOB_WORDS + blocks);
        let mut seen: Vec<Vec<u32>> = sizes.iter().map(|&n| vec![0; n]).collect();
        for block in 0..blocks {
            let c = table[jobs.len() * ADAMW_JOB_WORDS + block];
            let (j, chunk) = ((c >> 32) as usize, (c & 0xffff_ffff) as usize);
            let word = &table[j * ADAMW_JOB_WORDS..(j + 1) * ADAMW_JOB_WORDS];
            let n = word[3] as usize;
            let (begin, end) = (chunk * ADAMW_CHUNK, (chunk * ADAMW_CHUNK + ADAMW_CHUNK).min(n));
            assert!(begin < end, "block {block} has no elements");
            seen[j][begin..end].iter_mut().for_each(|s| *s += 1);
        }
        for (j, job) in jobs.iter().enumerate() {
            assert!(seen[j].iter().all(|&s| s == 1), "job {j}: every element once");
            let word = &table[j * ADAMW_JOB_WORDS..(j + 1) * ADAMW_JOB_WORDS];
            assert_eq!(&word[..3], &job.pointers);
            assert_eq!(f32::from_bits(word[4] as u32), job.lr);
            assert_eq!(f32::from_bits((word[4] >> 32) as u32), job.decay);
        }
    }

    /// Launch geometry the kernels rely on: row blocks are whole warps, decode blocks fit the head.
    #[test]
    fn launches_are_valid_cuda_launches() {
        for n in [0, 1, 256, 257, 2048, 2049, 30592] {
            let l = rows(3, n);
            assert_eq!(l.block[0] % 32, 0);
            assert!(l.block[0] <= 1024);
        }
        assert_eq!(elementwise(0).grid[0], 1);
        assert_eq!(elementwise(1 << 40).grid[0], 1 << 20);
        assert_eq!(elementwise_packed(2048 * 8, 2).grid[0], 8);
        let c = column_partial(16_384, 768, 2);
        assert_eq!((c.launch.grid, c.packed, c.kernel("bf16")), ([3, 64, 1], true, "column_partial_packed_bf16".into()));
        assert_eq!((column_partial(10, 700, 2).launch.grid, column_partial(10, 700, 2).packed), ([22, 1, 1], false));
        assert_eq!(elementwise_packed(2048 * 2 + 1, 8).grid[0], 9);
        assert!(decode_fits(64, 513, DType::BF16));
        assert!(!decode_fits(0, 8, DType::F32) && !decode_fits(512, 8, DType::F32));
        assert!(!decode_fits(64, 20_000, DType::F32));
        let p = attention_rows(196_608, 512, true);
        assert_eq!((p.launch, p.kernel("attn_probs_fwd", "bf16")), (Launch::linear(24_576, 256), "attn_probs_fwd_warp_bf16".into()));
        assert!(!attention_rows(10, 1025, true).warp && !attention_rows(10, 512, false).warp);
        assert_eq!(layer_norm_rows(9, 768, true).launch.grid[0], 2);
        assert_eq!(layer_norm_rows(9, 4096, true), RowPlan { launch: rows(9, 4096), warp: false });
        let l = decode_attention(2, 16, 64, 513, DType::F64);
        assert_eq!((l.grid[0], l.block[0], l.shared), (32, 256, 8 * (64 + 513 + 4 * 64)));
    }

    /// `C = op(A) · op(B)` per batch as cuBLAS defines it on column-major buffers (element (r, c)
    /// of a matrix with leading dimension ld at r + c·ld), for the arguments of `g`.
    fn cublas_batched(g: &StridedGemm, pairs: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![f64::NAN; pairs * g.stride_c];
        for p in 0..pairs {
            let (a, b) = (&a[p * g.stride_a..], &b[p * g.stride_b..]);
            let at = |i: usize, l: usize| if g.transa { a[l + i * g.lda] } else { a[i + l * g.lda] };
            let bt = |l: usize, j: usize| if g.transb { b[j + l * g.ldb] } else { b[l + j * g.ldb] };
            for j in 0..g.n {
                for i in 0..g.m {
                    c[p * g.stride_c + i + j * g.ldc] = (0..g.k).map(|l| at(i, l) * bt(l, j)).sum();
                }
            }
        }
        c
    }

    /// A row-major `[pairs, rows, cols]` buffer, read as it is or transposed.
    struct Mat<'a> {
        x: &'a [f64],
        rows: usize,
        cols: usize,
        transposed: bool,
    }

    impl Mat<'_> {
        /// Element (i, j) of pair p of the operand (of the buffer's transpose when transposed).
        fn at(&self, p: usize, i: usize, j: usize) -> f64 {
            let (r, c) = if self.transposed { (j, i) } else { (i, j) };
            assert!(r < self.rows && c < self.cols);
            self.x[p * self.rows * self.cols + r * self.cols + c]
        }
    }

    /// The shape arguments give the attention backward's three products on row-major buffers:
    /// dV = P'ᵀ·dO, dQ = dS·K and dK = dSᵀ·Q (first operand transposed or not), and a product
    /// with the second operand transposed (dP' = dO·Vᵀ).
    #[test]
    fn strided_gemm_arguments_compute_row_major_products() {
        let (pairs, s, t, d) = (3, 5, 4, 2);
        let fill = |n: usize, f: f64| -> Vec<f64> { (0..n).map(|i| ((i as f64 + 1.0) * f).sin()).collect() };
        let (ds, pd, go) = (fill(pairs * s * t, 0.37), fill(pairs * s * t, 0.91), fill(pairs * s * d, 1.3));
        let (q, k, v) = (fill(pairs * s * d, 0.53), fill(pairs * t * d, 0.71), fill(pairs * t * d, 1.7));
        let mat = |x, rows, cols, transposed| Mat { x, rows, cols, transposed };
        let cases = [
            ("dV = P'ᵀ·dO", mat(&pd, s, t, true), mat(&go, s, d, false), (t, d, s)),
            ("dQ = dS·K", mat(&ds, s, t, false), mat(&k, t, d, false), (s, d, t)),
            ("dK = dSᵀ·Q", mat(&ds, s, t, true), mat(&q, s, d, false), (t, d, s)),
            ("dP' = dO·Vᵀ", mat(&go, s, d, false), mat(&v, t, d, true), (s, t, d)),
        ];
        for (what, a, b, (m, n, k)) in cases {
            let g = StridedGemm::new(a.transposed, b.transposed, m, n, k);
            // cuBLAS's first operand is B.
            let got = cublas_batched(&g, pairs, b.x, a.x);
            for p in 0..pairs {
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k).map(|l| a.at(p, i, l) * b.at(p, l, j)).sum();
                        let c = got[p * m * n + i * n + j];
                        assert!((c - want).abs() < 1e-12, "{what}: [{p}, {i}, {j}] = {c}, want {want}");
                    }
                }
            }
        }
    }
}
