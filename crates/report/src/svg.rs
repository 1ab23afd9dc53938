//! Minimal inline-SVG charts (lines, steps, dots, bars, reference lines) so
//! that `report.html` needs no script, font or network to be viewed. Every
//! data mark carries `class="mark"`, so a browser test can tell a chart
//! that drew its data from an empty frame.

use std::fmt::Write as _;

/// Escapes text for HTML and SVG content and attribute values.
pub(crate) fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mark {
    /// A staircase through the points (for CDFs).
    Step,
    /// Small filled circles.
    Dots,
    /// Small crosses (for failed requests).
    Crosses,
    /// Bars from the x axis; each point is `(bin_start, count)` and the bar
    /// ends at the next point's x (the last point only closes the last bar).
    Bars,
}

/// One data series.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Legend text.
    pub name: String,
    /// CSS colour.
    pub color: &'static str,
    /// How to draw it.
    pub mark: Mark,
    /// Data, in axis units.
    pub points: Vec<(f64, f64)>,
}

/// One axis.
#[derive(Debug, Clone)]
pub(crate) struct Axis {
    /// Label under or beside the axis.
    pub label: String,
    /// Smallest value shown.
    pub min: f64,
    /// Largest value shown.
    pub max: f64,
    /// Logarithmic (base 10) scale; `min` must be > 0.
    pub log: bool,
}

impl Axis {
    /// An axis covering `values` (with a little margin), log if asked and possible.
    pub(crate) fn fit(
        label: &str,
        values: impl Iterator<Item = f64>,
        log: bool,
        from_zero: bool,
    ) -> Self {
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
            min = min.min(v);
            max = max.max(v);
        }
        if !min.is_finite() {
            (min, max) = if log { (1.0, 10.0) } else { (0.0, 1.0) };
        }
        if log {
            (min, max) = (min / 1.25, max * 1.25);
        } else {
            if from_zero {
                min = min.min(0.0);
            }
            let pad = ((max - min) * 0.05).max(1e-9);
            max += pad;
            if !from_zero {
                min -= pad;
            }
        }
        Self {
            label: label.to_owned(),
            min,
            max,
            log,
        }
    }

    fn to_unit(&self, v: f64) -> f64 {
        if self.log {
            let v = v.max(self.min);
            (v.log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
        } else {
            (v - self.min) / (self.max - self.min)
        }
    }

    /// Tick values: 1-2-5 per decade on a log axis, about 5 "nice" steps otherwise.
    fn ticks(&self) -> Vec<f64> {
        let mut ticks = Vec::new();
        if self.log {
            let mut decade = 10f64.powf(self.min.log10().floor());
            while decade <= self.max {
                for m in [1.0, 2.0, 5.0] {
                    let t = decade * m;
                    if t >= self.min && t <= self.max {
                        ticks.push(t);
                    }
                }
                decade *= 10.0;
            }
        } else {
            let raw = (self.max - self.min) / 5.0;
            let magnitude = 10f64.powf(raw.log10().floor());
            let step = [1.0, 2.0, 5.0, 10.0]
                .iter()
                .map(|m| m * magnitude)
                .find(|s| *s >= raw)
                .unwrap_or(magnitude * 10.0);
            let mut t = (self.min / step).ceil() * step;
            while t <= self.max + step * 1e-9 {
                ticks.push(t);
                t += step;
            }
        }
        ticks
    }
}

/// A horizontal or vertical reference line.
#[derive(Debug, Clone)]
pub(crate) struct RefLine {
    /// Position in axis units.
    pub at: f64,
    /// Text drawn next to it.
    pub label: String,
    /// CSS colour.
    pub color: &'static str,
}

/// A whole chart.
#[derive(Debug, Clone)]
pub(crate) struct Chart {
    /// Accessible title.
    pub title: String,
    /// Pixel width of the SVG viewBox.
    pub width: f64,
    /// Pixel height of the SVG viewBox.
    pub height: f64,
    /// Horizontal axis.
    pub x: Axis,
    /// Vertical axis.
    pub y: Axis,
    /// Data.
    pub series: Vec<Series>,
    /// Vertical lines (e.g. the SLA on a latency x axis).
    pub vlines: Vec<RefLine>,
    /// Horizontal lines (e.g. the SLA on a latency y axis).
    pub hlines: Vec<RefLine>,
}

const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 46.0;

fn tick_label(v: f64) -> String {
    if v == 0.0 {
        "0".to_owned()
    } else if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.abs() >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 0.1 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl Chart {
    fn px(&self, x: f64) -> f64 {
        LEFT + self.x.to_unit(x).clamp(0.0, 1.0) * (self.width - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        let h = self.height - TOP - BOTTOM;
        TOP + (1.0 - self.y.to_unit(y).clamp(0.0, 1.0)) * h
    }

    /// The chart as an `<svg>` element (writing to a String cannot fail).
    pub(crate) fn render(&self) -> String {
        let (w, h) = (self.width, self.height);
        let (x0, x1, y0, y1) = (LEFT, w - RIGHT, TOP, h - BOTTOM);
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
            t = escape_xml(&self.title)
        );
        let _ = write!(
            s,
            r##"<rect x="{x0}" y="{y0}" width="{}" height="{}" fill="#fcfcfd" stroke="#d0d4da"/>"##,
            x1 - x0,
            y1 - y0
        );
        for t in self.x.ticks() {
            let x = self.px(t);
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="#eceef1"/><text x="{x:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"##,
                y1 + 16.0,
                tick_label(t)
            );
        }
        for t in self.y.ticks() {
            let y = self.py(t);
            let _ = write!(
                s,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#eceef1"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
                x0 - 6.0,
                y + 4.0,
                tick_label(t)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="axis" text-anchor="middle">{}</text>"#,
            (x0 + x1) / 2.0,
            h - 8.0,
            escape_xml(&self.x.label)
        );
        let _ = write!(
            s,
            r#"<text transform="translate(14 {:.1}) rotate(-90)" class="axis" text-anchor="middle">{}</text>"#,
            (y0 + y1) / 2.0,
            escape_xml(&self.y.label)
        );
        for series in &self.series {
            self.render_series(&mut s, series);
        }
        for line in &self.vlines {
            let x = self.px(line.at);
            let _ = write!(
                s,
                r#"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="{c}" stroke-width="1.5" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" class="ref" fill="{c}">{}</text>"#,
                x + 4.0,
                y0 + 14.0,
                escape_xml(&line.label),
                c = line.color
            );
        }
        for line in &self.hlines {
            let y = self.py(line.at);
            let _ = write!(
                s,
                r#"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="{c}" stroke-width="1.5" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" class="ref" fill="{c}" text-anchor="end">{}</text>"#,
                x1 - 4.0,
                y - 5.0,
                escape_xml(&line.label),
                c = line.color
            );
        }
        // Legend, top left inside the plot.
        let mut lx = x0 + 8.0;
        for series in &self.series {
            let _ = write!(
                s,
                r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}" rx="2"/><text x="{:.1}" y="{:.1}" class="legend">{}</text>"#,
                TOP - 20.0,
                series.color,
                lx + 16.0,
                TOP - 10.0,
                escape_xml(&series.name)
            );
            lx += 28.0 + 7.0 * series.name.chars().count() as f64;
        }
        s.push_str("</svg>");
        s
    }

    fn render_series(&self, s: &mut String, series: &Series) {
        let c = series.color;
        match series.mark {
            Mark::Step => {
                let mut d = String::new();
                for (i, &(x, y)) in series.points.iter().enumerate() {
                    let (px, py) = (self.px(x), self.py(y));
                    if i == 0 {
                        // Rise from the axis at the first sample.
                        let _ = write!(d, "M{px:.1},{:.1}V{py:.1}", self.py(self.y.min));
                    } else {
                        let _ = write!(d, "H{px:.1}V{py:.1}");
                    }
                }
                let _ = write!(
                    s,
                    r#"<path class="mark" d="{d}" fill="none" stroke="{c}" stroke-width="2"/>"#
                );
            }
            Mark::Dots => {
                let _ = write!(s, r#"<g fill="{c}" fill-opacity="0.55">"#);
                for &(x, y) in &series.points {
                    let _ = write!(
                        s,
                        r#"<circle class="mark" cx="{:.1}" cy="{:.1}" r="2"/>"#,
                        self.px(x),
                        self.py(y)
                    );
                }
                s.push_str("</g>");
            }
            Mark::Crosses => {
                let _ = write!(s, r#"<g stroke="{c}" stroke-width="1.5">"#);
                for &(x, y) in &series.points {
                    let (px, py) = (self.px(x), self.py(y));
                    let _ = write!(
                        s,
                        r#"<path class="mark" d="M{:.1},{:.1}l6,6m0,-6l-6,6"/>"#,
                        px - 3.0,
                        py - 3.0
                    );
                }
                s.push_str("</g>");
            }
            Mark::Bars => {
                let _ = write!(s, r#"<g fill="{c}" fill-opacity="0.8">"#);
                let base = self.py(self.y.min.max(0.0));
                for pair in series.points.windows(2) {
                    let ((xa, count), (xb, _)) = (pair[0], pair[1]);
                    if count <= 0.0 {
                        continue;
                    }
                    let (pa, pb, top) = (self.px(xa), self.px(xb), self.py(count));
                    let _ = write!(
                        s,
                        r#"<rect class="mark" x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}"/>"#,
                        pa + 0.5,
                        (pb - pa - 1.0).max(0.5),
                        (base - top).max(0.0)
                    );
                }
                s.push_str("</g>");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape_xml(r#"<b a="1">&'"#),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn log_ticks_are_one_two_five() {
        let axis = Axis {
            label: String::new(),
            min: 8.0,
            max: 600.0,
            log: true,
        };
        assert_eq!(axis.ticks(), [10.0, 20.0, 50.0, 100.0, 200.0, 500.0]);
    }

    #[test]
    fn linear_ticks_are_round() {
        let axis = Axis {
            label: String::new(),
            min: 0.0,
            max: 1.0,
            log: false,
        };
        assert_eq!(axis.ticks().len(), 6);
    }
}
