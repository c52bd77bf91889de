//! `wenhui bench train`: the executed FLOP count, the batch dump (`--dump-batches`) that the
//! PyTorch reference trains on, and how the dump file is written.

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use wenhui::bench::{bench_train, TrainBench};

fn tiny(dump: Option<&Path>) -> TrainBench {
    TrainBench {
        layers: 1,
        hidden: 32,
        heads: 4,
        vocab: 64,
        seq: 16,
        batch: 3,
        warmup: 1,
        steps: 3,
        dump_batches: dump.map(Path::to_path_buf),
        ..Default::default()
    }
}

/// The header and batch lines of a dump, parsed as plain JSON (not with wenhui's own types).
fn read_dump(path: &Path) -> (Value, Vec<Value>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap());
    let header = lines.next().unwrap();
    (header, lines.collect())
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

fn matrix(v: &Value) -> Vec<Vec<usize>> {
    v.as_array().unwrap().iter().map(usizes).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// The dump holds the batches the run trained on, shaped as the model saw them, and its tokens,
/// loss rows and FLOPs are the report's: recomputed here from the dumped ids and masks with the
/// executed formula 6·(P − V·H)·tokens + 6·V·H·rows + 12·L·B·S²·H.
#[test]
fn the_dump_round_trips_and_the_flops_are_as_executed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batches.jsonl");
    let c = tiny(Some(&path));
    let r = bench_train(&c).unwrap();
    let (header, batches) = read_dump(&path);
    assert_eq!(header["format"], "wenhui-bench-train-batches");
    assert_eq!(header["version"], 1);
    for (k, v) in [("layers", 1), ("hidden", 32), ("heads", 4), ("vocab", 64), ("seq", 16), ("batch", 3), ("warmup", 1), ("steps", 3)] {
        assert_eq!(header[k], v, "{k}");
    }
    assert_eq!(header["batches"], 4);
    assert_eq!(header["params"].as_u64().unwrap() as usize, r.params);
    assert_eq!(batches.len(), 4);
    assert_eq!(r.per_step.len(), 4);
    let (l, h, v, p) = (1.0, 32.0, 64.0, r.params as f64);
    let (mut tokens, mut rows, mut flops, mut flops_all) = (0usize, 0usize, 0.0, 0.0);
    for (i, (b, step)) in batches.iter().zip(&r.per_step).enumerate() {
        assert_eq!(b["index"], i);
        assert_eq!(b["timed"], i >= 1);
        assert_eq!(step.timed, i >= 1);
        let ids = matrix(&b["ids"]);
        let (lengths, seps) = (usizes(&b["lengths"]), usizes(&b["seps"]));
        let loss_mask = matrix(&b["loss_mask"]);
        let targets = matrix(&b["targets"]);
        let positions: Vec<Vec<Vec<usize>>> = b["positions"].as_array().unwrap().iter().map(matrix).collect();
        // [B, S'] with S' the padded row length the model sees (a multiple of 8).
        let width = ids[0].len();
        assert_eq!(ids.len(), 3);
        assert_eq!(width % 8, 0);
        assert!(ids.iter().chain(&targets).chain(&loss_mask).all(|row| row.len() == width));
        assert!(positions.iter().all(|p| p.len() == 2 && p[0].len() == width && p[1].len() == width));
        let longest = *lengths.iter().max().unwrap();
        assert!(longest <= width && width < longest + 8);
        // Loss only on Part B targets of real tokens, 0/1.
        for (row, mask) in loss_mask.iter().enumerate() {
            for (j, &m) in mask.iter().enumerate() {
                assert!(m <= 1);
                assert!(m == 0 || (j >= seps[row] && j < lengths[row]), "batch {i} row {row}: loss at {j}");
            }
        }
        let n_tokens = 3 * longest;
        let n_rows: usize = loss_mask.iter().flatten().sum();
        assert!(n_rows > 0);
        assert_eq!((b["tokens"].as_u64().unwrap() as usize, b["logit_rows"].as_u64().unwrap() as usize), (n_tokens, n_rows));
        assert_eq!((step.tokens, step.logit_rows), (n_tokens, n_rows));
        let attention = 12.0 * l * 3.0 * (longest * longest) as f64 * h;
        let executed = 6.0 * (p - v * h) * n_tokens as f64 + 6.0 * v * h * n_rows as f64 + attention;
        let all_rows = 6.0 * p * n_tokens as f64 + attention;
        assert!(close(step.flops, executed) && close(step.flops_all_rows, all_rows), "{step:?}");
        assert!(step.flops < step.flops_all_rows);
        assert!(step.ms.is_some_and(|ms| ms > 0.0));
        if i >= 1 {
            tokens += n_tokens;
            rows += n_rows;
            flops += executed;
            flops_all += all_rows;
        }
    }
    assert!(close(r.tokens_per_step, tokens as f64 / 3.0));
    assert!(close(r.logit_rows_per_step, rows as f64 / 3.0));
    assert!(close(r.flops_per_step, flops / 3.0));
    assert!(close(r.flops_all_rows_per_step, flops_all / 3.0));
    // Rates over the timed steps' total time; the step time is their median.
    let times: Vec<f64> = r.per_step.iter().filter(|s| s.timed).filter_map(|s| s.ms).collect();
    let total = times.iter().sum::<f64>() / 1e3;
    assert!(close(r.tokens_per_s, tokens as f64 / total));
    assert!(close(r.gflops, flops / total / 1e9));
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(r.step_ms, sorted[1]);
    let dump = r.dump.as_ref().unwrap();
    assert_eq!(dump.bytes, std::fs::metadata(&path).unwrap().len());

    // `write_batches` (--dump-only) writes the very same batches without running the model: the
    // file the GPU check hands to PyTorch is the one its wenhui runs train on.
    let only = dir.path().join("only.jsonl");
    let d = tiny(Some(&only)).write_batches().unwrap();
    assert_eq!(std::fs::read(&only).unwrap(), std::fs::read(&path).unwrap());
    assert_eq!(
        d.per_step.iter().map(|s| (s.tokens, s.logit_rows)).collect::<Vec<_>>(),
        r.per_step.iter().map(|s| (s.tokens, s.logit_rows)).collect::<Vec<_>>()
    );
    assert!(close(d.flops_per_step, r.flops_per_step));
    assert!(close(d.executed_over_all_rows, flops / flops_all));
    assert!(d.executed_over_all_rows < 1.0);
}

fn wenhui(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wenhui")).args(args).output().unwrap()
}

const SHAPE: [&str; 16] =
    ["bench", "train", "--layers", "1", "--hidden", "16", "--heads", "2", "--vocab", "64", "--seq", "16", "--batch", "2", "--steps", "1"];

/// An existing dump is refused (and left as it was) unless `--force`; the file is written
/// whole, through a temporary file that does not stay behind; a directory or a missing
/// directory is refused before anything runs; `--dump-only` needs `--dump-batches`.
#[test]
fn the_dump_file_is_refused_replaced_and_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.jsonl");
    let p = path.to_str().unwrap();
    std::fs::write(&path, "keep me\n").unwrap();
    for extra in [&[][..], &["--dump-only"][..]] {
        let out = wenhui(&[&SHAPE[..], &["--dump-batches", p], extra].concat());
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("already exists") && err.contains("--force"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me\n");
    }
    // --force replaces it, from the timed run and from --dump-only alike.
    for extra in [&[][..], &["--dump-only"][..]] {
        let out = wenhui(&[&SHAPE[..], &["--dump-batches", p, "--force"], extra].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let (header, batches) = read_dump(&path);
        assert_eq!(header["batches"], 2);
        assert_eq!(batches.len(), 2);
        assert_eq!(report["dump"]["bytes"].as_u64().unwrap(), std::fs::metadata(&path).unwrap().len());
        assert_eq!(report["per_step"].as_array().unwrap().len(), 2);
        if extra.is_empty() {
            assert!(report["step_ms"].as_f64().unwrap() > 0.0);
        } else {
            assert_eq!(report["mode"], "dump");
        }
    }
    // A new file, and nothing else left in the directory.
    let fresh = dir.path().join("fresh.jsonl");
    let out = wenhui(&[&SHAPE[..], &["--dump-batches", fresh.to_str().unwrap(), "--dump-only"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["b.jsonl", "fresh.jsonl"]);
    // A directory, a missing directory, --dump-only alone.
    for (args, says) in [
        (vec!["--dump-batches", dir.path().to_str().unwrap(), "--force"], "is a directory"),
        (vec!["--dump-batches", "/nonexistent-wenhui-dir/b.jsonl"], "does not exist"),
        (vec!["--dump-only"], "--dump-batches"),
    ] {
        let out = wenhui(&[&SHAPE[..], &args].concat());
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
