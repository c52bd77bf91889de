//! Audit fixes of the data commands: `--overwrite` refuses non-corpus folders, stale temp folders are removed,
//! re-splits remove earlier parts, JSON options on non-JSONL input are refused, input folders skip binary
//! files, corpus folders, backups and duplicates, and text splits read back as the same documents.

use std::path::{Path, PathBuf};

use wenhui::data::corpus::TokenCorpus;
use wenhui::data::prepare::{prepare, PrepareOptions};
use wenhui::data::reader::{expand_inputs, InputFormat, ReadOptions};
use wenhui::data::split::{split_lines, SplitPart};
use wenhui::tokenizer::Tokenizer;

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn tok() -> std::result::Result<Tokenizer, Box<dyn std::error::Error>> {
    Ok(Tokenizer::from_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers/bpe"))?)
}

fn scratch(name: &str) -> std::io::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("wenhui-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn over() -> PrepareOptions {
    PrepareOptions { overwrite: true, ..Default::default() }
}

#[test]
fn overwrite_refuses_a_folder_that_is_not_a_corpus() -> TestResult {
    let d = scratch("overwrite")?;
    let input = d.join("in.txt");
    std::fs::write(&input, "hello world\n\nanother one\n")?;
    let out = d.join("out");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("thesis.tex"), "precious")?;
    let e = prepare(std::slice::from_ref(&input), &tok()?, &out, &over()).err().ok_or("replaced a thesis folder")?;
    assert!(e.to_string().contains("thesis.tex") && e.to_string().contains("not a wenhui corpus"), "{e}");
    assert_eq!(std::fs::read_to_string(out.join("thesis.tex"))?, "precious");
    // A corpus folder is replaced; an empty folder is fine.
    std::fs::remove_file(out.join("thesis.tex"))?;
    prepare(std::slice::from_ref(&input), &tok()?, &out, &PrepareOptions::default())?;
    prepare(std::slice::from_ref(&input), &tok()?, &out, &over())?;
    assert_eq!(TokenCorpus::open(&out)?.num_docs(), 2);
    std::fs::remove_dir_all(&d)?;
    Ok(())
}

#[cfg(target_os = "linux")]
#[test]
fn stale_temp_folders_of_dead_processes_are_removed() -> TestResult {
    let d = scratch("stale")?;
    let input = d.join("in.txt");
    std::fs::write(&input, "hello world\n")?;
    // A PID above the kernel's maximum is never alive.
    let stale = d.join("out.tmp-4999999");
    std::fs::create_dir_all(&stale)?;
    std::fs::write(stale.join("shard-00000.bin"), [0u8; 8])?;
    prepare(&[input], &tok()?, &d.join("out"), &PrepareOptions::default())?;
    assert!(!stale.exists());
    std::fs::remove_dir_all(&d)?;
    Ok(())
}

#[test]
fn resplit_removes_parts_of_the_earlier_split() -> TestResult {
    let d = scratch("resplit")?;
    let input = d.join("in.jsonl");
    std::fs::write(&input, (0..40).map(|i| format!("{{\"text\":\"doc {i}\"}}\n")).collect::<String>())?;
    let out = d.join("parts");
    split_lines(&input, &SplitPart::parse_list("a=0.5,b=0.25,c=0.25")?, 1, &out, false)?;
    assert!(out.join("c.jsonl").exists());
    let two = SplitPart::parse_list("a=0.5,b=0.5")?;
    // Same parts a and b (same content), c dropped: refused without --overwrite, naming c.jsonl.
    let e = split_lines(&input, &SplitPart::parse_list("a=0.5,b=0.5")?, 1, &out, false).err().ok_or("left the old c.jsonl")?;
    assert!(e.to_string().contains("--overwrite"), "{e}");
    assert!(out.join("c.jsonl").exists());
    split_lines(&input, &two, 1, &out, true)?;
    assert!(!out.join("c.jsonl").exists());
    // Files this command did not write are named, never removed.
    std::fs::write(out.join("mine.jsonl"), "{}\n")?;
    let e = split_lines(&input, &two, 2, &out, true).err().ok_or("ignored a foreign file")?;
    assert!(e.to_string().contains("mine.jsonl"), "{e}");
    assert!(out.join("mine.jsonl").exists());
    std::fs::remove_dir_all(&d)?;
    Ok(())
}

#[test]
fn text_split_reads_back_as_the_same_documents() -> TestResult {
    let d = scratch("textsplit")?;
    for name in ["in.txt", "noext"] {
        let input = d.join(name);
        std::fs::write(&input, (0..10).map(|i| format!("line {i}\n")).collect::<String>())?;
        let out = d.join(format!("parts-{name}"));
        let r = split_lines(&input, &SplitPart::parse_list("a=0.3,b=0.7")?, 1, &out, false)?;
        let ext = if name == "noext" { "" } else { ".txt" };
        assert!(out.join(format!("a{ext}")).exists());
        let c = d.join(format!("corpus-{name}"));
        let p = prepare(std::slice::from_ref(&out), &tok()?, &c, &PrepareOptions::default())?;
        assert_eq!(p.documents as usize, r.lines);
    }
    std::fs::remove_dir_all(&d)?;
    Ok(())
}

#[test]
fn json_options_need_jsonl_input_and_ndjson_is_jsonl() -> TestResult {
    let d = scratch("ndjson")?;
    let nd = d.join("in.ndjson");
    std::fs::write(&nd, (0..5).map(|i| format!("{{\"body\":\"doc {i}\"}}\n")).collect::<String>())?;
    let txt = d.join("in.txt");
    std::fs::write(&txt, "{\"body\":\"x\"}\n")?;
    let read = ReadOptions { text_field: "body".into(), ..Default::default() };
    let o = PrepareOptions { read: read.clone(), ..Default::default() };
    let r = prepare(&[nd], &tok()?, &d.join("c1"), &o)?;
    assert_eq!(r.documents, 5);
    let e = prepare(std::slice::from_ref(&txt), &tok()?, &d.join("c2"), &o).err().ok_or("ignored --text-field")?;
    assert!(e.to_string().contains("--text-field") && e.to_string().contains("--format jsonl") && e.to_string().contains("in.txt"), "{e}");
    let o = PrepareOptions { read: ReadOptions { format: InputFormat::Jsonl, ..read }, ..Default::default() };
    assert_eq!(prepare(&[txt], &tok()?, &d.join("c3"), &o)?.documents, 1);
    std::fs::remove_dir_all(&d)?;
    Ok(())
}

fn names(files: &[PathBuf], root: &Path) -> Vec<String> {
    files.iter().map(|f| f.strip_prefix(root).unwrap_or(f).display().to_string()).collect()
}

#[test]
fn input_folders_skip_binary_corpora_backups_and_duplicates() -> TestResult {
    let d = scratch("inputs")?;
    let src = d.join("src");
    std::fs::create_dir_all(&src)?;
    std::fs::write(src.join("a.txt"), "hello\n")?;
    std::fs::write(src.join("a.txt~"), "backup\n")?;
    std::fs::write(src.join("blob.bin"), [1u8, 0, 2, 3])?;
    prepare(&[src.join("a.txt")], &tok()?, &src.join("corpus"), &PrepareOptions::default())?;
    let files = expand_inputs(&[src.clone(), src.join("a.txt"), src.join("a.txt")])?;
    assert_eq!(names(&files, &src), vec!["a.txt".to_string()]);
    std::fs::remove_dir_all(&d)?;
    Ok(())
}

/// Command tokens written in the text (`[MASK]` in a code sample) become those tokens, as in the
/// official tokenizer: the report counts such documents (and a warning names the first).
#[test]
fn command_token_text_is_counted() -> TestResult {
    let d = tempfile::tempdir()?;
    let input = d.path().join("code.txt");
    std::fs::write(&input, "plain words here\n\nprint(\"[MASK] here\")\n\nmore plain words\n")?;
    let report = prepare(std::slice::from_ref(&input), &tok()?, &d.path().join("c"), &PrepareOptions::default())?;
    assert_eq!((report.documents, report.command_token_documents), (3, 1));
    Ok(())
}

/// A stop (Ctrl-C in `wenhui data prepare`) ends the run after the batch in hand with an error,
/// leaving neither the output nor its temporary folder.
#[test]
fn a_stopped_prepare_leaves_nothing() -> TestResult {
    let d = tempfile::tempdir()?;
    let input = d.path().join("docs.txt");
    std::fs::write(&input, "one document\n\nanother document\n\na third\n")?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let opts = PrepareOptions { stop: Some(stop), chunk_docs: 1, ..Default::default() };
    let out = d.path().join("c");
    let e = prepare(std::slice::from_ref(&input), &tok()?, &out, &opts).err().ok_or("a stopped run finished")?;
    assert!(e.to_string().contains("stopped before the end"), "{e}");
    let left: Vec<_> = std::fs::read_dir(d.path())?.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("docs.txt")], "left behind: {left:?}");
    Ok(())
}
