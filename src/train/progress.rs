//! Progress on stderr for long work: bars on a terminal, and for the training loops plain lines
//! when stderr is redirected to a file (a bar draws nothing there, so a logged run would be
//! silent for hours and lose its "stopped at step N; resume with ..." message).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// A bar over `total` items named `what` on stderr; hidden unless `show` and stderr is a terminal.
pub fn count_bar(show: bool, total: u64, what: &str) -> ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let template = format!("{{spinner}} {{pos}}/{{len}} {what} [{{bar:30}}] {{msg}} {{elapsed}} (eta {{eta}})");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// How a training run reports its progress on stderr: a bar on a terminal; plain lines when
/// stderr is redirected; nothing when progress is off (`--quiet`).
pub(crate) enum Reporter {
    Bar(ProgressBar),
    /// Lines carry their own elapsed time and ETA, measured from `since` over the steps after `start`.
    Lines {
        start: u64,
        steps: u64,
        since: Instant,
    },
    Off,
}

impl Reporter {
    /// A reporter for steps `start + 1 ..= steps`.
    pub(crate) fn new(show: bool, start: u64, steps: u64) -> Self {
        if !show {
            Reporter::Off
        } else if std::io::stderr().is_terminal() {
            let bar = count_bar(true, steps, "steps");
            bar.set_position(start);
            Reporter::Bar(bar)
        } else {
            Reporter::Lines { start, steps, since: Instant::now() }
        }
    }

    /// A logged step's numbers (`loss 2.1, lr 1e-4`): the bar's message, or a line of its own with
    /// the elapsed time and the ETA.
    pub(crate) fn logged(&self, done: u64, numbers: &str) {
        match self {
            Reporter::Bar(bar) => bar.set_message(numbers.to_string()),
            Reporter::Lines { start, steps, since } => {
                let elapsed = since.elapsed();
                let per_step = elapsed.as_secs_f64() / done.saturating_sub(*start).max(1) as f64;
                let eta = Duration::try_from_secs_f64(per_step * steps.saturating_sub(done) as f64).unwrap_or(Duration::MAX);
                stderr_line(format_args!(
                    "step {done}/{steps}: {numbers}, elapsed {}, ETA {}",
                    indicatif::FormattedDuration(elapsed),
                    indicatif::FormattedDuration(eta)
                ));
            }
            Reporter::Off => {}
        }
    }

    /// Steps done so far (the bar's position; lines show it with each logged step).
    pub(crate) fn set_position(&self, done: u64) {
        if let Reporter::Bar(bar) = self {
            bar.set_position(done);
        }
    }

    /// A message above the bar, or a line of its own.
    pub(crate) fn println(&self, msg: &str) {
        match self {
            Reporter::Bar(bar) => bar.println(msg),
            Reporter::Lines { .. } => stderr_line(format_args!("{msg}")),
            Reporter::Off => {}
        }
    }

    /// A message shown even with progress off (`--quiet`): how to resume an interrupted run.
    pub(crate) fn notice(&self, msg: &str) {
        match self {
            Reporter::Bar(bar) => bar.println(msg),
            Reporter::Lines { .. } | Reporter::Off => stderr_line(format_args!("{msg}")),
        }
    }

    /// A message for a log file only: the terminal's output stays as it was.
    pub(crate) fn log_only(&self, msg: &str) {
        if let Reporter::Lines { .. } = self {
            stderr_line(format_args!("{msg}"));
        }
    }

    /// Clears the bar at the end of the run.
    pub(crate) fn finish(&self) {
        if let Reporter::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// One line on stderr. A failed write (a closed pipe, a full disk) is ignored, where `eprintln!`
/// would panic: losing a progress line must not end an hours-long run.
fn stderr_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `note: {msg}` on stderr: a choice the run made for the user (a default it adapted, the
/// checkpoint it took), shown whatever the log level, as a warning would be.
pub(crate) fn note(msg: &str) {
    stderr_line(format_args!("note: {msg}"));
}
