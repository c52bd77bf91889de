//! Reading weights from the files users have: `model.safetensors` (and sharded
//! `model.safetensors.index.json`), `pytorch_model.bin` (PyTorch zip pickle), and original
//! THUDM/GLM Megatron checkpoints (`latest_checkpointed_iteration.txt` + `<iter>/mp_rank_XX_model_states.pt`,
//! fp16, model-parallel shards merged as `change_mp.py` splits them).

use crate::error::read_text;
use crate::{Error, Result};
use candle_core::pickle::{Object, Stack};
use candle_core::{CpuStorage, DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Tensors read from a checkpoint, by parameter name, in the dtype they were stored in.
pub struct Checkpoint {
    /// Parameter name → tensor.
    pub tensors: HashMap<String, Tensor>,
    /// The file or directory they came from (named in errors).
    pub source: PathBuf,
    /// The format that was read.
    pub format: CheckpointFormat,
    /// Training arguments stored beside Megatron weights (`args`), as JSON, when present.
    pub megatron_args: Option<serde_json::Value>,
}

/// Checkpoint file formats wenhui reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// `*.safetensors` (one file or sharded with an index).
    Safetensors,
    /// A PyTorch zip pickle of a state dict (`pytorch_model.bin`, `*.pt`).
    PytorchPickle,
    /// THUDM/GLM Megatron checkpoint directory, `n` model-parallel ranks.
    Megatron(usize),
}

impl std::fmt::Display for CheckpointFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointFormat::Safetensors => f.write_str("safetensors"),
            CheckpointFormat::PytorchPickle => f.write_str("pytorch pickle"),
            CheckpointFormat::Megatron(n) => write!(f, "THUDM Megatron checkpoint, model-parallel size {n}"),
        }
    }
}

/// Whether floating-point `t` holds a NaN or an infinity (integer tensors never do).
pub(crate) fn has_non_finite(t: &Tensor) -> Result<bool> {
    // 0·x is 0 exactly where x is finite.
    Ok(t.dtype().is_float() && t.affine(0.0, 0.0)?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()? != 0.0)
}

/// An error naming tensor `name` of `source` when `t` holds a NaN or an infinity: a diverged run
/// or a damaged file would otherwise load silently and only show as NaN scores or a diverged
/// training step later.
pub(crate) fn ensure_finite(t: &Tensor, source: &Path, name: &str) -> Result<()> {
    if has_non_finite(t)? {
        return Err(non_finite(source, name));
    }
    Ok(())
}

/// `t` in `dtype`, checked by [`ensure_finite`]. A contiguous CPU tensor going to f32 takes one
/// vectorized pass: candle converts half floats one element at a time, and the check alone would
/// copy the tensor (together about a third of a small command's start with the embedded model).
fn converted_finite(t: Tensor, dtype: DType, source: &Path, name: &str) -> Result<Tensor> {
    let finite = |v: &[f32]| if v.iter().all(|x| x.is_finite()) { Ok(()) } else { Err(non_finite(source, name)) };
    let widened = {
        let (storage, layout) = t.storage_and_layout();
        match (&*storage, layout.contiguous_offsets()) {
            (candle_core::Storage::Cpu(cpu), Some((a, b))) if dtype == DType::F32 => match cpu {
                CpuStorage::F16(v) => Some(widen(&v[a..b], b - a)),
                CpuStorage::BF16(v) => Some(widen(&v[a..b], b - a)),
                CpuStorage::F32(v) => {
                    // Already f32: checked in place, nothing copied.
                    finite(&v[a..b])?;
                    return Ok(t.clone());
                }
                _ => None,
            },
            _ => None,
        }
    };
    match widened {
        Some(v) => {
            finite(&v)?;
            Ok(Tensor::from_vec(v, t.shape(), &Device::Cpu)?)
        }
        None => {
            let t = t.to_dtype(dtype)?;
            ensure_finite(&t, source, name)?;
            Ok(t)
        }
    }
}

/// f16 or bf16 values widened to f32 with the CPU's conversion instructions.
fn widen<S: half::slice::HalfFloatSliceExt + ?Sized>(s: &S, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    s.convert_to_f32_slice(&mut out);
    out
}

fn non_finite(source: &Path, name: &str) -> Error {
    Error::tensor(source, name, "holds NaN or infinite values: the checkpoint is damaged (or its run diverged)")
}

/// The first tensor of `tensors` (in name order) that holds a NaN or an infinity.
pub(crate) fn first_non_finite(tensors: &HashMap<String, Tensor>) -> Result<Option<&str>> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for n in names {
        if has_non_finite(&tensors[n])? {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// [`ensure_finite`] over every tensor of `tensors` read from `source`.
pub(crate) fn ensure_all_finite(tensors: &HashMap<String, Tensor>, source: &Path) -> Result<()> {
    match first_non_finite(tensors)? {
        Some(name) => Err(non_finite(source, name)),
        None => Ok(()),
    }
}

impl Checkpoint {
    /// Reads weights from a directory (any of the layouts above) or a single weights file.
    pub fn read(path: &Path) -> Result<Self> {
        if path.is_file() {
            return read_file(path);
        }
        if path.exists() && !path.is_dir() {
            // A device, a FIFO: something there, but neither weights nor a model directory.
            return Err(Error::file(path, "is not a regular file or a directory: give a model directory or a weights file"));
        }
        if !path.is_dir() {
            return Err(Error::file(path, "no such file or directory"));
        }
        let candidates = ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"];
        for name in candidates {
            let p = path.join(name);
            if p.is_file() {
                return if name.ends_with(".index.json") { read_sharded(&p) } else { read_file(&p) };
            }
        }
        if let Some(ck) = pretraining_run_checkpoint(path)? {
            // wenhui's own `latest` is no THUDM tracker: say what the directory is.
            return Err(Error::file(
                path,
                format!(
                    "is a wenhui pretraining run, not a model directory: pass one of its checkpoints (the newest is {}), \
                     or export it first (`wenhui export {} -o MODEL_DIR`)",
                    ck.display(),
                    path.display()
                ),
            ));
        }
        if path.join("latest_checkpointed_iteration.txt").is_file() || path.join("latest").is_file() {
            return read_megatron(path);
        }
        Err(Error::file(
            path,
            "no weights found: expected model.safetensors, model.safetensors.index.json, pytorch_model.bin, or a THUDM checkpoint (latest_checkpointed_iteration.txt)",
        ))
    }

    /// Dtypes found in the checkpoint, with tensor counts.
    pub fn dtypes(&self) -> Vec<(DType, usize)> {
        let mut counts: Vec<(DType, usize)> = Vec::new();
        for t in self.tensors.values() {
            match counts.iter_mut().find(|(d, _)| *d == t.dtype()) {
                Some((_, n)) => *n += 1,
                None => counts.push((t.dtype(), 1)),
            }
        }
        counts.sort_by_key(|(d, _)| format!("{d:?}"));
        counts
    }

    /// Checks that every `(name, shape)` is present with that shape; the error names the first
    /// missing or mismatched tensor, with expected and found shapes.
    pub fn check(&self, expected: &[(String, Vec<usize>)]) -> Result<()> {
        for (name, shape) in expected {
            match self.tensors.get(name) {
                None => return Err(Error::tensor(&self.source, name, format!("missing (expected shape {shape:?})"))),
                Some(t) if t.dims() != shape.as_slice() => {
                    return Err(Error::tensor(&self.source, name, format!("wrong shape: expected {shape:?}, found {:?}", t.dims())))
                }
                Some(t) if !t.dtype().is_float() => {
                    return Err(Error::tensor(&self.source, name, format!("expected floating-point weights, found {:?}", t.dtype())))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The expected tensors converted to `dtype` on `device`, ready for a `VarBuilder`.
    pub fn into_params(self, expected: &[(String, Vec<usize>)], dtype: DType, device: &Device) -> Result<HashMap<String, Tensor>> {
        self.check(expected)?;
        let mut tensors = self.tensors;
        let mut out = HashMap::with_capacity(expected.len());
        for (name, _) in expected {
            let t = converted_finite(tensors.remove(name).expect("checked above"), dtype, &self.source, name)?;
            out.insert(name.clone(), t.to_device(device)?);
        }
        if !tensors.is_empty() {
            let mut extra: Vec<_> = tensors.keys().cloned().collect();
            extra.sort();
            // A config with fewer layers than the weights would drop the rest silently.
            let pattern =
                |n: &str| n.split('.').map(|part| if part.parse::<u64>().is_ok() { "#" } else { part }).collect::<Vec<_>>().join(".");
            let patterns: std::collections::HashSet<String> = expected.iter().map(|(n, _)| pattern(n)).collect();
            if let Some(name) = extra.iter().find(|n| n.split('.').any(|p| p.parse::<u64>().is_ok()) && patterns.contains(&pattern(n))) {
                return Err(Error::tensor(
                    &self.source,
                    name,
                    "belongs to a layer the config does not have: config.json describes fewer layers than the weights hold",
                ));
            }
            tracing::debug!("{}: ignoring {} tensors the model does not use: {:?}", self.source.display(), extra.len(), extra);
        }
        Ok(out)
    }
}

/// When `dir` is the run directory of `wenhui pretrain` (no weights of its own, a
/// `checkpoints/step-N/` holding a complete model checkpoint), its newest checkpoint; `None` for
/// any other path.
pub fn pretraining_run_checkpoint(dir: &Path) -> Result<Option<PathBuf>> {
    let weights = ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"];
    if !dir.join("checkpoints").is_dir() || weights.iter().any(|w| dir.join(w).is_file()) {
        return Ok(None);
    }
    // A ptune checkpoint (prompt encoder only) is no model.
    Ok(crate::train::checkpoint::latest(dir)?.filter(|ck| ck.join("config.json").is_file() && ck.join("model.safetensors").is_file()))
}

fn read_file(path: &Path) -> Result<Checkpoint> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "safetensors" {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| match safetensors_header_problem(path) {
            Some((tensor, msg)) => Error::tensor(path, tensor, msg),
            None => Error::file(path, format!("not a readable safetensors file ({e}); is it truncated?")),
        })?;
        if tensors.is_empty() {
            return Err(Error::file(path, "the safetensors file holds no tensors"));
        }
        return Ok(Checkpoint { tensors, source: path.into(), format: CheckpointFormat::Safetensors, megatron_args: None });
    }
    if ext == "json" && path.to_string_lossy().ends_with(".index.json") {
        return read_sharded(path);
    }
    let (tensors, args, _) = read_pickle(path)?;
    Ok(Checkpoint { tensors, source: path.into(), format: CheckpointFormat::PytorchPickle, megatron_args: args })
}

/// Reads a sharded checkpoint from its `*.index.json` (`{"weight_map": {name: file}}`).
fn read_sharded(index: &Path) -> Result<Checkpoint> {
    let text = read_text(index)?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::file(index, format!("not valid JSON: {e}")))?;
    let map = json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| Error::file(index, "no `weight_map` object"))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
    files.sort();
    files.dedup();
    let mut tensors = HashMap::new();
    for f in files {
        // Shards are files beside the index: a path elsewhere is a broken or hostile index.
        if !plain_name(f) {
            return Err(Error::file(
                index,
                format!("weight_map names the shard `{f}`, which is not a file name in the checkpoint's directory"),
            ));
        }
        let shard = read_file(&dir.join(f))?;
        tensors.extend(shard.tensors);
    }
    for name in map.keys() {
        if !tensors.contains_key(name) {
            return Err(Error::tensor(index, name, "listed in the index but absent from its shard"));
        }
    }
    Ok(Checkpoint { tensors, source: index.into(), format: CheckpointFormat::Safetensors, megatron_args: None })
}

/// Reads a PyTorch zip pickle: a state dict, or a dict holding one under `module` (THUDM) or
/// `state_dict`/`model`. Also returns Megatron's `args` namespace as JSON when present.
/// What a PyTorch zip pickle holds: its tensors, its `args` namespace as JSON, and THUDM's
/// `mp_world_size` (the model-parallel ranks that wrote it), when present.
type Pickled = (HashMap<String, Tensor>, Option<serde_json::Value>, Option<u64>);

/// Reads a PyTorch zip pickle (see [`Pickled`]).
fn read_pickle(path: &Path) -> Result<Pickled> {
    let hint = "expected a PyTorch zip checkpoint (torch ≥ 1.6 `torch.save`): the file is truncated or damaged, or a legacy pickle that must be re-saved";
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| Error::file(path, format!("not a zip archive ({e}): {hint}")))?;
    let pkl = (0..zip.len())
        .filter_map(|i| zip.by_index(i).ok().and_then(|f| f.name().ok().map(|n| n.to_string())))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| Error::file(path, format!("no data.pkl inside: {hint}")))?;
    let mut stack = Stack::empty();
    {
        let reader = zip.by_name(&pkl).map_err(|e| Error::file(path, e.to_string()))?;
        stack.read_loop(&mut std::io::BufReader::new(reader)).map_err(|e| Error::file(path, format!("unreadable pickle: {e}")))?;
    }
    let root = stack.finalize().map_err(|e| Error::file(path, format!("unreadable pickle: {e}")))?;
    let entries = match root {
        Object::Dict(kv) => kv,
        _ => return Err(Error::file(path, "the pickle is not a state dict (its top level is not a dict)")),
    };
    let key_of = |k: &Object| match k {
        Object::Unicode(s) => Some(s.clone()),
        _ => None,
    };
    let args = entries.iter().find(|(k, _)| key_of(k).as_deref() == Some("args")).and_then(|(_, v)| namespace_to_json(v));
    let world = entries.iter().find(|(k, _)| key_of(k).as_deref() == Some("mp_world_size")).and_then(|(_, v)| match v {
        Object::Int(i) => u64::try_from(*i).ok(),
        Object::Long(i) => u64::try_from(*i).ok(),
        _ => None,
    });
    let nested = ["module", "state_dict", "model"]
        .into_iter()
        .find(|want| entries.iter().any(|(k, v)| key_of(k).as_deref() == Some(want) && matches!(v, Object::Dict(_))));
    let tensors =
        candle_core::pickle::read_all_with_key(path, nested).map_err(|e| Error::file(path, format!("cannot read tensors: {e}")))?;
    if tensors.is_empty() {
        return Err(Error::file(path, "the pickle holds no tensors: not a state dict (a dict of tensors, optionally under `module`)"));
    }
    Ok((tensors.into_iter().collect(), args, world))
}

/// Converts a pickled `argparse.Namespace` (or plain dict) of simple values to JSON.
fn namespace_to_json(obj: &Object) -> Option<serde_json::Value> {
    let dict = match obj {
        Object::Build { args, .. } => match args.as_ref() {
            Object::Dict(kv) => kv,
            _ => return None,
        },
        Object::Dict(kv) => kv,
        _ => return None,
    };
    let mut out = serde_json::Map::new();
    for (k, v) in dict {
        if let Object::Unicode(k) = k {
            let v = match v {
                Object::Int(i) => serde_json::json!(i),
                Object::Long(i) => serde_json::json!(i),
                Object::Float(f) => serde_json::json!(f),
                Object::Bool(b) => serde_json::json!(b),
                Object::Unicode(s) => serde_json::json!(s),
                Object::None => serde_json::Value::Null,
                _ => continue,
            };
            out.insert(k.clone(), v);
        }
    }
    Some(serde_json::Value::Object(out))
}

/// Why a safetensors file that failed to load is unusable, by tensor, when its header says so:
/// an unknown dtype, or data offsets that do not match the shape or lie outside the file.
fn safetensors_header_problem(path: &Path) -> Option<(String, String)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix).ok()?;
    let n = u64::from_le_bytes(prefix);
    if n > len.saturating_sub(8) || n > 100 << 20 {
        return None; // a header longer than the file (or absurd): candle's message says enough
    }
    let mut text = vec![0u8; n as usize];
    file.read_exact(&mut text).ok()?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&text).ok()?;
    let data = len - 8 - n;
    let mut names: Vec<&String> = header.keys().filter(|k| *k != "__metadata__").collect();
    names.sort();
    for name in names {
        let t = &header[name];
        let size = match t["dtype"].as_str() {
            Some("F64" | "I64" | "U64") => 8,
            Some("F32" | "I32" | "U32") => 4,
            Some("F16" | "BF16" | "I16" | "U16") => 2,
            Some("U8" | "I8" | "BOOL" | "F8_E4M3" | "F8_E5M2") => 1,
            Some(other) => return Some((name.clone(), format!("unknown dtype `{other}`"))),
            None => return Some((name.clone(), "no dtype".to_string())),
        };
        let shape: Option<Vec<u64>> = t["shape"].as_array().map(|s| s.iter().filter_map(|d| d.as_u64()).collect());
        let offsets: Option<Vec<u64>> = t["data_offsets"].as_array().map(|s| s.iter().filter_map(|d| d.as_u64()).collect());
        let (Some(shape), Some(offsets)) = (shape, offsets) else {
            return Some((name.clone(), "the header entry lacks a shape or data_offsets".into()));
        };
        let [begin, end] = offsets[..] else { return Some((name.clone(), format!("data_offsets {offsets:?} is not [begin, end]"))) };
        let want = shape.iter().try_fold(size as u64, |acc, &d| acc.checked_mul(d));
        if end < begin || Some(end - begin) != want {
            let want = want.map_or("more than 2^64".to_string(), |w| w.to_string());
            return Some((
                name.clone(),
                format!("data_offsets [{begin}, {end}] do not hold shape {shape:?} ({want} bytes): the file is damaged"),
            ));
        }
        if end > data {
            return Some((
                name.clone(),
                format!("its bytes [{begin}, {end}] lie past the file's {data} data bytes: the file is truncated"),
            ));
        }
    }
    None
}

/// Whether `name` is one plain file name (no directory part, no `..`): what a checkpoint's index
/// or tracker file may name beside it.
fn plain_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!((parts.next(), parts.next()), (Some(std::path::Component::Normal(_)), None))
}

/// Reads a THUDM/GLM (Megatron/DeepSpeed) checkpoint directory and merges model-parallel shards.
fn read_megatron(dir: &Path) -> Result<Checkpoint> {
    let tracker =
        [dir.join("latest_checkpointed_iteration.txt"), dir.join("latest")].into_iter().find(|p| p.is_file()).expect("checked by caller");
    let tag = read_text(&tracker)?.trim().to_string();
    if tag.is_empty() {
        return Err(Error::file(&tracker, "empty: expected an iteration number or `release`"));
    }
    let iter_dir = dir.join(&tag);
    if !plain_name(&tag) || !iter_dir.is_dir() {
        return Err(Error::file(
            &tracker,
            format!("names `{tag}`, which is not an iteration directory beside it (expected e.g. `250000` or `release`)"),
        ));
    }
    let mut shards: Vec<PathBuf> = std::fs::read_dir(&iter_dir)
        .map_err(|e| Error::io(&iter_dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("mp_rank_") && n.ends_with("_model_states.pt")))
        .collect();
    shards.sort();
    if shards.is_empty() {
        return Err(Error::file(&iter_dir, "no mp_rank_XX_model_states.pt files"));
    }
    // The ranks must be 00..n-1: a missing shard would otherwise surface as a shape mismatch.
    let rank_of =
        |p: &Path| p.file_name().and_then(|n| n.to_str()).and_then(|n| n["mp_rank_".len()..].split('_').next()?.parse::<usize>().ok());
    let missing_rank = |r: usize| {
        Error::file(
            iter_dir.join(format!("mp_rank_{r:02}_model_states.pt")),
            "missing: a model-parallel checkpoint needs every rank's shard",
        )
    };
    for (i, s) in shards.iter().enumerate() {
        if rank_of(s) != Some(i) {
            return Err(missing_rank(i));
        }
    }
    let mut ranks = Vec::with_capacity(shards.len());
    let (mut args, mut world) = (None, None);
    for s in &shards {
        let (t, a, w) = read_pickle(s)?;
        args = args.or(a);
        world = world.or(w);
        ranks.push(t);
    }
    let n = ranks.len();
    // The run's own arguments say how many ranks it had.
    let size = world.or_else(|| args.as_ref()?.get("model_parallel_size")?.as_u64());
    if let Some(size) = size {
        if size as usize > n {
            return Err(missing_rank(n));
        }
    }
    let tensors = if n == 1 { ranks.pop().expect("one rank") } else { merge_model_parallel(ranks, &iter_dir)? };
    Ok(Checkpoint { tensors, source: dir.into(), format: CheckpointFormat::Megatron(n), megatron_args: args })
}

/// Merges model-parallel shards by THUDM's `change_mp.py` rule: QKV split per Q/K/V third on
/// dim 0; word embeddings and `dense_h_to_4h` on dim 0; `attention.dense` and `dense_4h_to_h`
/// weights on dim 1; everything else replicated. An error when `ranks` is empty.
pub fn merge_model_parallel(ranks: Vec<HashMap<String, Tensor>>, source: &Path) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    let Some(first) = ranks.first() else {
        return Err(Error::file(source, "no model-parallel ranks to merge: give the tensors of every rank (at least one)"));
    };
    let names: Vec<String> = first.keys().cloned().collect();
    for name in names {
        let parts = ranks
            .iter()
            .enumerate()
            .map(|(r, m)| m.get(&name).cloned().ok_or_else(|| Error::tensor(source, &name, format!("absent from model-parallel rank {r}"))))
            .collect::<Result<Vec<_>>>()?;
        let merged = if name.contains("query_key_value") {
            let mut thirds: [Vec<Tensor>; 3] = Default::default();
            for p in &parts {
                let rows = p.dim(0)?;
                if rows % 3 != 0 {
                    return Err(Error::tensor(source, &name, format!("{rows} rows are not divisible into Q, K, V")));
                }
                for (i, third) in thirds.iter_mut().enumerate() {
                    third.push(p.narrow(0, i * rows / 3, rows / 3)?);
                }
            }
            Tensor::cat(&thirds.concat(), 0)?
        } else if name == "word_embeddings.weight" || name.contains("dense_h_to_4h") {
            Tensor::cat(&parts, 0)?
        } else if name.ends_with("attention.dense.weight") || name.ends_with("dense_4h_to_h.weight") {
            Tensor::cat(&parts, 1)?
        } else {
            parts[0].clone()
        };
        out.insert(name, merged);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_conversion_equals_candles_and_refuses_non_finite_values() -> Result<()> {
        let src = Path::new("m.safetensors");
        let values: Vec<f32> = (0..300).map(|i| (i as f32 - 150.0) * 0.37).collect();
        let base = Tensor::from_vec(values, (20, 15), &Device::Cpu)?;
        for dtype in [DType::F16, DType::BF16, DType::F32] {
            let stored = base.to_dtype(dtype)?;
            // Contiguous, a row range (an offset into the storage) and a transpose (strided).
            for t in [stored.clone(), stored.narrow(0, 3, 5)?, stored.t()?] {
                let fast = converted_finite(t.clone(), DType::F32, src, "w")?;
                assert_eq!(fast.dims(), t.dims());
                assert_eq!(fast.flatten_all()?.to_vec1::<f32>()?, t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
            }
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut v = base.flatten_all()?.to_vec1::<f32>()?;
                v[7] = bad;
                let t = Tensor::from_vec(v, (20, 15), &Device::Cpu)?.to_dtype(dtype)?;
                let err = converted_finite(t.narrow(0, 0, 2)?, DType::F32, src, "w").err().map(|e| e.to_string()).unwrap_or_default();
                assert!(err.contains("NaN or infinite") && err.contains('w'), "{dtype:?} {bad}: {err}");
                // Outside the range read: not this tensor's problem.
                assert!(converted_finite(t.narrow(0, 1, 2)?, DType::F32, src, "w").is_ok());
            }
        }
        // Another target dtype takes candle's conversion and the same check.
        let f16 = converted_finite(base.clone(), DType::F16, src, "w")?;
        assert_eq!(f16.dtype(), DType::F16);
        Ok(())
    }
}
