//! CSV and SVG output for the QoS figures.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

use plotters::prelude::*;
use thiserror::Error;

/// Errors from writing a figure.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PlotError {
    /// Writing a file failed.
    #[error("writing a figure file failed")]
    Io(#[from] io::Error),
    /// plotters failed to draw.
    #[error("drawing a figure failed: {0}")]
    Draw(String),
}

fn draw_err<E: std::fmt::Debug>(e: E) -> PlotError {
    PlotError::Draw(format!("{e:?}"))
}

/// A CSV table: a header and rows of already formatted cells.
#[derive(Debug, Clone, Default)]
pub struct Csv {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Csv {
    /// An empty table with these column names.
    pub fn new(header: &[&str]) -> Csv {
        Csv {
            header: header.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes the table to `path`.
    pub fn write(&self, path: &Path) -> Result<(), PlotError> {
        let mut out = String::new();
        out.push_str(&self.header.join(","));
        out.push('\n');
        for r in &self.rows {
            out.push_str(&r.join(","));
            out.push('\n');
        }
        fs::write(path, out)?;
        Ok(())
    }
}

/// Formats a float with `digits` decimals.
pub fn fmt_f(x: f64, digits: usize) -> String {
    let mut s = String::new();
    let _ = write!(s, "{x:.digits$}");
    s
}

/// One line of a line chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points.
    pub points: Vec<(f64, f64)>,
    /// Colour index into the palette.
    pub colour: usize,
    /// Dashed (drawn as points only, without a connecting line).
    pub dashed: bool,
}

/// Axes and titles of a line chart.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    /// Title.
    pub title: &'a str,
    /// X axis label.
    pub x_label: &'a str,
    /// Y axis label.
    pub y_label: &'a str,
    /// X range.
    pub x_range: (f64, f64),
    /// Y range.
    pub y_range: (f64, f64),
    /// Logarithmic x axis.
    pub log_x: bool,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// Where the legend goes.
    pub legend: SeriesLabelPosition,
}

const PALETTE: [RGBColor; 7] = [
    RGBColor(0x99, 0x99, 0x99),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x00, 0x00, 0x00),
];

/// Draws a line chart to an SVG file.
pub fn line_chart(path: &Path, chart: &Chart<'_>, series: &[Series]) -> Result<(), PlotError> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let (x0, x1) = chart.x_range;
    let (y0, y1) = chart.y_range;
    macro_rules! draw {
        ($xr:expr, $yr:expr) => {{
            let mut ctx = ChartBuilder::on(&root)
                .caption(chart.title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(70)
                .build_cartesian_2d($xr, $yr)
                .map_err(draw_err)?;
            ctx.configure_mesh()
                .x_desc(chart.x_label)
                .y_desc(chart.y_label)
                .draw()
                .map_err(draw_err)?;
            for s in series {
                let colour = PALETTE[s.colour % PALETTE.len()];
                let style = ShapeStyle::from(&colour).stroke_width(2);
                if s.dashed {
                    ctx.draw_series(DashedLineSeries::new(s.points.iter().copied(), 6, 4, style))
                        .map_err(draw_err)?
                        .label(s.label.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                        });
                } else {
                    ctx.draw_series(LineSeries::new(s.points.iter().copied(), style))
                        .map_err(draw_err)?
                        .label(s.label.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                        });
                }
                ctx.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                    .map_err(draw_err)?;
            }
            ctx.configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(chart.legend.clone())
                .draw()
                .map_err(draw_err)?;
        }};
    }
    match (chart.log_x, chart.log_y) {
        (true, true) => draw!((x0..x1).log_scale(), (y0..y1).log_scale()),
        (true, false) => draw!((x0..x1).log_scale(), y0..y1),
        (false, true) => draw!(x0..x1, (y0..y1).log_scale()),
        (false, false) => draw!(x0..x1, y0..y1),
    }
    root.present().map_err(draw_err)?;
    Ok(())
}
