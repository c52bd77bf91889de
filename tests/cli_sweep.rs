//! Fixes of the bad-input sweep of the CLI: an output never replaces an input, `export --force`
//! replaces only what export writes, absurd sizes are refused before they crash or hang, a
//! diverged run is an error, a sidecar of another vocabulary is refused, and the messages say
//! what happened.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use wenhui::data::prepare::{prepare, PrepareOptions};
use wenhui::data::reader::ReadOptions;
use wenhui::tokenizer::train::{train_tokenizer, TrainKind, TrainOptions};

use common::{stderr, stdout, wenhui};

/// `out` failed (no panic) with a message holding every one of `want`; returns stderr.
fn failed(what: &str, out: &Output, want: &[&str]) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "{what} succeeded: {}", stdout(out));
    assert!(!err.contains("panicked"), "{what}: {err}");
    for w in want {
        assert!(err.contains(w), "{what}: no `{w}` in: {err}");
    }
    err
}

/// Runs `args`, which must fail with a message holding every one of `want`.
fn refused(args: &[&str], want: &[&str]) -> String {
    failed(&format!("{args:?}"), &wenhui(args), want)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn poetry_model() -> PathBuf {
    wenhui::embedded::poetry_model_dir().unwrap()
}

fn poems() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/poetry-sample.jsonl")
}

/// A char-level corpus of the sample poems in `dir/corpus`.
fn corpus(dir: &Path) -> PathBuf {
    let read = ReadOptions { template: Some("{title}：{text}".into()), ..Default::default() };
    let opts = TrainOptions { kind: TrainKind::Chars, vocab_size: 5000, min_frequency: 1, read: read.clone(), progress: false };
    let tok = train_tokenizer(&[poems()], &opts).unwrap();
    let out = dir.join("corpus");
    prepare(&[poems()], &tok, &out, &PrepareOptions { read, progress: false, ..Default::default() }).unwrap();
    out
}

/// A tiny model that trains in milliseconds.
const SMALL: [&str; 13] =
    ["--quiet", "--layers", "1", "--hidden", "32", "--heads", "2", "--seq-len", "32", "--batch-size", "2", "--steps", "1"];

/// `wenhui pretrain` of a tiny run of `corpus` into `out`, with `extra` flags.
fn pretrain(corpus: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["pretrain", "--corpus", p(corpus), "-o", p(out)];
    args.extend(SMALL);
    args.extend(extra);
    wenhui(&args)
}

// 1. An output is never one of the inputs.

#[test]
fn eval_seq2seq_never_writes_its_predictions_over_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = tmp.path().join("pairs.jsonl");
    let data = "{\"source\":\"春风花草香\",\"target\":\"春日\"}\n";
    std::fs::write(&pairs, data).unwrap();
    // The same file by another spelling is the same file.
    let other = tmp.path().join(".").join("pairs.jsonl");
    refused(&["eval", "seq2seq", "--data", p(&pairs), "--predictions", p(&other)], &["--predictions", "--data"]);
    assert_eq!(std::fs::read_to_string(&pairs).unwrap(), data);
}

#[test]
fn eval_poems_never_writes_its_report_over_the_titles() {
    let tmp = tempfile::tempdir().unwrap();
    let titles = tmp.path().join("titles.jsonl");
    let data = "{\"title\":\"春日\"}\n{\"title\":\"秋夜\"}\n";
    std::fs::write(&titles, data).unwrap();
    let model = poetry_model();
    refused(
        &["eval", "poems", "--titles", p(&titles), "--judge", p(&model), "--methods", "sampling", "--quiet", "-o", p(&titles)],
        &["--output", "--titles"],
    );
    assert_eq!(std::fs::read_to_string(&titles).unwrap(), data);
}

#[test]
fn probe_corpus_never_writes_into_its_lama_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let lama = tmp.path().join("lama");
    std::fs::create_dir(&lama).unwrap();
    let relations = lama.join("relations.jsonl");
    let data = "{\"relation\":\"P19\",\"template\":\"[X] was born in [Y] .\"}\n";
    std::fs::write(&relations, data).unwrap();
    refused(&["probe", "corpus", "--lama", p(&lama), "-o", p(&relations), "--relations", "P19", "--force"], &["--output", "--lama"]);
    assert_eq!(std::fs::read_to_string(&relations).unwrap(), data);
}

#[test]
fn turing_prepare_never_writes_its_pairs_over_the_poems() {
    let tmp = tempfile::tempdir().unwrap();
    let poems = tmp.path().join("ho.jsonl");
    let data = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/eval/heldout-titles.jsonl")).unwrap();
    std::fs::write(&poems, &data).unwrap();
    refused(
        &["turing", "prepare", "-o", p(&poems), "--poems", p(&poems), "--count", "1", "--force", "--beams", "1"],
        &["--out", "--poems"],
    );
    assert_eq!(std::fs::read_to_string(&poems).unwrap(), data);
}

#[test]
fn an_output_that_does_not_exist_yet_is_no_input() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, "x\n").unwrap();
    let fresh = tmp.path().join("new.jsonl");
    assert!(wenhui::error::check_not_input("-o", &fresh, &[("--data", &input)]).is_ok());
    assert!(wenhui::error::check_not_input("-o", Path::new("/no/such/dir/x"), &[("--data", &input)]).is_ok());
    let e = wenhui::error::check_not_input("-o", &input, &[("--data", &fresh), ("--data", &input)]).unwrap_err().to_string();
    assert!(e.contains("-o") && e.contains("--data"), "{e}");
}

// 2. `export --force` replaces only what export writes; its errors name the user's paths.

#[test]
fn export_force_keeps_the_files_beside_a_model() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    let o = pretrain(&c, &run, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mdl = tmp.path().join("mdl");
    let ok = wenhui(&["export", p(&run), "-o", p(&mdl)]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    // An earlier export is replaced.
    let again = wenhui(&["export", p(&run), "-o", p(&mdl), "--force"]);
    assert!(again.status.success(), "{}", stderr(&again));
    // Files beside it (a model card, notes, a folder) are kept: --force replaces the export's own.
    std::fs::write(mdl.join("notes.txt"), "mine").unwrap();
    std::fs::create_dir(mdl.join("sub")).unwrap();
    std::fs::write(mdl.join("sub/y"), "x").unwrap();
    let before = std::fs::metadata(mdl.join("model.safetensors")).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let kept = wenhui(&["export", p(&run), "-o", p(&mdl), "--force"]);
    assert!(kept.status.success(), "{}", stderr(&kept));
    assert_eq!(std::fs::read_to_string(mdl.join("notes.txt")).unwrap(), "mine");
    assert_eq!(std::fs::read_to_string(mdl.join("sub/y")).unwrap(), "x");
    assert!(std::fs::metadata(mdl.join("model.safetensors")).unwrap().modified().unwrap() > before, "the weights were not replaced");
    // A folder of other files that is no model is still refused.
    let other = tmp.path().join("thesis");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("ch1.tex"), "text").unwrap();
    refused(&["export", p(&run), "-o", p(&other), "--force"], &["ch1.tex", "--force"]);
    assert_eq!(std::fs::read_to_string(other.join("ch1.tex")).unwrap(), "text");

    // A checkpoint without weights: the file is named as missing.
    let ck = tmp.path().join("ck");
    std::fs::create_dir(&ck).unwrap();
    for entry in std::fs::read_dir(run.join("checkpoints/step-00000001")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "model.safetensors" && entry.path().is_file() {
            std::fs::copy(entry.path(), ck.join(entry.file_name())).unwrap();
        }
    }
    let err = refused(&["export", p(&ck), "-o", p(&tmp.path().join("m3"))], &["model.safetensors", "missing"]);
    assert!(!err.contains("truncated"), "{err}");

    // An output where nothing can be written is named as given, not as the temporary directory.
    let err = refused(&["export", p(&run), "-o", "/proc/wenhui-sweep-x"], &["/proc/wenhui-sweep-x"]);
    assert!(!err.contains(".tmp-"), "{err}");
}

// 3. Absurd sizes are refused before they crash.

#[test]
fn bench_serve_refuses_more_clients_than_it_may_start() {
    refused(
        &["bench", "serve", "--clients", "100000", "--requests", "1", "--max-seconds", "5", "--max-batch", "1"],
        &["--clients", "1024"],
    );
}

#[test]
fn bench_generate_counts_the_prompts_attention_scores() {
    // 16 TB of attention scores: refused up front instead of being killed for memory.
    refused(
        &[
            "bench",
            "generate",
            "--layers",
            "1",
            "--hidden",
            "32",
            "--heads",
            "2",
            "--vocab",
            "100",
            "--prompt",
            "1000000",
            "--new-tokens",
            "4",
        ],
        &["GB", "--prompt"],
    );
}

#[test]
fn a_document_reader_refuses_an_endless_line() {
    let tmp = tempfile::tempdir().unwrap();
    let model = poetry_model();
    refused(&["data", "prepare", "--tokenizer", p(&model), "-o", p(&tmp.path().join("c")), "/dev/zero"], &["/dev/zero", "line 1", "MiB"]);
    refused(
        &["tokenizer", "train", "--kind", "chars", "--vocab-size", "100", "-o", p(&tmp.path().join("t")), "/dev/zero"],
        &["/dev/zero", "line 1", "MiB"],
    );
}

// 4. `bench serve` refuses zero sizes.

#[test]
fn bench_serve_refuses_zero_requests_tokens_and_seconds() {
    refused(&["bench", "serve", "--clients", "1", "--requests", "0", "--max-batch", "1"], &["--requests"]);
    refused(&["bench", "serve", "--clients", "1", "--requests", "1", "--max-tokens", "0", "--max-batch", "1"], &["--max-tokens"]);
    refused(&["bench", "serve", "--clients", "1", "--requests", "1", "--max-seconds", "0", "--max-batch", "1"], &["--max-seconds"]);
    refused(&["bench", "serve", "--clients", "1", "--requests", "1", "--max-batch", "0"], &["--max-batch"]);
}

#[test]
fn bench_serve_fails_when_no_request_succeeds() {
    // The server refuses a prompt its vocabulary cannot read: every request fails.
    let out = wenhui(&["bench", "serve", "--clients", "1", "--requests", "1", "--max-batch", "1", "--max-seconds", "30", "--prompt", "😀"]);
    failed("bench serve", &out, &["no request succeeded", "--clients 1 --max-batch 1"]);
    assert!(stdout(&out).contains("\"ok\":0"), "{}", stdout(&out));
}

// 5, 6. Pretraining settings that hang or diverge are refused.

#[test]
fn pretrain_bounds_accumulate_lr_and_heads() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    failed("accumulate", &pretrain(&c, &run, &["--accumulate", "18446744073709551615"]), &["--accumulate", "65536"]);
    failed("lr", &pretrain(&c, &run, &["--lr", "1e38"]), &["--lr", "10"]);
    failed("lr", &pretrain(&c, &run, &["--lr", "0"]), &["--lr"]);
    let mut args = vec!["pretrain", "--corpus", p(&c), "-o", p(&run), "--quiet", "--hidden", "32", "--heads", "0", "--steps", "1"];
    args.extend(["--seq-len", "32"]);
    let err = refused(&args, &["--heads", "at least 1"]);
    assert!(!err.contains("divide"), "{err}");
    assert!(!run.exists(), "a refused run left {}", run.display());
}

/// SIGTERM between the micro-batches of a long accumulation stops at once: the step under way
/// is dropped and the last finished one saved, instead of the signal waiting for the step.
#[cfg(unix)]
#[test]
fn sigterm_stops_between_micro_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    let shape = ["--layers", "1", "--hidden", "32", "--heads", "2", "--seq-len", "32", "--batch-size", "2", "--valid-batches", "1"];
    // A step of 1000 micro-batches takes seconds; the signal comes right after the first.
    let mut args = vec!["pretrain", "--quiet", "--steps", "1000", "--accumulate", "1000", "--log-every", "1", "--eval-every", "100000"];
    args.extend(["--save-every", "100000", "--corpus", p(&c), "-o", p(&run)]);
    args.extend(shape);
    let child = common::spawn_until_a_step(&args, &run);
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("stopped at step 1"), "{err}");
    assert_eq!(wenhui::train::checkpoint::load(&run).unwrap().state.step, 1);
    // It resumes from there.
    let o = wenhui(&["pretrain", "--quiet", "--steps", "2", "--accumulate", "2", "--resume", p(&run)]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn pretrain_warns_once_when_validation_cannot_run() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    let mut args = vec!["pretrain", "--corpus", p(&c), "-o", p(&run), "--layers", "1", "--hidden", "32", "--heads", "2"];
    args.extend(["--seq-len", "4096", "--batch-size", "1", "--steps", "1", "--quiet"]);
    let o = wenhui(&args);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.matches("no validation").count(), 1, "{err}");
}

// 7. A sidecar of another vocabulary is refused.

#[test]
fn a_sidecar_whose_ids_spell_other_tokens_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let side = tmp.path().join("side");
    std::fs::create_dir(&side).unwrap();
    for entry in std::fs::read_dir(poetry_model()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), side.join(entry.file_name())).unwrap();
    }
    let sidecar = side.join("wenhui_tokenizer.json");
    let text = std::fs::read_to_string(&sidecar).unwrap();
    assert!(text.contains("\"mask\": 2"), "{text}");
    std::fs::write(&sidecar, text.replace("\"mask\": 2", "\"mask\": 37")).unwrap();
    refused(&["fill", "春[MASK]", "--model", p(&side)], &["wenhui_tokenizer.json", "mask", "37"]);
    // The untouched sidecar loads.
    assert!(wenhui::tokenizer::Tokenizer::from_dir(&poetry_model()).is_ok());
}

// 8. Messages say what happened, and inputs are checked before any output.

#[test]
fn a_negative_length_penalty_is_not_blamed_on_bans() {
    let model = poetry_model();
    let err = refused(&["generate", "--model", p(&model), "--prompt", "春", "--length-penalty=-10", "--num-beams", "2"], &["length"]);
    assert!(!err.contains("banned"), "{err}");
    let err = refused(&["generate", "--model", p(&model), "--prompt", "春", "--length-penalty=1e308", "--num-beams", "2"], &["3.4e38"]);
    assert!(!err.contains("finite"), "{err}");
}

#[test]
fn a_poem_prints_no_title_before_its_acrostic_fails() {
    let out = wenhui(&["poem", "--title", "春日", "--acrostic", "龘齉爨齾"]);
    failed("acrostic", &out, &["龘"]);
    assert_eq!(stdout(&out), "", "printed before the error");
}

#[test]
fn missing_and_special_paths_are_named_for_what_they_are() {
    let err = refused(&["inspect", "/dev/null"], &["/dev/null", "not a regular file"]);
    assert!(!err.contains("no such file"), "{err}");
    let err = refused(&["tokenize", "/nonexistent-wenhui-dir", "a"], &["/nonexistent-wenhui-dir", "does not exist"]);
    assert!(!err.contains("looked for"), "{err}");
}

#[test]
fn a_titles_line_that_is_no_object_says_what_a_line_must_be() {
    let tmp = tempfile::tempdir().unwrap();
    let arr = tmp.path().join("arr.jsonl");
    std::fs::write(&arr, "[1,2]\n").unwrap();
    refused(&["poem", "--titles", p(&arr)], &["line 1", "JSON object", "\"title\""]);
}

#[test]
fn a_lambada_passage_without_a_word_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let emo = tmp.path().join("emo.jsonl");
    std::fs::write(&emo, "{\"text\":\"😀 😀\"}\n").unwrap();
    let err = refused(&["eval", "lm", "--data", p(&emo), "--lambada"], &["no last word", "emoji"]);
    assert!(!err.contains("empty passage"), "{err}");
}

#[test]
fn commands_that_compute_nothing_ignore_the_compute_dtype() {
    let tmp = tempfile::tempdir().unwrap();
    let model = poetry_model();
    let out = wenhui(&["--dtype", "bf16", "tokenize", p(&model), "春"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = wenhui(&["--dtype", "bf16", "data", "split", "-o", p(&tmp.path().join("s")), p(&poems())]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn inputs_the_vocabulary_cannot_read_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = poetry_model();
    let task = tmp.path().join("t.toml");
    std::fs::write(
        &task,
        "name = \"senti\"\nfields = [\"text\"]\ntemplate = \"{text}。这首诗很[MASK]。\"\nanswer = \"single\"\nmetrics = [\"acc\"]\n\
         [[verbalizer]]\nlabel = \"neg\"\nwords = [\"悲\"]\n[[verbalizer]]\nlabel = \"pos\"\nwords = [\"喜\"]\n",
    )
    .unwrap();
    refused(&["classify", "--model", p(&model), "--task", p(&task), ""], &["text", "empty"]);
    refused(&["classify", "--model", p(&model), "--task", p(&task), "😀"], &["text", "[UNK]"]);
    refused(&["logits", p(&model), "--text", "😀"], &["--text", "[UNK]"]);
    refused(&["bench", "poem", "--titles", "😀"], &["😀", "[UNK]"]);
}
