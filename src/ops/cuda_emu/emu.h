// CUDA device code on the CPU, for tests: enough of the CUDA language to compile
// src/ops/cuda/kernels.cu with a host C++ compiler and run its kernels on the CPU
// (src/ops/cuda_emu/mod.rs compiles it at test time and calls `wenhui_emu_launch`).
//
// Each CUDA thread of a block is a fiber (ucontext) on the calling OS thread. The scheduler takes
// the warps one by one and runs each as far as it can go: its threads run until they reach a
// barrier (`__syncthreads`, or the lane exchange of a warp shuffle) or return, and a warp whose
// lanes all reach a shuffle goes on at once. When every warp waits at `__syncthreads`, the block
// barrier opens; threads waiting at barriers that can never complete are reported as a
// divergence. So one warp runs ahead of the others up to each `__syncthreads`: running the warps
// (and blocks) in forward and in reverse order makes a shared-memory race between barriers
// visible as different results. The two runs also land `cp.async` copies at the two extremes the
// hardware allows (at the wait, at issue), and every block's shared memory starts as NaN, so a
// read of a never-written element cannot pass on the previous block's bytes.
//
// Not emulated: memory-model subtleties beyond barriers, warp-synchronous code without
// `__syncwarp`/shuffles (the fibers of a warp do not run in lockstep, like Volta's independent
// thread scheduling at its most adversarial), and device limits other than the block size,
// the grid size and 48 KiB of dynamic shared memory.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

using std::max;
using std::min;
// CUDA's float max/min are fmaxf/fminf: a NaN operand gives the other one.
inline float max(float a, float b) { return fmaxf(a, b); }
inline float min(float a, float b) { return fminf(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(double a, double b) { return fmin(a, b); }

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// A static `__shared__` array is one per block: blocks run one after another on one OS thread,
// and concurrent launches (the test harness's threads) each have their own copy.
#define __shared__ static thread_local
// kernels.cu's static shared variables: the first thread of a block to reach the declaration
// fills it with NaN (all bits set), so that a read of a never-written element shows in the
// results instead of seeing the previous block's bytes.
#define SHARED(T, name, dims)              \
  alignas(16) static thread_local T name dims; \
  emu::fresh_shared(&name, sizeof name)
// kernels.cu declares its dynamic shared memory through this macro (`extern __shared__` there).
#define DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(emu::st.dynamic_shared.data())
// Counts the threads that take a kernel's fast path (kernels.cu's FAST_PATH marks).
#define FAST_PATH() (++emu::st.fast_paths)

// ---------------------------------------------------------------- half precision
struct __nv_bfloat16 {
  uint16_t x;
};
struct __half {
  uint16_t x;
};
inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t u = uint32_t(h.x) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
// Round to nearest even, every NaN to the canonical 0x7fff: what the hardware conversion does.
inline __nv_bfloat16 __float2bfloat16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{uint16_t(0x7fff)};
  u += 0x7fffu + ((u >> 16) & 1);
  return __nv_bfloat16{uint16_t(u >> 16)};
}
inline float __half2float(__half h) {
  _Float16 v;
  memcpy(&v, &h.x, 2);
  return float(v);
}
inline __half __float2half(float f) {
  const _Float16 v = _Float16(f);
  __half h;
  memcpy(&h.x, &v, 2);
  return h;
}

// ---------------------------------------------------------------- threads, barriers, shuffles
namespace emu {

enum class Wait { None, Block, Warp, Done };

// A cp.async copy in flight: it lands at its thread's wait for its group, or at issue when the
// launch lands copies early (see cp_async).
struct AsyncCopy {
  void* dst;
  const void* src;
  unsigned bytes, valid_bytes, group;
  bool landed;
};

struct Thread {
  ucontext_t ctx;
  uint3 idx;
  unsigned linear;
  Wait wait;
  alignas(16) unsigned char slot[48];  // a shuffle's value, an mma's fragments, an ldmatrix row address
  const void* site;                    // and where it was called, with which lane mask
  int lane_mask;
  std::vector<AsyncCopy> copies;  // cp.async copies not yet waited for
  unsigned committed = 0;         // cp.async groups committed so far
};

struct State {
  uint3 block_idx;
  dim3 block_dim, grid_dim;
  std::vector<Thread> threads;
  std::vector<std::vector<char>> stacks;
  Thread* cur = nullptr;
  ucontext_t scheduler;
  void (*body)(void*) = nullptr;
  void* body_arg = nullptr;
  std::vector<unsigned char> dynamic_shared;
  std::vector<const void*> block_shared;  // the static shared variables this block has filled with NaN
  bool land_at_issue = false;             // cp.async copies land when issued, not at the wait
  unsigned long long fast_paths = 0;
  std::string error;
};
inline thread_local State st;

// Back to the scheduler until the barrier `w` releases this thread.
inline void wait_at(Wait w) {
  st.cur->wait = w;
  Thread* self = st.cur;
  swapcontext(&self->ctx, &st.scheduler);
}

// Records the first error of the launch and parks the thread for good.
[[noreturn]] inline void fail(const std::string& what) {
  if (st.error.empty()) st.error = what;
  st.cur->wait = Wait::Done;
  Thread* self = st.cur;
  swapcontext(&self->ctx, &st.scheduler);
  __builtin_unreachable();
}

// Not inlined, so that its return address tells the shuffles of a kernel apart: every lane of a
// warp must be at the same one, with the same lane mask (warp-synchronous code that diverged).
template <typename V> __attribute__((noinline)) V shfl_xor(V v, int lane_mask) {
  static_assert(sizeof(V) <= 16, "shuffle of a value wider than 16 bytes");
  Thread* self = st.cur;
  memcpy(self->slot, &v, sizeof(V));
  self->site = __builtin_return_address(0);
  self->lane_mask = lane_mask;
  wait_at(Wait::Warp);
  const unsigned first = self->linear & ~31u, end = std::min<unsigned>(first + 32, st.threads.size());
  for (unsigned i = first; i < end; ++i) {
    const Thread& t = st.threads[i];
    if (t.wait != Wait::Done && (t.site != self->site || t.lane_mask != lane_mask))
      fail("lanes " + std::to_string(self->linear & 31) + " and " + std::to_string(i & 31) +
           " of a warp are at different shuffles (call site or lane mask): divergent warp-synchronous code");
  }
  const unsigned lane = self->linear & 31, partner = first | (lane ^ unsigned(lane_mask & 31));
  if (partner >= st.threads.size() || st.threads[partner].wait == Wait::Done)
    fail("__shfl_xor_sync reads lane " + std::to_string(partner & 31) + ", which has exited or does not exist");
  V out;
  memcpy(&out, st.threads[partner].slot, sizeof(V));
  wait_at(Wait::Warp);  // nobody overwrites a slot before every lane has read its partner's
  return out;
}

// The first thread of the calling lane's warp, once all 32 lanes have reached this warp-collective
// instruction (`what`) at the same call site; they exchange operands through their slots.
inline unsigned warp_collective(const char* what, const void* site) {
  Thread* self = st.cur;
  self->site = site;
  self->lane_mask = -1;
  wait_at(Wait::Warp);
  const unsigned first = self->linear & ~31u;
  if (first + 32 > st.threads.size()) fail(std::string(what) + " in a warp of fewer than 32 threads");
  for (unsigned l = 0; l < 32; ++l) {
    const Thread& t = st.threads[first + l];
    if (t.wait == Wait::Done || t.site != site || t.lane_mask != -1)
      fail("lane " + std::to_string(l) + " of a warp is not at the same " + what + " as lane " + std::to_string(self->linear & 31));
  }
  return first;
}

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.f32 (flash.cuh's `Mma<T>::run`, d += a·b):
// the warp's 32 fragments gathered into A (16×16), B (16×8) and C (16×8) by the PTX ISA's
// layouts, each lane's four outputs summed in double and rounded once to f32. Every lane of a
// full warp must be at the same call.
template <float (*TO)(uint16_t)> __attribute__((noinline)) void mma16816(float* d, const uint32_t* a, const uint32_t* b) {
  Thread* self = st.cur;
  memcpy(self->slot, a, 16);
  memcpy(self->slot + 16, b, 8);
  memcpy(self->slot + 24, d, 16);
  const unsigned first = warp_collective("mma.sync", __builtin_return_address(0));
  float A[16][16], B[16][8], C[16][8];
  for (unsigned l = 0; l < 32; ++l) {
    const Thread& t = st.threads[first + l];
    uint32_t ar[4], br[2];
    float cr[4];
    memcpy(ar, t.slot, 16);
    memcpy(br, t.slot + 16, 8);
    memcpy(cr, t.slot + 24, 16);
    const unsigned g = l >> 2, q = 2 * (l & 3);
    auto lo = [](uint32_t w) { return TO(uint16_t(w & 0xffffu)); };
    auto hi = [](uint32_t w) { return TO(uint16_t(w >> 16)); };
    A[g][q] = lo(ar[0]), A[g][q + 1] = hi(ar[0]);
    A[g + 8][q] = lo(ar[1]), A[g + 8][q + 1] = hi(ar[1]);
    A[g][q + 8] = lo(ar[2]), A[g][q + 9] = hi(ar[2]);
    A[g + 8][q + 8] = lo(ar[3]), A[g + 8][q + 9] = hi(ar[3]);
    B[q][g] = lo(br[0]), B[q + 1][g] = hi(br[0]);
    B[q + 8][g] = lo(br[1]), B[q + 9][g] = hi(br[1]);
    C[g][q] = cr[0], C[g][q + 1] = cr[1], C[g + 8][q] = cr[2], C[g + 8][q + 1] = cr[3];
  }
  const unsigned lane = self->linear & 31, g = lane >> 2, q = 2 * (lane & 3);
  for (int i = 0; i < 4; ++i) {
    const unsigned row = g + 8 * (i >> 1), col = q + (i & 1);
    double s = C[row][col];
    for (int k = 0; k < 16; ++k) s += double(A[row][k]) * double(B[k][col]);
    d[i] = float(s);
  }
  wait_at(Wait::Warp);  // nobody overwrites a slot before every lane has read the others'
}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16 (flash.cuh's `ldsm_x4`): lane l gives the
// address of row l % 8 of matrix l / 8 (16-byte aligned, 8 elements); lane (g = l / 4, t = l % 4)
// receives in r[i] elements (g, 2t) and (g, 2t + 1) of matrix i, or with .trans (2t, g) and
// (2t + 1, g), the first in the low half.
template <bool TRANS> __attribute__((noinline)) void ldmatrix_x4(uint32_t* r, const void* row) {
  Thread* self = st.cur;
  if (reinterpret_cast<uintptr_t>(row) % 16) fail("ldmatrix: a lane's row address is not 16-byte aligned");
  memcpy(self->slot, &row, sizeof row);
  const unsigned first = warp_collective("ldmatrix", __builtin_return_address(0));
  const unsigned lane = self->linear & 31, g = lane >> 2, t = lane & 3;
  for (unsigned i = 0; i < 4; ++i) {
    auto at = [&](unsigned rr, unsigned col) {
      const unsigned char* p;
      memcpy(&p, st.threads[first + 8 * i + rr].slot, sizeof p);
      uint16_t v;
      memcpy(&v, p + 2 * col, 2);
      return uint32_t(v);
    };
    r[i] = TRANS ? at(2 * t, g) | (at(2 * t + 1, g) << 16) : at(g, 2 * t) | (at(g, 2 * t + 1) << 16);
  }
  wait_at(Wait::Warp);  // nobody overwrites a slot before every lane has read the others'
}

// SHARED's fill: NaN the first time a block reaches the declaration of the variable at `p`.
inline void fresh_shared(const void* p, size_t bytes) {
  if (std::find(st.block_shared.begin(), st.block_shared.end(), p) != st.block_shared.end()) return;
  memset(const_cast<void*>(p), 0xff, bytes);
  st.block_shared.push_back(p);
}

inline void land(AsyncCopy& c) {
  memcpy(c.dst, c.src, c.valid_bytes);
  memset(static_cast<char*>(c.dst) + c.valid_bytes, 0, c.bytes - c.valid_bytes);
  c.landed = true;
}

// cp.async.{ca,cg}.shared.global [dst], [src], bytes, valid ? bytes : 0 (flash.cuh's `cp_async`):
// the hardware may land the copy at any moment between its issue and its thread's
// cp.async.wait_group, and the emulation takes both extremes. Normally the copy lands only at the
// wait, so a read of the destination before the wait (and the barrier after it) sees the old
// bytes. With `land_at_issue` (the reverse-order run) it lands at once, so a copy issued into a
// buffer another warp has not finished reading (a missing barrier before the issue) overwrites
// what that warp reads. Past `valid_bytes` the destination is zero-filled.
inline void cp_async(void* dst, const void* src, unsigned bytes, bool valid) {
  if (reinterpret_cast<uintptr_t>(dst) % bytes || reinterpret_cast<uintptr_t>(src) % bytes)
    fail("cp.async of " + std::to_string(bytes) + " bytes at a misaligned address");
  st.cur->copies.push_back(AsyncCopy{dst, src, bytes, valid ? bytes : 0u, st.cur->committed, false});
  if (st.land_at_issue) land(st.cur->copies.back());
}
inline void cp_async_commit() { ++st.cur->committed; }
// cp.async.wait_group 0: every committed group of this thread lands.
inline void cp_async_wait_all() {
  Thread* self = st.cur;
  std::vector<AsyncCopy> open;
  for (AsyncCopy& c : self->copies) {
    if (c.group >= self->committed) {
      open.push_back(c);
      continue;
    }
    if (!c.landed) land(c);
  }
  self->copies.swap(open);
}

}  // namespace emu

#define threadIdx (emu::st.cur->idx)
#define blockIdx (emu::st.block_idx)
#define blockDim (emu::st.block_dim)
#define gridDim (emu::st.grid_dim)

inline void __syncthreads() { emu::wait_at(emu::Wait::Block); }
template <typename V> V __shfl_xor_sync(unsigned mask, V v, int lane_mask) {
  if (mask != 0xffffffffu) emu::fail("__shfl_xor_sync: only full-warp masks are emulated");
  return emu::shfl_xor(v, lane_mask);
}

// Fibers of one OS thread never run at the same time: a read-modify-write is atomic.
template <typename V> V atomic_add(V* p, V v) {
  const V old = *p;
  *p = old + v;
  return old;
}
// Half precision adds in f32 and rounds, as the hardware's atomics do.
template <typename H, float (*TO)(H), H (*OF)(float)> H atomic_add_rounded(H* p, H v) {
  const H old = *p;
  *p = OF(TO(old) + TO(v));
  return old;
}
inline float atomicAdd(float* p, float v) { return atomic_add(p, v); }
inline double atomicAdd(double* p, double v) { return atomic_add(p, v); }
inline __half atomicAdd(__half* p, __half v) { return atomic_add_rounded<__half, __half2float, __float2half>(p, v); }
inline __nv_bfloat16 atomicAdd(__nv_bfloat16* p, __nv_bfloat16 v) {
  return atomic_add_rounded<__nv_bfloat16, __bfloat162float, __float2bfloat16>(p, v);
}

// flash.cuh's inline-PTX instructions, emulated (see emu::mma16816, emu::ldmatrix_x4, emu::cp_async).
#define WENHUI_EMU_PTX 1
inline float bf16_bits_to_float(uint16_t x) { return __bfloat162float(__nv_bfloat16{x}); }
inline float f16_bits_to_float(uint16_t x) { return __half2float(__half{x}); }
template <typename T> struct Mma;
#define EMU_ALWAYS_INLINE inline __attribute__((always_inline))  // so the collectives see the kernel's call site
template <> struct Mma<__nv_bfloat16> {
  static EMU_ALWAYS_INLINE void run(float* d, const uint32_t* a, const uint32_t* b) { emu::mma16816<bf16_bits_to_float>(d, a, b); }
};
template <> struct Mma<__half> {
  static EMU_ALWAYS_INLINE void run(float* d, const uint32_t* a, const uint32_t* b) { emu::mma16816<f16_bits_to_float>(d, a, b); }
};
template <bool TRANS> EMU_ALWAYS_INLINE void ldsm_x4(uint32_t r[4], const void* row) { emu::ldmatrix_x4<TRANS>(r, row); }
template <int BYTES> void cp_async(void* dst, const void* src, bool valid) { emu::cp_async(dst, src, BYTES, valid); }
inline void cp_async_commit() { emu::cp_async_commit(); }
inline void cp_async_wait_all() { emu::cp_async_wait_all(); }
