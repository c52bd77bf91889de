//! `wenhui turing prepare`: the pairs of the poetry Turing test (served by `wenhui serve --turing`).

use crate::cli::common::DefaultModel;
use std::path::PathBuf;
use wenhui::error::read_text;
use wenhui::eval::turing::{parse_heldout, prepare_pairs, select_poems, write_pairs, PrepareOptions, HELDOUT_POEMS};
use wenhui::generate::inverse::{Context, Task};
use wenhui::generate::poetry::Form;
use wenhui::model::{load_model, LoadOptions};
use wenhui::tokenizer::Tokenizer;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Generate the pairs ahead: for each held-out title, its human poem and a generated poem of
    /// the same form (JSONL: id, title, form, human, machine).
    Prepare(Box<PrepareArgs>),
}

#[derive(Debug, clap::Args)]
pub struct PrepareArgs {
    /// Where to write the pairs (JSONL).
    #[arg(long, short = 'o', visible_alias = "output")]
    out: PathBuf,
    /// Replace an existing pairs file (the votes collected for it then refer to other pairs).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    model: DefaultModel,
    /// Held-out poems (JSONL with title, form, text), never trained on by the model (default: the
    /// 100 held-out poems shipped with wenhui, assets/eval/heldout-titles.jsonl).
    #[arg(long)]
    poems: Option<PathBuf>,
    /// Most pairs to make (in file order).
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// Base seed: pair i is generated with seed + i.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Forms to use (五绝, 七绝, 五律, 七律; default: all).
    #[arg(long, value_delimiter = ',')]
    forms: Vec<String>,
    /// Rhyme table of the generated poems: pingshui (平水韵), cilin (词林正韵) or xinyun (中华新韵).
    #[arg(long, default_value = "pingshui")]
    rhyme: String,
    /// Live beams (default: the task's).
    #[arg(long)]
    beams: Option<usize>,
    /// Candidates sampled per beam and line (default: the task's).
    #[arg(long)]
    per_beam: Option<usize>,
    /// Refinement rounds (default: the task's).
    #[arg(long)]
    refine: Option<usize>,
}

pub fn run(c: Command) -> anyhow::Result<()> {
    match c {
        Command::Prepare(a) => prepare(*a),
    }
}

fn prepare(a: PrepareArgs) -> anyhow::Result<()> {
    if let Some(p) = &a.poems {
        wenhui::error::check_not_input("--out", &a.out, &[("--poems", p)])?;
    }
    if a.out.exists() && !a.force {
        anyhow::bail!(
            "{} already exists (and votes may have been collected for its pairs); choose another --out, or pass --force to replace it",
            a.out.display()
        );
    }
    let poems = match &a.poems {
        Some(p) => parse_heldout(&read_text(p)?, &p.display().to_string())?,
        None => parse_heldout(HELDOUT_POEMS, "assets/eval/heldout-titles.jsonl")?,
    };
    let forms = a.forms.iter().map(|f| f.parse::<Form>()).collect::<Result<Vec<_>, _>>()?;
    if a.count == 0 {
        anyhow::bail!("--count must be at least 1");
    }
    let opts = PrepareOptions { count: a.count, forms, rhyme: a.rhyme.clone(), seed: a.seed };
    let chosen = select_poems(&poems, &opts).len();
    if chosen < a.count {
        eprintln!("note: only {chosen} held-out poems match the forms; making {chosen} pairs");
    }
    let dir = a.model.dir()?;
    let m = load_model(&dir, &LoadOptions::default())?;
    let tok = Tokenizer::from_dir(&dir)?;
    let cx = Context::new(m.backbone.as_ref(), &tok)?;
    let mut task = Task::builtin("poem")?;
    if let Some(b) = a.beams {
        task.search.set_beams(b);
    }
    if let Some(n) = a.per_beam {
        task.search.per_beam = n;
    }
    if let Some(r) = a.refine {
        task.search.refine_rounds = r;
    }
    task.validate()?;
    let bar = wenhui::train::progress::count_bar(true, chosen as u64, "pairs");
    let mut tick = |done: usize, _: usize| bar.set_position(done as u64);
    let pairs = prepare_pairs(&cx, &task, &poems, &opts, Some(&mut tick))?;
    bar.finish_and_clear();
    write_pairs(&a.out, &pairs)?;
    eprintln!("wrote {} pairs to {}; serve them with `wenhui serve --turing {}`", pairs.len(), a.out.display(), a.out.display());
    Ok(())
}
