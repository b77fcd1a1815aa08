//! CSV and SVG output for the decode throughput numbers (`decode_report`).

use std::path::Path;

use plotters::prelude::*;

use crate::decode::Measurement;
use crate::qos_plot::{fmt_f, Csv, PlotError};

/// The target: small commands decoded and dispatched per second per core.
pub const TARGET_COMMANDS_PER_S: f64 = 20e6;

fn draw_err<E: std::fmt::Debug>(e: E) -> PlotError {
    PlotError::Draw(format!("{e:?}"))
}

/// Writes the measurements as CSV.
pub fn write_csv(ms: &[Measurement], path: &Path) -> Result<(), PlotError> {
    let mut csv = Csv::new(&[
        "stream",
        "ids",
        "stream_bytes",
        "commands",
        "bytes_per_command",
        "ns_per_command",
        "commands_per_s",
        "mb_per_s",
    ]);
    for m in ms {
        csv.row(vec![
            m.stream.to_owned(),
            m.ids.name().to_owned(),
            m.bytes.to_string(),
            m.commands.to_string(),
            fmt_f(m.bytes_per_command(), 1),
            fmt_f(m.ns_per_command(), 2),
            fmt_f(m.commands_per_s(), 0),
            fmt_f(m.mb_per_s(), 1),
        ]);
    }
    csv.write(path)
}

/// A bar chart of million commands per second, one bar per measurement, with the target
/// as a dashed line.
#[allow(
    clippy::cast_precision_loss,
    reason = "a handful of bars; indices are tiny"
)]
pub fn write_svg(ms: &[Measurement], title: &str, path: &Path) -> Result<(), PlotError> {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let target = TARGET_COMMANDS_PER_S / 1e6;
    let top = ms
        .iter()
        .map(|m| m.commands_per_s() / 1e6)
        .fold(target, f64::max)
        * 1.15;
    let n = ms.len();
    let labels: Vec<String> = ms
        .iter()
        .map(|m| format!("{} / {}", m.stream, m.ids.name()))
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(90)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n as f64, 0f64..top)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("million commands / s (one core)")
        .draw()
        .map_err(draw_err)?;
    let palette = [RGBColor(31, 119, 180), RGBColor(255, 127, 14)];
    for (i, m) in ms.iter().enumerate() {
        let x = i as f64;
        let v = m.commands_per_s() / 1e6;
        let colour = palette[usize::from(m.ids != crate::decode::Ids::Table)];
        chart
            .draw_series([Rectangle::new(
                [(x + 0.15, 0.0), (x + 0.85, v)],
                colour.filled(),
            )])
            .map_err(draw_err)?;
        chart
            .draw_series([Text::new(
                format!("{v:.1} M/s, {:.0} MB/s", m.mb_per_s()),
                (x + 0.17, v + top * 0.02),
                ("sans-serif", 12),
            )])
            .map_err(draw_err)?;
        chart
            .draw_series([Text::new(
                labels[i].clone(),
                (x + 0.1, -top * 0.06),
                ("sans-serif", 12),
            )])
            .map_err(draw_err)?;
    }
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, target), (n as f64, target)],
            6,
            4,
            RED.stroke_width(2),
        ))
        .map_err(draw_err)?
        .label(format!("target {target:.0} M commands/s"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err)?;
    root.present().map_err(draw_err)?;
    Ok(())
}
