// The optimizer's kernels of kernels.cu (included there, at its end, after the helpers they use:
// Num, block_sum, GRID_STRIDE): the fused AdamW update and the gradient norm's sums of squares,
// per parameter and over a table of every parameter (src/ops/cuda/adamw.rs).
#pragma once

// ---------------------------------------------------------------- fused AdamW (f32 master weights)
// Moments `mv` = [m | v] and the weight are updated in place, exactly as the CPU loop in
// train/optim.rs (decoupled decay, bias-corrected moments).
__device__ __forceinline__ void adamw_element(float* w, float* mv, const float* g, size_t n, size_t i, float lr, float decay,
                                              float beta1, float beta2, float eps, float bc1, float bc2, float clip_scale) {
  const float gi = g[i] * clip_scale;
  const float m = beta1 * mv[i] + (1.f - beta1) * gi;
  const float v = beta2 * mv[n + i] + (1.f - beta2) * gi * gi;
  mv[i] = m;
  mv[n + i] = v;
  w[i] = w[i] * decay - lr * (m / bc1) / (sqrtf(v / bc2) + eps);
}

// One launch per parameter (WENHUI_ADAMW_MULTI=0).
extern "C" __global__ void adamw_f32(float* w, float* mv, const float* g, size_t n, float lr, float decay, float beta1,
                                     float beta2, float eps, float bc1, float bc2, float clip_scale) {
  GRID_STRIDE(i, n) adamw_element(w, mv, g, n, i, lr, decay, beta1, beta2, eps, bc1, bc2, clip_scale);
}

// Multi-tensor launches (src/ops/cuda/adamw.rs builds the table): one job per parameter, one
// block per `chunk` elements of a job; `chunks[blockIdx.x]` = job index << 32 | chunk index.
struct AdamWJob {
  float* w;
  float* mv;
  const float* g;
  unsigned long long n;
  float lr;
  float decay;
};
static_assert(sizeof(AdamWJob) == 40, "AdamWJob must match the host table: 5 u64 words");

// The element range [begin, end) of this block's chunk, and its job.
__device__ __forceinline__ const AdamWJob& chunk_job(const AdamWJob* jobs, const unsigned long long* chunks,
                                                     unsigned long long chunk, size_t& begin, size_t& end) {
  const unsigned long long c = chunks[blockIdx.x];
  const AdamWJob& j = jobs[c >> 32];
  begin = (size_t)(c & 0xffffffffull) * chunk;
  end = min((size_t)j.n, begin + (size_t)chunk);
  return j;
}

extern "C" __global__ void sum_squares_multi_f32(const AdamWJob* jobs, const unsigned long long* chunks,
                                                 unsigned long long chunk, double* acc) {
  size_t begin, end;
  const AdamWJob& j = chunk_job(jobs, chunks, chunk, begin, end);
  double s = 0;
  for (size_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const double v = (double)j.g[i];
    s += v * v;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) atomicAdd(acc, s);
}

extern "C" __global__ void adamw_multi_f32(const AdamWJob* jobs, const unsigned long long* chunks, unsigned long long chunk,
                                           float beta1, float beta2, float eps, float bc1, float bc2, float clip_scale) {
  size_t begin, end;
  const AdamWJob& j = chunk_job(jobs, chunks, chunk, begin, end);
  for (size_t i = begin + threadIdx.x; i < end; i += blockDim.x)
    adamw_element(j.w, j.mv, j.g, (size_t)j.n, i, j.lr, j.decay, beta1, beta2, eps, bc1, bc2, clip_scale);
}

// Σ g² of one gradient into `acc` (one double; the caller zeroes it once per step and reads
// it back once), so the global norm costs one launch per parameter and one copy.
template <typename T> __device__ void sum_squares(const T* g, size_t n, double* acc) {
  double s = 0;
  GRID_STRIDE(i, n) {
    const double v = (double)Num<T>::to(g[i]);
    s += v * v;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) atomicAdd(acc, s);
}
extern "C" __global__ void sum_squares_f32(const float* g, size_t n, double* acc) { sum_squares<float>(g, n, acc); }
extern "C" __global__ void sum_squares_bf16(const __nv_bfloat16* g, size_t n, double* acc) {
  sum_squares<__nv_bfloat16>(g, n, acc);
}
