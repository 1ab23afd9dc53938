//! `report.html`: one self-contained page (inline CSS and SVG, no script, no
//! network) with the verdict, the table, the charts and the diagnosis.
//!
//! Every piece of text that comes from a log, a label or the caller's
//! conditions goes through [`escape_xml`], so an `error` column holding
//! `<script>` shows as text and never runs.

mod charts;

use std::fmt::Write as _;

use model::log::Log;

use crate::summary::successful_latencies_sorted;
use crate::svg::escape_xml;
use crate::table::{
    fmt_opt, headings, input_py_rows, reproduction_paragraph, table_rows, verdict_line,
    INPUT_PY_HEADINGS,
};
use charts::{
    bin_edges, breakdown_chart, capacity_chart, cdf_chart, histogram, over_time_chart, AFTER_COLOR,
    BEFORE_COLOR,
};
use model::capacity::Capacity;
use model::comparison::Breakdown;
use model::comparison::Comparison;
use model::comparison::{LlmPrediction, Prediction};

const CSS: &str = r#"
:root{--fg:#1f2933;--muted:#616e7c;--line:#d9dee4;--ok:#1e7b45;--bad:#b42318}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);background:#f4f6f8}
main{max-width:1080px;margin:0 auto;padding:28px 24px 60px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:34px 0 10px;padding-bottom:6px;border-bottom:1px solid var(--line)}
.sub{color:var(--muted);margin:0 0 18px}
.verdict{border-radius:10px;padding:16px 20px;color:#fff;font-size:18px;font-weight:600}
.verdict.pass{background:var(--ok)}.verdict.fail{background:var(--bad)}
.warning{border:2px solid #b7791f;background:#fffaf0;color:#744210;border-radius:10px;padding:12px 16px;margin:12px 0;font-weight:600}
.summary{border-left:4px solid #1b7fbf;padding:4px 12px;margin:8px 0 16px}
.checks{list-style:none;padding:0;margin:12px 0 0}
.checks li{padding:3px 0}.checks .p::before{content:"\2713  ";color:var(--ok);font-weight:700}
.checks .f::before{content:"\2717  ";color:var(--bad);font-weight:700}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:14px;margin:18px 0}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:14px 16px}
.card .k{color:var(--muted);font-size:13px}.card .v{font-size:24px;font-weight:650}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid var(--line);border-radius:8px;overflow:hidden}
th,td{padding:7px 12px;border-bottom:1px solid #edf0f3;text-align:right;font-variant-numeric:tabular-nums}
th:first-child,td:first-child{text-align:left}
th{background:#f0f3f6;font-weight:600}
tr.key td{font-weight:650}
.panel{background:#fff;border:1px solid var(--line);border-radius:10px;padding:10px 12px;margin:12px 0}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:12px}
@media(max-width:800px){.grid2{grid-template-columns:1fr}}
svg.chart{width:100%;height:auto;display:block}
svg .tick{font-size:11px;fill:#616e7c}svg .axis{font-size:12px;fill:#323f4b}
svg .legend{font-size:12px;fill:#323f4b}svg .ref{font-size:11px;font-weight:600}
.findings li{margin:6px 0}.findings code{background:#eef1f4;padding:1px 5px;border-radius:4px;font-size:12px}
.note{color:var(--muted);font-size:13px}
dl.cond{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 16px}
dl.cond dt{color:var(--muted)}dl.cond dd{margin:0;word-break:break-word}
"#;

/// A plain table of text cells, escaped.
fn html_table<const N: usize>(headings: &[&str; N], rows: &[[String; N]]) -> String {
    let mut h = String::from("<table><thead><tr>");
    for head in headings {
        let _ = write!(h, "<th>{}</th>", escape_xml(head));
    }
    h.push_str("</tr></thead><tbody>");
    for cells in rows {
        h.push_str("<tr>");
        for cell in cells {
            let _ = write!(h, "<td>{}</td>", escape_xml(cell));
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    h
}

/// Renders the whole page.
pub(crate) fn render_html(c: &Comparison, before: &Log, after: &Log) -> String {
    let e = escape_xml;
    let before_sorted = successful_latencies_sorted(&before.rows);
    let after_sorted = successful_latencies_sorted(&after.rows);
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>Latency report: {} vs {}</title><style>{CSS}</style></head><body><main>",
        e(&c.before.label),
        e(&c.after.label)
    );
    let _ = write!(h, "<h1>Before/After latency report</h1><p class=\"sub\">{} vs {} &middot; SLA: P95 &le; {} ms &middot; percentiles over successful requests, Linear method</p>", e(&c.before.label), e(&c.after.label), c.sla.threshold_ms);
    for warning in &c.warnings {
        let _ = write!(h, "<div class=\"warning\">WARNING: {}</div>", e(warning));
    }
    let class = if c.verdict.met { "pass" } else { "fail" };
    let _ = write!(
        h,
        "<div class=\"verdict {class}\">{}</div><ul class=\"checks\">",
        e(&verdict_line(c))
    );
    for check in &c.verdict.checks {
        let _ = write!(
            h,
            "<li class=\"{}\">{}</li>",
            if check.passed { "p" } else { "f" },
            e(&check.detail)
        );
    }
    h.push_str("</ul>");

    let _ = write!(h, "<div class=\"cards\">");
    for (k, v) in [
        (
            format!("{} P95", c.before.label),
            format!("{} ms", fmt_opt(c.before.p95_ms, 1)),
        ),
        (
            format!("{} P95", c.after.label),
            format!("{} ms", fmt_opt(c.after.p95_ms, 1)),
        ),
        (
            "P95 change".to_owned(),
            fmt_opt(c.delta.p95_ms.pct, 1) + " %",
        ),
        (
            format!("{} failed", c.after.label),
            format!("{} of {}", c.after.failed, c.after.total),
        ),
    ] {
        let _ = write!(
            h,
            "<div class=\"card\"><div class=\"k\">{}</div><div class=\"v\">{}</div></div>",
            e(&k),
            e(&v)
        );
    }
    h.push_str("</div>");

    h.push_str("<h2>Before vs After</h2><table><thead><tr>");
    for head in headings(c) {
        let _ = write!(h, "<th>{}</th>", e(&head));
    }
    h.push_str("</tr></thead><tbody>");
    for (metric, cells) in table_rows(c) {
        let key = matches!(metric, "p50_ms" | "p95_ms" | "p99_ms" | "failed");
        let _ = write!(h, "<tr{}>", if key { " class=\"key\"" } else { "" });
        for cell in cells {
            let _ = write!(h, "<td>{}</td>", e(&cell));
        }
        h.push_str("</tr>");
    }
    let _ = write!(
        h,
        "</tbody></table><p class=\"note\">Before: {} log {}. After: {} log {}. Throughput = successful requests / (last response &minus; first start).</p>",
        e(&c.before.source),
        e(c.before.log_file.as_deref().unwrap_or("")),
        e(&c.after.source),
        e(c.after.log_file.as_deref().unwrap_or(""))
    );

    h.push_str("<h2>Latency distribution</h2>");
    let _ = write!(
        h,
        "<div class=\"panel\">{}</div>",
        cdf_chart(c, &before_sorted, &after_sorted).render()
    );
    let edges = bin_edges(
        before_sorted.iter().chain(&after_sorted).copied(),
        c.sla.threshold_ms,
    );
    let _ = write!(
        h,
        "<div class=\"grid2\"><div class=\"panel\">{}</div><div class=\"panel\">{}</div></div>",
        histogram(c, &c.before.label, BEFORE_COLOR, &before_sorted, &edges).render(),
        histogram(c, &c.after.label, AFTER_COLOR, &after_sorted, &edges).render()
    );
    h.push_str("<h2>Latency over time</h2>");
    let _ = write!(
        h,
        "<div class=\"panel\">{}</div>",
        over_time_chart(c, before, after).render()
    );

    if let Some(d) = &c.decision {
        let _ = write!(
            h,
            "<h2>Why this After (the analysis's decision)</h2><p>{}</p>",
            e(&model::comparison::decision_sentence(d))
        );
        h.push_str(&html_table(
            &model::comparison::DECISION_HEADINGS,
            &model::comparison::decision_rows(d),
        ));
    }
    if let Some(p) = &c.prediction {
        let _ = write!(
            h,
            "<h2>Prediction (what-if engine) beside measurement</h2><p>{}</p><p class=\"note\">Fitted service: {}.</p>",
            e(&p.sentence()),
            e(&p.fit)
        );
        h.push_str(&html_table(&Prediction::HEADINGS, &p.rows()));
        let _ = write!(h, "<p>{}</p>", e(&p.conclusion));
        h.push_str(&html_table(&Prediction::RANKED_HEADINGS, &p.ranked_rows()));
    }
    if let Some(p) = &c.llm_prediction {
        let _ = write!(
            h,
            "<h2>Prediction (LLM what-if engine) beside measurement</h2><p>{}</p><p class=\"note\">Fitted step model: {}.</p>",
            e(&p.sentence()),
            e(&p.fit)
        );
        h.push_str(&html_table(&LlmPrediction::HEADINGS, &p.table()));
        let _ = write!(h, "<p>{}</p>", e(&p.conclusion));
        h.push_str(&html_table(
            &LlmPrediction::RANKED_HEADINGS,
            &p.ranked_rows(),
        ));
    }
    for (capacity, heading) in c.capacities() {
        let _ = write!(
            h,
            "<h2>{}</h2><p>{}</p><div class=\"panel\">{}</div>",
            e(heading),
            e(&capacity.sentence()),
            capacity_chart(c, capacity).render()
        );
        h.push_str(&html_table(&Capacity::HEADINGS, &capacity.rows()));
    }

    if !c.breakdowns.is_empty() {
        let _ = write!(
            h,
            "<h2>Where the time goes</h2><div class=\"panel\">{}</div><p class=\"note\">Each successful request's latency split by the server's Server-Timing and the client's timings, averaged over all requests and over the slowest 5%. The batch wait is a lower bound (to the last member's start); the rest is transfer and the client's own work.</p>",
            breakdown_chart(&c.breakdowns)
        );
        let rows: Vec<[String; 7]> = c
            .breakdowns
            .iter()
            .flat_map(Breakdown::table_rows)
            .collect();
        h.push_str(&html_table(&Breakdown::HEADINGS, &rows));
    }

    h.push_str("<h2>Diagnosis (from measured data)</h2>");
    if !c.summary.is_empty() {
        h.push_str("<div class=\"summary\">");
        for line in &c.summary {
            let _ = write!(h, "<p><strong>{}</strong></p>", e(line));
        }
        h.push_str("</div>");
    }
    h.push_str("<ul class=\"findings\">");
    if c.diagnosis.is_empty() {
        h.push_str("<li>No finding: the logs lack the rows or columns the findings need.</li>");
    }
    for f in &c.diagnosis {
        let _ = write!(h, "<li><code>{}</code> {}</li>", e(&f.id), e(&f.finding));
    }
    h.push_str("</ul>");

    let q = &c.quality;
    let _ = write!(
        h,
        "<h2>Output quality</h2><ul><li>Identical inputs: {} ({} request ids missing from the After, {} extra)</li><li>Outputs verified by the client: {} (mismatches: Before {}, After {})</li>",
        yes_no(q.identical_inputs), q.missing_in_after, q.extra_in_after, yes_no(q.verified), q.before_mismatches, q.after_mismatches
    );
    if q.digests_compared > 0 {
        let _ = write!(
            h,
            "<li>Output digests compared: {}, differing: {}</li>",
            q.digests_compared, q.digest_differences
        );
    }
    h.push_str("</ul>");

    if let Some(paragraph) = reproduction_paragraph(c, e, |s| format!("<strong>{s}</strong>")) {
        let _ = write!(
            h,
            "<h2>Rust reproduction of the Before</h2><p>{paragraph}</p>"
        );
    }

    if let Some(py) = &c.input_py_stdout {
        let _ = write!(
            h,
            "<h2>input.py's printed numbers, reconciled</h2><p>input.py computes percentiles with <code>statistics.quantiles(n=100)</code> (Exclusive method) over status-200 rows; recomputed that way from its log they match to {} ms: <strong>{}</strong>. This report uses the Linear method throughout.</p><table><thead><tr>",
            py.tolerance_ms,
            if py.matches { "yes" } else { "no" }
        );
        for heading in INPUT_PY_HEADINGS {
            let _ = write!(h, "<th>{heading}</th>");
        }
        h.push_str("</tr></thead><tbody>");
        for cells in input_py_rows(py) {
            h.push_str("<tr>");
            for cell in &cells {
                let _ = write!(h, "<td>{}</td>", e(cell));
            }
            h.push_str("</tr>");
        }
        h.push_str("</tbody></table>");
        for m in &py.mismatches {
            let _ = write!(h, "<p class=\"note\">Mismatch: {}</p>", e(m));
        }
    }

    h.push_str("<h2>Conditions</h2><dl class=\"cond\">");
    for (key, shown) in c.conditions.entries() {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", e(&key), e(&shown));
    }
    let _ = writeln!(
        h,
        "<dt>SLA</dt><dd>P95 &le; {} ms, failed requests allowed: {}</dd></dl><p class=\"note\">Generated by the report tool from the per-request logs; every number above is recomputable from them (comparison.json, comparison.csv).</p></main></body></html>",
        c.sla.threshold_ms, c.verdict.max_failed
    );
    h
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
