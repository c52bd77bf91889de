// wenhui's CUDA kernels: the GPU twins of the fused CPU ops in src/ops (same math, same masks,
// same dropout hash), plus a fused AdamW update (adamw.cuh). Compiled to PTX by build.rs (`cuda` feature).
//
// Every kernel is instantiated for f32, bf16, f16 and f64 as `<name>_<dtype>` (flash attention,
// flash.cuh, for f16 and bf16 only); arithmetic runs in
// f32 (f64 for f64 inputs), sums over rows accumulate in f32/f64, partial column sums in f64.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#define MASKED_SCORE (-65504.0f)

// A block's dynamic shared memory; a macro so that the CPU emulation of the tests
// (src/ops/cuda_emu) can supply its own.
#ifndef DYNAMIC_SHARED
#define DYNAMIC_SHARED(T, name) extern __shared__ __align__(16) T name[]
#endif
// A block's static shared variable `T name dims` (dims: `[n]...`, or empty for a scalar),
// 16-byte aligned; a macro so that the emulation can fill it with NaN at each block's start.
#ifndef SHARED
#define SHARED(T, name, dims) __shared__ __align__(16) T name dims
#endif
// Marks a fast path (16-byte packs) so that the emulation's tests can see it was taken; nothing
// on a GPU.
#ifndef FAST_PATH
#define FAST_PATH()
#endif

// Storage type T ↔ arithmetic type A.
template <typename T> struct Num;
template <> struct Num<float> {
  typedef float A;
  static __device__ __forceinline__ float to(float v) { return v; }
  static __device__ __forceinline__ float of(float v) { return v; }
};
template <> struct Num<double> {
  typedef double A;
  static __device__ __forceinline__ double to(double v) { return v; }
  static __device__ __forceinline__ double of(double v) { return v; }
};
template <> struct Num<__half> {
  typedef float A;
  static __device__ __forceinline__ float to(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half of(float v) { return __float2half(v); }
};
template <> struct Num<__nv_bfloat16> {
  typedef float A;
  static __device__ __forceinline__ float to(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 of(float v) { return __float2bfloat16(v); }
};

// 16 bytes of T, one load or store: 8 elements in bf16/f16, 4 in f32, 2 in f64. A warp reading
// packs keeps 512 bytes in flight per load instead of 64 (bf16 one by one).
template <typename T> struct alignas(16) Pack {
  static constexpr int N = 16 / sizeof(T);
  T v[N];
};
__device__ __forceinline__ bool aligned16(const void* p) { return ((uintptr_t)p & 15) == 0; }

template <typename A> __device__ __forceinline__ A warp_sum(A v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <typename A> __device__ __forceinline__ A warp_max(A v) {
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum / max over the block, returned to every thread. Safe to call repeatedly.
template <typename A> __device__ A block_sum(A v) {
  SHARED(A, sh, [32]);
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  v = ((int)threadIdx.x < nw) ? sh[lane] : A(0);
  if (wid == 0) v = warp_sum(v);
  if (threadIdx.x == 0) sh[0] = v;
  __syncthreads();
  return sh[0];
}
template <typename A> __device__ A block_max(A v) {
  SHARED(A, sh, [32]);
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  v = ((int)threadIdx.x < nw) ? sh[lane] : A(-INFINITY);
  if (wid == 0) v = warp_max(v);
  if (threadIdx.x == 0) sh[0] = v;
  __syncthreads();
  return sh[0];
}

// ---------------------------------------------------------------- row teams
// The threads that share one row of a row kernel (layer norm, the attention rows). BlockRow: the
// whole block, one row per block (long rows). WarpRow: one warp, blockDim.x / 32 rows per block,
// reduced by shuffles alone; no shared memory and no __syncthreads, so short rows are not bound
// by the latency of a block's barriers (a block per 512-key row spent ~7× the memory time).
// CACHE: elements per thread a kernel may keep in registers.
struct BlockRow {
  static constexpr int CACHE = 8;
  static __device__ __forceinline__ size_t row() { return blockIdx.x; }
  static __device__ __forceinline__ int first() { return threadIdx.x; }
  static __device__ __forceinline__ int stride() { return blockDim.x; }
  template <typename A> static __device__ __forceinline__ A reduce_sum(A v) { return block_sum(v); }
  template <typename A> static __device__ __forceinline__ A reduce_max(A v) { return block_max(v); }
};
struct WarpRow {
  static constexpr int CACHE = 32;
  static __device__ __forceinline__ size_t row() { return (size_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); }
  static __device__ __forceinline__ int first() { return threadIdx.x & 31; }
  static __device__ __forceinline__ int stride() { return 32; }
  template <typename A> static __device__ __forceinline__ A reduce_sum(A v) { return warp_sum(v); }
  template <typename A> static __device__ __forceinline__ A reduce_max(A v) { return warp_max(v); }
};

// ---------------------------------------------------------------- layer norm (one team per row)
// Mean and 1/std of one row (two passes), known to every thread of the team.
template <typename T, typename R, typename A>
__device__ void row_stats(const T* xr, int h, float eps, A& mean, A& rstd) {
  A s = 0;
  for (int i = R::first(); i < h; i += R::stride()) s += Num<T>::to(xr[i]);
  mean = R::reduce_sum(s) / A(h);
  A q = 0;
  for (int i = R::first(); i < h; i += R::stride()) {
    const A d = Num<T>::to(xr[i]) - mean;
    q += d * d;
  }
  rstd = A(1) / sqrt(R::reduce_sum(q) / A(h) + A(eps));
}

// `rows` bounds the warp teams of the last block (a block team's row always exists).
template <typename T, typename R>
__device__ void layer_norm_fwd(const T* x, const T* g, const T* b, T* y, int h, float eps, size_t rows) {
  typedef typename Num<T>::A A;
  const size_t row = R::row();
  if (row >= rows) return;  // a whole warp: no barrier of the others waits for it
  const T* xr = x + row * h;
  T* yr = y + row * h;
  A mean, rstd;
  row_stats<T, R>(xr, h, eps, mean, rstd);
  for (int i = R::first(); i < h; i += R::stride())
    yr[i] = Num<T>::of((Num<T>::to(xr[i]) - mean) * rstd * Num<T>::to(g[i]) + Num<T>::to(b[i]));
}

// dx of each row; the row's mean and 1/std go to `stats` for the dγ/dβ column sums.
template <typename T, typename R>
__device__ void layer_norm_bwd_dx(const T* x, const T* g, const T* dy, T* dx, double* stats, int h, float eps, size_t rows) {
  typedef typename Num<T>::A A;
  const size_t row = R::row();
  if (row >= rows) return;
  const T* xr = x + row * h;
  const T* dyr = dy + row * h;
  T* dxr = dx + row * h;
  A mean, rstd;
  row_stats<T, R>(xr, h, eps, mean, rstd);
  A sdg = 0, sdgx = 0;
  for (int i = R::first(); i < h; i += R::stride()) {
    const A xhat = (Num<T>::to(xr[i]) - mean) * rstd;
    const A dyg = Num<T>::to(dyr[i]) * Num<T>::to(g[i]);
    sdg += dyg;
    sdgx += dyg * xhat;
  }
  sdg = R::reduce_sum(sdg) / A(h);
  sdgx = R::reduce_sum(sdgx) / A(h);
  for (int i = R::first(); i < h; i += R::stride()) {
    const A xhat = (Num<T>::to(xr[i]) - mean) * rstd;
    const A dyg = Num<T>::to(dyr[i]) * Num<T>::to(g[i]);
    dxr[i] = Num<T>::of(rstd * (dyg - sdg - xhat * sdgx));
  }
  if (R::first() == 0) {
    stats[2 * row] = (double)mean;
    stats[2 * row + 1] = (double)rstd;
  }
}

// Column sums over a block of rows, block (32, 8): part[by][0][j] = Σ dy·x̂ (when stats is
// given), part[by][1][j] = Σ dy. A second kernel adds the partials of all row blocks.
template <typename T>
__device__ void column_partial(const T* x, const T* dy, const double* stats, double* part, int rows, int h, int rows_per_block) {
  SHARED(double, sg, [8][33]);
  SHARED(double, sb, [8][33]);
  const int j = blockIdx.x * 32 + threadIdx.x;
  const int r0 = blockIdx.y * rows_per_block;
  const int r1 = min(rows, r0 + rows_per_block);
  double ag = 0, ab = 0;
  if (j < h) {
    for (int r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
      const size_t k = (size_t)r * h + j;
      const double d = (double)Num<T>::to(dy[k]);
      ab += d;
      if (stats) ag += d * (((double)Num<T>::to(x[k]) - stats[2 * r]) * stats[2 * r + 1]);
    }
  }
  sg[threadIdx.y][threadIdx.x] = ag;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && j < h) {
    for (int k = 1; k < (int)blockDim.y; ++k) {
      ag += sg[k][threadIdx.x];
      ab += sb[k][threadIdx.x];
    }
    part[((size_t)blockIdx.y * 2) * h + j] = ag;
    part[((size_t)blockIdx.y * 2 + 1) * h + j] = ab;
  }
}

// The same partial sums with each thread on a pack of V = 16 / sizeof(T) columns (h % V == 0),
// read as one 16-byte load per row where x and dy are aligned, else element by element; block
// (32, 8) covers 32·V columns. Each column's rows are added in the same order as above, so the
// sums are the same to the bit.
template <typename T>
__device__ void column_partial_packed(const T* x, const T* dy, const double* stats, double* part, int rows, int h,
                                      int rows_per_block) {
  constexpr int V = Pack<T>::N;
  SHARED(double, sg, [8][33]);
  SHARED(double, sb, [8][33]);
  const int packs = h / V;
  const int pack = blockIdx.x * 32 + threadIdx.x;
  const int r0 = blockIdx.y * rows_per_block;
  const int r1 = min(rows, r0 + rows_per_block);
  const bool vec = aligned16(dy) && (!stats || aligned16(x));
  if (vec) FAST_PATH();
  double ag[V], ab[V];
#pragma unroll
  for (int c = 0; c < V; ++c) ag[c] = ab[c] = 0;
  if (pack < packs) {
    for (int r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
      const size_t at = (size_t)r * packs + pack;  // this pack in the flat rows
      Pack<T> d, xv;
      if (vec) {
        d = reinterpret_cast<const Pack<T>*>(dy)[at];
        if (stats) xv = reinterpret_cast<const Pack<T>*>(x)[at];
      } else {
#pragma unroll
        for (int c = 0; c < V; ++c) {
          d.v[c] = dy[at * V + c];
          if (stats) xv.v[c] = x[at * V + c];
        }
      }
#pragma unroll
      for (int c = 0; c < V; ++c) {
        const double dd = (double)Num<T>::to(d.v[c]);
        ab[c] += dd;
        if (stats) ag[c] += dd * (((double)Num<T>::to(xv.v[c]) - stats[2 * r]) * stats[2 * r + 1]);
      }
    }
  }
#pragma unroll
  for (int c = 0; c < V; ++c) {
    sg[threadIdx.y][threadIdx.x] = ag[c];
    sb[threadIdx.y][threadIdx.x] = ab[c];
    __syncthreads();
    if (threadIdx.y == 0 && pack < packs) {
      double g = ag[c], b = ab[c];
      for (int k = 1; k < (int)blockDim.y; ++k) {
        g += sg[k][threadIdx.x];
        b += sb[k][threadIdx.x];
      }
      const size_t j = (size_t)pack * V + c;
      part[((size_t)blockIdx.y * 2) * h + j] = g;
      part[((size_t)blockIdx.y * 2 + 1) * h + j] = b;
    }
    __syncthreads();
  }
}

// out[s][j] = Σ_by part[by][first + s][j] for s < slots.
template <typename T>
__device__ void column_final(const double* part, T* out, int blocks, int h, int first, int slots) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= h) return;
  for (int s = 0; s < slots; ++s) {
    double acc = 0;
    for (int by = 0; by < blocks; ++by) acc += part[((size_t)by * 2 + first + s) * h + j];
    out[(size_t)s * h + j] = Num<T>::of((typename Num<T>::A)acc);
  }
}

// ---------------------------------------------------------------- masked softmax (one block per row)
// scores [B, N, S, T] rows; mask [B or 1, 1, S, T]; z = s·scale·m + MASKED·(1 − m).
__device__ __forceinline__ size_t mask_row(size_t row, int heads, int s_len, int mask_batches) {
  const size_t s = row % s_len;
  size_t b = row / ((size_t)heads * s_len);
  if (mask_batches == 1) b = 0;
  return b * s_len + s;
}

template <typename T>
__device__ void masked_softmax_fwd(const T* sc, const T* m, T* p, int heads, int s_len, int t, int mask_batches, float scale) {
  typedef typename Num<T>::A A;
  const size_t row = blockIdx.x;
  const T* sr = sc + row * t;
  const T* mr = m + mask_row(row, heads, s_len, mask_batches) * t;
  T* pr = p + row * t;
  A mx = -INFINITY;
  for (int i = threadIdx.x; i < t; i += blockDim.x) {
    const A mv = Num<T>::to(mr[i]);
    mx = max(mx, Num<T>::to(sr[i]) * A(scale) * mv + A(MASKED_SCORE) * (A(1) - mv));
  }
  mx = block_max(mx);
  A sum = 0;
  for (int i = threadIdx.x; i < t; i += blockDim.x) {
    const A mv = Num<T>::to(mr[i]);
    sum += exp(Num<T>::to(sr[i]) * A(scale) * mv + A(MASKED_SCORE) * (A(1) - mv) - mx);
  }
  const A inv = A(1) / block_sum(sum);
  for (int i = threadIdx.x; i < t; i += blockDim.x) {
    const A mv = Num<T>::to(mr[i]);
    pr[i] = Num<T>::of(exp(Num<T>::to(sr[i]) * A(scale) * mv + A(MASKED_SCORE) * (A(1) - mv) - mx) * inv);
  }
}

template <typename T>
__device__ void masked_softmax_bwd(const T* p, const T* g, const T* m, T* ds, int heads, int s_len, int t, int mask_batches, float scale) {
  typedef typename Num<T>::A A;
  const size_t row = blockIdx.x;
  const T* pr = p + row * t;
  const T* gr = g + row * t;
  const T* mr = m + mask_row(row, heads, s_len, mask_batches) * t;
  T* dr = ds + row * t;
  A dot = 0;
  for (int i = threadIdx.x; i < t; i += blockDim.x) dot += Num<T>::to(pr[i]) * Num<T>::to(gr[i]);
  dot = block_sum(dot);
  for (int i = threadIdx.x; i < t; i += blockDim.x)
    dr[i] = Num<T>::of(Num<T>::to(pr[i]) * (Num<T>::to(gr[i]) - dot) * Num<T>::to(mr[i]) * A(scale));
}

// ---------------------------------------------------------------- element-wise
#define GRID_STRIDE(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)blockDim.x * gridDim.x)

template <typename A> __device__ __forceinline__ A gelu_value(A x, int erf_form) {
  if (erf_form) return A(0.5) * x * (A(1) + erf(x * A(0.70710678118654752)));
  return A(0.5) * x * (A(1) + tanh(A(0.7978845608028654) * (x + A(0.044715) * x * x * x)));
}
template <typename A> __device__ __forceinline__ A gelu_derivative(A x, int erf_form) {
  if (erf_form) {
    const A pdf = exp(A(-0.5) * x * x) * A(0.3989422804014327);
    return A(0.5) * (A(1) + erf(x * A(0.70710678118654752))) + x * pdf;
  }
  const A k = A(0.7978845608028654), c = A(0.044715);
  const A th = tanh(k * (x + c * x * x * x));
  return A(0.5) * (A(1) + th) + A(0.5) * x * (A(1) - th * th) * k * (A(1) + A(3) * c * x * x);
}

// (Pack, above.) Element-wise maps move 16 bytes per thread and step where every buffer is 16-byte aligned (8
// elements in bf16/f16, 4 in f32, 2 in f64), so a warp keeps 512 bytes of each input in flight
// per load instead of 64 (on the H200, PyTorch's 8-wide bf16 kernels ran GELU's forward and
// backward in 58 and 78 µs where these took 178 and 201 element by element). A ragged tail, or
// a misaligned buffer, goes element by element. `f(i, a[i], …)` is output element i: the flat
// index is the same on both paths (the dropout hash reads it). Launch over n / (16 / sizeof(T))
// threads (src/ops/launch.rs `elementwise_packed`); the grid-stride loops cover any grid.

template <typename T, typename F> __device__ void map1(const T* a, T* out, size_t n, F f) {
  constexpr int N = Pack<T>::N;
  size_t done = 0;
  if (aligned16(a) && aligned16(out)) {
    FAST_PATH();
    const size_t packs = n / N;
    GRID_STRIDE(p, packs) {
      const Pack<T> x = reinterpret_cast<const Pack<T>*>(a)[p];
      Pack<T> y;
#pragma unroll
      for (int k = 0; k < N; ++k) y.v[k] = f(p * N + k, x.v[k]);
      reinterpret_cast<Pack<T>*>(out)[p] = y;
    }
    done = packs * N;
  }
  GRID_STRIDE(j, n - done) out[done + j] = f(done + j, a[done + j]);
}
template <typename T, typename F> __device__ void map2(const T* a, const T* b, T* out, size_t n, F f) {
  constexpr int N = Pack<T>::N;
  size_t done = 0;
  if (aligned16(a) && aligned16(b) && aligned16(out)) {
    FAST_PATH();
    const size_t packs = n / N;
    GRID_STRIDE(p, packs) {
      const Pack<T> x = reinterpret_cast<const Pack<T>*>(a)[p];
      const Pack<T> y = reinterpret_cast<const Pack<T>*>(b)[p];
      Pack<T> z;
#pragma unroll
      for (int k = 0; k < N; ++k) z.v[k] = f(p * N + k, x.v[k], y.v[k]);
      reinterpret_cast<Pack<T>*>(out)[p] = z;
    }
    done = packs * N;
  }
  GRID_STRIDE(j, n - done) out[done + j] = f(done + j, a[done + j], b[done + j]);
}

template <typename T> __device__ void gelu_fwd(const T* x, T* y, size_t n, int erf_form) {
  map1(x, y, n, [=](size_t, T v) { return Num<T>::of(gelu_value(Num<T>::to(v), erf_form)); });
}
template <typename T> __device__ void gelu_bwd(const T* x, const T* g, T* dx, size_t n, int erf_form) {
  map2(x, g, dx, n, [=](size_t, T xv, T gv) { return Num<T>::of(Num<T>::to(gv) * gelu_derivative(Num<T>::to(xv), erf_form)); });
}
template <typename T> __device__ void add_bias_fwd(const T* y, const T* b, T* out, size_t n, int cols) {
  map1(y, out, n, [=](size_t i, T v) { return Num<T>::of(Num<T>::to(v) + Num<T>::to(b[i % cols])); });
}

// The CPU dropout's counter hash (SplitMix64), so both devices drop the same elements.
__device__ __forceinline__ uint64_t splitmix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
template <typename T> __device__ void dropout_fwd(const T* x, T* y, size_t n, uint64_t mixed_seed, uint64_t threshold, double scale) {
  typedef typename Num<T>::A A;
  map1(x, y, n, [=](size_t i, T v) {
    const uint64_t hsh = splitmix(mixed_seed ^ (i * 0xD6E8FEB86659FD93ull));
    return (hsh >> 11) < threshold ? Num<T>::of(A(0)) : Num<T>::of(Num<T>::to(v) * A(scale));
  });
}

// out = x + dropout(y): the residual branch of a layer in one pass (the CPU's ResidualDropout).
template <typename T>
__device__ void residual_dropout_fwd(const T* x, const T* y, T* out, size_t n, uint64_t mixed_seed, uint64_t threshold, double scale) {
  typedef typename Num<T>::A A;
  map2(x, y, out, n, [=](size_t i, T xv, T yv) {
    const uint64_t hsh = splitmix(mixed_seed ^ (i * 0xD6E8FEB86659FD93ull));
    const A kept = (hsh >> 11) < threshold ? A(0) : Num<T>::to(yv) * A(scale);
    return Num<T>::of(Num<T>::to(xv) + kept);
  });
}

#include "attention.cuh"
#include "decode.cuh"
#include "flash.cuh"

// ---------------------------------------------------------------- cross-entropy (one block per row)
// The loss comes out in the arithmetic type A (f32; f64 for f64 logits): half-precision logits are
// read as they are, with no f32 copy of [N, V], and give the losses of their f32 upcast. The
// forward reads each row once: every thread keeps a running (max, Σ exp(z − max)), one exp per
// element, merged over the block. The backward takes (g, loss) per row: the row's log-sum-exp is
// loss + z[target], so it reads the row once and writes it once. Rows move in 16-byte packs where
// they start 16-byte aligned (a row of the GLM vocabulary, 30,592 logits, is 0.12 MB in f32).
template <typename T> __device__ void cross_entropy_fwd(const T* z, const uint32_t* tg, typename Num<T>::A* loss, int v) {
  typedef typename Num<T>::A A;
  constexpr int N = Pack<T>::N;
  const size_t row = blockIdx.x;
  const T* zr = z + row * v;
  A m = -INFINITY, s = 0;
  // −∞ adds nothing (and would give exp(−∞ + ∞) while m is −∞); NaN still reaches the sum.
  auto add = [&](A x) {
    if (x > m) {
      s = s * exp(m - x) + A(1);
      m = x;
    } else if (x != A(-INFINITY)) {
      s += exp(x - m);
    }
  };
  int done = 0;
  if (aligned16(zr)) {
    FAST_PATH();
    const int packs = v / N;
    for (int p = threadIdx.x; p < packs; p += blockDim.x) {
      const Pack<T> x = reinterpret_cast<const Pack<T>*>(zr)[p];
#pragma unroll
      for (int k = 0; k < N; ++k) add(Num<T>::to(x.v[k]));
    }
    done = packs * N;
  }
  for (int i = done + threadIdx.x; i < v; i += blockDim.x) add(Num<T>::to(zr[i]));
  const A mx = block_max(m);
  // A thread whose max is still −∞ holds 0, or NaN from a NaN logit, which must reach the sum.
  const A sum = block_sum(m == A(-INFINITY) ? s : s * exp(m - mx));
  if (threadIdx.x == 0) loss[row] = mx + log(sum) - Num<T>::to(zr[tg[row]]);
}
template <typename T>
__device__ void cross_entropy_bwd(const T* z, const uint32_t* tg, const typename Num<T>::A* gl, T* dz, int v) {
  typedef typename Num<T>::A A;
  constexpr int N = Pack<T>::N;
  const size_t row = blockIdx.x;
  const T* zr = z + row * v;
  T* dr = dz + row * v;
  const uint32_t t = tg[row];
  const A gr = gl[2 * row], lse = gl[2 * row + 1] + Num<T>::to(zr[t]);
  auto grad = [&](int i, T zv) {
    A d = exp(Num<T>::to(zv) - lse) * gr;
    if ((uint32_t)i == t) d -= gr;
    return Num<T>::of(d);
  };
  int done = 0;
  if (aligned16(zr) && aligned16(dr)) {
    FAST_PATH();
    const int packs = v / N;
    for (int p = threadIdx.x; p < packs; p += blockDim.x) {
      const Pack<T> x = reinterpret_cast<const Pack<T>*>(zr)[p];
      Pack<T> y;
#pragma unroll
      for (int k = 0; k < N; ++k) y.v[k] = grad(p * N + k, x.v[k]);
      reinterpret_cast<Pack<T>*>(dr)[p] = y;
    }
    done = packs * N;
  }
  for (int i = done + threadIdx.x; i < v; i += blockDim.x) dr[i] = grad(i, zr[i]);
}

// ---------------------------------------------------------------- embedding
template <typename T> __device__ void embedding_fwd(const T* w, const uint32_t* ids, T* out, size_t n, int h) {
  GRID_STRIDE(i, n * (size_t)h) out[i] = w[(size_t)ids[i / h] * h + i % h];
}
// dW (zeroed) += g row by row: one thread per (row, column), atomic adds for repeated ids.
template <typename T> __device__ void embedding_bwd(const T* g, const uint32_t* ids, T* dw, size_t n, int h) {
  GRID_STRIDE(i, n * (size_t)h) atomicAdd(&dw[(size_t)ids[i / h] * h + i % h], g[i]);
}

// ---------------------------------------------------------------- instantiations
#define INSTANTIATE(T, SUF)                                                                                      \
  extern "C" __global__ void __launch_bounds__(1024) layer_norm_fwd_##SUF(const T* x, const T* g, const T* b, T* y, int h, float eps) { \
    layer_norm_fwd<T, BlockRow>(x, g, b, y, h, eps, gridDim.x);                                                  \
  }                                                                                                              \
  extern "C" __global__ void __launch_bounds__(256) layer_norm_fwd_warp_##SUF(const T* x, const T* g, const T* b, T* y, int h, \
                                                                           float eps, size_t rows) {               \
    layer_norm_fwd<T, WarpRow>(x, g, b, y, h, eps, rows);                                                        \
  }                                                                                                              \
  extern "C" __global__ void __launch_bounds__(1024) layer_norm_bwd_dx_##SUF(const T* x, const T* g, const T* dy, T* dx, double* stats, \
                                                     int h, float eps) {                                         \
    layer_norm_bwd_dx<T, BlockRow>(x, g, dy, dx, stats, h, eps, gridDim.x);                                      \
  }                                                                                                              \
  extern "C" __global__ void __launch_bounds__(256) layer_norm_bwd_dx_warp_##SUF(const T* x, const T* g, const T* dy, T* dx,   \
                                                                              double* stats, int h, float eps,    \
                                                                              size_t rows) {                      \
    layer_norm_bwd_dx<T, WarpRow>(x, g, dy, dx, stats, h, eps, rows);                                            \
  }                                                                                                              \
  extern "C" __global__ void column_partial_##SUF(const T* x, const T* dy, const double* stats, double* part,    \
                                                  int rows, int h, int rows_per_block) {                        \
    column_partial<T>(x, dy, stats, part, rows, h, rows_per_block);                                              \
  }                                                                                                              \
  extern "C" __global__ void column_partial_packed_##SUF(const T* x, const T* dy, const double* stats,           \
                                                         double* part, int rows, int h, int rows_per_block) {    \
    column_partial_packed<T>(x, dy, stats, part, rows, h, rows_per_block);                                       \
  }                                                                                                              \
  extern "C" __global__ void column_final_##SUF(const double* part, T* out, int blocks, int h, int first,       \
                                                int slots) {                                                     \
    column_final<T>(part, out, blocks, h, first, slots);                                                         \
  }                                                                                                              \
  extern "C" __global__ void __launch_bounds__(1024) masked_softmax_fwd_##SUF(const T* s, const T* m, T* p, int heads, int s_len, int t, \
                                                      int mask_batches, float scale) {                           \
    masked_softmax_fwd<T>(s, m, p, heads, s_len, t, mask_batches, scale);                                        \
  }                                                                                                              \
  extern "C" __global__ void __launch_bounds__(1024) masked_softmax_bwd_##SUF(const T* p, const T* g, const T* m, T* ds, int heads,     \
                                                      int s_len, int t, int mask_batches, float scale) {         \
    masked_softmax_bwd<T>(p, g, m, ds, heads, s_len, t, mask_batches, scale);                                    \
  }                                                                                                              \
  extern "C" __global__ void residual_dropout_fwd_##SUF(const T* x, const T* y, T* out, size_t n,                \
                                                        uint64_t mixed_seed, uint64_t threshold, double scale) {   \
    residual_dropout_fwd<T>(x, y, out, n, mixed_seed, threshold, scale);                                         \
  }                                                                                                              \
  extern "C" __global__ void __launch_bounds__(1024) attn_probs_fwd_##SUF(T* sc, T* pd, const T* m, const double* bias, int bias_rows,     \
                                                  int heads, int s_len, int t, int mask_batches, double scale,   \
                                                  uint64_t mixed_seed, uint64_t threshold, double keep_scale,    \
                                                  int mode) {                                                    \
    attn_probs_fwd<T, BlockRow>(sc, pd, m, bias, bias_rows, heads, s_len, t, mask_batches, scale, mixed_seed,    \
                                threshold, keep_scale, mode, gridDim.x);                                         \
  }                                                                                                              \
  extern "C" __global__ void __launch_bounds__(256) attn_probs_fwd_warp_##SUF(T* sc, T* pd, const T* m, const double* bias,   \
                                                  int bias_rows, int heads, int s_len, int t, int mask_batches,  \
                                                  double scale, uint64_t mixed_seed, uint64_t threshold,         \
                                                  double keep_scale, int mode, size_t rows) {                    \
    attn_probs_fwd<T, WarpRow>(sc, pd, m, bias, bias_rows, heads, s_len, t, mask_batches, scale, mixed_seed,     \
                               threshold, keep_scale, mode, rows);                                               \
  }                                                                                                              \
  extern "C" __global__ void __launch_bounds__(1024) attn_probs_bwd_##SUF(T* dp, const T* p, const T* pd, const T* m, int heads,         \
                                                  int s_len, int t, int mask_batches, double scale) {            \
    attn_probs_bwd<T, BlockRow>(dp, p, pd, m, heads, s_len, t, mask_batches, scale, gridDim.x);                  \
  }                                                                                                              \
  extern "C" __global__ void __launch_bounds__(256) attn_probs_bwd_warp_##SUF(T* dp, const T* p, const T* pd, const T* m,     \
                                                  int heads, int s_len, int t, int mask_batches, double scale,   \
                                                  size_t rows) {                                                 \
    attn_probs_bwd<T, WarpRow>(dp, p, pd, m, heads, s_len, t, mask_batches, scale, rows);                        \
  }                                                                                                              \
  extern "C" __global__ void gelu_fwd_##SUF(const T* x, T* y, size_t n, int erf_form) {                         \
    gelu_fwd<T>(x, y, n, erf_form);                                                                              \
  }                                                                                                              \
  extern "C" __global__ void gelu_bwd_##SUF(const T* x, const T* g, T* dx, size_t n, int erf_form) {            \
    gelu_bwd<T>(x, g, dx, n, erf_form);                                                                          \
  }                                                                                                              \
  extern "C" __global__ void add_bias_fwd_##SUF(const T* y, const T* b, T* out, size_t n, int cols) {           \
    add_bias_fwd<T>(y, b, out, n, cols);                                                                         \
  }                                                                                                              \
  extern "C" __global__ void dropout_fwd_##SUF(const T* x, T* y, size_t n, uint64_t mixed_seed,                 \
                                               uint64_t threshold, double scale) {                              \
    dropout_fwd<T>(x, y, n, mixed_seed, threshold, scale);                                                       \
  }                                                                                                              \
  extern "C" __global__ void __launch_bounds__(1024) cross_entropy_fwd_##SUF(const T* z, const uint32_t* tg,     \
                                                                              Num<T>::A* loss, int v) {           \
    cross_entropy_fwd<T>(z, tg, loss, v);                                                                        \
  }                                                                                                              \
  extern "C" __global__ void __launch_bounds__(1024) cross_entropy_bwd_##SUF(const T* z, const uint32_t* tg,     \
                                                                              const Num<T>::A* gl, T* dz, int v) { \
    cross_entropy_bwd<T>(z, tg, gl, dz, v);                                                                      \
  }                                                                                                              \
  extern "C" __global__ void embedding_fwd_##SUF(const T* w, const uint32_t* ids, T* out, size_t n, int h) {    \
    embedding_fwd<T>(w, ids, out, n, h);                                                                         \
  }                                                                                                              \
  extern "C" __global__ void embedding_bwd_##SUF(const T* g, const uint32_t* ids, T* dw, size_t n, int h) {     \
    embedding_bwd<T>(g, ids, dw, n, h);                                                                          \
  }

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
INSTANTIATE(__half, f16)
INSTANTIATE(__nv_bfloat16, bf16)
INSTANTIATE_DECODE(float, f32)
INSTANTIATE_DECODE(double, f64)
INSTANTIATE_DECODE(__half, f16)
INSTANTIATE_DECODE(__nv_bfloat16, bf16)
INSTANTIATE_FLASH(__half, f16)
INSTANTIATE_FLASH(__nv_bfloat16, bf16)

// ---------------------------------------------------------------- strided rows → contiguous
// Attention's head split and merge, planned by src/ops/permute.rs (which runs this same loop on
// the CPU in its tests): output word i, in row r = (i0, i1, i2, i3) of `row` words, comes from
// src[i0·s0 + i1·s1 + i2·s2 + i3·s3 + i % row]. Consecutive threads move consecutive words of a
// row; a word is 2 to 16 bytes, as wide as the layout allows.
template <typename W>
__device__ void permute_rows(const W* src, W* dst, size_t n, size_t row, size_t d1, size_t d2, size_t d3, size_t s0,
                             size_t s1, size_t s2, size_t s3) {
  GRID_STRIDE(i, n) {
    size_t r = i / row;
    const size_t c = i % row;
    const size_t i3 = r % d3;
    r /= d3;
    const size_t i2 = r % d2;
    r /= d2;
    const size_t i1 = r % d1;
    const size_t i0 = r / d1;
    dst[i] = src[i0 * s0 + i1 * s1 + i2 * s2 + i3 * s3 + c];
  }
}
#define PERMUTE_ROWS(W, SUF)                                                                                    \
  extern "C" __global__ void permute_rows_##SUF(const W* src, W* dst, size_t n, size_t row, size_t d1, size_t d2, \
                                                size_t d3, size_t s0, size_t s1, size_t s2, size_t s3) {          \
    permute_rows<W>(src, dst, n, row, d1, d2, d3, s0, s1, s2, s3);                                              \
  }
PERMUTE_ROWS(uint16_t, w2)
PERMUTE_ROWS(uint32_t, w4)
PERMUTE_ROWS(unsigned long long, w8)
PERMUTE_ROWS(uint4, w16)

#include "adamw.cuh"
