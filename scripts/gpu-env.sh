# Sourced by the device scripts (gpu-check.sh, gpu-train-poetry.sh) from the repository root on the
# GPU machine: $OUT, the CUDA binary in $BIN (unpacked from dist/wenhui-cuda.xz when needed) and
# torch's CUDA 13 libraries on the loader path (scripts/build-cuda.sh explains why).
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
BIN=${WENHUI_BIN:-dist/wenhui-cuda}
if [ ! -x "$BIN" ] && [ -f "$BIN.xz" ]; then xz -dkf "$BIN.xz" && chmod +x "$BIN"; fi
[ -x "$BIN" ] || { echo "no $BIN: build it with scripts/build-cuda.sh and carry dist/" >&2; exit 2; }
NV=$(python3 -c "import sysconfig;print(sysconfig.get_paths()['purelib'])")/nvidia/cu13/lib
export LD_LIBRARY_PATH=$NV:${LD_LIBRARY_PATH:-}
export CUDA_CACHE_MAXSIZE=4294967296 PYTHONUNBUFFERED=1
