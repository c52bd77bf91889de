//! Evaluation: task-level metrics over generated text, and LAMA knowledge probing ([`lama`]).

pub mod lama;
pub mod lm;
pub mod poems;
pub mod rouge;
pub mod seq2seq;
pub mod turing;

/// A progress bar over `total` items on stderr; hidden when stderr is not a terminal.
pub fn progress(total: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let template = format!("{{bar:30}} {{pos}}/{{len}} {what}  {{elapsed}} (eta {{eta}})  {{msg}}");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}
