//! `wenhui plot METRICS.jsonl -o loss.png`

use std::path::PathBuf;
use wenhui::train::plot::{plot_metrics, PlotOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Metrics file written by the trainer: one JSON object per line (`step`, `loss`, `lr`, `val_loss`, ...),
    /// or a run directory (its metrics.jsonl).
    metrics: PathBuf,
    /// Output image: `.png` or `.svg`.
    #[arg(short, long, default_value = "loss.png")]
    output: PathBuf,
    /// Also draw the moving average of the train loss over N logged points.
    #[arg(long, value_name = "N", default_value_t = 0)]
    smooth: usize,
    /// Logarithmic loss axis.
    #[arg(long)]
    log_y: bool,
    /// Chart title (default: "Training curves: FILE NAME").
    #[arg(long)]
    title: Option<String>,
    /// Image width in pixels.
    #[arg(long, default_value_t = 1200)]
    width: u32,
    /// Image height in pixels.
    #[arg(long, default_value_t = 700)]
    height: u32,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut title = a.title;
    let metrics = if a.metrics.is_dir() {
        // A run directory: its log, and the run's name in the default title (not "metrics.jsonl").
        let log = a.metrics.join("metrics.jsonl");
        if !log.is_file() {
            anyhow::bail!(
                "{}: is a directory without a metrics.jsonl: pass a run directory of `wenhui pretrain`, `ptune` or `finetune`, \
                 or the metrics file itself",
                a.metrics.display()
            );
        }
        let run = std::path::absolute(&a.metrics).ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        title = title.or(run.map(|name| format!("Training curves: {name}")));
        log
    } else {
        a.metrics.clone()
    };
    let opts = PlotOptions { smooth: a.smooth, log_y: a.log_y, title, width: a.width, height: a.height };
    let s = plot_metrics(&metrics, &a.output, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(());
    }
    let mut line = format!(
        "wrote {} ({}x{}): {} train-loss points, {} validation points, {} learning-rate points, steps {}..{}",
        s.output.display(),
        s.width,
        s.height,
        s.train_points,
        s.val_points,
        s.lr_points,
        s.steps.0,
        s.steps.1
    );
    if let Some(l) = s.last_train_loss {
        line += &format!("; last train loss {}", num(l));
    }
    if let Some((v, step)) = s.best_val_loss {
        line += &format!("; best validation loss {} at step {step}", num(v));
    }
    println!("{line}");
    Ok(())
}

/// A loss for humans: 4 decimals, or scientific notation when very large or small.
fn num(v: f64) -> String {
    if v == 0.0 || (1e-3..1e6).contains(&v.abs()) {
        format!("{v:.4}")
    } else {
        format!("{v:.4e}")
    }
}
