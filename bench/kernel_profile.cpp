// A GPU kernel profiler to preload into any CUDA process (wenhui or PyTorch), for machines
// without Nsight: CUPTI's activity API records every kernel, memcpy and memset, and at exit
// a table sorted by total GPU time goes to $WENHUI_KERNEL_PROFILE (default: stderr).
//
//   LD_PRELOAD=dist/libwenhui_kernel_profile.so WENHUI_KERNEL_PROFILE=out.txt wenhui --device cuda bench train …
//
// libcupti.so.13 is opened at run time (torch's CUDA libraries ship it); without it, or when
// CUPTI refuses, the process runs unprofiled with one warning. Built by scripts/build-cuda.sh.
// Kernels of one name are summed; C++ names are demangled and cut at the argument list.

#include <cupti.h>
#include <cxxabi.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {

typedef CUptiResult (*RegisterFn)(CUpti_BuffersCallbackRequestFunc, CUpti_BuffersCallbackCompleteFunc);
typedef CUptiResult (*EnableFn)(CUpti_ActivityKind);
typedef CUptiResult (*NextFn)(uint8_t*, size_t, CUpti_Activity**);
typedef CUptiResult (*FlushFn)(uint32_t);

struct Api {
  RegisterFn register_callbacks = nullptr;
  EnableFn enable = nullptr;
  NextFn next = nullptr;
  FlushFn flush = nullptr;
};

struct Totals {
  uint64_t calls = 0;
  uint64_t ns = 0;
};

Api api;
bool active = false;
std::mutex lock;
std::map<std::string, Totals>* totals = nullptr;  // leaked on purpose: read by the exit handler

const size_t BUFFER_BYTES = 8 << 20;

std::string readable(const char* name) {
  if (!name) return "(unnamed kernel)";
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string s = (status == 0 && d) ? d : name;
  free(d);
  // "void foo<bar>(args)" → "foo<bar>": the template arguments say which instantiation ran.
  size_t paren = s.find('(');
  if (paren != std::string::npos) s = s.substr(0, paren);
  if (s.rfind("void ", 0) == 0) s = s.substr(5);
  if (s.size() > 140) s = s.substr(0, 137) + "...";
  return s;
}

void add(const std::string& name, uint64_t start, uint64_t end) {
  std::lock_guard<std::mutex> g(lock);
  Totals& t = (*totals)[name];
  t.calls += 1;
  t.ns += end > start ? end - start : 0;
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(aligned_alloc(8, BUFFER_BYTES));
  *size = *buffer ? BUFFER_BYTES : 0;
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* record = nullptr;
  while (api.next(buffer, valid, &record) == CUPTI_SUCCESS) {
    switch (record->kind) {
      case CUPTI_ACTIVITY_KIND_KERNEL:
      case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
        // start, end and name lead every record version since CUDA 11 at the same offsets.
        const CUpti_ActivityKernel10* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
        add(readable(k->name), k->start, k->end);
        break;
      }
      case CUPTI_ACTIVITY_KIND_MEMCPY: {
        const CUpti_ActivityMemcpy6* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(record);
        static const char* kinds[] = {"unknown", "HtoD", "DtoH", "HtoA", "AtoH", "AtoA", "AtoD", "DtoA", "DtoD", "HtoH", "PtoP"};
        const unsigned kind = m->copyKind < 11 ? m->copyKind : 0;
        add(std::string("[memcpy ") + kinds[kind] + "]", m->start, m->end);
        break;
      }
      case CUPTI_ACTIVITY_KIND_MEMSET: {
        const CUpti_ActivityMemset4* m = reinterpret_cast<const CUpti_ActivityMemset4*>(record);
        add("[memset]", m->start, m->end);
        break;
      }
      default:
        break;
    }
  }
  free(buffer);
}

void report() {
  if (!active) return;
  api.flush(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  std::vector<std::pair<std::string, Totals>> rows;
  uint64_t all = 0, calls = 0;
  {
    std::lock_guard<std::mutex> g(lock);
    rows.assign(totals->begin(), totals->end());
  }
  for (auto& r : rows) {
    all += r.second.ns;
    calls += r.second.calls;
  }
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ns > b.second.ns; });
  const char* path = getenv("WENHUI_KERNEL_PROFILE");
  FILE* out = (path && *path) ? fopen(path, "w") : nullptr;
  if (!out) out = stderr;
  fprintf(out, "GPU time by kernel (CUPTI): %.3f ms in %llu calls\n", all / 1e6, (unsigned long long)calls);
  fprintf(out, "%10s %7s %8s %10s  %s\n", "total_ms", "share", "calls", "mean_us", "kernel");
  for (auto& r : rows) {
    const Totals& t = r.second;
    fprintf(out, "%10.3f %6.1f%% %8llu %10.2f  %s\n", t.ns / 1e6, all ? 100.0 * t.ns / all : 0.0, (unsigned long long)t.calls,
            t.calls ? t.ns / 1e3 / t.calls : 0.0, r.first.c_str());
  }
  if (out != stderr) fclose(out);
}

template <typename F> bool symbol(void* lib, const char* name, F& f) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  return f != nullptr;
}

__attribute__((constructor)) void start() {
  void* lib = dlopen("libcupti.so.13", RTLD_NOW | RTLD_GLOBAL);
  if (!lib) lib = dlopen("libcupti.so", RTLD_NOW | RTLD_GLOBAL);
  if (!lib) {
    fprintf(stderr, "wenhui kernel profile: libcupti.so.13 not found (put torch's nvidia/cu13/lib on LD_LIBRARY_PATH); not profiling\n");
    return;
  }
  if (!symbol(lib, "cuptiActivityRegisterCallbacks", api.register_callbacks) || !symbol(lib, "cuptiActivityEnable", api.enable) ||
      !symbol(lib, "cuptiActivityGetNextRecord", api.next) || !symbol(lib, "cuptiActivityFlushAll", api.flush)) {
    fprintf(stderr, "wenhui kernel profile: libcupti lacks the activity API; not profiling\n");
    return;
  }
  totals = new std::map<std::string, Totals>();
  bool ok = api.register_callbacks(buffer_requested, buffer_completed) == CUPTI_SUCCESS;
  ok = ok && api.enable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) == CUPTI_SUCCESS;
  ok = ok && api.enable(CUPTI_ACTIVITY_KIND_MEMCPY) == CUPTI_SUCCESS;
  ok = ok && api.enable(CUPTI_ACTIVITY_KIND_MEMSET) == CUPTI_SUCCESS;
  if (!ok) {
    fprintf(stderr, "wenhui kernel profile: CUPTI refused to record activity (no driver or GPU?); not profiling\n");
    return;
  }
  active = true;
  // Exit handlers run last-registered first, so the CUDA libraries' own (registered when they
  // initialise, after this) run before this one; CUPTI hands over a context's records when the
  // context is torn down, and the forced flush collects whatever is left.
  atexit([] {
    report();
    active = false;
  });
}

}  // namespace
