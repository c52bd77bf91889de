#!/usr/bin/env bash
# Builds the CUDA binary of wenhui on a machine WITHOUT a GPU (and without root), for NVIDIA
# H100/H200 machines with a CUDA 13.0 driver (580.x). Recipe: ../shared/specs/framework.md §5.
#
#   scripts/build-cuda.sh                 # → target/cuda/release/wenhui + dist/wenhui-cuda.xz
#                                         #   (and the library's unit tests, GPU-free, in this build)
#   CUDA_COMPUTE_CAP=80 scripts/build-cuda.sh   # Ampere (A100) instead of Hopper
#
# Why the pins: the driver JIT-compiles the embedded PTX and rejects PTX from a newer nvcc than it
# knows, so nvcc must be 13.0.x. The toolkit comes from NVIDIA's pip wheels (PyPI only, no
# network beyond the package registries); cudarc links `libcuda.so` dynamically, and the wheels do
# not ship it, so a stub with the driver's entry points stands in at link time (the real
# `libcuda.so.1` of the GPU machine is loaded at run time).
#
# Run the result on the GPU machine with torch's CUDA libraries (same sonames) on the path:
#   NV=$(python3 -c "import sysconfig;print(sysconfig.get_paths()['purelib'])")/nvidia/cu13/lib
#   LD_LIBRARY_PATH=$NV:$LD_LIBRARY_PATH ./wenhui … --device cuda
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLKIT=${WENHUI_CUDA_TOOLKIT:-$HOME/.cache/wenhui-cuda13}
CAP=${CUDA_COMPUTE_CAP:-90}
C=$TOOLKIT/py/nvidia/cu13

# 1. nvcc 13.0 and the libraries to link against, from the pinned wheels (≈1.2 GB, once).
if [ ! -x "$C/bin/nvcc" ]; then
  echo "installing the CUDA 13.0 toolkit wheels into $TOOLKIT/py" >&2
  # pip --target skips packages whose top directory (nvidia/) exists: start from an empty one.
  rm -rf "$TOOLKIT/py"
  python3 -m pip install -q --no-deps --target "$TOOLKIT/py" \
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 \
    nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35
fi

# The CUPTI headers for the kernel profiler (step 5), in a directory of their own (pip --target
# --upgrade would replace the whole nvidia/ tree above).
CUPTI=$TOOLKIT/cupti/nvidia/cu13
if [ ! -f "$CUPTI/include/cupti.h" ]; then
  rm -rf "$TOOLKIT/cupti"
  python3 -m pip install -q --no-deps --target "$TOOLKIT/cupti" nvidia-cuda-cupti==13.0.85
fi

# 2. A link directory: unversioned names, and a libcuda stub with every driver entry point.
LIB=$TOOLKIT/cudahome/lib
if [ ! -f "$LIB/libcuda.so" ]; then
  mkdir -p "$LIB"
  for l in cublas cublasLt cudart nvrtc; do ln -sf "$C/lib/lib$l.so.13" "$LIB/lib$l.so"; done
  ln -sf "$C/lib/libcurand.so.10" "$LIB/libcurand.so"
  echo '#include <cuda.h>' | gcc -E -P -I"$C/include" -x c - \
    | grep -oE '\bcu[A-Z][A-Za-z0-9_]*\s*\(' | sed 's/\s*(//' | sort -u \
    | awk '{print "int " $1 "(void){return 999;}"}' >"$LIB/stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$LIB/libcuda.so" "$LIB/stub.c"
fi

# 3. Build (candle's kernels and wenhui's own, see build.rs, compile to sm_$CAP PTX).
PATH=$C/bin:$PATH CUDA_HOME=$TOOLKIT/cudahome CUDA_COMPUTE_CAP=$CAP CUDARC_CUDA_VERSION=13000 \
  CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda} cargo build --release --features cuda --bin wenhui

# 3b. The library's unit tests in the CUDA build, on this machine: no GPU is needed for the ones
#     that pin the CUDA side's host arithmetic (the cublasLt GEMM configurations, the
#     multi-tensor AdamW table), and the CPU tests check that the feature changes no CPU path.
#     The libcuda stub stands in for the driver; nothing here calls it.
ln -sf libcuda.so "$LIB/libcuda.so.1"
PATH=$C/bin:$PATH CUDA_HOME=$TOOLKIT/cudahome CUDA_COMPUTE_CAP=$CAP CUDARC_CUDA_VERSION=13000 \
  LD_LIBRARY_PATH=$LIB:$C/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
  CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda} cargo test -q --release --features cuda --lib

# 3c. wenhui's PTX assembled for the target here, as the driver will JIT it at first use there:
#     a kernel ptxas rejects, one that spills registers, or one with a stack frame (a register-
#     cached row indexed dynamically, say, lands in local memory) fails the build instead of a
#     GPU session.
PTX=$(ls -t "${CARGO_TARGET_DIR:-target/cuda}"/release/build/wenhui-*/out/wenhui_kernels.ptx | head -1)
if ! "$C/bin/ptxas" -arch="sm_$CAP" -v "$PTX" -o /dev/null 2>"$TOOLKIT/ptxas.log"; then
  grep -v '^ptxas info\|bytes stack frame' "$TOOLKIT/ptxas.log" >&2
  echo "ptxas rejected $PTX (full log: $TOOLKIT/ptxas.log)" >&2
  exit 1
fi
awk '/Compiling entry function/ { name = $7 } /spill stores/ && ($1 != 0 || $5 != 0 || $9 != 0) { bad = bad " " name }
  /Used [0-9]+ registers/ { if ($5 > max) max = $5; n++ }
  END { printf "ptxas: %d kernels for sm_'"$CAP"', at most %d registers\n", n, max > "/dev/stderr"; if (bad) { print "stack frames or register spills in" bad > "/dev/stderr"; exit 1 } }' \
  "$TOOLKIT/ptxas.log"

# 4. A small file to carry (dist/ holds only it): stripped and xz-compressed, ≈18 MB.
BIN=${CARGO_TARGET_DIR:-target/cuda}/release/wenhui
mkdir -p dist
strip -o "$BIN.stripped" "$BIN"
xz -T2 -6 -c "$BIN.stripped" >dist/wenhui-cuda.xz
ls -la dist/wenhui-cuda.xz >&2

# 5. The kernel profiler to preload on the GPU machine (bench/kernel_profile.cpp; it opens
#    torch's libcupti at run time), for scripts/gpu-check.sh's per-kernel tables.
g++ -O2 -std=c++17 -shared -fPIC -I"$CUPTI/include" -I"$C/include" bench/kernel_profile.cpp -o dist/libwenhui_kernel_profile.so -ldl
strip dist/libwenhui_kernel_profile.so
ls -la dist/libwenhui_kernel_profile.so >&2
