//! P-tuning from Rust: the backbone stays frozen and only a small prompt encoder (a bidirectional
//! LSTM + MLP, as in "GPT Understands, Too") is trained; its output vectors take the place of the
//! template's `[P]` pseudo tokens. The task: name the form of a poem (五绝 or 七绝) with the poetry
//! GLM embedded in the library, from eight labelled quatrains; it prints the training loss per step
//! and the accuracy on five poems the encoder never saw, before and after.
//!
//! ```text
//! cargo run --release --example ptune -- --steps 12 --lr 5e-4
//! ```
//!
//! For real runs (data files, dev-set selection, checkpoints, `--resume`) use
//! `wenhui::ptuning::train::tune` or `wenhui ptune`.

use std::collections::BTreeMap;

use anyhow::anyhow;
use clap::Parser;
use wenhui::cloze::{batch_loss, classify_with, ClassifyOptions, ClozeTask, Example};
use wenhui::model::{load_model, LoadOptions};
use wenhui::ptuning::train::linear_schedule;
use wenhui::ptuning::{EncoderKind, LstmHead, PromptEncoder, PromptEncoderConfig};
use wenhui::tokenizer::Tokenizer;
use wenhui::train::optim::{AdamW, AdamWConfig};

/// Eight pseudo tokens where a manual template would have anchor words.
const TASK: &str = r#"
name = "form"
fields = ["poem"]
template = "[P*4] [MASK] [P*4] {poem}"
metrics = ["acc"]
answer = "multi"
verbalizer = [{ label = "五绝", words = ["五言绝句"] }, { label = "七绝", words = ["七言绝句"] }]
"#;

const TRAIN: [(&str, &str); 8] = [
    ("春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。", "五绝"),
    ("朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。", "七绝"),
    ("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "五绝"),
    ("月落乌啼霜满天，江枫渔火对愁眠。姑苏城外寒山寺，夜半钟声到客船。", "七绝"),
    ("千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。", "五绝"),
    ("故人西辞黄鹤楼，烟花三月下扬州。孤帆远影碧空尽，唯有长江天际流。", "七绝"),
    ("床前明月光，疑是地上霜。举头望明月，低头思故乡。", "五绝"),
    ("两个黄鹂鸣翠柳，一行白鹭上青天。窗含西岭千秋雪，门泊东吴万里船。", "七绝"),
];
const TEST: [(&str, &str); 5] = [
    ("红豆生南国，春来发故枝。愿君多采撷，此物最相思。", "五绝"),
    ("黄河远上白云间，一片孤城万仞山。羌笛何须怨杨柳，春风不度玉门关。", "七绝"),
    ("清明时节雨纷纷，路上行人欲断魂。借问酒家何处有，牧童遥指杏花村。", "七绝"),
    ("空山不见人，但闻人语响。返景入深林，复照青苔上。", "五绝"),
    ("独在异乡为异客，每逢佳节倍思亲。遥知兄弟登高处，遍插茱萸少一人。", "七绝"),
];

#[derive(Parser)]
struct Args {
    /// Optimizer steps (each on all eight examples).
    #[arg(long, default_value_t = 12)]
    steps: u64,
    /// Peak learning rate of the prompt encoder.
    #[arg(long, default_value_t = 5e-4)]
    lr: f64,
    /// Steps of linear warmup (then linear decay to 0 at the last step).
    #[arg(long, default_value_t = 3)]
    warmup: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = wenhui::embedded::poetry_model_dir()?;
    // Loaded as plain tensors, not variables: no gradient ever reaches the backbone.
    let model = load_model(&dir, &LoadOptions::default())?.backbone;
    let tokenizer = Tokenizer::from_dir(&dir)?;
    let task = ClozeTask::from_toml(TASK, "form")?;
    let example = |(poem, label): &(&str, &str)| Example {
        fields: BTreeMap::from([("poem".to_string(), poem.to_string())]),
        label: Some(label.to_string()),
        group: None,
    };
    let train: Vec<Example> = TRAIN.iter().map(example).collect();
    let batch: Vec<&Example> = train.iter().collect();

    // One vector per pseudo token, of the model's width, from a seeded encoder.
    let cfg = PromptEncoderConfig {
        kind: EncoderKind::Lstm,
        num_virtual_tokens: task.template.num_pseudo(),
        token_dim: model.info().hidden_size,
        hidden: model.info().hidden_size,
        layers: 2,
        num_transformer_submodules: 1,
        // P-tuning's FewGLUE encoder: Linear(2h, h) → ReLU → Linear(h, D), h = D.
        lstm_head: LstmHead::FewGlue,
    };
    let (encoder, vars) = PromptEncoder::seeded(&cfg, 42, model.device())?.to_trainable()?;
    // The trainable parameters by name, in a fixed order (the same run gives the same numbers).
    let mut params: Vec<_> = vars.data().lock().map_err(|e| anyhow!("{e}"))?.clone().into_iter().collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    // torch's betas and ε, no weight decay: P-tuning's settings.
    let mut optim = AdamW::new(params, AdamWConfig::default())?;

    // Accuracy and mean gold-label probability on the held-out poems, with the current prompt.
    let held_out = |encoder: &PromptEncoder| -> anyhow::Result<String> {
        let opts = ClassifyOptions { prompt: Some(encoder.prompt_embeddings()?.detach()), batch_size: 0 };
        let (mut correct, mut p_gold) = (0, 0.0);
        for (poem, label) in TEST {
            let fields = BTreeMap::from([("poem".to_string(), poem.to_string())]);
            let p = classify_with(model.as_ref(), &tokenizer, &task, &fields, &opts)?;
            correct += usize::from(p.best() == label);
            p_gold += p.labels.iter().zip(&p.probs).find(|(l, _)| *l == label).map_or(0.0, |(_, p)| *p);
        }
        Ok(format!("accuracy {correct}/{}, mean p(gold) {:.3}", TEST.len(), p_gold / TEST.len() as f64))
    };
    println!("held-out before: {}", held_out(&encoder)?);
    for step in 1..=args.steps {
        let prompt = encoder.prompt_embeddings()?;
        let loss = batch_loss(model.as_ref(), &tokenizer, &task, &task.template, &batch, Some(&prompt), None)?;
        let grads = loss.backward()?;
        // Linear warmup and decay as the trainer does (it counts steps from 0, so its first update
        // has the warmup's factor 0, as Hugging Face's schedule); gradients clipped to norm 1.
        let lr = args.lr * linear_schedule(step - 1, args.warmup, args.steps);
        optim.step(&grads, lr, Some(1.0))?;
        println!("step {step:>3}  loss {:.4}", loss.to_scalar::<f32>()?);
    }
    println!("held-out after:  {}", held_out(&encoder)?);
    Ok(())
}
