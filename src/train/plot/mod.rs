//! Training curves from the trainer's metrics JSONL: `wenhui plot METRICS.jsonl -o loss.png`.
//!
//! Each line of the metrics file is one JSON object. Training lines carry `step` and `loss` (and
//! usually `lr`, `tokens_per_s`, `grad_norm`, `elapsed_s`); validation lines carry `step` and
//! `val_loss` (and `val_ppl`). Any field may be missing or `null` on a line, and unknown fields are
//! ignored. The chart shows train loss (a line; optionally with its moving average) and validation
//! loss (markers joined by a line) against the step on the left axis, and the learning rate on a
//! secondary right axis. Dev scores (`ptune`/`finetune`'s `"dev": {"acc": …}` lines, seq2seq's
//! `dev_score`) go into a second panel below, on their own axis. PNG or SVG, picked by the
//! output's extension.
//!
//! All text is drawn with an embedded font (Roboto, Apache-2.0, `assets/fonts/`) through plotters'
//! pure-Rust `ab_glyph` backend: no system fonts, fontconfig or freetype are needed.
//!
//! ```no_run
//! use wenhui::train::plot::{plot_metrics, PlotOptions};
//! let opts = PlotOptions { smooth: 20, ..PlotOptions::default() };
//! let summary = plot_metrics("runs/a/metrics.jsonl".as_ref(), "loss.png".as_ref(), &opts)?;
//! println!("{} train points, {} validation points", summary.train_points, summary.val_points);
//! # Ok::<(), wenhui::Error>(())
//! ```

mod chart;

use crate::error::{read_text, Error, Result};
use chart::{register_font, write_png, Chart};
use plotters::prelude::{BitMapBackend, SVGBackend};
use std::path::{Path, PathBuf};

/// How to draw the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotOptions {
    /// Moving-average window (in logged points) for the train loss; 0 or 1 draws the raw curve only.
    /// With a window > 1 the raw curve is drawn faintly behind the average.
    pub smooth: usize,
    /// Logarithmic loss axis (points with a loss ≤ 0 are left out).
    pub log_y: bool,
    /// Chart title; `None` uses "Training curves: FILE NAME".
    pub title: Option<String>,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
}

impl Default for PlotOptions {
    fn default() -> Self {
        Self { smooth: 0, log_y: false, title: None, width: 1200, height: 700 }
    }
}

/// The image format, chosen from the output's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// `.png`: an 8-bit RGB bitmap.
    Png,
    /// `.svg`: vector graphics; text is stored as text.
    Svg,
}

impl ImageFormat {
    /// The format for an output path: `.png` or `.svg` (any case); anything else is an error.
    pub fn from_path(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("png") => Ok(Self::Png),
            Some("svg") => Ok(Self::Svg),
            _ => Err(Error::input(format!("output {}: the file name must end in .png or .svg", path.display()))),
        }
    }
}

/// The curves read from a metrics file, each as `(step, value)` sorted by step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// `loss` of training lines.
    pub train_loss: Vec<(f64, f64)>,
    /// `val_loss` of validation lines (`dev_loss` for `finetune --task seq2seq`).
    pub val_loss: Vec<(f64, f64)>,
    /// `lr` of training lines (or `lr_factor`, the schedule's factor that `ptune`/`finetune` log).
    pub lr: Vec<(f64, f64)>,
    /// The learning-rate series holds factors of the peak rate (`lr_factor`), not rates.
    pub lr_is_factor: bool,
    /// Dev scores by name: each number of a `dev` object (`ptune`/`finetune`: `acc`, `f1`, …)
    /// and seq2seq's `dev_score` (as `score`).
    pub dev_scores: std::collections::BTreeMap<String, Vec<(f64, f64)>>,
    /// Non-blank lines read.
    pub lines: usize,
    /// Whether an unfinished last line (no trailing newline, not valid JSON, e.g. while the trainer
    /// is still writing it) was skipped.
    pub skipped_partial_last_line: bool,
}

/// What [`plot_metrics`] drew.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlotSummary {
    /// The file written.
    pub output: PathBuf,
    /// Its format.
    pub format: ImageFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Train-loss points drawn.
    pub train_points: usize,
    /// Validation-loss points drawn.
    pub val_points: usize,
    /// Dev-score points drawn (all scores together; 0 = no score panel).
    pub dev_score_points: usize,
    /// Learning-rate points drawn (0 = no right axis).
    pub lr_points: usize,
    /// Smallest and largest step on the x axis.
    pub steps: (f64, f64),
    /// The last train loss, if any.
    pub last_train_loss: Option<f64>,
    /// The lowest validation loss and its step, if any.
    pub best_val_loss: Option<(f64, f64)>,
    /// Whether an unfinished last line of the metrics file was skipped.
    pub skipped_partial_last_line: bool,
}

/// Reads a metrics JSONL file. Errors name the file (and `file:line` for a bad line); a file with no
/// non-blank line is an error, one without plottable points is not (see [`plot_metrics`]).
pub fn read_metrics(path: &Path) -> Result<Metrics> {
    let text = read_text(path)?;
    let mut m = Metrics::default();
    let numbered: Vec<(usize, &str)> = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).collect();
    let last_idx = numbered.len().checked_sub(1);
    for (k, &(i, line)) in numbered.iter().enumerate() {
        let at = || PathBuf::from(format!("{}:{}", path.display(), i + 1));
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) if Some(k) == last_idx && !text.ends_with('\n') && k > 0 => {
                m.skipped_partial_last_line = true;
                tracing::warn!("{}: skipping the unfinished last line", at().display());
                continue;
            }
            Err(e) => return Err(Error::file(at(), format!("malformed JSON: {e}"))),
        };
        let obj = value.as_object().ok_or_else(|| Error::file(at(), "each line must be a JSON object"))?;
        m.lines += 1;
        let field = |name: &str| -> Result<Option<f64>> {
            match obj.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or_else(|| Error::file(at(), format!("field `{name}` must be a number, found {v}"))),
            }
        };
        let Some(step) = field("step")? else { continue };
        if let Some(loss) = field("loss")? {
            m.train_loss.push((step, loss));
        }
        if let Some(val) = field("val_loss")?.or(field("dev_loss")?) {
            m.val_loss.push((step, val));
        }
        if let Some(score) = field("dev_score")? {
            m.dev_scores.entry("score".into()).or_default().push((step, score));
        }
        if let Some(dev) = obj.get("dev").and_then(|d| d.as_object()) {
            for (name, v) in dev {
                if let Some(v) = v.as_f64() {
                    m.dev_scores.entry(name.clone()).or_default().push((step, v));
                }
            }
        }
        if let Some(lr) = field("lr")? {
            m.lr.push((step, lr));
        } else if let Some(factor) = field("lr_factor")? {
            m.lr.push((step, factor));
            m.lr_is_factor = true;
        }
    }
    if m.lines == 0 {
        return Err(Error::file(path, "empty metrics file (no JSON lines)"));
    }
    for series in [&mut m.train_loss, &mut m.val_loss, &mut m.lr].into_iter().chain(m.dev_scores.values_mut()) {
        series.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Ok(m)
}

/// Trailing moving average over `window` points (the first points average what is there so far).
/// A window of 0 or 1 returns the points unchanged.
pub fn moving_average(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    if window <= 1 {
        return points.to_vec();
    }
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= window {
                sum -= points[i - window].1;
            }
            (x, sum / (i + 1).min(window) as f64)
        })
        .collect()
}

/// Reads `metrics` (JSONL, see the module docs) and draws the training curves to `out` (`.png` or
/// `.svg`). Errors: unreadable, empty or malformed metrics file (naming `file:line`), no line with
/// a `step` and a `loss` or `val_loss`, an output name not ending in `.png`/`.svg`, or a write failure.
pub fn plot_metrics(metrics: &Path, out: &Path, opts: &PlotOptions) -> Result<PlotSummary> {
    let format = ImageFormat::from_path(out)?;
    if opts.width < 200 || opts.height < 150 || opts.width > 10_000 || opts.height > 10_000 {
        return Err(Error::input(format!("image size {}x{}: width must be 200..=10000 and height 150..=10000", opts.width, opts.height)));
    }
    if out.canonicalize().is_ok_and(|o| metrics.canonicalize().is_ok_and(|m| m == o)) {
        return Err(Error::file(out, "is the metrics file itself; writing the chart there would destroy it: pick another -o"));
    }
    let m = read_metrics(metrics)?;
    let keep = |pts: &[(f64, f64)]| -> Vec<(f64, f64)> { pts.iter().copied().filter(|&(_, y)| !opts.log_y || y > 0.0).collect() };
    let train = keep(&m.train_loss);
    let val = keep(&m.val_loss);
    if train.is_empty() && val.is_empty() && m.dev_scores.is_empty() {
        let why =
            if opts.log_y && (!m.train_loss.is_empty() || !m.val_loss.is_empty()) { " (with --log-y only losses > 0 count)" } else { "" };
        return Err(Error::file(
            metrics,
            format!("no plottable points: no line has a `step` with a `loss`, `val_loss` or dev scores{why}"),
        ));
    }
    let title = opts.title.clone().unwrap_or_else(|| {
        let name = metrics.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        format!("Training curves: {name}")
    });
    let chart = Chart {
        title,
        train_smooth: moving_average(&train, opts.smooth),
        train,
        val,
        lr: m.lr,
        dev: m.dev_scores,
        lr_label: if m.lr_is_factor { "learning-rate factor" } else { "learning rate" },
        smooth: opts.smooth,
        log_y: opts.log_y,
    };
    if !chart.ranges_ok() {
        return Err(Error::file(metrics, "values too extreme to plot: an axis range would overflow f64"));
    }
    let size = (opts.width, opts.height);
    register_font();
    let draw_err = |e: String| Error::file(out, format!("drawing the chart failed: {e}"));
    match format {
        ImageFormat::Png => {
            let mut rgb = vec![0u8; opts.width as usize * opts.height as usize * 3];
            chart.render(BitMapBackend::with_buffer(&mut rgb, size)).map_err(draw_err)?;
            write_png(out, &rgb, opts.width, opts.height)?;
        }
        ImageFormat::Svg => {
            let mut svg = String::new();
            chart.render(SVGBackend::with_string(&mut svg, size)).map_err(draw_err)?;
            std::fs::write(out, svg).map_err(|e| Error::io(out, e))?;
        }
    }
    let (lo, hi) = chart.step_range();
    Ok(PlotSummary {
        output: out.to_path_buf(),
        format,
        width: opts.width,
        height: opts.height,
        train_points: chart.train.len(),
        val_points: chart.val.len(),
        dev_score_points: chart.dev.values().map(Vec::len).sum(),
        lr_points: chart.lr.len(),
        steps: (lo, hi),
        last_train_loss: chart.train.last().map(|p| p.1),
        best_val_loss: chart.val.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1)).map(|(s, v)| (v, s)),
        skipped_partial_last_line: m.skipped_partial_last_line,
    })
}
