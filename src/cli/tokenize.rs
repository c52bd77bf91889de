//! `wenhui tokenize DIR "text" [--glm-layout [--fill TEXT]...]`

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use wenhui::data::seq2seq::Seq2seqSample;
use wenhui::generate::blank::{glm_context, BlankTokens};
use wenhui::model::{ModelConfig, ModelKind};
use wenhui::tokenizer::Tokenizer;

/// The legend of `--glm-layout`: how GLM's attention mask (`sep`) treats the two parts.
const LEGEND: &str = "Part A attends bidirectionally to all of Part A; Part B attends to Part A and to earlier Part B tokens";

#[derive(Debug, clap::Args)]
#[command(after_help = "With --glm-layout (GLM only) it prints the input exactly as `wenhui fill` / `generate` feed it: \
                        `[CLS] text`, `[gMASK]` appended when the text has no blank, `eos` unless it ends with `[gMASK]` \
                        (Part A), then Part B: `[sop]` at the first blank's position with block position 1, or with \
                        --fill the given fill(s) as teacher-forced scoring reads them; each row with its 2D position \
                        (position id, block position id) and part, and `sep` = the length of Part A.")]
pub struct Args {
    /// Directory with the tokenizer (tokenizer.json, vocab.txt, vocab.json+merges.txt, *.model or chars.txt), or the tokenizer file.
    dir: PathBuf,
    /// The text.
    text: String,
    /// Do not add the tokenizer's special tokens (e.g. [CLS] ... [SEP]).
    #[arg(long, conflicts_with = "glm_layout")]
    no_special: bool,
    /// Show GLM's model input for the text (GLM models only): each token's id, position id,
    /// block position id and part (A: bidirectional context, B: `[sop]` + fill, causal), and `sep`.
    #[arg(long)]
    glm_layout: bool,
    /// With --glm-layout: a fill of the next blank (repeat for later blanks, in order), shown as
    /// Part B rows `[sop] fill` at the blank's position with block positions 1, 2, …
    #[arg(long, requires = "glm_layout")]
    fill: Vec<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.glm_layout {
        return glm_layout(&a);
    }
    let tok = if a.dir.is_file() { Tokenizer::from_file(&a.dir)? } else { Tokenizer::from_dir(&a.dir)? };
    let (ids, pieces) = tok.encode_with_pieces(&a.text, !a.no_special)?;
    if a.json {
        println!("{}", serde_json::json!({"ids": ids, "pieces": pieces}));
    } else {
        println!("{} tokens", ids.len());
        for (id, piece) in ids.iter().zip(&pieces) {
            println!("{id:>8}  {piece}");
        }
    }
    Ok(())
}

/// One row of the layout.
#[derive(Debug, serde::Serialize)]
struct Row {
    piece: String,
    id: u32,
    position: u32,
    block_position: u32,
    part: &'static str,
}

/// The model's kind and position count from the `config.json` beside the tokenizer, when there is one.
fn model_config(dir: &Path) -> anyhow::Result<Option<ModelConfig>> {
    let model_dir = if dir.is_file() { dir.parent().unwrap_or(Path::new(".")) } else { dir };
    let path = model_dir.join("config.json");
    if !path.is_file() {
        return Ok(None);
    }
    Ok(Some(ModelConfig::from_file(&path)?))
}

fn glm_layout(a: &Args) -> anyhow::Result<()> {
    let config = model_config(&a.dir)?;
    match config.as_ref().map(ModelConfig::kind) {
        Some(ModelKind::Gpt2) => bail!(
            "{}: --glm-layout needs a GLM; this is a GPT-2 model (its input is the token ids as `wenhui tokenize` prints them, \
             positions 0, 1, 2, …, causal attention)",
            a.dir.display()
        ),
        Some(ModelKind::Bert) => bail!(
            "{}: --glm-layout needs a GLM; this is a BERT model (its input is the token ids as `wenhui tokenize` prints them, \
             positions 0, 1, 2, …, bidirectional attention)",
            a.dir.display()
        ),
        Some(ModelKind::Glm) => {}
        // A GLM's tokenizer can be any family (glm-large: BERT's WordPiece; glm-roberta: GPT-2's BPE).
        None => tracing::warn!(
            "{}: no config.json beside the tokenizer, so the layout assumes a GLM (a GPT-2 or BERT reads the ids as plain \
             `wenhui tokenize` prints them)",
            a.dir.display()
        ),
    }
    let tok = if a.dir.is_file() { Tokenizer::from_file(&a.dir)? } else { Tokenizer::from_dir(&a.dir)? };
    let blank_tokens = BlankTokens::from_special(&tok.special)
        .with_context(|| format!("{}: --glm-layout needs a GLM tokenizer (with [MASK]/[gMASK], [sop] and [eop])", a.dir.display()))?;
    let context = glm_context(&tok, &a.text)?;
    let blanks: Vec<usize> = (0..context.len()).filter(|&i| blank_tokens.masks.contains(&context[i])).collect();
    if a.fill.len() > blanks.len() {
        bail!(
            "{} --fill given but the input has {} blank(s) ([MASK]/[sMASK]/[gMASK]): give at most one fill per blank",
            a.fill.len(),
            blanks.len()
        );
    }
    // Part B: `[sop] fill` per given fill, or the first step of blank 1 (`[sop]` alone).
    let fills: Vec<Vec<u32>> =
        if a.fill.is_empty() { vec![Vec::new()] } else { a.fill.iter().map(|f| tok.encode(f, false)).collect::<wenhui::Result<_>>()? };
    // Each blank's rows come from the library's teacher-forced layout (Part A ‖ `[sop]` fill
    // predicting `fill [eop]`), the one seq2seq training and cloze scoring feed the model.
    let mut sep = context.len();
    let mut part_a = None;
    let mut part_b = Vec::new();
    for (fill, &mask_position) in fills.iter().zip(&blanks) {
        let targets: Vec<u32> = fill.iter().copied().chain(std::iter::once(blank_tokens.eop)).collect();
        let sample = Seq2seqSample::part_b(context.clone(), mask_position, blank_tokens.sop, &targets, 0);
        sep = sample.sep;
        let rows = sample
            .tokens
            .iter()
            .zip(&sample.positions)
            .zip(&sample.blocks)
            .map(|((&id, &position), &block_position)| (id, position, block_position));
        let rows: Vec<(u32, u32, u32)> = rows.collect();
        if part_a.is_none() {
            part_a = Some(rows[..sep].to_vec());
        }
        part_b.extend_from_slice(&rows[sep..]);
    }
    let part_a = part_a.unwrap_or_else(|| context.iter().enumerate().map(|(i, &id)| (id, i as u32, 0)).collect());
    if let Some(ModelConfig::Glm(cfg)) = &config {
        let max = cfg.max_sequence_length;
        if context.len() > max {
            bail!(
                "the context has {} tokens but the model has only {max} positions (`wenhui fill` refuses it); shorten the text",
                context.len()
            );
        }
        if let Some(longest) = part_b.iter().map(|r| r.2 as usize).max().filter(|&b| b > max) {
            bail!("a fill needs block position {longest} but the model has only {max}; shorten the fill");
        }
        if !cfg.block_position_encoding {
            tracing::warn!("this GLM has no block position table (block_position_encoding false): only the position ids are fed");
        }
    }
    let piece = |id: u32| tok.id_to_token(id).unwrap_or_else(|| format!("<{id}>"));
    let rows: Vec<Row> = part_a
        .iter()
        .map(|r| (r, "A"))
        .chain(part_b.iter().map(|r| (r, "B")))
        .map(|(&(id, position, block_position), part)| Row { piece: piece(id), id, position, block_position, part })
        .collect();
    if a.json {
        let out = serde_json::json!({"tokens": rows, "sep": sep, "blanks": blanks});
        println!("{out}");
        return Ok(());
    }
    print_table(&rows, sep, &blanks, a.fill.is_empty());
    Ok(())
}

/// Columns a terminal gives `s`: two for East Asian wide characters, one for the rest.
fn display_width(s: &str) -> usize {
    let wide = |c: char| {
        matches!(c as u32, 0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xA000..=0xA4CF
            | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x1F300..=0x1F64F
            | 0x1F900..=0x1F9FF | 0x20000..=0x3FFFD)
    };
    s.chars().map(|c| if wide(c) { 2 } else { 1 }).sum()
}

fn print_table(rows: &[Row], sep: usize, blanks: &[usize], first_step_only: bool) {
    println!("{} tokens, sep = {sep} (Part A = rows 0..{sep}, Part B = rows {sep}..{})", rows.len(), rows.len());
    println!("{LEGEND}.");
    let width = rows.iter().map(|r| display_width(&r.piece)).max().unwrap_or(0).max(5);
    let pad = " ".repeat(width - 5);
    println!("index  piece{pad}        id  position  block position  part");
    for (i, r) in rows.iter().enumerate() {
        let pad = " ".repeat(width - display_width(&r.piece));
        println!("{i:>5}  {}{pad}  {:>8}  {:>8}  {:>14}  {}", r.piece, r.id, r.position, r.block_position, r.part);
    }
    if first_step_only {
        if let Some(first) = blanks.first() {
            println!(
                "Part B shows the first step of blank 1 (index {first}): [sop] at its position, block position 1; \
                 each generated token follows at the same position with block positions 2, 3, … (--fill TEXT shows a fill)"
            );
        }
    }
}
