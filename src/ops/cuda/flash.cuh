// Flash attention for bf16/f16 heads of 64 channels (included by kernels.cu after attention.cuh,
// whose `dropped` hash it shares): the fused attention's math (src/ops/attention.rs: GLM's 0/1
// mask, the key bias, dropout by the same counter hash) without ever writing the [S, T] scores.
// Tensor cores through `mma.sync.m16n8k16` (sm_80+), f32 accumulators, an online softmax.
//
// Forward: a block of 4 warps owns 64 queries of one (batch, head) pair, a warp 16 of them; it
// walks the keys 64 at a time (K and Vᵀ staged in shared memory), keeping per query row the
// running max, the running sum and the f32 output. It writes O and the rows' log-sum-exp L.
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

// mma.sync.aligned.m16n8k16.row.col.f32.T.T.f32: d += a · b.
#ifndef WENHUI_EMU_MMA
template <typename T> struct Mma;
template <> struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float* d, const uint32_t* a, const uint32_t* b) {
#if __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    __trap();  // the host uses flash attention on sm_80+ only
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
#endif

// Two consecutive 16-bit elements as one register (the first in the low half).
template <typename T> __device__ __forceinline__ uint32_t ld_pair(const T* p) { return *reinterpret_cast<const uint32_t*>(p); }
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

// The A fragment of the 16×16 tile at `p` (row-major, `ld` elements per row).
template <typename T> __device__ __forceinline__ void frag_a(uint32_t a[4], const T* p, int ld, int lane) {
  p += (lane >> 2) * ld + 2 * (lane & 3);
  a[0] = ld_pair(p);
  a[1] = ld_pair(p + 8 * ld);
  a[2] = ld_pair(p + 8);
  a[3] = ld_pair(p + 8 * ld + 8);
}
// The B fragment (16 k × 8 n) of a tile stored n-major at `p` (row n holds k contiguously).
template <typename T> __device__ __forceinline__ void frag_b(uint32_t b[2], const T* p, int ld, int lane) {
  p += (lane >> 2) * ld + 2 * (lane & 3);
  b[0] = ld_pair(p);
  b[1] = ld_pair(p + 8);
}
// Accumulators c[nt] (16 rows × 8·NT columns) as the A fragment of columns 16·kk..16·kk+15.
template <typename T> __device__ __forceinline__ void frag_a_of(uint32_t a[4], const float (*c)[4], int kk) {
  a[0] = pack_pair<T>(c[2 * kk][0], c[2 * kk][1]);
  a[1] = pack_pair<T>(c[2 * kk][2], c[2 * kk][3]);
  a[2] = pack_pair<T>(c[2 * kk + 1][0], c[2 * kk + 1][1]);
  a[3] = pack_pair<T>(c[2 * kk + 1][2], c[2 * kk + 1][3]);
}

// The A fragments of the warp's 16 rows of a tile staged at `sh` (pitch D + 8), D channels.
template <typename T, int D> __device__ __forceinline__ void fa_warp_rows(uint32_t (*f)[4], const T* sh, int warp, int lane) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) frag_a(f[kk], sh + warp * 16 * (D + 8) + kk * 16, D + 8, lane);
}
// c = A·Bᵀ over one tile: A the warp's 16 rows of D channels as fragments a[D/16], B the tile's
// 64 rows row-major at `b` (pitch D + 8); c[nt] holds columns 8·nt..8·nt+7 (16 × 64).
template <typename T, int D>
__device__ __forceinline__ void fa_rows_times_tile(float (*c)[4], const uint32_t (*a)[4], const T* b, int lane) {
#pragma unroll
  for (int nt = 0; nt < FA_TILE / 8; ++nt) {
    c[nt][0] = c[nt][1] = c[nt][2] = c[nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t bf[2];
      frag_b(bf, b + nt * 8 * (D + 8) + kk * 16, D + 8, lane);
      Mma<T>::run(c[nt], a[kk], bf);
    }
  }
}
// acc += C·B over one tile: C the accumulators over the tile's 64 rows (16 × 64, rounded to T as
// A fragments), B the tile's rows transposed at `bt` (pitch 64 + 8); acc is 16 × D.
template <typename T, int D>
__device__ __forceinline__ void fa_acc_times_tile(float (*acc)[4], const float (*c)[4], const T* bt, int lane) {
#pragma unroll
  for (int kk = 0; kk < FA_TILE / 16; ++kk) {
    uint32_t af[4];
    frag_a_of<T>(af, c, kk);
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) {
      uint32_t bf[2];
      frag_b(bf, bt + nt * 8 * (FA_TILE + 8) + kk * 16, FA_TILE + 8, lane);
      Mma<T>::run(acc[nt], af, bf);
    }
  }
}

// One 64-row tile of a head in registers: rows r0..r0+63 (`rs` elements apart, D contiguous
// channels, 16-byte aligned), each of the block's FA_THREADS threads holding D / 16 packs of 16
// bytes; rows at or past `limit` read as zeros. Fetched from global memory before the previous
// tile's products run (so the loads overlap them), then stored to shared memory row-major
// (sh[64][D + 8]) and/or transposed (sh[D][64 + 8], sh[c][r] = row r, channel c). Consecutive
// threads take consecutive rows: both stores then fall in distinct banks.
template <typename T, int D> struct FaTile {
  static constexpr int PACKS = FA_TILE * D / 8 / FA_THREADS;
  uint4 v[PACKS];
  static __device__ __forceinline__ int row(int k) { return (threadIdx.x + k * FA_THREADS) % FA_TILE; }
  static __device__ __forceinline__ int col(int k) { return (threadIdx.x + k * FA_THREADS) / FA_TILE * 8; }
  __device__ __forceinline__ void fetch(const T* src, long long rs, int r0, int limit) {
#pragma unroll
    for (int k = 0; k < PACKS; ++k) {
      const int r = row(k);
      v[k] = uint4{0, 0, 0, 0};
      if (r0 + r < limit) v[k] = *reinterpret_cast<const uint4*>(src + (long long)(r0 + r) * rs + col(k));
    }
  }
  __device__ __forceinline__ void store(T* sh) const {
#pragma unroll
    for (int k = 0; k < PACKS; ++k) *reinterpret_cast<uint4*>(sh + row(k) * (D + 8) + col(k)) = v[k];
  }
  __device__ __forceinline__ void store_t(T* sh) const {
#pragma unroll
    for (int k = 0; k < PACKS; ++k) {
      Pack<T> p;
      memcpy(&p, &v[k], 16);
#pragma unroll
      for (int e = 0; e < 8; ++e) sh[(col(k) + e) * (FA_TILE + 8) + row(k)] = p.v[e];
    }
  }
};
// A tile straight into shared memory, row-major.
template <typename T, int D> __device__ __forceinline__ void fa_load(T* sh, const T* src, long long rs, int r0, int limit) {
  FaTile<T, D> tile;
  tile.fetch(src, rs, r0, limit);
  tile.store(sh);
}

// The block's own 64 rows of two heads (K and V, or Q and dO), staged through `s1` and `s2`, as
// the A fragments of each warp's 16 rows.
template <typename T, int D>
__device__ __forceinline__ void fa_own_rows(uint32_t (*f1)[4], uint32_t (*f2)[4], T* s1, T* s2, const T* src1, long long rs1,
                                            const T* src2, long long rs2, int r0, int limit, int warp, int lane) {
  fa_load<T, D>(s1, src1, rs1, r0, limit);
  fa_load<T, D>(s2, src2, rs2, r0, limit);
  __syncthreads();
  fa_warp_rows<T, D>(f1, s1, warp, lane);
  fa_warp_rows<T, D>(f2, s2, warp, lane);
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
      uint64_t mixed_seed, uint64_t threshold, double keep_scale_d

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
  constexpr int LD = D + 8, LDT = FA_TILE + 8, NT = FA_TILE / 8, DT = D / 8, DK = D / 16;
  __align__(16) __shared__ T qs[FA_TILE * LD];
  __align__(16) __shared__ T ks[FA_TILE * LD];
  __align__(16) __shared__ T vt[D * LDT];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int pair = blockIdx.y, b = pair / heads, n = pair % heads, i0 = blockIdx.x * FA_TILE;
  const float scale = float(scale_d), keep_scale = float(keep_scale_d);
  const T* kp = k + kh.at(b, n);
  const T* vp = v + kh.at(b, n);
  fa_load<T, D>(qs, q + qh.at(b, n), qh.row, i0, s_len);
  __syncthreads();
  uint32_t qf[DK][4];
  fa_warp_rows<T, D>(qf, qs, warp, lane);
  const double* br = bias_rows > 0 ? bias + (size_t)(bias_rows == 1 ? 0 : b) * t : nullptr;
  int row[2];
  const T* mr[2];
  float mx[2] = {-INFINITY, -INFINITY}, sum[2] = {0.f, 0.f};
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row[r] = i0 + warp * 16 + g + 8 * r;
    mr[r] = m + ((size_t)(mask_batches == 1 ? 0 : b) * s_len + min(row[r], s_len - 1)) * t;
  }
  float acc[DT][4];
#pragma unroll
  for (int nt = 0; nt < DT; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
  FaTile<T, D> kn, vn;  // the next key tile, in flight
  kn.fetch(kp, kh.row, 0, t);
  vn.fetch(vp, kh.row, 0, t);
  for (int j0 = 0; j0 < t; j0 += FA_TILE) {
    __syncthreads();  // every warp is done with the previous tile
    kn.store(ks);
    vn.store_t(vt);
    __syncthreads();
    if (j0 + FA_TILE < t) {
      kn.fetch(kp, kh.row, j0 + FA_TILE, t);
      vn.fetch(vp, kh.row, j0 + FA_TILE, t);
    }
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
    fa_acc_times_tile<T, D>(acc, sc, vt, lane);
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
  constexpr int LD = D + 8, LDT = FA_TILE + 8, NT = FA_TILE / 8, DT = D / 8, DK = D / 16;
  __align__(16) __shared__ T qs[FA_TILE * LD];
  __align__(16) __shared__ T qt[D * LDT];
  __align__(16) __shared__ T gs[FA_TILE * LD];
  __align__(16) __shared__ T gt[D * LDT];
  __shared__ float ls[FA_TILE], ds_row[FA_TILE];
  __shared__ uint32_t words[FA_THREADS];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int pair = blockIdx.y, b = pair / heads, n = pair % heads, j0 = blockIdx.x * FA_TILE;
  const float scale = float(scale_d), keep_scale = float(keep_scale_d);
  uint32_t kf[DK][4], vf[DK][4];
  fa_own_rows<T, D>(kf, vf, qs, gs, k + kh.at(b, n), kh.row, v + kh.at(b, n), kh.row, j0, t, warp, lane);
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
  const T* qp = q + qh.at(b, n);
  const T* gp = go + gh.at(b, n);
  for (int i0 = 0; i0 < s_len; i0 += FA_TILE) {
    __syncthreads();  // every warp is done with the previous tile (and the K/V staging)
    {
      FaTile<T, D> tile;  // Q and dO read once each, stored both ways
      tile.fetch(qp, qh.row, i0, s_len);
      tile.store(qs);
      tile.store_t(qt);
      tile.fetch(gp, gh.row, i0, s_len);
      tile.store(gs);
      tile.store_t(gt);
    }
    for (int x = threadIdx.x; x < FA_TILE; x += blockDim.x) {
      const bool in = i0 + x < s_len;
      ls[x] = in ? lse[(size_t)pair * s_len + i0 + x] : 0.f;
      ds_row[x] = in ? dd[(size_t)pair * s_len + i0 + x] : 0.f;
    }
    if (bits) words[threadIdx.x] = bits[fa_bits_tile(pair, i0 / FA_TILE, blockIdx.x, s_len, t) + threadIdx.x];
    __syncthreads();
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
          const bool gone = bits && fa_bit(words, x, j - j0);
          pd = fa_grad<T>(st[nt][c], dpt[nt][c], mbase + (size_t)i * t, br, j, ls[x], ds_row[x], gone, scale, keep_scale, ds);
        }
        st[nt][c] = pd;
        dpt[nt][c] = ds;
      }
    }
    fa_acc_times_tile<T, D>(dva, st, gt, lane);
    fa_acc_times_tile<T, D>(dka, dpt, qt, lane);
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
  constexpr int LD = D + 8, LDT = FA_TILE + 8, NT = FA_TILE / 8, DT = D / 8, DK = D / 16;
  __align__(16) __shared__ T ks[FA_TILE * LD];
  __align__(16) __shared__ T kt[D * LDT];
  __align__(16) __shared__ T vs[FA_TILE * LD];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int pair = blockIdx.y, b = pair / heads, n = pair % heads, i0 = blockIdx.x * FA_TILE;
  const float scale = float(scale_d), keep_scale = float(keep_scale_d);
  uint32_t qf[DK][4], gf[DK][4];
  fa_own_rows<T, D>(qf, gf, ks, vs, q + qh.at(b, n), qh.row, go + gh.at(b, n), gh.row, i0, s_len, warp, lane);
  const double* br = bias_rows > 0 ? bias + (size_t)(bias_rows == 1 ? 0 : b) * t : nullptr;
  int row[2];
  const T* mr[2];
  float l[2], drow[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row[r] = i0 + warp * 16 + g + 8 * r;
    const bool in = row[r] < s_len;
    mr[r] = m + ((size_t)(mask_batches == 1 ? 0 : b) * s_len + min(row[r], s_len - 1)) * t;
    l[r] = in ? lse[(size_t)pair * s_len + row[r]] : 0.f;
    drow[r] = in ? dd[(size_t)pair * s_len + row[r]] : 0.f;
  }
  float dqa[DT][4];
#pragma unroll
  for (int nt = 0; nt < DT; ++nt)
#pragma unroll
    for (int c = 0; c < 4; ++c) dqa[nt][c] = 0.f;
  const T* kp = k + kh.at(b, n);
  const T* vp = v + kh.at(b, n);
  for (int j0 = 0; j0 < t; j0 += FA_TILE) {
    __syncthreads();
    {
      // K read once, stored both ways. Not fetched ahead as in the forward pass: holding the
      // next tile in registers took this kernel from 168 to 234 registers (three blocks per SM
      // to two); __launch_bounds__(128, 3) keeps it at 168 without spills.
      FaTile<T, D> tile;
      tile.fetch(kp, kh.row, j0, t);
      tile.store(ks);
      tile.store_t(kt);
      tile.fetch(vp, kh.row, j0, t);
      tile.store(vs);
    }
    __syncthreads();
    float sc[NT][4], dp[NT][4];
    fa_rows_times_tile<T, D>(sc, qf, ks, lane);
    fa_rows_times_tile<T, D>(dp, gf, vs, lane);
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
    fa_acc_times_tile<T, D>(dqa, sc, kt, lane);
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
      uint64_t mixed_seed, uint64_t threshold, double keep_scale
#define FA_PASS m, mask_batches, bias, bias_rows, heads, s_len, t, scale, mixed_seed, threshold, keep_scale
#define INSTANTIATE_FLASH(T, HSUF)                                                                                         \
  extern "C" __global__ void __launch_bounds__(128) flash_fwd_##HSUF(                                                \
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
