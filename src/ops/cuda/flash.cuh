// Flash attention for bf16/f16 heads of 64 channels (included by kernels.cu after attention.cuh,
// whose `dropped` hash it shares): the fused attention's math (src/ops/attention.rs: GLM's 0/1
// mask, the key bias, dropout by the same counter hash) without ever writing the [S, T] scores.
// Tensor cores through `mma.sync.m16n8k16` (sm_80+), f32 accumulators, an online softmax.
//
// Forward: a block of 4 warps owns 64 queries of one (batch, head) pair, a warp 16 of them; it
// walks the keys 64 at a time, keeping per query row the running max, the running sum and the
// f32 output. It writes O and the rows' log-sum-exp L. Every kernel stages its tiles row-major in
// shared memory by cp.async, two buffers deep (the next tile lands while this one's products run),
// and reads tensor-core fragments out of them by ldmatrix (.trans where the product needs a
// tile's columns: V in P'·V, Q and dO in dK and dV, K in dQ).
// Backward (FlashAttention-2's, deterministic: no atomics): D = Σ dO ⊙ O per row
// (`flash_bwd_dot`); `flash_bwd_kv`: a block per 64 keys walks every query tile and sums dK, dV;
// `flash_bwd_q`: a block per 64 queries walks every key tile and sums dQ. P is recomputed from
// L; dS = P ⊙ (dP'·keep·[kept] − D)·scale·m, as attn_probs_bwd computes it from the kept P'.
//
// Fragment layouts are the PTX ISA's for m16n8k16 (groupID g = lane / 4, t = lane % 4):
// A (16×16, row): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..);
// B (16×8, col): b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g); C (16×8): c0,c1 = (g, 2t..2t+1),
// c2,c3 = (g+8, 2t..). An accumulator over keys thus becomes the A operand of the next product
// without leaving registers (two 8-key tiles = one 16-key A fragment). The CPU emulation
// (src/ops/cuda_emu/emu.h) implements the same layouts, so the tests check every index here.
#pragma once

#define FA_TILE 64   // queries or keys per block and per step
#define FA_THREADS 128  // 4 warps × 16 rows (the kernels' __launch_bounds__)

// The inline-PTX instructions (sm_80+; the host uses flash attention there only). The CPU
// emulation (src/ops/cuda_emu/emu.h) defines its own, hence WENHUI_EMU_PTX.
#ifndef WENHUI_EMU_PTX
// mma.sync.aligned.m16n8k16.row.col.f32.T.T.f32: d += a · b.
template <typename T> struct Mma;
template <> struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float* d, const uint32_t* a, const uint32_t* b) {
#if __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    __trap();
#endif
  }
};
template <> struct Mma<__half> {
  static __device__ __forceinline__ void run(float* d, const uint32_t* a, const uint32_t* b) {
#if __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    __trap();
#endif
  }
};
// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: four 8×8 matrices of 16-bit elements from
// shared memory. Lane l gives the address of row l % 8 of matrix l / 8 (16-byte aligned); lane
// (g, t) receives in r[i] elements (g, 2t..2t+1) of matrix i, or with .trans (2t..2t+1, g).
template <bool TRANS> __device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void* row) {
#if __CUDA_ARCH__ >= 800
  const unsigned a = unsigned(__cvta_generic_to_shared(row));
  if constexpr (TRANS) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
  }
#else
  __trap();
#endif
}
// cp.async: BYTES (4 or 16) from global to shared memory without passing through registers,
// zero-filled when `valid` is false (nothing is read then). It lands by the issuing thread's
// cp_async_wait_all, and is visible to the block after the __syncthreads that follows.
template <int BYTES> __device__ __forceinline__ void cp_async(void* dst, const void* src, bool valid) {
#if __CUDA_ARCH__ >= 800
  const unsigned a = unsigned(__cvta_generic_to_shared(dst));
  const int n = valid ? BYTES : 0;
  if constexpr (BYTES == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(a), "l"(src), "r"(n) : "memory");
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(a), "l"(src), "n"(BYTES), "r"(n) : "memory");
  }
#else
  __trap();
#endif
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }
#endif

// Two consecutive 16-bit elements as one register (the first in the low half).
template <typename T> __device__ __forceinline__ uint32_t pack_pair(float lo, float hi) {
  const T a = Num<T>::of(lo), b = Num<T>::of(hi);
  uint16_t ua, ub;
  memcpy(&ua, &a, 2);
  memcpy(&ub, &b, 2);
  return uint32_t(ua) | (uint32_t(ub) << 16);
}

// Two consecutive elements stored as one 32-bit word (`p` at an even element of a row).
template <typename T> __device__ __forceinline__ void st_pair(T* p, float lo, float hi) {
  *reinterpret_cast<uint32_t*>(p) = pack_pair<T>(lo, hi);
}

// Accumulators c[nt] (16 rows × 8·NT columns) as the A fragment of columns 16·kk..16·kk+15.
template <typename T> __device__ __forceinline__ void frag_a_of(uint32_t a[4], const float (*c)[4], int kk) {
  a[0] = pack_pair<T>(c[2 * kk][0], c[2 * kk][1]);
  a[1] = pack_pair<T>(c[2 * kk][2], c[2 * kk][3]);
  a[2] = pack_pair<T>(c[2 * kk + 1][0], c[2 * kk + 1][1]);
  a[3] = pack_pair<T>(c[2 * kk + 1][2], c[2 * kk + 1][3]);
}

// Every tile in shared memory is row-major: 64 rows of D channels, pitch D + 8 elements, so the
// eight 16-byte rows an ldmatrix reads fall in distinct banks. One ldmatrix.x4 gives an A
// fragment (matrices: rows 0-7 | 8-15 × channels 0-7 | 8-15) or the B fragments of two 8-wide
// n tiles.
template <int D> constexpr int FA_PITCH = D + 8;
// Elements of one staged tile (a buffer slot).
template <int D> constexpr int FA_TILE_ELEMS = FA_TILE * FA_PITCH<D>;

// The A fragments of the warp's 16 rows of a tile at `sh`, D channels.
template <typename T, int D> __device__ __forceinline__ void fa_warp_rows(uint32_t (*f)[4], const T* sh, int warp, int lane) {
  const T* row = sh + (warp * 16 + (lane & 15)) * FA_PITCH<D> + (lane >> 4) * 8;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) ldsm_x4<false>(f[kk], row + kk * 16);
}
// c = A·Bᵀ over one tile: A the warp's 16 rows of D channels as fragments a[D/16], B the tile's
// 64 rows at `b` (each an n of the product, its channels the k); c[nt] holds columns
// 8·nt..8·nt+7 (16 × 64).
template <typename T, int D>
__device__ __forceinline__ void fa_rows_times_tile(float (*c)[4], const uint32_t (*a)[4], const T* b, int lane) {
#pragma unroll
  for (int nt = 0; nt < FA_TILE / 8; ++nt) c[nt][0] = c[nt][1] = c[nt][2] = c[nt][3] = 0.f;
  // Lane l addresses row (l % 8) + 8·(l / 16) of the 16-row pair of n tiles, channels + 8·(l / 8 % 2):
  // matrices b0, b1 of n tile 2·np, then b0, b1 of n tile 2·np + 1.
  const T* row = b + ((lane & 7) + 8 * (lane >> 4)) * FA_PITCH<D> + 8 * ((lane >> 3) & 1);
#pragma unroll
  for (int np = 0; np < FA_TILE / 16; ++np) {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t bf[4];
      ldsm_x4<false>(bf, row + np * 16 * FA_PITCH<D> + kk * 16);
      Mma<T>::run(c[2 * np], a[kk], bf);
      Mma<T>::run(c[2 * np + 1], a[kk], bf + 2);
    }
  }
}
// acc += C·B over one tile: C the accumulators over the tile's 64 rows (16 × 64, rounded to T as
// A fragments), B the tile at `b` (its rows the k of the product, its D channels the n, read
// transposed by ldmatrix); acc is 16 × D.
template <typename T, int D>
__device__ __forceinline__ void fa_acc_times_tile(float (*acc)[4], const float (*c)[4], const T* b, int lane) {
  // Lane l addresses row (l % 8) + 8·(l / 8 % 2) of 16 k rows, channels + 8·(l / 16): transposed,
  // matrices b0, b1 of n tile 2·np, then b0, b1 of n tile 2·np + 1.
  const T* row = b + ((lane & 7) + 8 * ((lane >> 3) & 1)) * FA_PITCH<D> + 8 * (lane >> 4);
#pragma unroll
  for (int kk = 0; kk < FA_TILE / 16; ++kk) {
    uint32_t af[4];
    frag_a_of<T>(af, c, kk);
#pragma unroll
    for (int np = 0; np < D / 16; ++np) {
      uint32_t bf[4];
      ldsm_x4<true>(bf, row + kk * 16 * FA_PITCH<D> + np * 16);
      Mma<T>::run(acc[2 * np], af, bf);
      Mma<T>::run(acc[2 * np + 1], af, bf + 2);
    }
  }
}

// Starts copying one 64-row tile of a head into shared memory at `sh` (cp.async; it lands by
// the block's next cp_async_wait_all + __syncthreads): rows r0..r0+63 of `src` (`rs` elements
// apart, D contiguous channels, 16-byte aligned; r0 < limit); rows at or past `limit` read as
// zeros. Consecutive threads copy consecutive 16-byte packs of a row: whole rows per request.
template <typename T, int D> __device__ __forceinline__ void fa_stage(T* sh, const T* src, long long rs, int r0, int limit) {
  constexpr int ROW_PACKS = D / 8, ROWS_PER_PASS = FA_THREADS / ROW_PACKS;
  static_assert(FA_THREADS % ROW_PACKS == 0 && FA_TILE % ROWS_PER_PASS == 0, "a tile's packs split evenly over the threads");
  const int r = threadIdx.x / ROW_PACKS, c = threadIdx.x % ROW_PACKS * 8;
#pragma unroll
  for (int k = 0; k < FA_TILE / ROWS_PER_PASS; ++k) {
    const int row = r + k * ROWS_PER_PASS;
    const bool in = r0 + row < limit;
    cp_async<16>(sh + row * FA_PITCH<D> + c, src + (long long)(in ? r0 + row : r0) * rs + c, in);
  }
}
// Starts copying the values of rows r0..r0+63 of a per-row f32 array (thread x < 64 copies row
// r0 + x; zero at or past `limit`).
__device__ __forceinline__ void fa_stage_rows(float* sh, const float* src, int r0, int limit) {
  const int x = threadIdx.x;
  if (x < FA_TILE) cp_async<4>(sh + x, src + (r0 + x < limit ? r0 + x : r0), r0 + x < limit);
}

// The masked, scaled, biased score z of query row `mr` (mask row), key j: attn_score's.
template <typename T>
__device__ __forceinline__ float fa_score(float s, const T* mr, const double* br, int j, float scale) {
  const float mv = Num<T>::to(mr[j]);
  return (s + (br ? float(br[j]) : 0.f)) * scale * mv + MASKED_SCORE * (1.f - mv);
}

// Where one (batch, head) pair's rows live: element (row r, channel e) at base + r·row + e.
struct FaHead {
  long long batch, head, row;
  __device__ __forceinline__ long long at(int b, int n) const { return b * batch + n * head; }
};

// The arguments every flash kernel shares.
#define FA_COMMON                                                                                                  \
  const T *m, int mask_batches, const double *bias, int bias_rows, int heads, int s_len, int t, double scale_d,   \
      uint64_t mixed_seed, uint64_t threshold, double keep_scale_d, const uint8_t *tiles

// Which (query tile, key tile) pairs the kernels skip, `tiles` (null: none): per mask batch,
// qtiles × ktiles bytes, 0 where every mask value of the tile is 0. Every score there is
// MASKED_SCORE, whose exp relative to the row's max (a visible key's score, far above −65504 in
// any finite attention) underflows to exactly 0 in f32: P, P', dS and the tile's share of every
// product are 0, as if it were computed. A query tile holding a row with no visible key at all
// (whose softmax is uniform over masked keys) keeps every tile (flash_tiles). GLM's part A
// queries skip part B's key tiles and causal rows skip the future's: a causal mask about halves
// the work. Without a key bias only (a −∞ bias could leave a row's visible keys below the mask).
__device__ __forceinline__ const uint8_t* fa_tile_row(const uint8_t* tiles, int mbi, int qt, int s_len, int t) {
  const int qtiles = (s_len + FA_TILE - 1) / FA_TILE, ktiles = (t + FA_TILE - 1) / FA_TILE;
  return tiles ? tiles + ((size_t)mbi * qtiles + qt) * ktiles : nullptr;
}
// The first row at or after `r` (a multiple of FA_TILE) of a tile not skipped, `end` when none:
// `flags` the tiles' flags `stride` bytes apart (null: nothing skipped).
__device__ __forceinline__ int fa_next_tile(const uint8_t* flags, size_t stride, int r, int end) {
  while (flags && r < end && !flags[(size_t)(r / FA_TILE) * stride]) r += FA_TILE;
  return r;
}

// The skip flags of query tile blockIdx.x of mask batch blockIdx.y (see fa_tile_row): thread x
// reads half x % 2 of row x / 2 of each key tile.
template <typename T> __device__ void flash_tiles(const T* m, int s_len, int t, uint8_t* tiles) {
  SHARED(int, seen, );
  SHARED(int, every_row, );
  const int ktiles = (t + FA_TILE - 1) / FA_TILE, r = threadIdx.x >> 1, half = threadIdx.x & 1, i = blockIdx.x * FA_TILE + r;
  const T* row = m + ((size_t)blockIdx.y * s_len + min(i, s_len - 1)) * t;
  uint8_t* flags = tiles + ((size_t)blockIdx.y * gridDim.x + blockIdx.x) * ktiles;
  int row_seen = 0;
  if (threadIdx.x == 0) every_row = 1;
  for (int kt = 0; kt < ktiles; ++kt) {
    if (threadIdx.x == 0) seen = 0;
    __syncthreads();
    int any = 0;
    if (i < s_len) {
      const int j0 = kt * FA_TILE + half * (FA_TILE / 2), j1 = min(j0 + FA_TILE / 2, t);
      for (int j = j0; j < j1; ++j) any |= Num<T>::to(row[j]) != 0.f;
    }
    row_seen |= any;
    if (any) seen = 1;
    __syncthreads();
    if (threadIdx.x == 0) flags[kt] = uint8_t(seen);
  }
  row_seen |= __shfl_xor_sync(0xffffffffu, row_seen, 1);  // both halves of the row
  if (i < s_len && !row_seen) every_row = 0;
  __syncthreads();
  if (!every_row)
    for (int kt = threadIdx.x; kt < ktiles; kt += blockDim.x) flags[kt] = 1;
}

// The two query rows this lane holds (16w + g and 16w + g + 8 of the block's tile at i0) and
// their mask rows (the last row's for rows past s_len, which nothing stores).
template <typename T>
__device__ __forceinline__ void fa_lane_rows(int row[2], const T* mr[2], const T* m, int mbi, int s_len, int t, int i0, int warp, int g) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row[r] = i0 + warp * 16 + g + 8 * r;
    mr[r] = m + ((size_t)mbi * s_len + min(row[r], s_len - 1)) * t;
  }
}
// A K tile and a V tile from key `j` into the buffer at `dst` (K, then V): started, as fa_stage.
template <typename T, int D>
__device__ __forceinline__ void fa_stage_kv(T* dst, const T* kp, const T* vp, long long rs, int j, int t) {
  fa_stage<T, D>(dst, kp, rs, j, t);
  fa_stage<T, D>(dst + FA_TILE_ELEMS<D>, vp, rs, j, t);
}
// The top of each step of a walk over key tiles (the forward, dQ) with two K/V buffers at `sh`:
// waits until tile j0 (buffer `buf`) has landed and every warp is done with the other buffer,
// then starts the next tile not skipped into it. Returns that tile's first key (t: none left).
template <typename T, int D>
__device__ __forceinline__ int fa_kv_advance(T* sh, int buf, const uint8_t* flags, const T* kp, const T* vp, long long rs, int j0,
                                             int t) {
  cp_async_wait_all();
  __syncthreads();
  const int next = fa_next_tile(flags, 1, j0 + FA_TILE, t);
  if (next < t) {
    fa_stage_kv<T, D>(sh + 2 * (buf ^ 1) * FA_TILE_ELEMS<D>, kp, vp, rs, next, t);
    cp_async_commit();
  }
  return next;
}

// The forward pass's dropout decisions, kept for the backward pass (with dropout the host always
// passes `bits`; a backward without them runs the forward again first). The backward kernels
// read them instead of hashing every element again: one 64-bit splitmix hash per element in all
// rather than three (about 1.6 ms of a GLM-Base step), and fewer registers. One word per lane per
// (query tile, key tile) holds its 32 elements of the tile in the forward's fragment order: bit
// 4·nt + c of lane (g, t) of warp w is query 16w + g + 8·(c / 2), key 8·nt + 2t + c % 2.
__device__ __forceinline__ size_t fa_bits_tile(int pair, int qtile, int ktile, int s_len, int t) {
  const size_t qtiles = (s_len + FA_TILE - 1) / FA_TILE, ktiles = (t + FA_TILE - 1) / FA_TILE;
  return (((size_t)pair * qtiles + qtile) * ktiles + ktile) * FA_THREADS;
}
// The bit of (query x, key y) within a tile, in a tile's FA_THREADS words.
__device__ __forceinline__ bool fa_bit(const uint32_t* words, int x, int y) {
  const int w = x / 16, g = x % 8, half = (x % 16) / 8, nt = y / 8, t = (y % 8) / 2;
  return (words[w * 32 + g * 4 + t] >> (nt * 4 + half * 2 + (y & 1))) & 1u;
}

// Forward: O (and L when `lse` is given, the dropout bits when `bits` is) of 64 queries of one pair.
template <typename T, int D>
__device__ void flash_fwd(const T* q, const T* k, const T* v, T* o, float* lse, uint32_t* bits, FaHead qh, FaHead kh, FaHead oh,
                          FA_COMMON) {
  constexpr int TILE = FA_TILE_ELEMS<D>, NT = FA_TILE / 8, DT = D / 8, DK = D / 16;
  // Two buffers of a K tile and a V tile: the next pair lands while this one's products run. Q
  // is staged in buffer 1's K slot, read into registers before the first prefetch overwrites it.
  SHARED(T, sh, [4 * TILE]);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int pair = blockIdx.y, b = pair / heads, n = pair % heads, i0 = blockIdx.x * FA_TILE;
  const float scale = float(scale_d), keep_scale = float(keep_scale_d);
  const T* kp = k + kh.at(b, n);
  const T* vp = v + kh.at(b, n);
  const uint8_t* flags = fa_tile_row(tiles, mask_batches == 1 ? 0 : b, blockIdx.x, s_len, t);
  int j0 = fa_next_tile(flags, 1, 0, t);
  fa_stage<T, D>(sh + 2 * TILE, q + qh.at(b, n), qh.row, i0, s_len);
  if (j0 < t) fa_stage_kv<T, D>(sh, kp, vp, kh.row, j0, t);
  cp_async_commit();
  cp_async_wait_all();
  __syncthreads();
  uint32_t qf[DK][4];
  fa_warp_rows<T, D>(qf, sh + 2 * TILE, warp, lane);
  const double* br = bias_rows > 0 ? bias + (size_t)(bias_rows == 1 ? 0 : b) * t : nullptr;
  int row[2];
  const T* mr[2];
  fa_lane_rows<T>(row, mr, m, mask_batches == 1 ? 0 : b, s_len, t, i0, warp, g);
  float mx[2] = {-INFINITY, -INFINITY}, sum[2] = {0.f, 0.f};
  float acc[DT][4];
#pragma unroll
  for (int nt = 0; nt < DT; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
  for (int buf = 0, next; j0 < t; j0 = next, buf ^= 1) {
    next = fa_kv_advance<T, D>(sh, buf, flags, kp, vp, kh.row, j0, t);
    const T* ks = sh + 2 * buf * TILE;
    const T* vs = ks + TILE;
    float sc[NT][4];
    fa_rows_times_tile<T, D>(sc, qf, ks, lane);
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int r = c >> 1, j = j0 + nt * 8 + 2 * tq + (c & 1);
        sc[nt][c] = j < t ? fa_score<T>(sc[nt][c], mr[r], br, j, scale) : -INFINITY;
        tile_max[r] = max(tile_max[r], sc[nt][c]);
      }
    }
    float corr[2], base[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      // The four lanes of a quad hold one row. A row whose keys so far all score −∞ (a −∞ key
      // bias) keeps max −∞; exponents are then taken from 0, not from −∞ (exp(−∞ + ∞) is NaN).
      tile_max[r] = max(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = max(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      const float next = max(mx[r], tile_max[r]);
      base[r] = next == -INFINITY ? 0.f : next;
      corr[r] = exp(mx[r] - base[r]);
      mx[r] = next;
      sum[r] *= corr[r];
    }
#pragma unroll
    for (int nt = 0; nt < DT; ++nt) {
      acc[nt][0] *= corr[0];
      acc[nt][1] *= corr[0];
      acc[nt][2] *= corr[1];
      acc[nt][3] *= corr[1];
    }
    // P (unnormalised) into the sum; the dropped P' becomes the A operand of P'·V.
    uint32_t word = 0;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int r = c >> 1, j = j0 + nt * 8 + 2 * tq + (c & 1);
        const float p = exp(sc[nt][c] - base[r]);
        sum[r] += p;
        const bool gone = j < t && row[r] < s_len && dropped(mixed_seed, threshold, ((size_t)pair * s_len + row[r]) * t + j);
        word |= uint32_t(gone) << (nt * 4 + c);
        sc[nt][c] = gone ? 0.f : p * keep_scale;
      }
    }
    if (bits) bits[fa_bits_tile(pair, blockIdx.x, j0 / FA_TILE, s_len, t) + threadIdx.x] = word;
    fa_acc_times_tile<T, D>(acc, sc, vs, lane);
  }
  T* op = o + oh.at(b, n);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    sum[r] += __shfl_xor_sync(0xffffffffu, sum[r], 1);
    sum[r] += __shfl_xor_sync(0xffffffffu, sum[r], 2);
    if (row[r] >= s_len) continue;
    const float inv = 1.f / sum[r];
#pragma unroll
    for (int nt = 0; nt < DT; ++nt) {
      st_pair<T>(op + (long long)row[r] * oh.row + nt * 8 + 2 * tq, acc[nt][2 * r] * inv, acc[nt][2 * r + 1] * inv);
    }
    if (lse && tq == 0) lse[(size_t)pair * s_len + row[r]] = mx[r] + log(sum[r]);
  }
}

// D = Σ_e dO ⊙ O of each query row (pair·S + i), a warp per row.
template <typename T>
__device__ void flash_bwd_dot(const T* o, const T* go, float* dd, FaHead oh, FaHead gh, int heads, int s_len, int d, size_t rows) {
  const size_t row = (size_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int lane = threadIdx.x & 31, i = int(row % s_len), pair = int(row / s_len), b = pair / heads, n = pair % heads;
  const T* orow = o + oh.at(b, n) + (long long)i * oh.row;
  const T* grow = go + gh.at(b, n) + (long long)i * gh.row;
  float acc = 0.f;
  for (int e = lane; e < d; e += 32) acc += Num<T>::to(orow[e]) * Num<T>::to(grow[e]);
  acc = warp_sum(acc);
  if (lane == 0) dd[row] = acc;
}

// P, P' and dS of one element from its score s and dP' (query row i, key j, both in range):
// returns P' (the dropped probability) and sets `ds`.
template <typename T>
__device__ __forceinline__ float fa_grad(float s, float dp, const T* mr, const double* br, int j, float lse, float dd, bool gone,
                                         float scale, float keep_scale, float& ds) {
  const float mv = Num<T>::to(mr[j]);
  const float p = exp((s + (br ? float(br[j]) : 0.f)) * scale * mv + MASKED_SCORE * (1.f - mv) - lse);
  ds = p * ((gone ? 0.f : dp * keep_scale) - dd) * scale * mv;
  return gone ? 0.f : p * keep_scale;
}

// dK and dV of 64 keys of one pair, over every query. A warp owns 16 keys: Sᵀ = K·Qᵀ and
// dP'ᵀ = V·dOᵀ have keys as rows, so P'ᵀ and dSᵀ feed dV += P'ᵀ·dO and dK += dSᵀ·Q directly.
template <typename T, int D>
__device__ void flash_bwd_kv(const T* q, const T* k, const T* v, const T* go, const float* lse, const float* dd, const uint32_t* bits,
                             T* dk, T* dv,
                             FaHead qh, FaHead kh, FaHead gh, FA_COMMON) {
  constexpr int TILE = FA_TILE_ELEMS<D>, NT = FA_TILE / 8, DT = D / 8, DK = D / 16;
  // Two buffers of a query tile's Q, dO, L, D and dropout words: the next lands while this one's
  // products run. The block's own K and V rows are staged in buffer 1 first.
  SHARED(T, sh, [4 * TILE]);
  SHARED(float, ls, [2][FA_TILE]);
  SHARED(float, ds_row, [2][FA_TILE]);
  SHARED(uint32_t, words, [2][FA_THREADS]);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int pair = blockIdx.y, b = pair / heads, n = pair % heads, j0 = blockIdx.x * FA_TILE;
  const float scale = float(scale_d), keep_scale = float(keep_scale_d);
  const T* qp = q + qh.at(b, n);
  const T* gp = go + gh.at(b, n);
  auto stage_queries = [&](int buf, int i0) {
    fa_stage<T, D>(sh + 2 * buf * TILE, qp, qh.row, i0, s_len);
    fa_stage<T, D>(sh + (2 * buf + 1) * TILE, gp, gh.row, i0, s_len);
    fa_stage_rows(ls[buf], lse + (size_t)pair * s_len, i0, s_len);
    fa_stage_rows(ds_row[buf], dd + (size_t)pair * s_len, i0, s_len);
    if (bits) cp_async<4>(&words[buf][threadIdx.x], bits + fa_bits_tile(pair, i0 / FA_TILE, blockIdx.x, s_len, t) + threadIdx.x, true);
  };
  // This key tile's flag in each query tile's row of flags, ktiles apart.
  const uint8_t* flags = tiles ? fa_tile_row(tiles, mask_batches == 1 ? 0 : b, 0, s_len, t) + blockIdx.x : nullptr;
  const size_t flag_stride = (t + FA_TILE - 1) / FA_TILE;
  int i0 = fa_next_tile(flags, flag_stride, 0, s_len);
  fa_stage<T, D>(sh + 2 * TILE, k + kh.at(b, n), kh.row, j0, t);
  fa_stage<T, D>(sh + 3 * TILE, v + kh.at(b, n), kh.row, j0, t);
  if (i0 < s_len) stage_queries(0, i0);
  cp_async_commit();
  cp_async_wait_all();
  __syncthreads();
  uint32_t kf[DK][4], vf[DK][4];
  fa_warp_rows<T, D>(kf, sh + 2 * TILE, warp, lane);
  fa_warp_rows<T, D>(vf, sh + 3 * TILE, warp, lane);
  const double* br = bias_rows > 0 ? bias + (size_t)(bias_rows == 1 ? 0 : b) * t : nullptr;
  const T* mbase = m + (size_t)(mask_batches == 1 ? 0 : b) * s_len * t;
  int key[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) key[r] = j0 + warp * 16 + g + 8 * r;
  float dka[DT][4], dva[DT][4];
#pragma unroll
  for (int nt = 0; nt < DT; ++nt)
#pragma unroll
    for (int c = 0; c < 4; ++c) dka[nt][c] = dva[nt][c] = 0.f;
  for (int buf = 0, next; i0 < s_len; i0 = next, buf ^= 1) {
    cp_async_wait_all();
    __syncthreads();  // this tile has landed; every warp is done with the other buffer
    next = fa_next_tile(flags, flag_stride, i0 + FA_TILE, s_len);
    if (next < s_len) {
      stage_queries(buf ^ 1, next);
      cp_async_commit();
    }
    const T* qs = sh + 2 * buf * TILE;
    const T* gs = qs + TILE;
    float st[NT][4], dpt[NT][4];
    fa_rows_times_tile<T, D>(st, kf, qs, lane);
    fa_rows_times_tile<T, D>(dpt, vf, gs, lane);
    // Element (key row r, query column): st becomes P'ᵀ, dpt becomes dSᵀ.
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int r = c >> 1, x = nt * 8 + 2 * tq + (c & 1), i = i0 + x, j = key[r];
        float pd = 0.f, ds = 0.f;
        if (i < s_len && j < t) {
          const bool gone = bits && fa_bit(words[buf], x, j - j0);
          pd = fa_grad<T>(st[nt][c], dpt[nt][c], mbase + (size_t)i * t, br, j, ls[buf][x], ds_row[buf][x], gone, scale, keep_scale,
                          ds);
        }
        st[nt][c] = pd;
        dpt[nt][c] = ds;
      }
    }
    fa_acc_times_tile<T, D>(dva, st, gs, lane);
    fa_acc_times_tile<T, D>(dka, dpt, qs, lane);
  }
  T* dkp = dk + kh.at(b, n);
  T* dvp = dv + kh.at(b, n);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (key[r] >= t) continue;
#pragma unroll
    for (int nt = 0; nt < DT; ++nt) {
      const long long at = (long long)key[r] * kh.row + nt * 8 + 2 * tq;
      st_pair<T>(dkp + at, dka[nt][2 * r], dka[nt][2 * r + 1]);
      st_pair<T>(dvp + at, dva[nt][2 * r], dva[nt][2 * r + 1]);
    }
  }
}

// dQ of 64 queries of one pair, over every key: S and dP' recomputed per key tile, dQ += dS·K.
template <typename T, int D>
__device__ void flash_bwd_q(const T* q, const T* k, const T* v, const T* go, const float* lse, const float* dd, const uint32_t* bits,
                            T* dq,
                            FaHead qh, FaHead kh, FaHead gh, FA_COMMON) {
  constexpr int TILE = FA_TILE_ELEMS<D>, NT = FA_TILE / 8, DT = D / 8, DK = D / 16;
  // Two buffers of a K tile and a V tile: the next pair lands while this one's products run
  // (cp.async holds no registers). The block's own Q rows are staged in buffer 1 first and held
  // as fragments; its dO rows stay in shared memory (slot 4), their fragments loaded for each
  // tile's product: holding both took more than the 168 registers of three blocks per SM.
  SHARED(T, sh, [5 * TILE]);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int pair = blockIdx.y, b = pair / heads, n = pair % heads, i0 = blockIdx.x * FA_TILE;
  const float scale = float(scale_d), keep_scale = float(keep_scale_d);
  const T* kp = k + kh.at(b, n);
  const T* vp = v + kh.at(b, n);
  const uint8_t* flags = fa_tile_row(tiles, mask_batches == 1 ? 0 : b, blockIdx.x, s_len, t);
  int j0 = fa_next_tile(flags, 1, 0, t);
  fa_stage<T, D>(sh + 2 * TILE, q + qh.at(b, n), qh.row, i0, s_len);
  fa_stage<T, D>(sh + 4 * TILE, go + gh.at(b, n), gh.row, i0, s_len);
  if (j0 < t) fa_stage_kv<T, D>(sh, kp, vp, kh.row, j0, t);
  cp_async_commit();
  cp_async_wait_all();
  __syncthreads();
  uint32_t qf[DK][4];
  fa_warp_rows<T, D>(qf, sh + 2 * TILE, warp, lane);
  const double* br = bias_rows > 0 ? bias + (size_t)(bias_rows == 1 ? 0 : b) * t : nullptr;
  int row[2];
  const T* mr[2];
  fa_lane_rows<T>(row, mr, m, mask_batches == 1 ? 0 : b, s_len, t, i0, warp, g);
  float l[2], drow[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const bool in = row[r] < s_len;
    l[r] = in ? lse[(size_t)pair * s_len + row[r]] : 0.f;
    drow[r] = in ? dd[(size_t)pair * s_len + row[r]] : 0.f;
  }
  float dqa[DT][4];
#pragma unroll
  for (int nt = 0; nt < DT; ++nt)
#pragma unroll
    for (int c = 0; c < 4; ++c) dqa[nt][c] = 0.f;
  for (int buf = 0, next; j0 < t; j0 = next, buf ^= 1) {
    next = fa_kv_advance<T, D>(sh, buf, flags, kp, vp, kh.row, j0, t);
    const T* ks = sh + 2 * buf * TILE;
    const T* vs = ks + TILE;
    float sc[NT][4], dp[NT][4];
    fa_rows_times_tile<T, D>(sc, qf, ks, lane);
    {
      uint32_t gf[DK][4];
      fa_warp_rows<T, D>(gf, sh + 4 * TILE, warp, lane);
      fa_rows_times_tile<T, D>(dp, gf, vs, lane);
    }
    // This lane's own word: the same fragment order as the forward pass.
    const uint32_t word = bits ? bits[fa_bits_tile(pair, blockIdx.x, j0 / FA_TILE, s_len, t) + threadIdx.x] : 0u;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int r = c >> 1, j = j0 + nt * 8 + 2 * tq + (c & 1);
        float ds = 0.f;
        if (row[r] < s_len && j < t) {
          const bool gone = (word >> (nt * 4 + c)) & 1u;
          fa_grad<T>(sc[nt][c], dp[nt][c], mr[r], br, j, l[r], drow[r], gone, scale, keep_scale, ds);
        }
        sc[nt][c] = ds;
      }
    }
    fa_acc_times_tile<T, D>(dqa, sc, ks, lane);
  }
  T* dqp = dq + qh.at(b, n);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (row[r] >= s_len) continue;
#pragma unroll
    for (int nt = 0; nt < DT; ++nt) {
      const long long at = (long long)row[r] * qh.row + nt * 8 + 2 * tq;
      st_pair<T>(dqp + at, dqa[nt][2 * r], dqa[nt][2 * r + 1]);
    }
  }
}

// Instantiations for the half types: `flash_*_<dtype>`, heads of 64 channels. A head is passed as
// three strides (batch, head, row) so that a packed [B, S, 3H] projection is read, and its
// gradient written, in place.
#define FA_HEAD(x) long long x##_b, long long x##_n, long long x##_r
#define FA_ARGS(T)                                                                                             \
  const T *m, int mask_batches, const double *bias, int bias_rows, int heads, int s_len, int t, double scale, \
      uint64_t mixed_seed, uint64_t threshold, double keep_scale, const uint8_t *tiles
#define FA_PASS m, mask_batches, bias, bias_rows, heads, s_len, t, scale, mixed_seed, threshold, keep_scale, tiles
#define INSTANTIATE_FLASH(T, HSUF)                                                                                         \
  extern "C" __global__ void __launch_bounds__(128) flash_tiles_##HSUF(const T* m, int s_len, int t, uint8_t* tiles) {   \
    flash_tiles<T>(m, s_len, t, tiles);                                                                                   \
  }                                                                                                                       \
  extern "C" __global__ void __launch_bounds__(128, 3) flash_fwd_##HSUF(                                                \
      const T* q, const T* k, const T* v, T* o, float* lse, uint32_t* bits, FA_HEAD(q), FA_HEAD(k), FA_HEAD(o), FA_ARGS(T)) {                 \
    flash_fwd<T, 64>(q, k, v, o, lse, bits, FaHead{q_b, q_n, q_r}, FaHead{k_b, k_n, k_r}, FaHead{o_b, o_n, o_r}, FA_PASS);       \
  }                                                                                                                       \
  extern "C" __global__ void __launch_bounds__(256) flash_bwd_dot_##HSUF(const T* o, const T* go, float* dd, FA_HEAD(o),     \
                                                                          FA_HEAD(g), int heads, int s_len, int d,        \
                                                                          size_t rows) {                                  \
    flash_bwd_dot<T>(o, go, dd, FaHead{o_b, o_n, o_r}, FaHead{g_b, g_n, g_r}, heads, s_len, d, rows);                      \
  }                                                                                                                       \
  extern "C" __global__ void __launch_bounds__(128) flash_bwd_kv_##HSUF(                                             \
      const T* q, const T* k, const T* v, const T* go, const float* lse, const float* dd, const uint32_t* bits, T* dk, T* dv, FA_HEAD(q),        \
      FA_HEAD(k), FA_HEAD(g), FA_ARGS(T)) {                                                                                  \
    flash_bwd_kv<T, 64>(q, k, v, go, lse, dd, bits, dk, dv, FaHead{q_b, q_n, q_r}, FaHead{k_b, k_n, k_r}, FaHead{g_b, g_n, g_r}, \
                        FA_PASS);                                                                                         \
  }                                                                                                                       \
  extern "C" __global__ void __launch_bounds__(128, 3) flash_bwd_q_##HSUF(                                              \
      const T* q, const T* k, const T* v, const T* go, const float* lse, const float* dd, const uint32_t* bits, T* dq, FA_HEAD(q), FA_HEAD(k),   \
      FA_HEAD(g), FA_ARGS(T)) {                                                                                              \
    flash_bwd_q<T, 64>(q, k, v, go, lse, dd, bits, dq, FaHead{q_b, q_n, q_r}, FaHead{k_b, k_n, k_r}, FaHead{g_b, g_n, g_r},      \
                       FA_PASS);                                                                                          \
  }
