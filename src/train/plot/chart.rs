//! Drawing the chart of [`super::plot_metrics`]: the loss panel (train, smoothed train,
//! validation, learning rate on a secondary axis) and the dev-score panel, PNG encoding, the
//! embedded font and a readable log axis.

use crate::error::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

/// The embedded font (Roboto Regular, Apache-2.0; see `assets/fonts/README.md`).
static FONT: &[u8] = include_bytes!("../../../assets/fonts/Roboto-Regular.ttf");

const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOR: RGBColor = RGBColor(214, 39, 40);
const LR_COLOR: RGBColor = RGBColor(44, 160, 44);

/// Registers the embedded font as plotters' "sans-serif" family (once per process).
pub(super) fn register_font() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // The bytes are a valid TrueType file checked in with the source; a failure here would only
        // mean a corrupted checkout, and then text is simply not drawn.
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            tracing::warn!("the embedded font could not be parsed; chart text will be missing");
        }
    });
}

pub(super) fn write_png(path: &Path, rgb: &[u8], width: u32, height: u32) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let io = |e: png::EncodingError| Error::file(path, format!("writing PNG: {e}"));
    let mut w = enc.write_header().map_err(io)?;
    w.write_image_data(rgb).map_err(io)?;
    w.finish().map_err(io)
}

/// The prepared series and how to draw them.
pub(super) struct Chart {
    pub(super) title: String,
    pub(super) train: Vec<(f64, f64)>,
    pub(super) train_smooth: Vec<(f64, f64)>,
    pub(super) val: Vec<(f64, f64)>,
    pub(super) lr: Vec<(f64, f64)>,
    /// Dev scores by name, drawn in a panel of their own below the losses.
    pub(super) dev: std::collections::BTreeMap<String, Vec<(f64, f64)>>,
    /// The right axis label.
    pub(super) lr_label: &'static str,
    pub(super) smooth: usize,
    pub(super) log_y: bool,
}

impl Chart {
    pub(super) fn step_range(&self) -> (f64, f64) {
        let steps = self.train.iter().chain(&self.val).chain(self.dev.values().flatten()).map(|p| p.0);
        let lo = steps.clone().fold(f64::INFINITY, f64::min);
        let hi = steps.fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    }

    /// Loss axis range with a margin (multiplicative on a log axis).
    fn loss_range(&self) -> Range<f64> {
        let ys = self.train.iter().chain(&self.val).map(|p| p.1);
        let lo = ys.clone().fold(f64::INFINITY, f64::min);
        let hi = ys.fold(f64::NEG_INFINITY, f64::max);
        if lo > hi {
            return if self.log_y { 0.1..10.0 } else { 0.0..1.0 }; // no loss to show (scores only)
        }
        if self.log_y {
            let (lo, hi) = if hi / lo < 1.01 { (lo / 1.1, hi * 1.1) } else { (lo, hi) };
            let pad = (hi / lo).powf(0.04);
            lo / pad..hi * pad
        } else {
            let span = if hi - lo > f64::EPSILON * hi.abs().max(1.0) { hi - lo } else { hi.abs().max(1.0) * 0.1 };
            lo - 0.05 * span..hi + 0.05 * span
        }
    }

    /// Step axis range with a margin (not below 0 when all steps are ≥ 0).
    fn x_range(&self) -> Range<f64> {
        let (lo, hi) = self.step_range();
        let pad = if hi > lo { 0.02 * (hi - lo) } else { hi.abs().max(1.0) * 0.01 };
        (lo - pad).max(if lo >= 0.0 { 0.0 } else { f64::NEG_INFINITY })..hi + pad
    }

    /// Learning-rate axis range: from 0 (or the lowest rate) to a bit above the highest.
    fn lr_range(&self) -> Range<f64> {
        let lr_max = self.lr.iter().map(|p| p.1).fold(0.0f64, f64::max);
        let lr_min = self.lr.iter().map(|p| p.1).fold(0.0f64, f64::min);
        if lr_max > lr_min {
            lr_min..lr_max * 1.08
        } else {
            lr_min..lr_min.abs().max(1e-12) * 1.1
        }
    }

    /// Whether every axis has a finite, non-empty range (values near ±f64::MAX overflow them).
    pub(super) fn ranges_ok(&self) -> bool {
        [self.x_range(), self.loss_range(), self.lr_range()].iter().all(|r| r.start.is_finite() && r.end.is_finite() && r.end > r.start)
    }

    pub(super) fn render<DB: DrawingBackend>(&self, backend: DB) -> std::result::Result<(), String> {
        let root = backend.into_drawing_area();
        self.draw(&root)?;
        root.present().map_err(|e| e.to_string())
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        let (x, y) = (self.x_range(), self.loss_range());
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        // Scores (accuracy, F1, ROUGE) have their own scale: a panel below the losses.
        let (top, bottom) = match self.dev.is_empty() {
            true => (root.clone(), None),
            false => {
                let (t, b) = root.split_vertically(root.dim_in_pixel().1 * 62 / 100);
                (t, Some(b))
            }
        };
        if self.log_y {
            self.draw_with(&top, x.clone(), LogAxis(y.clone()), y)?;
        } else {
            self.draw_with(&top, x.clone(), y.clone(), y)?;
        }
        match bottom {
            Some(area) => self.draw_scores(&area, x),
            None => Ok(()),
        }
    }

    /// The dev scores against the step, one line with markers per score.
    fn draw_scores<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, x: Range<f64>) -> std::result::Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        let (w, h) = area.dim_in_pixel();
        let scale = (f64::from(h.max(1) * 100 / 38).min(f64::from(w)) / 700.0).clamp(0.8, 4.0);
        let font = |size: f64| ("sans-serif", size * scale);
        let px = |v: f64| (v * scale) as u32;
        let ys = self.dev.values().flatten().map(|p| p.1);
        let (lo, hi) = (ys.clone().fold(f64::INFINITY, f64::min), ys.fold(f64::NEG_INFINITY, f64::max));
        let span = if hi > lo { hi - lo } else { hi.abs().max(1.0) * 0.1 };
        let y = lo - 0.08 * span..hi + 0.08 * span;
        let mut chart = ChartBuilder::on(area)
            .margin(px(14.0))
            .x_label_area_size(px(44.0))
            .y_label_area_size(px(72.0))
            .right_y_label_area_size(if self.lr.is_empty() { 0 } else { px(84.0) })
            .build_cartesian_2d(x, y.clone())
            .map_err(e)?;
        let fmt = tick_formatter(y.start, y.end);
        let step_fmt = |v: &f64| if (v - v.round()).abs() < 1e-6 { format!("{}", v.round() as i64) } else { String::new() };
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("dev score")
            .x_label_formatter(&step_fmt)
            .y_label_formatter(&fmt)
            .label_style(font(15.0))
            .axis_desc_style(font(17.0))
            .light_line_style(RGBColor(0, 0, 0).mix(0.05))
            .bold_line_style(RGBColor(0, 0, 0).mix(0.12))
            .draw()
            .map_err(e)?;
        let stroke = px(2.0).max(1);
        let r = px(4.0).max(2);
        for (i, (name, points)) in self.dev.iter().enumerate() {
            let color = Palette99::pick(i + 3).to_rgba();
            chart.draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(stroke))).map_err(e)?;
            chart.draw_series(points.iter().map(|&p| Circle::new(p, r, color.filled()))).map_err(e)?.label(format!("dev {name}")).legend(
                move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (22, 0)], color.stroke_width(stroke))
                        + Circle::new((11, 0), r, color.filled())
                },
            );
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(font(15.0))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0, 0, 0).mix(0.3))
            .margin(px(10.0))
            .draw()
            .map_err(e)?;
        Ok(())
    }

    fn draw_with<DB, Y>(&self, root: &DrawingArea<DB, Shift>, x: Range<f64>, y: Y, y_range: Range<f64>) -> std::result::Result<(), String>
    where
        DB: DrawingBackend,
        Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
        Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
    {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        let (w, h) = root.dim_in_pixel();
        // Sizes are tuned for 1200x700 and scale with the image (not below 80 %, so text stays legible).
        let scale = (f64::from(h.min(w)) / 700.0).clamp(0.8, 4.0);
        let font = |size: f64| ("sans-serif", size * scale);
        let has_lr = !self.lr.is_empty();
        let px = |v: f64| (v * scale) as u32;

        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, font(26.0))
            .margin(px(14.0))
            .x_label_area_size(px(52.0))
            .y_label_area_size(px(72.0))
            .right_y_label_area_size(if has_lr { px(84.0) } else { 0 })
            .build_cartesian_2d(x.clone(), y)
            .map_err(e)?
            .set_secondary_coord(x, self.lr_range());

        let linear_fmt = tick_formatter(y_range.start, y_range.end);
        let log_fmt = |v: &f64| format!("{}", (v * 1e6).round() / 1e6);
        let loss_fmt: &dyn Fn(&f64) -> String = if self.log_y { &log_fmt } else { &linear_fmt };
        // Steps are integers: ticks between them (on a short axis) stay unlabelled.
        let step_fmt = |v: &f64| if (v - v.round()).abs() < 1e-6 { format!("{}", v.round() as i64) } else { String::new() };
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc(if self.log_y { "loss (log scale)" } else { "loss" })
            .x_label_formatter(&step_fmt)
            .y_label_formatter(loss_fmt)
            .label_style(font(15.0))
            .axis_desc_style(font(17.0))
            .light_line_style(RGBColor(0, 0, 0).mix(0.05))
            .bold_line_style(RGBColor(0, 0, 0).mix(0.12))
            .draw()
            .map_err(e)?;
        if has_lr {
            let lr_fmt = |v: &f64| if *v == 0.0 { "0".to_string() } else { format!("{v:.1e}") };
            chart
                .configure_secondary_axes()
                .y_desc(self.lr_label)
                .y_label_formatter(&lr_fmt)
                .label_style(font(15.0))
                .axis_desc_style(font(17.0))
                .draw()
                .map_err(e)?;
        }

        let stroke = px(2.0).max(1);
        let legend_line =
            |c: RGBColor, width: u32| move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 22, y)], c.stroke_width(width));
        if has_lr {
            // Drawn first so that the losses lie on top; its legend entry comes last (below).
            let style = LR_COLOR.mix(0.85).stroke_width(stroke);
            chart.draw_secondary_series(DashedLineSeries::new(self.lr.iter().copied(), px(8.0), px(5.0), style)).map_err(e)?;
        }
        if !self.train.is_empty() {
            let smoothed = self.smooth > 1;
            let raw_style = if smoothed { TRAIN_COLOR.mix(0.25).stroke_width(1) } else { TRAIN_COLOR.stroke_width(stroke) };
            let anno = if self.train.len() == 1 {
                // A line through one point draws nothing: mark it.
                chart.draw_series(self.train.iter().map(|&p| Circle::new(p, px(4.0).max(2), TRAIN_COLOR.filled()))).map_err(e)?
            } else {
                chart.draw_series(LineSeries::new(self.train.iter().copied(), raw_style)).map_err(e)?
            };
            anno.label("train loss").legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], raw_style));
            if smoothed {
                chart
                    .draw_series(LineSeries::new(self.train_smooth.iter().copied(), TRAIN_COLOR.stroke_width(stroke + 1)))
                    .map_err(e)?
                    .label(format!("train loss (moving average of {})", self.smooth))
                    .legend(legend_line(TRAIN_COLOR, stroke + 1));
            }
        }
        if !self.val.is_empty() {
            let r = px(4.0).max(2);
            chart.draw_series(LineSeries::new(self.val.iter().copied(), VAL_COLOR.stroke_width(stroke))).map_err(e)?;
            chart.draw_series(self.val.iter().map(|&p| Circle::new(p, r, VAL_COLOR.filled()))).map_err(e)?.label("validation loss").legend(
                move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (22, 0)], VAL_COLOR.stroke_width(stroke))
                        + Circle::new((11, 0), r, VAL_COLOR.filled())
                },
            );
        }
        if has_lr {
            chart
                .draw_secondary_series(std::iter::empty::<PathElement<(f64, f64)>>())
                .map_err(e)?
                .label(format!("{} (right axis)", self.lr_label))
                .legend(legend_line(LR_COLOR, stroke));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(font(15.0))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0, 0, 0).mix(0.3))
            .margin(px(10.0))
            .draw()
            .map_err(e)?;
        Ok(())
    }
}

/// A logarithmic axis whose ticks are readable loss values even inside one decade (plotters'
/// own log axis puts ticks only at powers of the base, so a loss between 2 and 9 gets none).
#[derive(Debug, Clone)]
struct LogAxis(Range<f64>);

impl plotters::coord::ranged1d::Ranged for LogAxis {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (lo, hi) = (self.0.start.ln(), self.0.end.ln());
        let t = if *value > 0.0 { (value.ln() - lo) / (hi - lo) } else { -1.0 };
        limit.0 + (t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        log_ticks(self.0.start, self.0.end, hint.max_num_points())
    }

    fn range(&self) -> Range<f64> {
        self.0.clone()
    }
}

/// Tick values for a log axis over `lo..hi` (`0 < lo < hi`): 1-2-5 per decade, else 1..9 per
/// decade, else evenly spaced round values; at most `max` of them.
fn log_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    let max = max.max(2);
    let decades = lo.log10().floor() as i32..=hi.log10().ceil() as i32;
    let with = |mantissas: &[f64]| -> Vec<f64> {
        decades.clone().flat_map(|k| mantissas.iter().map(move |m| m * 10f64.powi(k))).filter(|v| (lo..=hi).contains(v)).collect()
    };
    for mantissas in [&[1.0][..], &[1.0, 2.0, 5.0], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]] {
        let ticks = with(mantissas);
        if ticks.len() >= 3 {
            let stride = ticks.len().div_ceil(max);
            return ticks.into_iter().step_by(stride).collect();
        }
    }
    let raw = (hi - lo) / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    (first..).map(|i| i as f64 * step).take_while(|v| *v <= hi).take(max).collect()
}

/// Tick labels with as many decimals as the axis span needs.
fn tick_formatter(lo: f64, hi: f64) -> impl Fn(&f64) -> String {
    let span = (hi - lo).abs().max(f64::MIN_POSITIVE);
    let decimals = (1.0 - span.log10().floor()).clamp(0.0, 6.0) as usize;
    move |v: &f64| format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_inside_one_decade() {
        assert_eq!(log_ticks(1.8, 8.5, 10), vec![2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(log_ticks(0.05, 20.0, 10), vec![0.1, 1.0, 10.0]);
        assert_eq!(log_ticks(0.3, 12.0, 10), vec![0.5, 1.0, 2.0, 5.0, 10.0]);
        let narrow = log_ticks(2.01, 2.3, 10);
        assert!(narrow.len() >= 3 && narrow.iter().all(|v| (2.01..=2.3).contains(v)), "{narrow:?}");
    }
}
