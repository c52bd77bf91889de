//! Progress of `wenhui probe lama` on stderr, as the training commands report theirs
//! ([`crate::train::progress`]): on a terminal a bar over the relations and, while a prompt
//! trains, a second bar over its epochs; when stderr is redirected, one plain line per epoch and
//! per relation (with the elapsed time and an ETA); nothing with progress off (`--quiet`), except
//! notices (a skipped relation).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{FormattedDuration, MultiProgress};

use crate::train::progress::{count_bar, Reporter};

/// The progress of a probe run, handed to the scoring function of every relation.
pub struct ProbeProgress {
    multi: Option<MultiProgress>,
    relations: Reporter,
}

impl ProbeProgress {
    /// Progress over `relations` relations: bars when `show` and stderr is a terminal, plain
    /// lines when `show` and it is not, nothing otherwise.
    pub fn new(show: bool, relations: usize) -> Self {
        if !show {
            Self::hidden()
        } else if std::io::stderr().is_terminal() {
            let multi = MultiProgress::new();
            let bar = multi.add(count_bar(true, relations as u64, "relations"));
            Self { multi: Some(multi), relations: Reporter::Bar(bar) }
        } else {
            Self { multi: None, relations: Reporter::Lines { start: 0, steps: relations as u64, since: Instant::now() } }
        }
    }

    /// No progress at all (notices still go to stderr).
    pub fn hidden() -> Self {
        Self { multi: None, relations: Reporter::Off }
    }

    /// Whether progress goes to stderr as plain lines (stderr is not a terminal).
    pub fn lines(&self) -> bool {
        matches!(self.relations, Reporter::Lines { .. })
    }

    /// Names the relation being probed on the bar.
    pub(crate) fn relation(&self, rel: &str) {
        if let Reporter::Bar(bar) = &self.relations {
            bar.set_message(rel.to_string());
        }
    }

    /// One relation more is done.
    pub(crate) fn relation_done(&self, done: usize) {
        self.relations.set_position(done as u64);
    }

    /// A line above the bars, or a line of its own; nothing with progress off.
    pub fn line(&self, msg: &str) {
        self.relations.println(msg);
    }

    /// A line shown even with progress off: a relation left out, a result file replaced.
    pub fn notice(&self, msg: &str) {
        self.relations.notice(msg);
    }

    /// Progress over the `total` epochs of `relation`'s training: a second bar on a terminal,
    /// a line per epoch when stderr is redirected.
    pub fn epochs(&self, relation: &str, total: usize) -> EpochProgress {
        let out = match (&self.relations, &self.multi) {
            (Reporter::Bar(_), Some(multi)) => Reporter::Bar(multi.add(count_bar(true, total as u64, "epochs"))),
            (Reporter::Lines { .. }, _) => Reporter::Lines { start: 0, steps: total as u64, since: Instant::now() },
            _ => Reporter::Off,
        };
        EpochProgress { relation: relation.to_string(), total, since: Instant::now(), out, multi: self.multi.clone() }
    }

    /// Clears the bars at the end of the run.
    pub(crate) fn finish(&self) {
        self.relations.finish();
    }
}

/// The progress of one relation's training, epoch by epoch (see [`ProbeProgress::epochs`]).
pub struct EpochProgress {
    relation: String,
    total: usize,
    since: Instant,
    out: Reporter,
    multi: Option<MultiProgress>,
}

impl EpochProgress {
    /// Whether the epochs are reported as plain lines on stderr.
    pub fn lines(&self) -> bool {
        matches!(self.out, Reporter::Lines { .. })
    }

    /// After epoch `epoch` (0: before training) with its numbers (`dev P@1 41.0%, best …`): the
    /// bar's position and message, or a line `REL epoch E/N: numbers, elapsed …, at most … left`
    /// (early stopping may end the training sooner; epoch 0 has no times).
    pub fn epoch(&self, epoch: usize, numbers: &str) {
        match &self.out {
            Reporter::Bar(bar) => {
                bar.set_position(epoch as u64);
                bar.set_message(format!("{} {numbers}", self.relation));
            }
            Reporter::Lines { .. } if epoch == 0 => {
                self.out.println(&format!("{} epoch 0/{} (before training): {numbers}", self.relation, self.total));
            }
            Reporter::Lines { .. } => {
                let elapsed = self.since.elapsed();
                let left = elapsed.as_secs_f64() / epoch as f64 * self.total.saturating_sub(epoch) as f64;
                self.out.println(&format!(
                    "{} epoch {epoch}/{}: {numbers}, elapsed {}, at most {} left",
                    self.relation,
                    self.total,
                    FormattedDuration(elapsed),
                    FormattedDuration(Duration::try_from_secs_f64(left).unwrap_or(Duration::MAX))
                ));
            }
            Reporter::Off => {}
        }
    }

    /// Removes the epoch bar.
    pub fn finish(self) {
        if let Reporter::Bar(bar) = &self.out {
            bar.finish_and_clear();
            if let Some(multi) = &self.multi {
                multi.remove(bar);
            }
        }
    }
}
