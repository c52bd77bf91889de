// wenhui's CUDA kernels (src/ops/cuda/kernels.cu) compiled for the CPU with emu.h, and the C entry
// points the tests call: `wenhui_emu_launch` runs one launch, `wenhui_emu_kernels` names them all.
#include "emu.h"

#include "kernels.cu"

#include <sys/mman.h>
#include <unistd.h>

#include <thread>
#include <utility>

namespace emu {

constexpr size_t STACK_BYTES = 64 << 10;
constexpr unsigned SHARED_LIMIT = 48 << 10;

// The fibers' stacks, each above an inaccessible page: an overflow faults instead of corrupting
// a neighbour. One mapping per launch thread, released with it.
struct Stacks {
  char* base = nullptr;
  size_t count = 0, page = 0;
  char* get(unsigned i) { return base + i * (STACK_BYTES + page) + page; }
  bool reserve(unsigned n) {
    if (n <= count) return true;
    release();
    page = size_t(sysconf(_SC_PAGESIZE));
    void* m = mmap(nullptr, n * (STACK_BYTES + page), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return false;
    base = static_cast<char*>(m);
    count = n;
    for (unsigned i = 0; i < n; ++i) mprotect(base + i * (STACK_BYTES + page), page, PROT_NONE);
    return true;
  }
  void release() {
    if (base) munmap(base, count * (STACK_BYTES + page));
    base = nullptr;
    count = 0;
  }
  ~Stacks() { release(); }
};
inline thread_local Stacks stacks;

void fiber_entry() {
  st.body(st.body_arg);
  if (!st.cur->copies.empty()) fail("a thread exited with cp.async copies it never waited for");
  st.cur->wait = Wait::Done;
  // Returning resumes `uc_link`, the scheduler.
}

std::string describe_block() {
  return "block (" + std::to_string(st.block_idx.x) + ", " + std::to_string(st.block_idx.y) + ", " +
         std::to_string(st.block_idx.z) + ")";
}

// Runs every thread of the current block to completion; false (and `st.error`) on a failure.
bool run_block(bool reverse) {
  const unsigned bx = st.block_dim.x, by = st.block_dim.y;
  const unsigned n = bx * by * st.block_dim.z;
  st.threads.assign(n, Thread{});
  if (!stacks.reserve(n)) {
    st.error = "could not map the fibers' stacks";
    return false;
  }
  for (unsigned i = 0; i < n; ++i) {
    Thread& t = st.threads[i];
    t.idx = uint3{i % bx, (i / bx) % by, i / (bx * by)};
    t.linear = i;
    t.wait = Wait::None;
    getcontext(&t.ctx);
    t.ctx.uc_stack.ss_sp = stacks.get(i);
    t.ctx.uc_stack.ss_size = STACK_BYTES;
    t.ctx.uc_link = &st.scheduler;
    makecontext(&t.ctx, fiber_entry, 0);
  }
  // Uninitialised shared memory reads as NaN (all bits set): the dynamic part now, each static
  // variable when the block first reaches its declaration (SHARED in emu.h).
  std::fill(st.dynamic_shared.begin(), st.dynamic_shared.end(), 0xff);
  st.block_shared.clear();
  const unsigned warps = (n + 31) / 32;
  for (;;) {
    // Warp by warp, each as far as it can go: a warp whose lanes all reach a shuffle goes on at
    // once, so one warp runs ahead of the others up to the next __syncthreads (the schedule
    // that exposes a shared-memory write racing with another warp's read).
    for (unsigned k = 0; k < warps; ++k) {
      const unsigned w = reverse ? warps - 1 - k : k, first = w * 32, end = std::min(n, first + 32);
      for (;;) {
        for (unsigned j = 0; j < end - first; ++j) {
          Thread& t = st.threads[reverse ? end - 1 - j : first + j];
          if (t.wait != Wait::None) continue;
          st.cur = &t;
          swapcontext(&st.scheduler, &t.ctx);
          if (!st.error.empty()) return false;
        }
        unsigned members = 0, at_shuffle = 0;
        for (unsigned i = first; i < end; ++i) {
          members += st.threads[i].wait != Wait::Done;
          at_shuffle += st.threads[i].wait == Wait::Warp;
        }
        if (members == 0 || at_shuffle != members) break;
        for (unsigned i = first; i < end; ++i)
          if (st.threads[i].wait == Wait::Warp) st.threads[i].wait = Wait::None;
      }
    }
    // Every thread now waits at __syncthreads, is done, or waits at a shuffle some lane of its
    // warp will never reach.
    unsigned live = 0, at_block = 0;
    for (const Thread& t : st.threads) {
      live += t.wait != Wait::Done;
      at_block += t.wait == Wait::Block;
    }
    if (live == 0) return true;
    if (at_block != live) {
      st.error = "barrier divergence in " + describe_block() + ": " + std::to_string(at_block) + " of " +
                 std::to_string(live) + " live threads wait at __syncthreads, the others at a warp shuffle that "
                 "not every lane of their warp reaches";
      return false;
    }
    for (Thread& t : st.threads)
      if (t.wait == Wait::Block) t.wait = Wait::None;
  }
}

// Self-tests of the emulator (src/ops/cuda_emu/mod.rs): half a warp at a barrier the other half
// never reaches, a shared-memory race (no barrier between the writes and another warp's reads),
// the lanes of a warp at shuffles with different lane masks, and threads that exit early.
extern "C" void emu_selftest_divergence(float* out) {
  if (threadIdx.x < 16)
    __syncthreads();
  else
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
}
extern "C" void emu_selftest_race(float* out) {
  __shared__ float s[64];
  s[threadIdx.x] = float(threadIdx.x + 1);
  out[threadIdx.x] = s[threadIdx.x ^ 32];
}
// Threads that return before a barrier do not hold it (as on the GPU): the rest pass it.
extern "C" void emu_selftest_early_exit(float* out) {
  if (threadIdx.x >= 40) return;
  __syncthreads();
  out[threadIdx.x] = 1.f;
}
extern "C" void emu_selftest_shuffles(float* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, (threadIdx.x & 1) ? 1 : 2);
}

// The emulated tensor-core product with fragments placed by the PTX ISA's per-element formulas
// (row and column of each a_i, b_i, c_i), a formulation apart from flash.cuh's pairwise loads:
// A [16][16] and B [16][8] (k × n) in bf16, C and D [16][8] in f32, all row-major.
extern "C" void emu_selftest_mma(const __nv_bfloat16* a, const __nv_bfloat16* b, const float* c, float* d) {
  const unsigned lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  uint16_t ae[8], be[4];
  for (unsigned i = 0; i < 8; ++i) {
    const unsigned row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
    ae[i] = a[row * 16 + t * 2 + (i & 1) + (i >= 4 ? 8 : 0)].x;
  }
  for (unsigned i = 0; i < 4; ++i) be[i] = b[(t * 2 + (i & 1) + (i >= 2 ? 8 : 0)) * 8 + g].x;
  uint32_t ar[4], br[2];
  for (unsigned k = 0; k < 4; ++k) ar[k] = uint32_t(ae[2 * k]) | (uint32_t(ae[2 * k + 1]) << 16);
  for (unsigned k = 0; k < 2; ++k) br[k] = uint32_t(be[2 * k]) | (uint32_t(be[2 * k + 1]) << 16);
  float acc[4];
  for (unsigned i = 0; i < 4; ++i) acc[i] = c[(g + (i >= 2 ? 8 : 0)) * 8 + t * 2 + (i & 1)];
  Mma<__nv_bfloat16>::run(acc, ar, br);
  for (unsigned i = 0; i < 4; ++i) d[(g + (i >= 2 ? 8 : 0)) * 8 + t * 2 + (i & 1)] = acc[i];
}

// ldmatrix.x4 on a 16×16 matrix `m` staged in shared memory (pitch 24 elements), each lane
// addressing one row of the four 8×8 quadrants (top left, bottom left, top right, bottom right):
// out[lane·8 + i] is register i of the plain load, out[lane·8 + 4 + i] of the transposed one.
extern "C" void emu_selftest_ldmatrix(const __nv_bfloat16* m, uint32_t* out) {
  __align__(16) __shared__ __nv_bfloat16 s[16 * 24];
  const unsigned lane = threadIdx.x & 31;
  for (unsigned c = 0; c < 16; ++c) s[(lane & 15) * 24 + c] = m[(lane & 15) * 16 + c];
  __syncthreads();
  const __nv_bfloat16* row = s + ((lane & 7) + 8 * ((lane >> 3) & 1)) * 24 + 8 * (lane >> 4);
  ldsm_x4<false>(out + lane * 8, row);
  ldsm_x4<true>(out + lane * 8 + 4, row);
}
// cp.async of 16 bytes per lane (odd lanes zero-fill): out[lane] is the destination read before
// the wait (the old value), out[32 + lane] the next lane's destination after the wait and a barrier.
extern "C" void emu_selftest_cp_async(const float* src, float* out) {
  __align__(16) __shared__ float s[32 * 4];
  const unsigned lane = threadIdx.x & 31;
  s[lane * 4] = -1.f;
  __syncthreads();
  ::cp_async<16>(s + lane * 4, src + lane * 4, lane % 2 == 0);
  ::cp_async_commit();
  out[lane] = s[lane * 4];
  ::cp_async_wait_all();
  __syncthreads();
  out[32 + lane] = s[((lane + 1) % 32) * 4];
}
// A copy issued into a buffer the other warp may still be reading: no barrier between the reads of
// the old values (out[t]) and the issue. Only a copy landing at issue shows it: the wait comes
// after the next barrier, so a copy that lands at the wait is never seen early.
extern "C" void emu_selftest_cp_async_war(const float* src, float* out) {
  SHARED(float, s, [64]);
  s[threadIdx.x] = -1.f;
  __syncthreads();
  ::cp_async<4>(s + threadIdx.x, src + threadIdx.x, true);
  ::cp_async_commit();
  out[threadIdx.x] = s[threadIdx.x ^ 32];
  __syncthreads();
  ::cp_async_wait_all();
}
// Block 0 fills a static shared array and block 1 only reads it: on a GPU block 1 reads whatever
// the memory holds, here NaN, never block 0's values.
extern "C" void emu_selftest_stale_shared(float* out) {
  SHARED(float, s, [32]);
  if (blockIdx.x == 0) s[threadIdx.x] = 1.f;
  __syncthreads();
  out[blockIdx.x * 32 + threadIdx.x] = s[threadIdx.x];
}
// A cp.async never waited for.
extern "C" void emu_selftest_cp_async_unwaited(const float* src, float* out) {
  ::cp_async<4>(out + threadIdx.x, src + threadIdx.x, true);
  ::cp_async_commit();
}

template <typename... A> constexpr size_t arity(void (*)(A...)) { return sizeof...(A); }

template <auto F, typename... A, size_t... I> void call_with(void (*)(A...), void** args, std::index_sequence<I...>) {
  F(*static_cast<A*>(args[I])...);
}

// Calls kernel F with its arguments read from `args` (one pointer per argument, as cuLaunchKernel takes them).
template <auto F> void invoke(void* args) {
  call_with<F>(F, static_cast<void**>(args), std::make_index_sequence<arity(F)>{});
}

// Whether the launch passed `n` arguments of these byte sizes, as kernel F takes them.
template <typename... A> bool params_match(void (*)(A...), const unsigned* sizes, size_t n) {
  const size_t want[] = {sizeof(A)..., 0};
  if (n != sizeof...(A)) return false;
  for (size_t i = 0; i < n; ++i)
    if (sizes[i] != want[i]) return false;
  return true;
}
template <typename... A> std::string describe_params(void (*)(A...)) {
  std::string s;
  for (size_t size : {sizeof(A)...}) s += (s.empty() ? "" : ", ") + std::to_string(size);
  return std::to_string(sizeof...(A)) + " arguments of " + s + " bytes";
}
template <auto F> bool check_args(const unsigned* sizes, size_t n) { return params_match(F, sizes, n); }
template <auto F> std::string expected_args() { return describe_params(F); }

struct Kernel {
  const char* name;
  void (*run)(void*);
  bool (*check)(const unsigned*, size_t);
  std::string (*expected)();
};

#define KERNEL(name) Kernel{#name, &invoke<&name>, &check_args<&name>, &expected_args<&name>},
#define FLOAT_KERNELS(SUF)                                                                                            \
  KERNEL(layer_norm_fwd_##SUF) KERNEL(layer_norm_bwd_dx_##SUF) KERNEL(column_partial_##SUF)                           \
  KERNEL(layer_norm_fwd_warp_##SUF) KERNEL(layer_norm_bwd_dx_warp_##SUF) KERNEL(attn_probs_fwd_warp_##SUF)           \
  KERNEL(attn_probs_bwd_warp_##SUF) KERNEL(column_partial_packed_##SUF)                                               \
  KERNEL(column_final_##SUF) KERNEL(masked_softmax_fwd_##SUF) KERNEL(masked_softmax_bwd_##SUF)                        \
  KERNEL(residual_dropout_fwd_##SUF) KERNEL(attn_probs_fwd_##SUF) KERNEL(attn_probs_bwd_##SUF)                        \
  KERNEL(decode_attention_##SUF) KERNEL(bias_residual_layer_norm_##SUF) KERNEL(bias_residual_layer_norm_warp_##SUF) KERNEL(bias_gelu_##SUF) KERNEL(gelu_fwd_##SUF)           \
  KERNEL(gelu_bwd_##SUF) KERNEL(add_bias_fwd_##SUF) KERNEL(dropout_fwd_##SUF) KERNEL(cross_entropy_fwd_##SUF)         \
  KERNEL(cross_entropy_bwd_##SUF) KERNEL(embedding_fwd_##SUF) KERNEL(embedding_bwd_##SUF)

#define HALF_KERNELS(SUF) KERNEL(flash_tiles_##SUF) KERNEL(flash_fwd_##SUF) KERNEL(flash_bwd_dot_##SUF) KERNEL(flash_bwd_kv_##SUF) KERNEL(flash_bwd_q_##SUF)

const Kernel KERNELS[] = {
    FLOAT_KERNELS(f32) FLOAT_KERNELS(f64) FLOAT_KERNELS(f16) FLOAT_KERNELS(bf16) HALF_KERNELS(f16) HALF_KERNELS(bf16)
    KERNEL(permute_rows_w2) KERNEL(permute_rows_w4) KERNEL(permute_rows_w8) KERNEL(permute_rows_w16)
    KERNEL(adamw_f32) KERNEL(sum_squares_multi_f32) KERNEL(adamw_multi_f32) KERNEL(sum_squares_f32)
    KERNEL(sum_squares_bf16)
    KERNEL(emu_selftest_divergence) KERNEL(emu_selftest_race) KERNEL(emu_selftest_shuffles) KERNEL(emu_selftest_early_exit)
    KERNEL(emu_selftest_mma) KERNEL(emu_selftest_ldmatrix) KERNEL(emu_selftest_cp_async) KERNEL(emu_selftest_cp_async_unwaited)
    KERNEL(emu_selftest_cp_async_war) KERNEL(emu_selftest_stale_shared)
};

bool check_launch(const unsigned* grid, const unsigned* block, unsigned shared) {
  const unsigned long long threads = (unsigned long long)block[0] * block[1] * block[2];
  if (threads == 0 || threads > 1024 || block[2] > 64) {
    st.error = "block (" + std::to_string(block[0]) + ", " + std::to_string(block[1]) + ", " + std::to_string(block[2]) +
               ") is not a valid CUDA block (1 to 1,024 threads, z ≤ 64)";
    return false;
  }
  if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[0] > 0x7fffffffu || grid[1] > 65535 || grid[2] > 65535) {
    st.error = "grid (" + std::to_string(grid[0]) + ", " + std::to_string(grid[1]) + ", " + std::to_string(grid[2]) +
               ") is not a valid CUDA grid";
    return false;
  }
  if (shared > SHARED_LIMIT) {
    st.error = std::to_string(shared) + " bytes of dynamic shared memory: more than the 48 KiB a launch gets without opting in";
    return false;
  }
  return true;
}

}  // namespace emu

extern "C" {

// One launch of kernel `name`: `args` holds one pointer per kernel argument, `sizes` their byte
// sizes (checked against the kernel's parameters); `fast_paths` receives how many threads took a
// FAST_PATH. Threads run in reverse order within each block, blocks in reverse order, and
// cp.async copies land at issue rather than at the wait, when `reverse` is set. Each launch runs
// on a fresh thread (its own static shared memory), and every block starts with its shared
// memory filled with NaN. Returns
// 0, or 1 with a message in `err` (unknown kernel, wrong arguments, invalid launch, divergence).
int wenhui_emu_launch(const char* name, const unsigned* grid, const unsigned* block, unsigned shared, void** args,
                      const unsigned* sizes, size_t nargs, int reverse, unsigned long long* fast_paths, char* err,
                      size_t err_len) {
  std::string error;
  std::thread([&] {
    using namespace emu;
    st.error.clear();
    st.fast_paths = 0;
    st.land_at_issue = reverse != 0;
    const Kernel* kernel = nullptr;
    for (const Kernel& k : KERNELS)
      if (strcmp(k.name, name) == 0) kernel = &k;
    if (!kernel) {
      st.error = std::string("no kernel named ") + name;
    } else if (!check_launch(grid, block, shared)) {
      // st.error says why
    } else if (!kernel->check(sizes, nargs)) {
      std::string got;
      for (size_t i = 0; i < nargs; ++i) got += (got.empty() ? "" : ", ") + std::to_string(sizes[i]);
      st.error = std::string(name) + " takes " + kernel->expected() + "; the launch passed " + std::to_string(nargs) +
                 (nargs ? " of " + got + " bytes" : "");
    } else {
      st.grid_dim = dim3{grid[0], grid[1], grid[2]};
      st.block_dim = dim3{block[0], block[1], block[2]};
      st.dynamic_shared.assign(shared, 0);
      st.body = kernel->run;
      st.body_arg = args;
      const unsigned long long blocks = (unsigned long long)grid[0] * grid[1] * grid[2];
      for (unsigned long long k = 0; k < blocks; ++k) {
        const unsigned long long b = reverse ? blocks - 1 - k : k;
        st.block_idx = uint3{unsigned(b % grid[0]), unsigned((b / grid[0]) % grid[1]), unsigned(b / grid[0] / grid[1])};
        if (!run_block(reverse != 0)) {
          st.error = std::string(name) + ", " + describe_block() + ": " + st.error;
          break;
        }
      }
    }
    error = st.error;
    *fast_paths = st.fast_paths;
  }).join();
  if (error.empty()) return 0;
  snprintf(err, err_len, "%s", error.c_str());
  return 1;
}

// The names of every emulated kernel, one per line.
const char* wenhui_emu_kernels() {
  static const std::string names = [] {
    std::string s;
    for (const emu::Kernel& k : emu::KERNELS) s += std::string(k.name) + "\n";
    return s;
  }();
  return names.c_str();
}
}
