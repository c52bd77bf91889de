//! `wenhui eval ...`

use crate::cli::eval_poems;

/// `wenhui eval ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Poems with and without inverse prompting: validity, distinct-n, title retrieval by a judge GLM.
    Poems(Box<eval_poems::PoemsArgs>),
}

pub fn run(c: Command) -> anyhow::Result<()> {
    match c {
        Command::Poems(a) => eval_poems::run_poems(*a),
    }
}
