//! `tessel plot`: throughput against problem size, one line per kernel, one panel per group, from
//! a results JSON written by bench/run.py. SVG, so it needs no fonts or system libraries.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use plotters::prelude::*;
use serde::Deserialize;

#[derive(Args)]
pub struct PlotArgs {
    /// A results file from bench/run.py.
    pub results: PathBuf,
    /// The SVG to write.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// One measurement: `group` is a panel (e.g. "elementwise"), `name` a line in it.
#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    pub group: String,
    pub name: String,
    pub size: f64,
    /// What `value` measures, e.g. "GB/s" or "TFLOP/s".
    pub metric: String,
    pub value: f64,
}

#[derive(Debug, Deserialize)]
pub struct Results {
    pub device: String,
    pub date: String,
    pub commit: String,
    pub records: Vec<Record>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

pub fn render(
    results: &Results,
    output: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut groups: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in &results.records {
        if r.size > 0.0 && r.value.is_finite() {
            groups.entry(&r.group).or_default().push(r);
        }
    }
    if groups.is_empty() {
        return Err("the results hold no plottable records".into());
    }
    let root = SVGBackend::new(output, (720, 420 * groups.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((groups.len(), 1));
    for (panel, (group, recs)) in panels.iter().zip(&groups) {
        let metric = &recs[0].metric;
        let (xmin, xmax) = recs.iter().fold((f64::INFINITY, 0.0f64), |(a, b), r| {
            (a.min(r.size), b.max(r.size))
        });
        let ymax = recs.iter().fold(0.0f64, |m, r| m.max(r.value)) * 1.15;
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!(
                    "{group} — {} ({}, {})",
                    results.device, results.date, results.commit
                ),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((xmin * 0.8..xmax * 1.25).log_scale(), 0.0..ymax.max(1e-9))?;
        chart
            .configure_mesh()
            .x_desc("problem size")
            .y_desc(metric.as_str())
            .draw()?;
        let mut lines: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
        for r in recs {
            lines.entry(&r.name).or_default().push((r.size, r.value));
        }
        for (i, (name, mut pts)) in lines.into_iter().enumerate() {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

pub fn run(args: PlotArgs) -> super::CliResult {
    let text = std::fs::read_to_string(&args.results)
        .map_err(|e| format!("cannot read {}: {e}", args.results.display()))?;
    let results: Results =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", args.results.display()))?;
    render(&results, &args.output)?;
    println!("wrote {}", args.output.display());
    Ok(())
}
