//! wenhui's CUDA kernels run on the CPU, for tests: `src/ops/cuda/kernels.cu` compiled by the
//! host C++ compiler against `emu.h` (one fiber per CUDA thread, real `__syncthreads` barriers
//! and warp shuffles, see there), launched with the plans of [`crate::ops::launch`], and checked
//! against the CPU ops. This is how the kernels are tested where there is no GPU, CI included:
//! wrong indexing, a missing barrier, a race between barriers, a write past a buffer or a
//! reduction that differs from the CPU's fails here rather than on a lent GPU.
//!
//! Each launch runs twice, threads and blocks in forward and in reverse order, and both runs
//! must give the same numbers: a shared-memory race shows up as a difference. The forward run
//! lands `cp.async` copies at their wait, the reverse run at their issue (the two extremes a GPU
//! allows), so a copy into a buffer still being read shows up too. Each block's shared memory
//! starts as NaN, and every buffer has guard bytes on both sides that must survive the launch.
//!
//! Linux only (ucontext fibers, mmap'd stacks; what CI runs). Needs a C++17 compiler with
//! `_Float16` (GCC ≥ 12 or Clang ≥ 15): `$CXX`, else `c++`.

mod adamw;
mod attention;
mod flash;
mod rows;

use candle_core::{DType, Device, Tensor, Var, WithDType};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::sync::OnceLock;

pub(crate) type TestResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

type LaunchFn = unsafe extern "C" fn(
    *const c_char,
    *const u32,
    *const u32,
    u32,
    *mut *mut c_void,
    *const u32,
    usize,
    c_int,
    *mut u64,
    *mut c_char,
    usize,
) -> c_int;
type KernelsFn = unsafe extern "C" fn() -> *const c_char;

/// The compiled kernels, loaded once per test process.
struct Emu {
    launch: LaunchFn,
    kernels: KernelsFn,
    _lib: libloading::Library,
}

fn emu() -> TestResult<&'static Emu> {
    static EMU: OnceLock<std::result::Result<Emu, String>> = OnceLock::new();
    EMU.get_or_init(|| build().map_err(|e| e.to_string())).as_ref().map_err(|e| e.clone().into())
}

fn build() -> TestResult<Emu> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ops");
    let dir = tempfile::tempdir()?;
    let lib = dir.path().join("libwenhui_kernels_emu.so");
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let out = std::process::Command::new(&cxx)
        .args(["-std=c++17", "-O1", "-shared", "-fPIC", "-pthread", "-Wall", "-Wno-unknown-pragmas"])
        .arg("-I")
        .arg(root.join("cuda_emu"))
        .arg("-I")
        .arg(root.join("cuda"))
        .arg(root.join("cuda_emu/kernels_emu.cpp"))
        .arg("-o")
        .arg(&lib)
        .output()
        .map_err(|e| format!("the kernel emulation tests need a C++17 compiler (`{cxx}`; set CXX to choose one): {e}"))?;
    if !out.status.success() {
        return Err(format!("`{cxx}` could not compile kernels.cu for the CPU:\n{}", String::from_utf8_lossy(&out.stderr)).into());
    }
    // SAFETY: the library is ours, built just now; its initialisers only set up static tables.
    let lib = unsafe { libloading::Library::new(&lib) }?;
    // SAFETY: the signatures match kernels_emu.cpp's `extern "C"` definitions.
    let (launch, kernels) = unsafe { (*lib.get::<LaunchFn>(b"wenhui_emu_launch")?, *lib.get::<KernelsFn>(b"wenhui_emu_kernels")?) };
    // The mapping outlives the file: the temporary directory goes now.
    drop(dir);
    Ok(Emu { launch, kernels, _lib: lib })
}

/// A kernel's name and its `__launch_bounds__`, if any.
type Declaration = (String, Option<u32>);

/// Every `__global__` kernel kernels.cu declares (with the headers it includes), in each
/// instantiation, with its `__launch_bounds__` (the most threads per block it is compiled for),
/// parsed from the source.
fn declarations() -> TestResult<&'static [Declaration]> {
    static DECLS: OnceLock<std::result::Result<Vec<Declaration>, String>> = OnceLock::new();
    let parsed = DECLS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ops/cuda");
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()));
        let mut src = String::new();
        for line in read("kernels.cu")?.lines() {
            match line.trim().strip_prefix("#include \"").and_then(|l| l.strip_suffix('"')) {
                Some(header) => src += &read(header)?,
                None => src += line,
            }
            src.push('\n');
        }
        // Declarations span lines inside the instantiation macros.
        let src = src.replace("\\\n", " ");
        let mut out = Vec::new();
        for decl in src.split("__global__ void").skip(1) {
            let mut after = decl.trim_start();
            let mut bound = None;
            if let Some(rest) = after.strip_prefix("__launch_bounds__(") {
                let (n, rest) =
                    rest.split_once(')').ok_or_else(|| format!("unclosed __launch_bounds__ in: {}", &decl[..decl.len().min(80)]))?;
                // (max threads[, min blocks per SM])
                let threads = n.split(',').next().unwrap_or_default().trim();
                bound = Some(threads.parse::<u32>().map_err(|e| format!("__launch_bounds__({n}): {e}"))?);
                after = rest.trim_start();
            }
            let name = after.split('(').next().unwrap_or_default().trim();
            if let Some(root) = name.strip_suffix("_##HSUF") {
                out.extend(["f16", "bf16"].iter().map(|s| (format!("{root}_{s}"), bound)));
            } else if let Some(root) = name.strip_suffix("_##SUF") {
                let suffixes: &[&str] = if root == "permute_rows" { &["w2", "w4", "w8", "w16"] } else { &["f32", "f64", "f16", "bf16"] };
                out.extend(suffixes.iter().map(|s| (format!("{root}_{s}"), bound)));
            } else if !name.is_empty() {
                out.push((name.to_owned(), bound));
            }
        }
        Ok(out)
    });
    parsed.as_deref().map_err(|e| e.clone().into())
}

/// One kernel argument, passed as cuLaunchKernel passes it: a pointer to its value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg {
    /// A device pointer (here a host address; 0 for the kernels' null).
    Ptr(u64),
    I32(i32),
    U64(u64),
    F32(f32),
    F64(f64),
}

impl Arg {
    /// Bytes of the C parameter this argument fills.
    fn size(self) -> u32 {
        match self {
            Arg::Ptr(_) | Arg::U64(_) | Arg::F64(_) => 8,
            Arg::I32(_) | Arg::F32(_) => 4,
        }
    }

    /// The value in an 8-byte little-endian slot (a 4-byte argument in its first half).
    fn word(self) -> u64 {
        match self {
            Arg::Ptr(v) | Arg::U64(v) => v,
            Arg::I32(v) => u64::from(v as u32),
            Arg::F32(v) => u64::from(v.to_bits()),
            Arg::F64(v) => v.to_bits(),
        }
    }
}

/// The most threads per block a kernel without `__launch_bounds__` can surely be launched with:
/// 65,536 registers per block over up to 255 per thread.
const MAX_THREADS_UNBOUNDED: u32 = 256;

/// Runs kernel `name` once with launch plan `l`; `reverse` runs threads and blocks backwards
/// and lands `cp.async` copies at issue.
/// Returns how many threads took a fast path (kernels.cu's `FAST_PATH` marks: 16-byte packs).
pub(crate) fn launch(name: &str, l: crate::ops::launch::Launch, args: &[Arg], reverse: bool) -> TestResult<u64> {
    let emu = emu()?;
    let threads = l.block.iter().product::<u32>();
    match declarations()?.iter().find(|(n, _)| n == name) {
        Some((_, Some(bound))) if threads > *bound => {
            return Err(format!(
                "kernel {name} is compiled for at most {bound} threads per block (__launch_bounds__); the launch has {threads}"
            )
            .into());
        }
        // Without bounds ptxas may give each thread up to 255 registers, and an SM's 65,536 do
        // not stretch to more than 256 such threads: the launch would fail on the GPU.
        Some((_, None)) if threads > MAX_THREADS_UNBOUNDED => {
            return Err(format!(
                "kernel {name} is launched with {threads} threads per block but declares no __launch_bounds__ \
                 (more than {MAX_THREADS_UNBOUNDED} threads need them, or the launch may run out of registers)"
            )
            .into());
        }
        _ => {}
    }
    let sizes: Vec<u32> = args.iter().map(|a| a.size()).collect();
    let mut words: Vec<u64> = args.iter().map(|a| a.word()).collect();
    let mut pointers: Vec<*mut c_void> = words.iter_mut().map(|w| (w as *mut u64).cast::<c_void>()).collect();
    let name_c = CString::new(name)?;
    let mut err = vec![0 as c_char; 1024];
    let mut fast_paths = 0u64;
    // SAFETY: `pointers` holds one pointer per argument into `words`, alive for the call; the
    // buffers the arguments point at are owned by the caller's `Buf`s, also alive.
    let rc = unsafe {
        (emu.launch)(
            name_c.as_ptr(),
            l.grid.as_ptr(),
            l.block.as_ptr(),
            l.shared,
            pointers.as_mut_ptr(),
            sizes.as_ptr(),
            sizes.len(),
            c_int::from(reverse),
            &mut fast_paths,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 {
        // SAFETY: the launcher wrote a NUL-terminated message into `err`.
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
        return Err(format!("kernel {name}: {msg}").into());
    }
    Ok(fast_paths)
}

/// Every kernel kernels_emu.cpp can launch.
pub(crate) fn kernel_names() -> TestResult<Vec<String>> {
    let emu = emu()?;
    // SAFETY: a static NUL-terminated string.
    let names = unsafe { CStr::from_ptr((emu.kernels)()) }.to_string_lossy().into_owned();
    Ok(names.lines().map(str::to_owned).collect())
}

const GUARD_BYTES: usize = 64;
const GUARD: u8 = 0xa5;

/// A buffer a kernel reads or writes: 16-byte aligned (a `uint4` load needs it), with guard
/// bytes on both sides.
pub(crate) struct Buf {
    name: &'static str,
    words: Vec<u128>,
    bytes: usize,
}

impl Buf {
    /// A buffer of `bytes` bytes, every byte set to `fill`.
    fn filled(name: &'static str, bytes: usize, fill: u8) -> Self {
        let words = (bytes + 2 * GUARD_BYTES).div_ceil(16);
        let mut b = Buf { name, words: vec![0; words], bytes };
        let all = b.all_bytes_mut();
        all.fill(GUARD);
        all[GUARD_BYTES..GUARD_BYTES + bytes].fill(fill);
        b
    }

    /// `values` converted to `T`.
    pub(crate) fn of<T: WithDType>(name: &'static str, values: &[f64]) -> Self {
        let typed: Vec<T> = values.iter().map(|&v| T::from_f64(v)).collect();
        Self::of_raw(name, &typed)
    }

    /// A copy of `values` (any plain-data type: floats, u32 ids, u64 table words).
    pub(crate) fn of_raw<T: Copy>(name: &'static str, values: &[T]) -> Self {
        let bytes = std::mem::size_of_val(values);
        let mut b = Self::filled(name, bytes, 0);
        // SAFETY: `values` is plain data of `bytes` bytes; the destination holds `bytes` bytes.
        let src = unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), bytes) };
        b.all_bytes_mut()[GUARD_BYTES..GUARD_BYTES + bytes].copy_from_slice(src);
        b
    }

    /// `n` elements of `T`, every bit set (NaN for floats): what a kernel must overwrite.
    pub(crate) fn uninit<T: WithDType>(name: &'static str, n: usize) -> Self {
        Self::filled(name, n * std::mem::size_of::<T>(), 0xff)
    }

    /// `n` zeros of `T`.
    pub(crate) fn zeros<T: WithDType>(name: &'static str, n: usize) -> Self {
        Self::filled(name, n * std::mem::size_of::<T>(), 0)
    }

    fn all_bytes_mut(&mut self) -> &mut [u8] {
        let n = self.words.len() * 16;
        // SAFETY: the words are plain data; a byte view of them is valid.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), n) }
    }

    fn all_bytes(&self) -> &[u8] {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.words.len() * 16) }
    }

    /// The kernel's pointer to the first element.
    pub(crate) fn ptr(&mut self) -> Arg {
        self.ptr_at(0)
    }

    /// The kernel's pointer `bytes` past the first element (a misaligned buffer).
    pub(crate) fn ptr_at(&mut self, bytes: usize) -> Arg {
        Arg::Ptr(self.address() + bytes as u64)
    }

    /// The address of the first element, for tables of pointers.
    pub(crate) fn address(&mut self) -> u64 {
        self.all_bytes_mut()[GUARD_BYTES..].as_mut_ptr() as u64
    }

    /// The contents as `T`, converted to f64; an error when a kernel wrote into a guard.
    pub(crate) fn read<T: WithDType>(&self) -> TestResult<Vec<f64>> {
        let all = self.all_bytes();
        let end = GUARD_BYTES + self.bytes;
        if let Some(i) = all[..GUARD_BYTES].iter().rposition(|&b| b != GUARD) {
            return Err(format!("a kernel wrote {} bytes before buffer `{}`", GUARD_BYTES - i, self.name).into());
        }
        if let Some(i) = all[end..end + GUARD_BYTES].iter().position(|&b| b != GUARD) {
            return Err(format!("a kernel wrote {} bytes past the end of buffer `{}`", i + 1, self.name).into());
        }
        let n = self.bytes / std::mem::size_of::<T>();
        // SAFETY: the bytes hold `n` values of plain-data type `T`, 16-byte aligned.
        let typed = unsafe { std::slice::from_raw_parts(all[GUARD_BYTES..].as_ptr().cast::<T>(), n) };
        Ok(typed.iter().map(|v| v.to_f64()).collect())
    }
}

/// Runs `f` (which builds fresh buffers, launches, and reads the results) with threads in
/// forward and in reverse order (`cp.async` landing at the wait, then at issue); both must agree
/// to `tol` (0: bit for bit). Returns the first.
pub(crate) fn both_orders(what: &str, tol: f64, f: impl Fn(bool) -> TestResult<Vec<f64>>) -> TestResult<Vec<f64>> {
    let (a, b) = (f(false)?, f(true)?);
    if a.len() != b.len() {
        return Err(format!("{what}: {} values with threads in order, {} in reverse order", a.len(), b.len()).into());
    }
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let same = x.to_bits() == y.to_bits() || (x - y).abs() <= tol * x.abs().max(y.abs()).max(1e-30);
        if !same {
            return Err(format!("{what}: element {i} is {x} with threads in order, {y} in reverse order (a race?)").into());
        }
    }
    Ok(a)
}

/// Relative tolerance of a kernel's output in `dtype` against an f64 reference from the same
/// (rounded) inputs: f32/f64 arithmetic, then one rounding to the storage type.
pub(crate) fn tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-10,
        DType::F32 => 2e-5,
        DType::F16 => 2e-3,
        _ => 1.6e-2,
    }
}

/// Fails at the first element where `got` and `want` differ by more than `rtol` relative to the
/// larger of the element and 1% of `scale`, the magnitude of the whole output.
pub(crate) fn assert_close(what: &str, got: &[f64], want: &[f64], rtol: f64) -> TestResult {
    compare(what, got, want, rtol, 1e-2)
}

/// [`assert_close`] with errors relative to the whole output's magnitude: for results that pass
/// through the storage type between steps (attention's scores, probabilities, gradients).
pub(crate) fn assert_close_to_scale(what: &str, got: &[f64], want: &[f64], rtol: f64) -> TestResult {
    compare(what, got, want, rtol, 1.0)
}

fn compare(what: &str, got: &[f64], want: &[f64], rtol: f64, floor: f64) -> TestResult {
    if got.len() != want.len() {
        return Err(format!("{what}: {} values, expected {}", got.len(), want.len()).into());
    }
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let bound = rtol * w.abs().max(scale * floor).max(1e-12);
        let within = (g.is_nan() && w.is_nan()) || (g - w).abs() <= bound; // NaN only where NaN is expected
        if !within {
            return Err(format!("{what}: element {i} is {g}, expected {w} (|Δ| {:.3e} > {bound:.3e})", (g - w).abs()).into());
        }
    }
    Ok(())
}

/// `n` deterministic values in about [−scale, scale] (a fixed LCG: the tests need no rng crate).
pub(crate) fn values(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// `values` rounded to `dtype` (the inputs a kernel of that type sees).
pub(crate) fn rounded(values: &[f64], dtype: DType) -> Vec<f64> {
    values
        .iter()
        .map(|&v| match dtype {
            DType::F32 => f64::from(v as f32),
            DType::F16 => half::f16::from_f64(v).to_f64(),
            DType::BF16 => half::bf16::from_f64(v).to_f64(),
            _ => v,
        })
        .collect()
}

/// The CPU references' tensors: ops of `src/ops` run in f64 on the CPU.
/// A CPU f64 tensor of `shape`.
pub(crate) fn t64(v: &[f64], shape: &[usize]) -> TestResult<Tensor> {
    Ok(Tensor::from_vec(v.to_vec(), shape, &Device::Cpu)?)
}

/// The flat f64 values of a tensor.
pub(crate) fn flat(t: &Tensor) -> TestResult<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}

/// Gradients of Σ y ⊙ dy with respect to `wrt`.
pub(crate) fn grads(y: &Tensor, dy: &Tensor, wrt: &[&Var]) -> TestResult<Vec<Vec<f64>>> {
    let g = (y * dy)?.sum_all()?.backward()?;
    wrt.iter().map(|v| flat(g.get(v.as_tensor()).ok_or("no gradient")?)).collect()
}

/// The float dtypes every kernel is instantiated for, with their kernel-name suffix.
pub(crate) const FLOATS: [(DType, &str); 4] = [(DType::F32, "f32"), (DType::F64, "f64"), (DType::F16, "f16"), (DType::BF16, "bf16")];

/// Runs `$body` with `$t` bound to the Rust type of `$dtype`.
macro_rules! with_float {
    ($dtype:expr, |$t:ident| $body:expr) => {
        match $dtype {
            candle_core::DType::F32 => {
                type $t = f32;
                $body
            }
            candle_core::DType::F64 => {
                type $t = f64;
                $body
            }
            candle_core::DType::F16 => {
                type $t = half::f16;
                $body
            }
            _ => {
                type $t = half::bf16;
                $body
            }
        }
    };
}
pub(crate) use with_float;

#[cfg(test)]
mod harness_tests;
