//! Writes a classical Chinese poem for a title with inverse prompting, using the poetry GLM
//! embedded in the library (no download, no model directory): the same search as `wenhui poem`.
//!
//! ```text
//! cargo run --release --example poem -- --title 春江 --form 七绝 --seed 1
//! ```
//!
//! Forms: 五绝, 七绝, 五律, 七律 (or wujue, qijue, wulv, qilv). The same seed gives the same poem.

use std::collections::BTreeMap;

use clap::Parser;
use wenhui::generate::inverse::{generate_inverse, Context, InverseOptions, PoemRules, Task};
use wenhui::generate::poetry::{check_poem, to_simplified, Constraints};
use wenhui::model::{load_model, LoadOptions};
use wenhui::tokenizer::Tokenizer;

#[derive(Parser)]
struct Args {
    /// The title (simplified or traditional Chinese).
    #[arg(long, default_value = "春江")]
    title: String,
    /// 五绝, 七绝, 五律 or 七律.
    #[arg(long, default_value = "五绝")]
    form: String,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let title: String = args.title.trim().chars().map(to_simplified).collect();

    // The embedded poetry GLM is unpacked to a cache directory on first use.
    let dir = wenhui::embedded::poetry_model_dir()?;
    let model = load_model(&dir, &LoadOptions::default())?.backbone;
    let tokenizer = Tokenizer::from_dir(&dir)?;

    // Form, rhyme table (平水韵) and no acrostic: the rules every line must follow.
    let constraints = Constraints::parse(&args.form, "pingshui", "")?;
    // The built-in poem task: the prompt layout, the inverse prompt (title given the poem), the search.
    let task = Task::builtin("poem")?;
    let fields =
        task.fields(&BTreeMap::from([("title".to_string(), title.clone()), ("form".to_string(), constraints.form.name().to_string())]))?;

    let cx = Context::new(model.as_ref(), &tokenizer)?;
    let mut rules = PoemRules::new(constraints.clone());
    let opts = InverseOptions { seed: args.seed, ..Default::default() };
    let poem = generate_inverse(&cx, &task, &fields, &mut rules, &opts, None)?;

    println!("《{title}》");
    for line in &poem.units {
        println!("{}", line.text);
    }
    let verdict = check_poem(&poem.text, &constraints)?;
    println!(
        "[{} · seed {} · score {:.2} · {} candidates scored · {:.1} s · rules {}]",
        constraints.form.name(),
        args.seed,
        poem.score,
        poem.candidates_scored,
        poem.elapsed_ms / 1e3,
        if verdict.is_ok() { "ok".to_string() } else { verdict.to_string() }
    );
    Ok(())
}
