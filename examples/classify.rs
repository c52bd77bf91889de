//! A cloze task from Rust: a template turns an example into a text with one `[MASK]`, and a
//! verbalizer maps each label to the words that would fill it; the model scores every label's
//! words and the scores become probabilities. Here the poetry GLM embedded in the library names
//! the form of a poem (五绝 / 七绝 / 五律 / 七律) by filling the 体裁 (form) slot of the layout it
//! was pretrained on. The labels' words are several tokens long, so the task uses
//! `answer = "multi"` (each answer scored as GLM Part B).
//!
//! ```text
//! cargo run --release --example classify
//! cargo run --release --example classify -- "空山新雨后，天气晚来秋。明月松间照，清泉石上流。竹喧归浣女，莲动下渔舟。随意春芳歇，王孙自可留。"
//! ```

use std::collections::BTreeMap;

use wenhui::cloze::{classify, ClozeTask};
use wenhui::model::{load_model, LoadOptions};
use wenhui::tokenizer::Tokenizer;

/// The task, as a task file would hold it (`wenhui classify --task FILE.toml` reads the same).
const TASK: &str = r#"
name = "form"
fields = ["poem"]
template = "题名：无题；作者：佚名；体裁：[MASK]；正文：{poem}"
metrics = ["acc"]
answer = "multi"
verbalizer = [
    { label = "五绝", words = ["五言绝句"] },
    { label = "七绝", words = ["七言绝句"] },
    { label = "五律", words = ["五言律诗"] },
    { label = "七律", words = ["七言律诗"] },
]
"#;

const DEFAULT_POEM: &str = "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。";

fn main() -> anyhow::Result<()> {
    let poem = std::env::args().nth(1).unwrap_or_else(|| DEFAULT_POEM.to_string());

    let dir = wenhui::embedded::poetry_model_dir()?;
    let model = load_model(&dir, &LoadOptions::default())?.backbone;
    let tokenizer = Tokenizer::from_dir(&dir)?;
    let task = ClozeTask::from_toml(TASK, "form")?;

    // One example: field name → text.
    let example = BTreeMap::from([("poem".to_string(), poem.clone())]);
    let prediction = classify(model.as_ref(), &tokenizer, &task, &example)?;

    println!("{poem}");
    for ((label, p), score) in prediction.labels.iter().zip(&prediction.probs).zip(&prediction.scores) {
        let mark = if label == prediction.best() { "*" } else { " " };
        println!("{mark} {label}  p {p:.4}  log-prob {score:>8.3}");
    }
    Ok(())
}
