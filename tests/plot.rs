//! `wenhui plot`: PNG and SVG training curves from a metrics JSONL file, and clear errors on bad input.

use std::path::{Path, PathBuf};
use std::process::Command;
use wenhui::train::plot::{moving_average, plot_metrics, read_metrics, ImageFormat, PlotOptions};

/// A metrics file as the trainer writes it: train lines with extra fields, validation lines,
/// a line with a missing field, a `null` and an unknown field.
fn synthetic_metrics() -> String {
    let mut s = String::new();
    for step in (10..=1000).step_by(10) {
        let loss = 2.0 + 6.0 * (-(step as f64) / 200.0).exp() + 0.1 * ((step as f64) * 0.37).sin();
        let lr = if step < 100 { 1e-4 * step as f64 / 100.0 } else { 1e-4 * (1.0 - (step - 100) as f64 / 1000.0) };
        s += &format!(
            "{{\"step\": {step}, \"loss\": {loss}, \"lr\": {lr}, \"tokens_per_s\": 1234.5, \"grad_norm\": 0.8, \"elapsed_s\": {}}}\n",
            step as f64 * 0.1
        );
        if step % 100 == 0 {
            s += &format!("{{\"step\": {step}, \"val_loss\": {}, \"val_ppl\": 134.3}}\n", 2.2 + 5.0 * (-(step as f64) / 220.0).exp());
        }
    }
    s += "{\"step\": 1010, \"lr\": 1e-5, \"grad_norm\": null, \"note\": \"no loss on this line\"}\n";
    s += "\n";
    s
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// Decodes an 8-bit RGB PNG: (width, height, pixels).
fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn count(pixels: &[u8], pred: impl Fn(u8, u8, u8) -> bool) -> usize {
    pixels.chunks_exact(3).filter(|p| pred(p[0], p[1], p[2])).count()
}

#[test]
fn moving_average_is_trailing_and_format_follows_the_extension() {
    let pts = [(1.0, 4.0), (2.0, 2.0), (3.0, 6.0), (4.0, 0.0)];
    assert_eq!(moving_average(&pts, 2), vec![(1.0, 4.0), (2.0, 3.0), (3.0, 4.0), (4.0, 3.0)]);
    assert_eq!(moving_average(&pts, 1), pts.to_vec());
    assert_eq!(ImageFormat::from_path("a/b.PNG".as_ref()).ok(), Some(ImageFormat::Png));
    assert_eq!(ImageFormat::from_path("b.svg".as_ref()).ok(), Some(ImageFormat::Svg));
    assert!(ImageFormat::from_path("b.jpg".as_ref()).is_err() && ImageFormat::from_path("b".as_ref()).is_err());
}

#[test]
fn png_has_curves_axes_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = write(dir.path(), "metrics.jsonl", &synthetic_metrics());
    let out = dir.path().join("loss.png");
    let opts = PlotOptions { width: 900, height: 500, ..PlotOptions::default() };
    let s = plot_metrics(&metrics, &out, &opts).unwrap();
    assert_eq!(s.format, ImageFormat::Png);
    assert_eq!((s.train_points, s.val_points, s.lr_points), (100, 10, 101));
    assert_eq!(s.steps, (10.0, 1000.0));
    let (v, step) = s.best_val_loss.unwrap();
    assert_eq!(step, 1000.0);
    assert!((v - (2.2 + 5.0 * (-1000.0f64 / 220.0).exp())).abs() < 1e-9);

    let (w, h, px) = decode_png(&out);
    assert_eq!((w, h), (900, 500));
    let total = (w * h) as usize;
    let non_white = count(&px, |r, g, b| (r, g, b) != (255, 255, 255));
    assert!(non_white > total / 50, "chart looks blank: {non_white} of {total} pixels drawn");
    // The series colours: blue train loss, red validation loss, green learning rate.
    assert!(count(&px, |r, g, b| b > 150 && r < 80 && g > 90 && g < 150) > 200, "no train-loss pixels");
    assert!(count(&px, |r, g, b| r > 180 && g < 80 && b < 80) > 100, "no validation-loss pixels");
    assert!(count(&px, |r, g, b| g > 130 && r < 100 && b < 100) > 100, "no learning-rate pixels");
    // The title is text drawn with the embedded font: dark pixels in the top band, centre columns.
    let title_band = &px[..(30 * w * 3) as usize];
    let title_ink = title_band.chunks_exact(3).enumerate().filter(|(i, p)| {
        let x = *i as u32 % w;
        x > w / 4 && x < 3 * w / 4 && p.iter().all(|c| *c < 120)
    });
    assert!(title_ink.count() > 100, "no title text rendered");
}

#[test]
fn svg_names_the_series() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = write(dir.path(), "run.jsonl", &synthetic_metrics());
    let out = dir.path().join("curves.SVG");
    let opts = PlotOptions { smooth: 5, log_y: true, title: Some("tiny GLM run".into()), ..PlotOptions::default() };
    let s = plot_metrics(&metrics, &out, &opts).unwrap();
    assert_eq!(s.format, ImageFormat::Svg);
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    for text in [
        "tiny GLM run",
        "train loss",
        "train loss (moving average of 5)",
        "validation loss",
        "learning rate (right axis)",
        "step",
        "loss (log scale)",
    ] {
        assert!(svg.contains(&format!(">{text}<")) || svg.contains(&format!(">\n{text}\n<")), "SVG lacks `{text}`");
    }
}

#[test]
fn only_validation_or_only_train_still_plots() {
    let dir = tempfile::tempdir().unwrap();
    let val_only = write(dir.path(), "val.jsonl", "{\"step\": 5, \"val_loss\": 3.0}\n{\"step\": 10, \"val_loss\": 2.5}\n");
    let s = plot_metrics(&val_only, &dir.path().join("v.png"), &PlotOptions::default()).unwrap();
    assert_eq!((s.train_points, s.val_points, s.lr_points), (0, 2, 0));
    // One point, constant value: the axes still get a non-empty range.
    let single = write(dir.path(), "one.jsonl", "{\"step\": 0, \"loss\": 1.5}");
    let s = plot_metrics(&single, &dir.path().join("one.png"), &PlotOptions { log_y: true, ..PlotOptions::default() }).unwrap();
    assert_eq!(s.train_points, 1);
    let (_, _, px) = decode_png(&dir.path().join("one.png"));
    assert!(count(&px, |r, g, b| (r, g, b) != (255, 255, 255)) > 1000);
}

#[test]
fn unfinished_last_line_is_skipped_but_a_bad_middle_line_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "live.jsonl", "{\"step\": 1, \"loss\": 3.0}\n{\"step\": 2, \"loss\": 2.9}\n{\"step\": 3, \"lo");
    let m = read_metrics(&p).unwrap();
    assert!(m.skipped_partial_last_line);
    assert_eq!(m.train_loss, vec![(1.0, 3.0), (2.0, 2.9)]);

    let p = write(dir.path(), "bad.jsonl", "{\"step\": 1, \"loss\": 3.0}\n\n{\"step\": 2, \"loss\": }\n{\"step\": 3, \"loss\": 2.0}\n");
    let e = plot_metrics(&p, &dir.path().join("x.png"), &PlotOptions::default()).unwrap_err().to_string();
    assert!(e.contains("bad.jsonl:3") && e.contains("malformed JSON"), "{e}");
    assert!(!dir.path().join("x.png").exists());
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("out.png");
    let opts = PlotOptions::default();
    let err = |metrics: &Path, out: &Path, opts: &PlotOptions| plot_metrics(metrics, out, opts).unwrap_err().to_string();

    let missing = dir.path().join("nope.jsonl");
    let e = err(&missing, &png, &opts);
    assert!(e.contains("nope.jsonl"), "{e}");

    let empty = write(dir.path(), "empty.jsonl", "");
    assert!(err(&empty, &png, &opts).contains("empty metrics file"));
    let blank = write(dir.path(), "blank.jsonl", "\n  \n");
    assert!(err(&blank, &png, &opts).contains("empty metrics file"));

    let not_obj = write(dir.path(), "arr.jsonl", "{\"step\": 1, \"loss\": 2.0}\n[1, 2]\n");
    let e = err(&not_obj, &png, &opts);
    assert!(e.contains("arr.jsonl:2") && e.contains("JSON object"), "{e}");

    let wrong_type = write(dir.path(), "str.jsonl", "{\"step\": 1, \"loss\": \"high\"}\n");
    let e = err(&wrong_type, &png, &opts);
    assert!(e.contains("str.jsonl:1") && e.contains("`loss`"), "{e}");

    let no_points = write(dir.path(), "lr.jsonl", "{\"step\": 1, \"lr\": 0.1}\n{\"loss\": 2.0}\n");
    let e = err(&no_points, &png, &opts);
    assert!(e.contains("no plottable points"), "{e}");

    let negative = write(dir.path(), "neg.jsonl", "{\"step\": 1, \"loss\": -1.0}\n");
    let e = err(&negative, &png, &PlotOptions { log_y: true, ..PlotOptions::default() });
    assert!(e.contains("no plottable points") && e.contains("--log-y"), "{e}");

    let huge = write(dir.path(), "huge.jsonl", "{\"step\": 1, \"loss\": 1e308}\n{\"step\": 2, \"loss\": -1e308}\n");
    let e = err(&huge, &png, &opts);
    assert!(e.contains("huge.jsonl") && e.contains("too extreme"), "{e}");

    let good = write(dir.path(), "good.jsonl", &synthetic_metrics());
    let e = err(&good, &dir.path().join("out.jpg"), &opts);
    assert!(e.contains(".png or .svg"), "{e}");
    let e = err(&good, &dir.path().join("no-such-dir").join("out.png"), &opts);
    assert!(e.contains("no-such-dir"), "{e}");
    let e = err(&good, &png, &PlotOptions { width: 10, ..PlotOptions::default() });
    assert!(e.contains("width"), "{e}");
    // Metrics in a file named like an image, plotted onto itself: refused, the file kept.
    let odd = write(dir.path(), "metrics.png", &synthetic_metrics());
    let e = err(&odd, &dir.path().join(".").join("metrics.png"), &opts);
    assert!(e.contains("metrics file itself"), "{e}");
    assert_eq!(std::fs::read_to_string(&odd).unwrap(), synthetic_metrics());
}

#[test]
fn cli_writes_the_image_and_exits_nonzero_on_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = write(dir.path(), "metrics.jsonl", &synthetic_metrics());
    let out = dir.path().join("loss.png");
    let run = |args: &[&std::ffi::OsStr]| Command::new(env!("CARGO_BIN_EXE_wenhui")).arg("plot").args(args).output().unwrap();

    let o =
        run(&[metrics.as_os_str(), "-o".as_ref(), out.as_os_str(), "--smooth".as_ref(), "10".as_ref(), "--title".as_ref(), "t".as_ref()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("100 train-loss points"));
    assert_eq!(decode_png(&out).0, 1200);

    let bad = write(dir.path(), "bad.jsonl", "{\"step\": 1, \"loss\": 2.0}\nnot json\n{\"step\": 2, \"loss\": 1.0}\n");
    let o = run(&[bad.as_os_str(), "-o".as_ref(), dir.path().join("bad.png").as_os_str()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.jsonl:2"), "{err}");
}

/// The logs of `ptune`/`finetune` (loss, `lr_factor`, dev metrics) and of seq2seq fine-tuning
/// (`dev_loss`, `dev_score`) plot too: the factor on the right axis, named as such; the dev loss
/// as validation; dev scores in a panel of their own.
#[test]
fn tuning_logs_plot_their_loss_factor_and_dev_loss() {
    let dir = tempfile::tempdir().unwrap();
    let ptune = write(
        dir.path(),
        "ptune.jsonl",
        "{\"dev\":{\"acc\":0.5},\"step\":0}\n{\"grad_norm\":0.1,\"loss\":0.7,\"lr_factor\":0.5,\"step\":10}\n{\"dev\":{\"acc\":0.6},\"step\":10}\n\
         {\"grad_norm\":0.1,\"loss\":0.6,\"lr_factor\":1.0,\"step\":20}\n",
    );
    let out = dir.path().join("ptune.svg");
    let s = plot_metrics(&ptune, &out, &PlotOptions::default()).unwrap();
    assert_eq!((s.train_points, s.val_points, s.lr_points, s.dev_score_points), (2, 0, 2, 2));
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.contains("learning-rate factor (right axis)"), "the factor is not named");
    assert!(svg.contains("dev acc") && svg.contains("dev score"), "the dev scores are not drawn");
    // CB logs two scores per evaluation; a log with scores only plots too.
    let cb = write(
        dir.path(),
        "cb.jsonl",
        "{\"dev\":{\"acc\":0.5,\"f1-macro\":0.4},\"step\":0}\n{\"dev\":{\"acc\":0.7,\"f1-macro\":0.6},\"step\":20}\n",
    );
    let s = plot_metrics(&cb, &dir.path().join("cb.svg"), &PlotOptions::default()).unwrap();
    assert_eq!((s.train_points, s.dev_score_points), (0, 4));
    let svg = std::fs::read_to_string(dir.path().join("cb.svg")).unwrap();
    assert!(svg.contains("dev acc") && svg.contains("dev f1-macro"), "{svg:.200}");
    let seq2seq = write(
        dir.path(),
        "s2s.jsonl",
        "{\"step\":5,\"loss\":4.0,\"lr\":1e-4}\n{\"step\":5,\"dev_loss\":4.5}\n{\"step\":10,\"dev_loss\":4.2}\n{\"step\":10,\"dev_score\":31.5}\n",
    );
    let s = plot_metrics(&seq2seq, &dir.path().join("s2s.png"), &PlotOptions::default()).unwrap();
    assert_eq!((s.train_points, s.val_points, s.lr_points, s.dev_score_points), (1, 2, 1, 1));
    assert_eq!(s.best_val_loss, Some((4.2, 10.0)));
}
