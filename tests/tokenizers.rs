//! Tokenizer parity with the fixtures' `expected.json` (HF tokenizers / transformers / sentencepiece outputs),
//! GLM command-token ids, the character-level tokenizer, save/load round trips and bad inputs.
//!
//! Fixture folder: `$WENHUI_TOKENIZER_FIXTURE`, else `tests/fixtures/tokenizers`.

use std::path::{Path, PathBuf};

use serde_json::Value;
use wenhui::tokenizer::*;

fn fixture() -> PathBuf {
    std::env::var_os("WENHUI_TOKENIZER_FIXTURE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers"))
}

fn expected() -> Value {
    let path = fixture().join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("array of ids").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().expect("array of strings").iter().map(|x| x.as_str().expect("string").to_string()).collect()
}

fn cases<'a>(e: &'a Value, family: &str) -> &'a [Value] {
    e[family]["cases"].as_array().expect("cases")
}

fn load(path: &Path) -> Tokenizer {
    let r = if path.is_dir() { Tokenizer::from_dir(path) } else { Tokenizer::from_file(path) };
    r.unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

fn vocab_size(e: &Value, family: &str) -> u32 {
    e[family]["vocab_size"].as_u64().expect("vocab_size") as u32
}

fn err_msg<T: std::fmt::Debug>(r: wenhui::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

// ---------------------------------------------------------------------------------------------- parity

fn check_bpe(tok: &Tokenizer, source: &str) {
    let e = expected();
    for c in cases(&e, "bpe") {
        let text = c["text"].as_str().expect("text");
        let (got_ids, got_tokens) = tok.encode_with_pieces(text, true).expect("encode");
        assert_eq!(got_ids, ids(&c["ids"]), "{source}: ids of {text:?}");
        assert_eq!(got_tokens, strs(&c["tokens"]), "{source}: tokens of {text:?}");
        assert_eq!(tok.encode(text, false).expect("encode"), got_ids, "{source}: no specials are added");
        assert_eq!(tok.decode(&got_ids, true).expect("decode"), c["decoded"].as_str().expect("decoded"), "{source}: decode of {text:?}");
    }
}

#[test]
fn bpe_tokenizer_json_matches_expected() {
    let tok = load(&fixture().join("bpe/tokenizer.json"));
    assert_eq!(tok.family, TokenizerFamily::ByteLevelBpe);
    check_bpe(&tok, "bpe/tokenizer.json");
}

#[test]
fn bpe_vocab_and_merges_match_expected() {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["vocab.json", "merges.txt"] {
        std::fs::copy(fixture().join("bpe").join(f), dir.path().join(f)).expect("copy");
    }
    let tok = load(dir.path());
    assert_eq!(tok.family, TokenizerFamily::ByteLevelBpe);
    check_bpe(&tok, "vocab.json+merges.txt");
    check_bpe(&load(&dir.path().join("merges.txt")), "from_file(merges.txt)");
}

fn check_wordpiece(tok: &Tokenizer, source: &str) {
    let e = expected();
    for c in cases(&e, "wordpiece") {
        let text = c["text"].as_str().expect("text");
        let enc = tok.encode_full(text, true).expect("encode");
        assert_eq!(enc.get_ids(), ids(&c["ids"]).as_slice(), "{source}: ids of {text:?}");
        assert_eq!(enc.get_tokens(), strs(&c["tokens"]).as_slice(), "{source}: tokens of {text:?}");
        assert_eq!(enc.get_type_ids(), ids(&c["type_ids"]).as_slice(), "{source}: type ids of {text:?}");
        let (plain, pieces) = tok.encode_with_pieces(text, false).expect("encode");
        assert_eq!(plain, ids(&c["ids_no_special"]), "{source}: ids without specials of {text:?}");
        assert_eq!(pieces, strs(&c["tokens_no_special"]), "{source}: tokens without specials of {text:?}");
        let decoded = tok.decode(enc.get_ids(), true).expect("decode");
        assert_eq!(decoded, c["decoded"].as_str().expect("decoded"), "{source}: decode of {text:?}");
    }
    for p in e["wordpiece"]["pairs"].as_array().expect("pairs") {
        let (a, b) = (p["text_a"].as_str().expect("a"), p["text_b"].as_str().expect("b"));
        let enc = tok.encode_pair(a, b, true).expect("encode pair");
        assert_eq!(enc.get_ids(), ids(&p["ids"]).as_slice(), "{source}: pair ids of {a:?} / {b:?}");
        assert_eq!(enc.get_tokens(), strs(&p["tokens"]).as_slice(), "{source}: pair tokens");
        assert_eq!(enc.get_type_ids(), ids(&p["type_ids"]).as_slice(), "{source}: pair type ids");
    }
}

#[test]
fn wordpiece_tokenizer_json_matches_expected() {
    let tok = load(&fixture().join("wordpiece/tokenizer.json"));
    assert_eq!(tok.family, TokenizerFamily::WordPiece);
    check_wordpiece(&tok, "wordpiece/tokenizer.json");
}

#[test]
fn wordpiece_vocab_txt_matches_expected() {
    let tok = load(&fixture().join("wordpiece/vocab.txt"));
    assert_eq!(tok.family, TokenizerFamily::WordPiece);
    check_wordpiece(&tok, "vocab.txt");
}

fn sp_model_path() -> PathBuf {
    fixture().join("sentencepiece/unigram.model")
}

#[test]
fn sentencepiece_unigram_matches_expected() {
    let tok = load(&sp_model_path());
    assert_eq!(tok.family, TokenizerFamily::SentencePiece);
    let normalizer = tok.inner().get_normalizer().expect("normalizer");
    let e = expected();
    for c in cases(&e, "sentencepiece_unigram") {
        let text = c["text"].as_str().expect("text");
        let (got_ids, pieces) = tok.encode_with_pieces(text, true).expect("encode");
        assert_eq!(got_ids, ids(&c["ids"]), "ids of {text:?}");
        assert_eq!(pieces, strs(&c["pieces"]), "pieces of {text:?}");
        assert_eq!(tok.decode(&got_ids, true).expect("decode"), c["decoded"].as_str().expect("decoded"), "decode of {text:?}");
        assert_eq!(tok.decode(&got_ids, false).expect("decode"), c["decoded"].as_str().expect("decoded"), "decode of {text:?}");
        let mut n = tokenizers::NormalizedString::from(text);
        tokenizers::Normalizer::normalize(normalizer, &mut n).expect("normalize");
        assert_eq!(n.get(), c["normalized"].as_str().expect("normalized"), "normalized {text:?}");
    }
}

// ---------------------------------------------------------------------------------------------- GLM command tokens

fn specials(pairs: &[(&str, Option<u32>)]) -> SpecialTokens {
    let mut s = SpecialTokens::default();
    for &(name, id) in pairs {
        let slot = match name {
            "pad" => &mut s.pad,
            "eos" => &mut s.eos,
            "cls" => &mut s.cls,
            "mask" => &mut s.mask,
            "sep" => &mut s.sep,
            "unk" => &mut s.unk,
            "sop" => &mut s.sop,
            "eop" => &mut s.eop,
            "gmask" => &mut s.gmask,
            "smask" => &mut s.smask,
            "dblock" => &mut s.dblock,
            other => panic!("no role {other}"),
        };
        *slot = id;
    }
    s
}

#[test]
fn gpt2_command_token_ids() {
    let v = vocab_size(&expected(), "bpe");
    let want = specials(&[
        ("pad", Some(0)),
        ("eos", Some(0)),
        ("sop", Some(v)),
        ("eop", Some(v + 1)),
        ("cls", Some(v + 2)),
        ("mask", Some(v + 3)),
        ("sep", Some(v + 4)),
        ("unk", Some(v + 5)),
        ("gmask", Some(v + 6)),
        ("smask", Some(v + 7)),
        ("dblock", Some(v + 8)),
    ]);
    for src in ["bpe/tokenizer.json", "bpe/vocab.json"] {
        let tok = load(&fixture().join(src));
        assert_eq!(tok.special, want, "{src}");
        assert_eq!(tok.vocab_size(false), v as usize, "{src}");
        assert_eq!(tok.vocab_size(true), v as usize + 9, "{src}");
        assert_eq!(tok.id_to_token(v + 6).as_deref(), Some("[gMASK]"));
        assert_eq!(tok.special.get("<|endoftext|>").expect("eos"), 0);
        assert_eq!(tok.special.get("[PAD]").expect("pad role"), 0);
        assert_eq!(tok.special.get("[sMASK]").expect("smask"), v + 7);
        assert_eq!(tok.special.get("dblock").expect("dblock"), v + 8);
    }
}

#[test]
fn wordpiece_command_token_ids() {
    let e = expected();
    let v = vocab_size(&e, "wordpiece");
    let sid = |t: &str| e["wordpiece"]["special_ids"][t].as_u64().map(|x| x as u32);
    let want = specials(&[
        ("pad", sid("[PAD]")),
        ("eos", sid("[PAD]")),
        ("cls", sid("[CLS]")),
        ("mask", sid("[MASK]")),
        ("sep", sid("[SEP]")),
        ("unk", sid("[UNK]")),
        ("sop", Some(v)),
        ("eop", Some(v + 1)),
        ("gmask", Some(v + 2)),
        ("smask", Some(v + 3)),
    ]);
    for src in ["wordpiece/tokenizer.json", "wordpiece/vocab.txt"] {
        let tok = load(&fixture().join(src));
        assert_eq!(tok.special, want, "{src}");
        assert_eq!(tok.vocab_size(true), v as usize + 4, "{src}");
        let msg = err_msg(tok.special.get("[dBLOCK]"));
        assert!(msg.contains("[dBLOCK]") && msg.contains("known"), "{msg}");
    }
}

#[test]
fn sentencepiece_command_token_ids() {
    let v = vocab_size(&expected(), "sentencepiece_unigram");
    let tok = load(&sp_model_path());
    let want = specials(&[
        ("pad", Some(v)),
        ("eos", Some(v)),
        ("sep", Some(v + 1)),
        ("cls", Some(v + 2)),
        ("mask", Some(v + 3)),
        ("unk", Some(v + 4)),
        ("sop", Some(v + 6)),
        ("eop", Some(v + 7)),
        ("smask", Some(v + 8)),
        ("gmask", Some(v + 9)),
        ("dblock", Some(v + 10)),
    ]);
    assert_eq!(tok.special, want);
    assert_eq!(tok.id_to_token(v + 5).as_deref(), Some("[UNUSED]"));
    assert_eq!(tok.vocab_size(false), v as usize);
    assert_eq!(tok.vocab_size(true), v as usize + 11);
}

#[test]
fn command_tokens_inside_text() {
    let f = fixture();
    // WordPiece: [MASK] is matched before lower-casing.
    let wp = load(&f.join("wordpiece/vocab.txt"));
    let mask = wp.special.get("[MASK]").expect("mask");
    let ids = wp.encode("hello [MASK] world [gMASK]", false).expect("encode");
    assert_eq!(
        ids,
        [wp.encode("hello", false).unwrap(), vec![mask], wp.encode("world", false).unwrap(), vec![wp.special.gmask.unwrap()]].concat()
    );
    // GPT-2: [MASK] strips the space on its left, like GLM's lstrip command tokens.
    let bpe = load(&f.join("bpe/tokenizer.json"));
    let ids = bpe.encode("Hello [MASK] world", false).expect("encode");
    let want = [bpe.encode("Hello", false).unwrap(), vec![bpe.special.mask.unwrap()], bpe.encode(" world", false).unwrap()].concat();
    assert_eq!(ids, want);
    assert_eq!(bpe.decode(&ids, false).expect("decode"), "Hello[MASK] world");
    assert_eq!(bpe.decode(&ids, true).expect("decode"), "Hello world");
    let sop = bpe.special.sop.unwrap();
    assert_eq!(bpe.encode("<|startofpiece|>", false).expect("encode"), vec![sop]);
    // SentencePiece: the text between command tokens is encoded as a sentence of its own (with its own
    // dummy-prefix `▁`), as in THUDM's tokenizer, which runs sentencepiece on each segment.
    let sp = load(&sp_model_path());
    let (mask, smask) = (sp.special.mask.unwrap(), sp.special.smask.unwrap());
    let ids = sp.encode("你好[MASK]世界[sMASK]", false).expect("encode");
    assert_eq!(ids, [sp.encode("你好", false).unwrap(), vec![mask], sp.encode("世界", false).unwrap(), vec![smask]].concat());
    assert_eq!(sp.decode(&ids, true).expect("decode"), "你好 世界");
}

#[test]
fn padded_sizes_match_the_spec() {
    assert_eq!(padded_vocab_size(50257 + 9), 50304);
    assert_eq!(padded_vocab_size(30522 + 4), 30592);
    assert_eq!(padded_vocab_size(50000 + 11), 50048);
    assert_eq!(padded_vocab_size(128), 128);
    assert_eq!(padded_vocab_size(0), 0);
}

// ---------------------------------------------------------------------------------------------- save / load

fn assert_same(a: &Tokenizer, b: &Tokenizer, texts: &[&str]) {
    assert_eq!(a.family, b.family);
    assert_eq!(a.special, b.special);
    assert_eq!(a.vocab_size(true), b.vocab_size(true));
    for t in texts {
        assert_eq!(a.encode_with_pieces(t, true).unwrap(), b.encode_with_pieces(t, true).unwrap(), "{t:?}");
        let ids = a.encode(t, true).unwrap();
        assert_eq!(a.decode(&ids, false).unwrap(), b.decode(&ids, false).unwrap());
    }
}

#[test]
fn save_and_reload_every_family() {
    let texts = ["Hello [MASK] world", "你好，世界！[gMASK]", "Café 123 <|endoftext|>", ""];
    let f = fixture();
    for src in [f.join("bpe/vocab.json"), f.join("wordpiece/vocab.txt"), sp_model_path()] {
        let tok = load(&src);
        let dir = tempfile::tempdir().expect("tempdir");
        tok.save(dir.path()).expect("save");
        assert!(dir.path().join("tokenizer.json").is_file() && dir.path().join(SIDECAR_FILE).is_file());
        let back = load(dir.path());
        assert_same(&tok, &back, &texts);
        // Saving again over the old files works (atomic replace) and leaves no temporary files.
        back.save(dir.path()).expect("save again");
        let n = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(n, 2, "{}", src.display());
    }
}

// ---------------------------------------------------------------------------------------------- characters

const ZH: &[&str] = &["今天天气很好。", "你好，世界！", "我们今天去公园，好不好？", "天气预报说明天下雨。"];

#[test]
fn char_tokenizer_on_chinese() {
    let vocab = CharVocab::from_corpus(ZH.iter().copied(), 1).expect("vocab");
    assert!(vocab.chars().contains(&'，') && vocab.chars().contains(&'。'));
    let tok = vocab.build().expect("build");
    assert_eq!(tok.family, TokenizerFamily::Chars);
    let want = specials(&[
        ("pad", Some(0)),
        ("eos", Some(0)),
        ("cls", Some(1)),
        ("mask", Some(2)),
        ("sep", Some(3)),
        ("unk", Some(4)),
        ("sop", Some(5)),
        ("eop", Some(6)),
        ("gmask", Some(7)),
        ("smask", Some(8)),
        ("dblock", Some(9)),
    ]);
    assert_eq!(tok.special, want);
    assert_eq!(CharVocab::command_tokens().count() as u32, CharVocab::FIRST_CHAR_ID);
    // The most frequent character gets the first id after the command tokens.
    assert_eq!(tok.id_to_token(CharVocab::FIRST_CHAR_ID).as_deref(), Some("天"));
    assert_eq!(tok.vocab_size(true), vocab.len() + CharVocab::FIRST_CHAR_ID as usize);

    let (ids, pieces) = tok.encode_with_pieces("今天 很好，[MASK]！鳄", true).expect("encode");
    assert_eq!(pieces, ["今", "天", "很", "好", "，", "[MASK]", "！", "[UNK]"]);
    assert_eq!(ids[5], 2);
    assert_eq!(ids[7], 4);
    assert_eq!(tok.decode(&ids, false).expect("decode"), "今天很好，[MASK]！[UNK]");
    assert_eq!(tok.decode(&ids, true).expect("decode"), "今天很好，！");
    assert!(tok.encode("", true).expect("encode").is_empty());

    // min_count drops rare characters.
    let frequent = CharVocab::from_corpus(ZH.iter().copied(), 3).expect("vocab");
    assert!(frequent.chars().contains(&'天') && !frequent.chars().contains(&'园'));
    assert!(CharVocab::from_corpus(ZH.iter().copied(), 1000).is_err());
}

#[test]
fn char_tokenizer_round_trips() {
    let vocab = CharVocab::from_corpus(ZH.iter().copied(), 1).expect("vocab");
    let tok = vocab.build().expect("build");
    let texts = ["今天天气很好。", "[gMASK]你好<|startofpiece|>世界<|endofpiece|>", "abc 今天"];

    let dir = tempfile::tempdir().expect("tempdir");
    tok.save(dir.path()).expect("save");
    assert_same(&tok, &load(dir.path()), &texts);

    let dir2 = tempfile::tempdir().expect("tempdir");
    vocab.write(&dir2.path().join("chars.txt")).expect("write");
    assert_eq!(CharVocab::from_file(&dir2.path().join("chars.txt")).expect("read"), vocab);
    assert_same(&tok, &load(dir2.path()), &texts);
}

// ---------------------------------------------------------------------------------------------- bad input

#[test]
fn bad_inputs_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n);

    std::fs::write(p("vocab.txt"), "").unwrap();
    let msg = err_msg(Tokenizer::from_file(&p("vocab.txt")));
    assert!(msg.contains("vocab.txt") && msg.contains("empty"), "{msg}");

    std::fs::write(p("bad.txt"), b"[PAD]\n[UNK]\n\xff\xfe\n").unwrap();
    let msg = err_msg(Tokenizer::from_file(&p("bad.txt")));
    assert!(msg.contains("bad.txt") && msg.contains("UTF-8"), "{msg}");

    std::fs::write(p("novocab.txt"), "[CLS]\n[SEP]\nhello\n").unwrap();
    let msg = err_msg(Tokenizer::from_file(&p("novocab.txt")));
    assert!(msg.contains("novocab.txt") && msg.contains("[UNK]"), "{msg}");

    for (name, bytes) in [("garbage.model", &b"this is not a protobuf \xff\xff\xff\xff"[..]), ("empty.model", b"")] {
        std::fs::write(p(name), bytes).unwrap();
        let msg = err_msg(Tokenizer::from_file(&p(name)));
        assert!(msg.contains(name), "{msg}");
    }
    let msg = err_msg(Tokenizer::from_file(&p("missing.model")));
    assert!(msg.contains("missing.model"), "{msg}");

    std::fs::write(p("tokenizer.json"), "{\"version\": \"1.0\", \"model\": 3}").unwrap();
    let msg = err_msg(Tokenizer::from_file(&p("tokenizer.json")));
    assert!(msg.contains("tokenizer.json"), "{msg}");

    std::fs::write(p("chars.txt"), "你\n好吗\n").unwrap();
    let msg = err_msg(Tokenizer::from_file(&p("chars.txt")));
    assert!(msg.contains("chars.txt") && msg.contains("line 2"), "{msg}");

    let msg = err_msg(Tokenizer::from_file(&p("weird.bin")));
    assert!(msg.contains("weird.bin"), "{msg}");

    let empty = tempfile::tempdir().expect("tempdir");
    let msg = err_msg(Tokenizer::from_dir(empty.path()));
    assert!(msg.contains(&empty.path().display().to_string()) && msg.contains("tokenizer.json") && msg.contains("*.model"), "{msg}");

    std::fs::write(empty.path().join("vocab.json"), "{\"a\": 0}").unwrap();
    let msg = err_msg(Tokenizer::from_dir(empty.path()));
    assert!(msg.contains("merges.txt is missing"), "{msg}");

    let msg = err_msg(Tokenizer::from_dir(&p("does-not-exist")));
    assert!(msg.contains("does-not-exist"), "{msg}");
}

#[test]
fn bad_special_names_and_ids_are_errors() {
    let tok = load(&fixture().join("wordpiece/vocab.txt"));
    let msg = err_msg(tok.special.get("[FOO]"));
    assert!(msg.contains("unknown special token `[FOO]`") && msg.contains("known: pad=0"), "{msg}");
    assert_eq!(tok.special.get("[MASK]").unwrap(), tok.special.get("mask").unwrap());
    let v = tok.vocab_size(true) as u32;
    let msg = err_msg(tok.decode(&[5, v + 7], true));
    assert!(msg.contains(&(v + 7).to_string()), "{msg}");
}

#[test]
fn sidecar_with_a_bad_id_is_an_error() {
    let tok = load(&fixture().join("wordpiece/vocab.txt"));
    let dir = tempfile::tempdir().expect("tempdir");
    tok.save(dir.path()).expect("save");
    let side = dir.path().join(SIDECAR_FILE);
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&side).unwrap()).unwrap();
    v["special"]["mask"] = Value::from(999_999);
    std::fs::write(&side, v.to_string()).unwrap();
    let msg = err_msg(Tokenizer::from_dir(dir.path()));
    assert!(msg.contains(SIDECAR_FILE) && msg.contains("999999"), "{msg}");
}

// ---------------------------------------------------------------------------------------------- SentencePiece variants

fn piece(s: &str, score: f32, ty: sentencepiece_model::Type) -> sentencepiece_model::SentencePiece {
    sentencepiece_model::SentencePiece { piece: Some(s.into()), score: Some(score), r#type: Some(ty as i32) }
}

fn toy_proto(model_type: sentencepiece_model::ModelType) -> sentencepiece_model::ModelProto {
    use sentencepiece_model::Type::{Control, Normal, Unknown};
    let mut pieces = vec![piece("<unk>", 0.0, Unknown), piece("<s>", 0.0, Control), piece("</s>", 0.0, Control)];
    for (p, score) in [("▁ab", -1.0), ("▁c", -1.5), ("ab", -2.0), ("▁", -3.0), ("a", -4.0), ("b", -5.0), ("c", -6.0)] {
        pieces.push(piece(p, score, Normal));
    }
    sentencepiece_model::ModelProto {
        pieces,
        trainer_spec: Some(sentencepiece_model::TrainerSpec { model_type: Some(model_type as i32), ..Default::default() }),
        normalizer_spec: Some(sentencepiece_model::NormalizerSpec::default()),
        ..Default::default()
    }
}

#[test]
fn sentencepiece_bpe_and_unsupported_types() {
    let origin = Path::new("toy.model");
    for ty in [sentencepiece_model::ModelType::Bpe, sentencepiece_model::ModelType::Unigram] {
        let inner = sentencepiece::from_proto(&toy_proto(ty), origin).expect("build");
        let tok = Tokenizer::from_parts(inner, TokenizerFamily::SentencePiece).expect("wrap");
        let (ids, pieces) = tok.encode_with_pieces("  ab   c ab ", false).expect("encode");
        assert_eq!(pieces, ["▁ab", "▁c", "▁ab"], "{ty:?}");
        assert_eq!(tok.decode(&ids, true).expect("decode"), "ab c ab");
        assert_eq!(tok.special.eos, Some(10));
    }
    let msg = err_msg(sentencepiece::from_proto(&toy_proto(sentencepiece_model::ModelType::Word), origin));
    assert!(msg.contains("toy.model") && msg.contains("WORD") && msg.contains("UNIGRAM, BPE"), "{msg}");
    let empty = sentencepiece_model::ModelProto::default();
    let msg = err_msg(sentencepiece::from_proto(&empty, origin));
    assert!(msg.contains("toy.model") && msg.contains("no pieces"), "{msg}");
}
