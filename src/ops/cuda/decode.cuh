// The one-token decoding steps of kernels.cu (included there, after the helpers they use: Num,
// warp_sum, block_sum, block_max, map1, gelu_value, the row teams, layer_norm_fwd, MASKED_SCORE).
// Inference only (src/ops/cuda/decode.rs): a GLM layer's step is eight launches, layer norm and
// the GEMMs aside: the attention kernel, the bias + GELU map, and two bias + residual + layer norm
// row kernels.
#pragma once

// ---------------------------------------------------------------- attention of one new token
// One block per (batch row, head): q, k, v of the new token from the QKV projection y [B, 3H]
// plus its bias; k and v go into the caches [B, N, cap, d] at position `len`; then softmax over
// the len + 1 keys, z = (q·k·scale + key_bias)·m + MASKED·(1 − m) (mask [Bm, T], key bias [Bk, T]),
// and the context row → out [B, H]. Shared memory: q [d], scores [T], partial sums [groups·d].
template <typename T>
__device__ void decode_attention(const T* y, const T* qkv_bias, T* kc, T* vc, const T* m, int mask_batches, const T* kb,
                                 int kb_batches, T* out, int heads, int d, int cap, int len, double scale) {
  typedef typename Num<T>::A A;
  DYNAMIC_SHARED(unsigned char, decode_smem);
  A* q = reinterpret_cast<A*>(decode_smem);
  const int t = len + 1;
  A* sc = q + d;
  A* part = sc + t;
  const int b = blockIdx.x / heads, n = blockIdx.x % heads;
  const int hid = heads * d;
  const T* yr = y + (size_t)b * 3 * hid;
  T* kp = kc + ((size_t)b * heads + n) * cap * d;
  T* vp = vc + ((size_t)b * heads + n) * cap * d;
  for (int e = threadIdx.x; e < d; e += blockDim.x) {
    const int c = n * d + e;
    q[e] = Num<T>::to(yr[c]) + Num<T>::to(qkv_bias[c]);
    kp[(size_t)len * d + e] = Num<T>::of(Num<T>::to(yr[hid + c]) + Num<T>::to(qkv_bias[hid + c]));
    vp[(size_t)len * d + e] = Num<T>::of(Num<T>::to(yr[2 * hid + c]) + Num<T>::to(qkv_bias[2 * hid + c]));
  }
  __syncthreads();
  const T* mr = m + (size_t)(mask_batches == 1 ? 0 : b) * t;
  const T* br = kb ? kb + (size_t)(kb_batches == 1 ? 0 : b) * t : nullptr;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int j = warp; j < t; j += warps) {  // a warp per key: coalesced reads of its row
    A dot = 0;
    for (int e = lane; e < d; e += 32) dot += q[e] * Num<T>::to(kp[(size_t)j * d + e]);
    dot = warp_sum(dot);
    if (lane == 0) {
      const A mv = Num<T>::to(mr[j]);
      const A bias = br ? Num<T>::to(br[j]) : A(0);
      sc[j] = (dot * A(scale) + bias) * mv + A(MASKED_SCORE) * (A(1) - mv);
    }
  }
  __syncthreads();
  A mx = -INFINITY;
  for (int j = threadIdx.x; j < t; j += blockDim.x) mx = max(mx, sc[j]);
  mx = block_max(mx);
  A sum = 0;
  for (int j = threadIdx.x; j < t; j += blockDim.x) {
    const A w = exp(sc[j] - mx);
    sc[j] = w;
    sum += w;
  }
  const A inv = A(1) / block_sum(sum);  // its barriers also publish sc
  // Context: thread (g, e) sums keys g, g + groups, … of channel e; then the groups are added.
  const int groups = blockDim.x / d > 0 ? blockDim.x / d : 1;
  const int e = threadIdx.x % d, g = threadIdx.x / d;
  if (g < groups) {
    A acc = 0;
    for (int j = g; j < t; j += groups) acc += sc[j] * Num<T>::to(vp[(size_t)j * d + e]);
    part[g * d + e] = acc;
  }
  __syncthreads();
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    A acc = 0;
    for (int k = 0; k < groups; ++k) acc += part[k * d + c];
    out[(size_t)b * hid + n * d + c] = Num<T>::of(acc * inv);
  }
}

// out = gelu(y + b).
template <typename T> __device__ void bias_gelu(const T* y, const T* b, T* out, size_t n, int cols, int erf_form) {
  map1(y, out, n, [=](size_t i, T v) { return Num<T>::of(gelu_value(Num<T>::to(v) + Num<T>::to(b[i % cols]), erf_form)); });
}

// xo = x + (y + b) (a projection's bias and the residual), then n = layer norm of xo with γ, β:
// the end of a sublayer and the next layer norm (the next sublayer's, the next layer's or the
// final one) in one launch. One team per row (the plan of layer_norm_rows); each thread reads back
// only the elements it wrote, so no barrier is needed between the two.
template <typename T, typename R>
__device__ void bias_residual_layer_norm(const T* y, const T* b, const T* x, const T* g, const T* beta, T* xo, T* n, int h,
                                         float eps, size_t rows) {
  const size_t row = R::row();
  if (row >= rows) return;  // a whole warp: no barrier of the others waits for it
  const size_t at = row * h;
  for (int i = R::first(); i < h; i += R::stride())
    xo[at + i] = Num<T>::of(Num<T>::to(x[at + i]) + (Num<T>::to(y[at + i]) + Num<T>::to(b[i])));
  layer_norm_fwd<T, R>(xo, g, beta, n, h, eps, rows);
}

#define INSTANTIATE_DECODE(T, SUF)                                                                                      \
  extern "C" __global__ void decode_attention_##SUF(const T* y, const T* qkv_bias, T* kc, T* vc, const T* m,            \
                                                    int mask_batches, const T* kb, int kb_batches, T* out, int heads,   \
                                                    int d, int cap, int len, double scale) {                            \
    decode_attention<T>(y, qkv_bias, kc, vc, m, mask_batches, kb, kb_batches, out, heads, d, cap, len, scale);         \
  }                                                                                                                     \
  extern "C" __global__ void bias_gelu_##SUF(const T* y, const T* b, T* out, size_t n, int cols, int erf_form) {        \
    bias_gelu<T>(y, b, out, n, cols, erf_form);                                                                         \
  }                                                                                                                     \
  extern "C" __global__ void __launch_bounds__(1024) bias_residual_layer_norm_##SUF(const T* y, const T* b, const T* x, const T* g,             \
                                                            const T* beta, T* xo, T* n, int h, float eps) {             \
    bias_residual_layer_norm<T, BlockRow>(y, b, x, g, beta, xo, n, h, eps, gridDim.x);                                  \
  }                                                                                                                     \
  extern "C" __global__ void __launch_bounds__(256)                                                                     \
      bias_residual_layer_norm_warp_##SUF(const T* y, const T* b, const T* x, const T* g, const T* beta, T* xo, T* n,  \
                                          int h, float eps, size_t rows) {                                              \
    bias_residual_layer_norm<T, WarpRow>(y, b, x, g, beta, xo, n, h, eps, rows);                                        \
  }
