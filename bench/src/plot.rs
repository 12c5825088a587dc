//! `--plot FILE.svg`: the latency percentile curve (latency against
//! percentile on a log scale of 1/(1-p), as hdrhistogram plots do), one
//! line per measured kind, drawn as a self-contained SVG.

use hdrhistogram::Histogram;

const W: f64 = 800.0;
const H: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// Up to the 99.999th percentile: x = log10(1 / (1 - p)) in [0, 5].
const NINES: f64 = 5.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

fn x_of(nines: f64) -> f64 {
    LEFT + nines / NINES * (W - LEFT - RIGHT)
}

fn y_of(ms: f64, max_ms: f64) -> f64 {
    H - BOTTOM - ms / max_ms * (H - TOP - BOTTOM)
}

/// Renders the curves; `title` heads the chart.
pub fn svg(title: &str, curves: &[(&str, &Histogram<u64>)]) -> String {
    let curves: Vec<_> = curves.iter().filter(|(_, h)| !h.is_empty()).collect();
    let max_ms = curves
        .iter()
        .map(|(_, h)| h.max() as f64 / 1000.0)
        .fold(0.001, f64::max)
        * 1.1;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>
"#,
        W / 2.0,
        escape(title)
    );
    for i in 0..=NINES as usize {
        let x = x_of(i as f64);
        let label = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"][i];
        s += &format!(
            r##"<line x1="{x}" y1="{TOP}" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{label}</text>
"##,
            H - BOTTOM,
            H - BOTTOM + 18.0
        );
    }
    for i in 0..=5 {
        let ms = max_ms * i as f64 / 5.0;
        let y = y_of(ms, max_ms);
        s += &format!(
            r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{ms:.2}</text>
"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
    }
    s += &format!(
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">latency (ms)</text>
"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 12.0,
        H / 2.0,
        H / 2.0
    );
    for (i, (label, h)) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = (0..=500)
            .map(|k| {
                let nines = NINES * k as f64 / 500.0;
                let q = 1.0 - 10f64.powf(-nines);
                let ms = h.value_at_quantile(q) as f64 / 1000.0;
                format!("{:.1},{:.1}", x_of(nines), y_of(ms, max_ms))
            })
            .collect();
        s += &format!(
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>
<text x="{}" y="{}" fill="{color}">{}</text>
"#,
            points.join(" "),
            LEFT + 10.0,
            TOP + 16.0 * (i as f64 + 1.0),
            escape(label)
        );
    }
    s + "</svg>\n"
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_line_per_curve() {
        let mut a = crate::report::new_histogram();
        for v in 1..=1000 {
            a.record(v * 10).unwrap();
        }
        let empty = crate::report::new_histogram();
        let s = svg("t <1>", &[("produce", &a), ("consume", &empty)]);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert_eq!(s.matches("<polyline").count(), 1, "empty histograms are not drawn");
        assert!(s.contains("t &lt;1&gt;"));
    }
}
