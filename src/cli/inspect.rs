//! `wenhui inspect DIR`

use crate::cli::common::ModelArgs;
use wenhui::model::load_model;
use wenhui::tokenizer::Tokenizer;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(mut a: Args) -> anyhow::Result<()> {
    // A pretraining run directory: its newest checkpoint (a note names it).
    a.model.model = crate::cli::common::model_path(&a.model.model)?;
    let m = load_model(&a.model.model, &a.model.load_options())?;
    let info = m.backbone.info();
    let tokenizer = Tokenizer::find_in_dir(&a.model.dir())?;
    let dtypes: Vec<String> = m.stored_dtypes.iter().map(|(d, n)| format!("{d:?} × {n}")).collect();
    if a.json {
        let tok = tokenizer
            .as_ref()
            .map(|t| serde_json::json!({"family": format!("{:?}", t.family), "vocab_size": t.vocab_size(true), "special": t.special}));
        let out = serde_json::json!({
            "source": m.source, "format": m.format.to_string(), "stored_dtypes": dtypes,
            "parameters": m.parameter_count, "info": info, "config": m.config, "tokenizer": tok,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("model       {} ({})", a.model.model.display(), info.kind);
    println!("weights     {} [{}], stored as {}", m.source.display(), m.format, dtypes.join(", "));
    println!("parameters  {} ({:.2} M)", m.parameter_count, m.parameter_count as f64 / 1e6);
    println!(
        "shape       L={} H={} N={} V={} max positions {}{}",
        info.num_layers,
        info.hidden_size,
        info.num_heads,
        info.vocab_size,
        info.max_positions,
        if info.position_dims == 2 { " (2D: position + block)" } else { "" }
    );
    println!("config      {}", serde_json::to_string(&m.config)?);
    match &tokenizer {
        None => println!(
            "tokenizer   none found in {} (tokenizer.json, vocab.txt, vocab.json+merges.txt, *.model, chars.txt)",
            a.model.dir().display()
        ),
        Some(t) => {
            println!("tokenizer   {:?}, {} tokens", t.family, t.vocab_size(true));
            println!("special ids {}", serde_json::to_string(&t.special)?);
            if t.vocab_size(true) > info.vocab_size {
                println!(
                    "warning     the tokenizer has more ids ({}) than the model's vocabulary ({})",
                    t.vocab_size(true),
                    info.vocab_size
                );
            }
        }
    }
    Ok(())
}
