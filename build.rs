//! Fingerprints the embedded poetry model's files (`WENHUI_POETRY_FINGERPRINT`, the name of its
//! cache directory: see `src/embedded.rs`), so that a run does not hash 27 MB before it starts.
//!
//! With the `cuda` feature, compiles wenhui's own CUDA kernels (`src/ops/cuda/kernels.cu`) to PTX
//! with `nvcc`, for the compute capability in `CUDA_COMPUTE_CAP` (default 90: H100/H200). The
//! PTX is embedded in the binary and loaded by the driver at first use. The CPU build (and CI)
//! never runs nvcc.

use std::path::PathBuf;
use std::process::Command;

/// The embedded poetry model's files, in the order of `embedded::POETRY_FILES` (a test checks
/// that both give the same fingerprint).
const POETRY_FILES: [&str; 4] = ["config.json", "model.safetensors", "tokenizer.json", "wenhui_tokenizer.json"];

/// FNV-1a, as `model::fnv1a` (the build script cannot use the crate it builds).
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn poetry_fingerprint() -> u64 {
    POETRY_FILES.iter().fold(0xcbf2_9ce4_8422_2325, |h, name| {
        let path = format!("models/poetry-glm/{name}");
        println!("cargo:rerun-if-changed={path}");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (the embedded model's files are part of the source tree)"));
        fnv1a(fnv1a(h, name.as_bytes()), &bytes)
    })
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-env=WENHUI_POETRY_FINGERPRINT={:016x}", poetry_fingerprint());
    println!("cargo:rerun-if-changed=src/ops/cuda/kernels.cu");
    println!("cargo:rerun-if-changed=src/ops/cuda/attention.cuh");
    println!("cargo:rerun-if-changed=src/ops/cuda/decode.cuh");
    println!("cargo:rerun-if-changed=src/ops/cuda/adamw.cuh");
    println!("cargo:rerun-if-changed=src/ops/cuda/flash.cuh");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    // The host side picks kernels by it (flash attention's tensor-core products need sm_80).
    println!("cargo:rustc-env=WENHUI_CUDA_COMPUTE_CAP={cap}");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("wenhui_kernels.ptx");
    let status = Command::new("nvcc")
        .args(["--ptx", "-O3", "-std=c++17"])
        .arg(format!("-arch=compute_{cap}"))
        .arg("src/ops/cuda/kernels.cu")
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("nvcc failed ({s}) compiling src/ops/cuda/kernels.cu"),
        Err(e) => panic!("the `cuda` feature needs nvcc 13.0 on PATH ({e}); scripts/build-cuda.sh sets it up"),
    }
}
