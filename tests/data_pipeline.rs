//! Corpus → token shards (`wenhui::data`) and tokenizer training (`wenhui::tokenizer::train`): round trips
//! against direct encoding, the input formats, problem policies, atomic/overwrite behaviour, corrupted
//! corpora, training determinism and GLM command-token ids, and the CLI.
//!
//! `tests/fixtures/poetry-sample.jsonl` is the first 200 lines of `shared/data/poetry/tang_jintishi.jsonl`
//! (Tang poems from chinese-poetry/chinese-poetry, MIT, © 2016 JackeyGao; texts public domain).

use std::path::{Path, PathBuf};
use std::process::Command;

use wenhui::data::corpus::TokenCorpus;
use wenhui::data::prepare::{prepare, PrepareOptions, PrepareReport};
use wenhui::data::reader::{InputFormat, OnError, ProblemKind, ReadOptions};
use wenhui::tokenizer::train::{train_tokenizer, TrainKind, TrainOptions};
use wenhui::tokenizer::{CharVocab, Tokenizer, TokenizerFamily};
use wenhui::Result;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn poetry() -> PathBuf {
    fixtures().join("poetry-sample.jsonl")
}

fn bpe_fixture() -> Tokenizer {
    Tokenizer::from_dir(&fixtures().join("tokenizers/bpe")).unwrap()
}

/// The records of the poetry sample.
fn poems() -> Vec<serde_json::Map<String, serde_json::Value>> {
    let text = std::fs::read_to_string(poetry()).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn field(p: &serde_json::Map<String, serde_json::Value>, f: &str) -> String {
    p[f].as_str().unwrap().to_string()
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn opts(format: InputFormat, on_error: OnError) -> PrepareOptions {
    PrepareOptions { read: ReadOptions { format, on_error, ..Default::default() }, ..Default::default() }
}

fn run(inputs: &[PathBuf], tok: &Tokenizer, out: &Path, o: &PrepareOptions) -> Result<PrepareReport> {
    prepare(inputs, tok, out, o)
}

/// Asserts that the corpus holds exactly `docs`, each as `tok.encode(doc, false)`.
fn assert_corpus(out: &Path, tok: &Tokenizer, docs: &[String]) -> TokenCorpus {
    let c = TokenCorpus::open(out).unwrap();
    assert_eq!(c.num_docs(), docs.len());
    let mut total = 0;
    for (i, d) in docs.iter().enumerate() {
        let want = tok.encode(d, false).unwrap();
        assert!(!want.is_empty());
        assert_eq!(c.doc(i).unwrap(), want, "document {i}: {d:?}");
        assert_eq!(c.doc_len(i), want.len());
        total += want.len() as u64;
    }
    assert_eq!(c.num_tokens(), total);
    assert_eq!(c.vocab_size(), tok.vocab_size(true));
    c
}

fn err_text<T>(r: Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn round_trip_with_many_shards_and_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let tok = bpe_fixture();
    let text = std::fs::read_to_string(fixtures().join("tokenizers/corpus_en.txt")).unwrap();
    // Lines format: every non-blank line is a document.
    let docs: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(String::from).collect();
    assert!(docs.len() >= 10);
    let input = write(dir.path(), "corpus.txt", &text);
    let out = dir.path().join("corpus");
    let o = PrepareOptions { shard_tokens: 60, chunk_docs: 3, ..opts(InputFormat::Lines, OnError::Fail) };
    let r = run(&[input], &tok, &out, &o).unwrap();
    let c = assert_corpus(&out, &tok, &docs);
    assert_eq!(r.documents, docs.len() as u64);
    assert_eq!(r.tokens, c.num_tokens());
    assert!(r.shards > 2, "{} shards", r.shards);
    assert_eq!(c.index().shards.len(), r.shards);
    // Every shard but the last reached the limit with its last document, documents never split.
    for s in &c.index().shards[..r.shards - 1] {
        assert!(s.num_tokens >= 60);
    }
    assert_eq!(r.problems.total(), 0);
    assert_eq!(r.sources[0].tokens, r.tokens);
    assert!(r.tokens_per_s > 0.0);
    // Out of range: an error for doc, 0 for doc_len.
    assert!(err_text(c.doc(docs.len())).contains(&format!("{} documents", docs.len())));
    assert_eq!(c.doc_len(docs.len()), 0);
    // The saved tokenizer encodes like the original.
    let saved = c.tokenizer().unwrap();
    assert_eq!(saved.encode(&docs[0], false).unwrap(), tok.encode(&docs[0], false).unwrap());
    assert_eq!(c.tokenizer_dir(), out.join("tokenizer"));
    // No temporary directory left behind.
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-") && !n.contains(".old-")), "{names:?}");
}

#[test]
fn round_trip_with_wordpiece_sentencepiece_and_u32_ids() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixtures().join("tokenizers/corpus_zh_en.txt")).unwrap();
    let docs: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(String::from).collect();
    assert_eq!(docs.len(), 10);
    let input = write(dir.path(), "zh_en.txt", &text);
    for name in ["wordpiece", "sentencepiece"] {
        let tok = Tokenizer::from_dir(&fixtures().join("tokenizers").join(name)).unwrap();
        let out = dir.path().join(name);
        run(std::slice::from_ref(&input), &tok, &out, &opts(InputFormat::Lines, OnError::Fail)).unwrap();
        assert_corpus(&out, &tok, &docs);
    }
    // More than 65536 ids: stored as u32.
    let chars: Vec<char> = (0x4E00..0x4E00 + 70_000).filter_map(char::from_u32).collect();
    let tok = CharVocab::from_chars(chars.iter().copied()).build().unwrap();
    assert!(tok.vocab_size(true) > 1 << 16);
    let docs: Vec<String> = vec![chars[..5].iter().collect(), chars[chars.len() - 5..].iter().collect()];
    let input = write(dir.path(), "wide.txt", docs.join("\n"));
    let out = dir.path().join("wide");
    let r = run(&[input], &tok, &out, &opts(InputFormat::Lines, OnError::Fail)).unwrap();
    assert_eq!(r.dtype, wenhui::data::corpus::TokenDtype::U32);
    let c = assert_corpus(&out, &tok, &docs);
    assert!(c.doc(1).unwrap().iter().all(|&id| id > 1 << 16));
}

#[test]
fn blocks_lines_and_jsonl_with_field_and_template() {
    let dir = tempfile::tempdir().unwrap();
    let tok = bpe_fixture();
    // Blocks, with a byte-order mark, CRLF line endings and several blank lines between blocks.
    let blocks = write(dir.path(), "a.txt", "\u{feff}The keeper climbed\r\nthe stairs.\r\n\r\n\r\n  \nBoats came home.\n\nLast one");
    let b_docs = ["The keeper climbed\nthe stairs.", "Boats came home.", "Last one"].map(String::from);
    let out = dir.path().join("blocks");
    let r = run(std::slice::from_ref(&blocks), &tok, &out, &opts(InputFormat::Auto, OnError::Fail)).unwrap();
    assert_corpus(&out, &tok, &b_docs);
    assert_eq!((r.blank_lines, r.sources[0].lines, r.sources[0].format), (4, 8, InputFormat::Blocks));

    // Lines: the same file gives one document per non-blank line.
    let out = dir.path().join("lines");
    run(std::slice::from_ref(&blocks), &tok, &out, &opts(InputFormat::Lines, OnError::Fail)).unwrap();
    let l_docs = ["The keeper climbed", "the stairs.", "Boats came home.", "Last one"].map(String::from);
    assert_corpus(&out, &tok, &l_docs);

    // JSONL with a custom field, then with a template.
    let jsonl = write(
        dir.path(),
        "b.jsonl",
        "{\"title\":\"Storm\",\"body\":\"Wind from the north-east.\"}\n{\"title\":\"Calm\",\"body\":\"Rain at 21:40\\nthree boats in.\",\"n\":3}\n",
    );
    let mut o = opts(InputFormat::Auto, OnError::Fail);
    o.read.text_field = "body".into();
    let out = dir.path().join("field");
    let r = run(std::slice::from_ref(&jsonl), &tok, &out, &o).unwrap();
    assert_eq!(r.sources[0].format, InputFormat::Jsonl);
    assert_corpus(&out, &tok, &["Wind from the north-east.".into(), "Rain at 21:40\nthree boats in.".into()]);
    o.read.template = Some("{{{title}}}: {body}".into());
    let out = dir.path().join("template");
    run(std::slice::from_ref(&jsonl), &tok, &out, &o).unwrap();
    assert_corpus(&out, &tok, &["{Storm}: Wind from the north-east.".into(), "{Calm}: Rain at 21:40\nthree boats in.".into()]);
    let c = TokenCorpus::open(&out).unwrap();
    assert_eq!(c.index().read.template.as_deref(), Some("{{{title}}}: {body}"));
    o.read.template = Some("no fields".into());
    assert!(err_text(run(&[jsonl], &tok, &dir.path().join("bad-template"), &o)).contains("template"));

    // A directory: its files sorted by path, hidden files left out, subdirectories included.
    let inputs = dir.path().join("inputs");
    std::fs::create_dir_all(inputs.join("sub")).unwrap();
    write(&inputs, "b.txt", "second");
    write(&inputs, "a.txt", "first");
    write(&inputs, ".hidden", "never");
    write(&inputs.join("sub"), "c.txt", "third");
    let out = dir.path().join("dir");
    let r = run(std::slice::from_ref(&inputs), &tok, &out, &opts(InputFormat::Auto, OnError::Fail)).unwrap();
    assert_corpus(&out, &tok, &["first".into(), "second".into(), "third".into()]);
    let paths: Vec<PathBuf> = r.sources.iter().map(|s| s.path.clone()).collect();
    assert_eq!(paths, vec![inputs.join("a.txt"), inputs.join("b.txt"), inputs.join("sub/c.txt")]);
}

/// Trains a character tokenizer on the poetry sample.
fn poetry_chars() -> Tokenizer {
    let o = TrainOptions { kind: TrainKind::Chars, vocab_size: 100_000, min_frequency: 1, ..Default::default() };
    train_tokenizer(&[poetry()], &o).unwrap()
}

#[test]
fn poetry_sample_with_a_trained_char_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let tok = poetry_chars();
    let poems = poems();
    assert_eq!(poems.len(), 200);
    let texts: Vec<String> = poems.iter().map(|p| field(p, "text")).collect();
    // Same vocabulary, in the same order, as CharVocab::from_corpus.
    let vocab = CharVocab::from_corpus(texts.iter().map(String::as_str), 1).unwrap();
    assert_eq!(tok.vocab_size(true), vocab.len() + CharVocab::FIRST_CHAR_ID as usize);
    for (i, c) in vocab.chars().iter().enumerate() {
        assert_eq!(tok.token_to_id(&c.to_string()), Some(CharVocab::FIRST_CHAR_ID + i as u32), "{c}");
    }
    let out = dir.path().join("poetry");
    let r = run(&[poetry()], &tok, &out, &PrepareOptions::default()).unwrap();
    let c = assert_corpus(&out, &tok, &texts);
    // One token per character, never [UNK] (the tokenizer was trained on these texts), no [CLS]/eos added.
    let chars: u64 = texts.iter().map(|t| t.chars().filter(|c| !c.is_whitespace()).count() as u64).sum();
    assert_eq!((r.documents, r.tokens, r.shards), (200, chars, 1));
    let unk = tok.special.unk.unwrap();
    assert!((0..c.num_docs()).all(|i| c.doc(i).unwrap().iter().all(|&id| id != unk && id >= CharVocab::FIRST_CHAR_ID)));
    assert_eq!(tok.decode(&c.doc(0).unwrap(), false).unwrap(), texts[0]);
    assert_eq!(c.index().dtype, wenhui::data::corpus::TokenDtype::U16);
    assert_eq!(c.tokenizer().unwrap().special, tok.special);

    // A template over several fields (characters outside the training texts, like `:`, become [UNK]).
    let mut o = PrepareOptions::default();
    o.read.template = Some("题名:{title} 作者:{author} 正文:{text}".into());
    let out = dir.path().join("template");
    run(&[poetry()], &tok, &out, &o).unwrap();
    let docs: Vec<String> =
        poems.iter().map(|p| format!("题名:{} 作者:{} 正文:{}", field(p, "title"), field(p, "author"), field(p, "text"))).collect();
    assert_corpus(&out, &tok, &docs);
}

#[test]
fn invalid_utf8_skip_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    let tok = bpe_fixture();
    let bad = write(dir.path(), "bad.txt", b"one\ntwo\nth\xffree\nfour\n");
    let out = dir.path().join("out");
    let r = run(std::slice::from_ref(&bad), &tok, &out, &opts(InputFormat::Lines, OnError::Skip)).unwrap();
    assert_corpus(&out, &tok, &["one".into(), "two".into(), "four".into()]);
    assert_eq!((r.problems.invalid_utf8, r.problems.total()), (1, 1));
    let p = &r.first_problems[0];
    assert_eq!((p.kind, p.file.clone(), p.line), (ProblemKind::InvalidUtf8, bad.clone(), Some(3)));
    assert_eq!(r.sources[0].problems, 1);

    let out = dir.path().join("fail");
    let e = err_text(run(std::slice::from_ref(&bad), &tok, &out, &opts(InputFormat::Lines, OnError::Fail)));
    assert!(e.contains("bad.txt") && e.contains("line 3") && e.contains("UTF-8"), "{e}");
    assert!(!out.exists());

    // Blocks: the whole block with the bad line is skipped; the problem names the bad line.
    let out = dir.path().join("blocks");
    let r = run(std::slice::from_ref(&bad), &tok, &out, &opts(InputFormat::Blocks, OnError::Skip));
    let e = err_text(r);
    assert!(e.contains("no documents in") && e.contains("bad.txt"), "{e}");
    let two = write(dir.path(), "two.txt", b"ok block\n\nbad\n\xfe block\n");
    let r = run(&[two], &tok, &out, &opts(InputFormat::Blocks, OnError::Skip)).unwrap();
    assert_corpus(&out, &tok, &["ok block".into()]);
    assert_eq!(r.first_problems[0].line, Some(4));
    assert!(r.first_problems[0].message.contains("line 3"), "{}", r.first_problems[0].message);
}

#[test]
fn jsonl_problems_skip_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    let tok = bpe_fixture();
    let lines = [
        r#"{"text": "first poem"}"#,
        r#"{"text": "broken"#,
        r#"{"title": "no text"}"#,
        r#"{"text": 42}"#,
        r#"{"text": "   "}"#,
        r#"["an", "array"]"#,
        r#"{"text": "last poem"}"#,
    ];
    let input = write(dir.path(), "poems.jsonl", lines.join("\n"));
    let out = dir.path().join("skip");
    let r = run(std::slice::from_ref(&input), &tok, &out, &opts(InputFormat::Auto, OnError::Skip)).unwrap();
    assert_corpus(&out, &tok, &["first poem".into(), "last poem".into()]);
    let c = r.problems;
    assert_eq!((c.malformed_json, c.missing_field, c.non_string_field, c.empty_document, c.total()), (2, 1, 1, 1, 5));
    let found: Vec<(ProblemKind, Option<u64>)> = r.first_problems.iter().map(|p| (p.kind, p.line)).collect();
    assert_eq!(
        found,
        vec![
            (ProblemKind::MalformedJson, Some(2)),
            (ProblemKind::MissingField, Some(3)),
            (ProblemKind::NonStringField, Some(4)),
            (ProblemKind::EmptyDocument, Some(5)),
            (ProblemKind::MalformedJson, Some(6)),
        ]
    );
    assert!(r.first_problems[1].message.contains("`text`") && r.first_problems[1].message.contains("title"));
    let index = TokenCorpus::open(&out).unwrap().index().clone();
    assert_eq!((index.sources[0].documents, index.sources[0].problems), (2, 5));

    // Only the first problems are kept one by one; all are counted.
    let many = write(dir.path(), "many.jsonl", format!("{}{}", "{}\n".repeat(25), lines[0]));
    let r = run(&[many], &tok, &dir.path().join("many"), &PrepareOptions::default()).unwrap();
    assert_eq!((r.problems.missing_field, r.first_problems.len(), r.documents), (25, wenhui::data::reader::MAX_LOGGED_PROBLEMS, 1));

    let e = err_text(run(std::slice::from_ref(&input), &tok, &dir.path().join("fail"), &opts(InputFormat::Auto, OnError::Fail)));
    assert!(e.contains("poems.jsonl") && e.contains("line 2") && e.contains("malformed JSON"), "{e}");
    // Fail on the missing field once the malformed line is gone.
    let input = write(dir.path(), "poems2.jsonl", [lines[0], lines[2]].join("\n"));
    let e = err_text(run(&[input], &tok, &dir.path().join("fail"), &opts(InputFormat::Auto, OnError::Fail)));
    assert!(e.contains("poems2.jsonl") && e.contains("line 2") && e.contains("no field `text`"), "{e}");
}

#[test]
fn empty_and_blank_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let tok = bpe_fixture();
    let empty = write(dir.path(), "empty.txt", "");
    let blank = write(dir.path(), "blank.txt", "\n  \n\t\n\n");
    let good = write(dir.path(), "good.txt", "a document");
    let out = dir.path().join("out");
    for on_error in [OnError::Skip, OnError::Fail] {
        for input in [&empty, &blank] {
            for format in [InputFormat::Blocks, InputFormat::Lines, InputFormat::Jsonl] {
                let e = err_text(run(std::slice::from_ref(input), &tok, &out, &opts(format, on_error)));
                assert!(e.contains("no documents in") && e.contains(input.file_name().unwrap().to_str().unwrap()), "{e}");
                assert!(!out.exists());
            }
        }
    }
    // Among other inputs: skipped and counted, or fatal.
    let r = run(&[empty.clone(), blank.clone(), good.clone()], &tok, &out, &opts(InputFormat::Auto, OnError::Skip)).unwrap();
    assert_corpus(&out, &tok, &["a document".into()]);
    assert_eq!((r.problems.empty_file, r.problems.total(), r.blank_lines), (2, 2, 4));
    assert_eq!(r.first_problems[0].line, None);
    let e = err_text(run(&[good, empty], &tok, &dir.path().join("fail"), &opts(InputFormat::Auto, OnError::Fail)));
    assert!(e.contains("empty.txt") && e.contains("no documents"), "{e}");
    let e = err_text(run(&[dir.path().join("missing.txt")], &tok, &dir.path().join("x"), &PrepareOptions::default()));
    assert!(e.contains("missing.txt"), "{e}");
}

#[test]
fn existing_output_is_kept_unless_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let tok = bpe_fixture();
    let one = write(dir.path(), "one.txt", "only document");
    let two = write(dir.path(), "two.txt", "first\n\nsecond");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    run(std::slice::from_ref(&one), &tok, &out, &PrepareOptions::default()).unwrap(); // an empty directory is fine
    let before = std::fs::read(out.join("index.json")).unwrap();
    let e = err_text(run(std::slice::from_ref(&two), &tok, &out, &PrepareOptions::default()));
    assert!(e.contains("already exists") && e.contains("--overwrite"), "{e}");
    assert_eq!(std::fs::read(out.join("index.json")).unwrap(), before);
    // A failing run with overwrite leaves the old corpus alone too.
    let bad = write(dir.path(), "bad.jsonl", "{oops\n");
    let o = PrepareOptions { overwrite: true, ..opts(InputFormat::Auto, OnError::Fail) };
    assert!(run(&[bad], &tok, &out, &o).is_err());
    assert_eq!(TokenCorpus::open(&out).unwrap().num_docs(), 1);
    run(&[two], &tok, &out, &o).unwrap();
    assert_corpus(&out, &tok, &["first".into(), "second".into()]);
    let file = write(dir.path(), "a-file", "x");
    assert!(err_text(run(&[one], &tok, &file, &o)).contains("not a directory"));
}

#[test]
fn corrupted_corpora_are_rejected_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let tok = bpe_fixture();
    let input = write(dir.path(), "in.txt", "one two three\n\nfour five\n\nsix");
    let good = dir.path().join("good");
    run(&[input], &tok, &good, &PrepareOptions::default()).unwrap();
    let copy = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(d.join("tokenizer")).unwrap();
        for f in ["index.json", "shard-00000.bin", "shard-00000.idx", "tokenizer/tokenizer.json", "tokenizer/wenhui_tokenizer.json"] {
            std::fs::copy(good.join(f), d.join(f)).unwrap();
        }
        d
    };
    let open_err = |d: &Path| err_text(TokenCorpus::open(d));
    assert_eq!(TokenCorpus::open(&good).unwrap().num_docs(), 3);

    let d = copy("truncated");
    let bin = std::fs::read(d.join("shard-00000.bin")).unwrap();
    std::fs::write(d.join("shard-00000.bin"), &bin[..bin.len() - 2]).unwrap();
    let e = open_err(&d);
    assert!(e.contains("shard-00000.bin") && e.contains("truncated"), "{e}");

    let edit = |d: &Path, f: &dyn Fn(&mut serde_json::Value)| {
        let p = d.join("index.json");
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(p, v.to_string()).unwrap();
    };
    let d = copy("lies-tokens");
    edit(&d, &|v| v["num_tokens"] = (v["num_tokens"].as_u64().unwrap() + 1).into());
    let e = open_err(&d);
    assert!(e.contains("index.json") && e.contains("num_tokens"), "{e}");

    let d = copy("lies-docs");
    edit(&d, &|v| {
        v["num_docs"] = 4.into();
        v["shards"][0]["num_docs"] = 4.into();
        v["sources"][0]["documents"] = 4.into();
    });
    assert!(open_err(&d).contains("shard-00000.idx"), "{}", open_err(&d));

    let d = copy("offsets");
    let mut idx = std::fs::read(d.join("shard-00000.idx")).unwrap();
    idx[8..16].copy_from_slice(&1000u64.to_le_bytes());
    std::fs::write(d.join("shard-00000.idx"), idx).unwrap();
    let e = open_err(&d);
    assert!(e.contains("shard-00000.idx") && e.contains("decrease"), "{e}");

    let d = copy("bad-id");
    let mut bin = std::fs::read(d.join("shard-00000.bin")).unwrap();
    bin[2..4].copy_from_slice(&u16::MAX.to_le_bytes());
    std::fs::write(d.join("shard-00000.bin"), bin).unwrap();
    let e = open_err(&d);
    assert!(e.contains("shard-00000.bin") && e.contains("token 1 has id 65535"), "{e}");

    let d = copy("no-tokenizer");
    std::fs::remove_dir_all(d.join("tokenizer")).unwrap();
    let e = open_err(&d);
    assert!(e.contains("tokenizer.json") && e.contains("missing"), "{e}");

    let d = copy("no-index");
    std::fs::remove_file(d.join("index.json")).unwrap();
    assert!(open_err(&d).contains("index.json"));
}

/// A synthetic English-like text with many equally frequent pairs (ties in merge order).
fn synthetic_text() -> String {
    let mut state = 12345u64;
    let mut next = move |n: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let letters: Vec<char> = "etaoinshrdlucmfwyp".chars().collect();
    let mut out = std::fs::read_to_string(fixtures().join("tokenizers/corpus_en.txt")).unwrap();
    for doc in 0..60 {
        for _ in 0..25 {
            let len = 1 + next(7) as usize;
            let word: String = (0..len).map(|_| letters[next(letters.len() as u64) as usize]).collect();
            out.push_str(&word);
            out.push(if next(9) == 0 { ',' } else { ' ' });
        }
        out.push_str(if doc % 3 == 0 { "\n\n" } else { "\n" });
    }
    out
}

#[test]
fn trained_tokenizers_are_deterministic_and_have_glm_command_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let text = write(dir.path(), "train.txt", synthetic_text());
    // WordPiece keeps every character seen: a size below that is refused, naming the least size.
    let small = TrainOptions { kind: TrainKind::WordPiece, vocab_size: 20, min_frequency: 2, ..Default::default() };
    let err = train_tokenizer(std::slice::from_ref(&text), &small).unwrap_err().to_string();
    assert!(err.contains("vocabulary size 20 is too small for WordPiece on this text") && err.contains("use at least"), "{err}");
    let cases = [
        (TrainKind::Bpe, 400, vec![text.clone()]),
        (TrainKind::WordPiece, 300, vec![text.clone()]),
        (TrainKind::Chars, 600, vec![poetry()]),
    ];
    for (kind, vocab_size, inputs) in cases {
        let o = TrainOptions { kind, vocab_size, min_frequency: 2, ..Default::default() };
        let a = train_tokenizer(&inputs, &o).unwrap();
        for _ in 0..2 {
            let b = train_tokenizer(&inputs, &o).unwrap();
            assert_eq!(a.inner().to_string(false).unwrap(), b.inner().to_string(false).unwrap(), "{kind:?} is not deterministic");
        }
        let v = a.vocab_size(false) as u32;
        let s = a.special;
        let got = [s.pad, s.eos, s.cls, s.mask, s.sep, s.unk, s.sop, s.eop, s.gmask, s.smask, s.dblock];
        let want = match kind {
            TrainKind::Bpe => {
                assert_eq!((a.family, v), (TokenizerFamily::ByteLevelBpe, 400));
                assert_eq!(a.id_to_token(0).as_deref(), Some("<|endoftext|>"));
                // GPT-2 layout: <|endoftext|> = pad = eos, then sop, eop, [CLS], [MASK], [SEP], [UNK], [gMASK], [sMASK], [dBLOCK].
                [0, 0, v + 2, v + 3, v + 4, v + 5, v, v + 1, v + 6, v + 7, v + 8].map(Some)
            }
            TrainKind::WordPiece => {
                assert_eq!((a.family, v), (TokenizerFamily::WordPiece, 300));
                assert!(a.id_to_token(300 - 1).unwrap().len() > 1);
                assert_eq!(a.encode("the keeper", true).unwrap()[0], 2);
                assert!(a.encode("the keeper", false).unwrap().iter().all(|&id| id != 1), "known words are not [UNK]");
                let mut w = [0, 0, 2, 4, 3, 1, v, v + 1, v + 2, v + 3].map(Some).to_vec();
                w.push(None);
                w.try_into().unwrap()
            }
            TrainKind::Chars => {
                assert_eq!((a.family, v), (TokenizerFamily::Chars, 600));
                [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map(Some)
            }
        };
        assert_eq!(got, want, "{kind:?}");
        // Saved and loaded: same family, ids and encodings; without the sidecar the family layout gives the same ids.
        let saved = dir.path().join(format!("{kind:?}"));
        a.save(&saved).unwrap();
        let b = Tokenizer::from_dir(&saved).unwrap();
        assert_eq!((b.family, b.special, b.vocab_size(true)), (a.family, a.special, a.vocab_size(true)));
        let sample = "The keeper climbed the spiral stairs [MASK] 秦川雄帝宅";
        assert_eq!(a.encode(sample, false).unwrap(), b.encode(sample, false).unwrap());
        std::fs::remove_file(saved.join("wenhui_tokenizer.json")).unwrap();
        assert_eq!(Tokenizer::from_dir(&saved).unwrap().special, a.special, "{kind:?} without sidecar");
    }
    // Too small vocabularies are refused with the reason.
    let o = TrainOptions { kind: TrainKind::Bpe, vocab_size: 100, ..Default::default() };
    assert!(err_text(train_tokenizer(std::slice::from_ref(&text), &o)).contains("257"));
    let o = TrainOptions { kind: TrainKind::Chars, vocab_size: 10, ..Default::default() };
    assert!(err_text(train_tokenizer(&[text], &o)).contains("command tokens"));
}

#[test]
fn cli_train_prepare_and_failure() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_wenhui");
    let tok = dir.path().join("tok");
    let out = Command::new(bin)
        .args(["tokenizer", "train", "--kind", "chars", "--vocab-size", "8000", "--min-frequency", "1", "-o"])
        .arg(&tok)
        .arg(poetry())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Chars"));
    let corpus = dir.path().join("corpus");
    let out = Command::new(bin)
        .args(["data", "prepare", "--json", "--tokenizer"])
        .arg(&tok)
        .arg("-o")
        .arg(&corpus)
        .args(["--template", "{title}:{text}"])
        .arg(poetry())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["documents"], 200);
    let c = TokenCorpus::open(&corpus).unwrap();
    assert_eq!(c.num_tokens(), report["tokens"].as_u64().unwrap());
    let t = Tokenizer::from_dir(&tok).unwrap();
    let p = &poems()[7];
    assert_eq!(c.doc(7).unwrap(), t.encode(&format!("{}:{}", field(p, "title"), field(p, "text")), false).unwrap());

    let bad = write(dir.path(), "bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"ok\"}\n{\"text\": 1}\n");
    let out = Command::new(bin)
        .args(["data", "prepare", "--on-error", "fail", "--tokenizer"])
        .arg(&tok)
        .arg("-o")
        .arg(dir.path().join("never"))
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad.jsonl") && stderr.contains("line 3") && stderr.contains("not a string"), "{stderr}");
    assert!(!dir.path().join("never").exists());
}
