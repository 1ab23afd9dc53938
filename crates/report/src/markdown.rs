//! `report.md`: the verdict, the table, reproduction, `input.py` reconciled,
//! the diagnosis and the conditions, readable as plain text or rendered.

use std::fmt::Write as _;

use model::capacity::Capacity;
use model::comparison::{Breakdown, Comparison, LlmPrediction, Prediction};

use crate::table::{
    headings, input_py_rows, reproduction_paragraph, table_rows, verdict_line, INPUT_PY_HEADINGS,
};

/// Text from logs or callers may hold `<script>` or `|`: Markdown renderers
/// pass raw HTML through, and a `|` would break a table row. Only a `<` or
/// `&` that could start a tag or an entity is escaped, so that "P95 <= 800"
/// stays readable in the raw file.
pub(crate) fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        match c {
            '<' if next.is_some_and(|n| n.is_ascii_alphabetic() || "/!?".contains(n)) => {
                out.push_str("&lt;");
            }
            '&' if next.is_some_and(|n| n.is_ascii_alphanumeric() || n == '#') => {
                out.push_str("&amp;")
            }
            '|' => out.push_str("\\|"),
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

fn row(cells: &[String]) -> String {
    let escaped: Vec<String> = cells.iter().map(|c| escape_markdown(c)).collect();
    format!("| {} |\n", escaped.join(" | "))
}

/// Renders the whole report.
pub(crate) fn render_markdown(c: &Comparison) -> String {
    // Writing to a String cannot fail, so the fmt results are ignored.
    let mut md = String::new();
    let _ = writeln!(md, "# Before/After latency comparison\n");
    for warning in &c.warnings {
        let _ = writeln!(md, "> **WARNING:** {}\n", escape_markdown(warning));
    }
    let _ = writeln!(md, "**{}**\n", escape_markdown(&verdict_line(c)));
    for check in &c.verdict.checks {
        let mark = if check.passed { "pass" } else { "FAIL" };
        let _ = writeln!(md, "- [{mark}] {}", escape_markdown(&check.detail));
    }

    let _ = writeln!(md, "\n## Before vs After\n");
    let _ = writeln!(
        md,
        "Percentiles, mean, min and max are over successful requests, with the Linear quantile method (numpy's default). \
         Throughput is successful requests per second of run time; duration runs from the first request's start to the last response.\n"
    );
    let head = headings(c);
    md.push_str(&row(&head));
    md.push_str("|---|---:|---:|---:|---:|\n");
    for (_, cells) in table_rows(c) {
        md.push_str(&row(&cells));
    }
    let _ = writeln!(
        md,
        "\nSources: Before = {} log{}; After = {} log{}.",
        escape_markdown(&c.before.source),
        file_note(c.before.log_file.as_deref()),
        escape_markdown(&c.after.source),
        file_note(c.after.log_file.as_deref())
    );

    let q = &c.quality;
    let _ = writeln!(md, "\n## Output quality\n");
    let _ = writeln!(
        md,
        "- Identical inputs: {} ({} request ids missing from the After, {} extra)",
        yes_no(q.identical_inputs),
        q.missing_in_after,
        q.extra_in_after
    );
    let _ = writeln!(
        md,
        "- Outputs verified by the client: {} (output mismatches: Before {}, After {})",
        yes_no(q.verified),
        q.before_mismatches,
        q.after_mismatches
    );
    if q.digests_compared > 0 {
        let _ = writeln!(
            md,
            "- Output digests compared request by request: {}, differing: {}",
            q.digests_compared, q.digest_differences
        );
    }

    if let Some(paragraph) = reproduction_paragraph(c, escape_markdown, |s| format!("**{s}**")) {
        let _ = writeln!(md, "\n## Rust reproduction of the Before\n\n{paragraph}");
    }

    if let Some(py) = &c.input_py_stdout {
        let _ = writeln!(md, "\n## input.py's printed numbers, reconciled\n");
        let _ = writeln!(
            md,
            "input.py prints percentiles from `statistics.quantiles(..., n=100)` (the Exclusive method) over status-200 rows. \
             Recomputed with the Exclusive method over its log they match to {} ms: **{}**. The report itself uses the Linear method.\n",
            py.tolerance_ms,
            if py.matches { "yes" } else { "no" }
        );
        md.push_str(&row(&INPUT_PY_HEADINGS.map(String::from)));
        md.push_str("|---|---:|---:|---:|\n");
        for cells in input_py_rows(py) {
            md.push_str(&row(&cells));
        }
        if !py.mismatches.is_empty() {
            md.push('\n');
        }
        for m in &py.mismatches {
            let _ = writeln!(md, "- Mismatch: {}", escape_markdown(m));
        }
    }

    if let Some(d) = &c.decision {
        let _ = writeln!(md, "\n## Why this After (the analysis's decision)\n");
        let _ = writeln!(
            md,
            "{}\n",
            escape_markdown(&model::comparison::decision_sentence(d))
        );
        md.push_str(&row(
            &model::comparison::DECISION_HEADINGS.map(str::to_owned)
        ));
        md.push_str("|---|---:|\n");
        for cells in model::comparison::decision_rows(d) {
            md.push_str(&row(&cells));
        }
    }
    if let Some(p) = &c.prediction {
        let _ = writeln!(md, "\n## Prediction (what-if engine) beside measurement\n");
        let _ = writeln!(md, "{}\n", escape_markdown(&p.sentence()));
        let _ = writeln!(md, "Fitted service: {}.\n", escape_markdown(&p.fit));
        md.push_str(&row(&Prediction::HEADINGS.map(str::to_owned)));
        md.push_str("|---|---:|---:|\n");
        for cells in p.rows() {
            md.push_str(&row(&cells));
        }
        let _ = writeln!(md, "\n{}\n", escape_markdown(&p.conclusion));
        md.push_str(&row(&Prediction::RANKED_HEADINGS.map(str::to_owned)));
        md.push_str("|---:|---|---|---:|---|\n");
        for cells in p.ranked_rows() {
            md.push_str(&row(&cells));
        }
    }
    if let Some(p) = &c.llm_prediction {
        let _ = writeln!(
            md,
            "\n## Prediction (LLM what-if engine) beside measurement\n"
        );
        let _ = writeln!(md, "{}\n", escape_markdown(&p.sentence()));
        let _ = writeln!(md, "Fitted step model: {}.\n", escape_markdown(&p.fit));
        md.push_str(&row(&LlmPrediction::HEADINGS.map(str::to_owned)));
        md.push_str("|---|---:|---:|---:|---:|\n");
        for cells in p.table() {
            md.push_str(&row(&cells));
        }
        let _ = writeln!(md, "\n{}\n", escape_markdown(&p.conclusion));
        md.push_str(&row(&LlmPrediction::RANKED_HEADINGS.map(str::to_owned)));
        md.push_str("|---:|---|---|---:|---:|---:|---|\n");
        for cells in p.ranked_rows() {
            md.push_str(&row(&cells));
        }
    }
    for (capacity, heading) in c.capacities() {
        let _ = writeln!(md, "\n## {heading}\n");
        let _ = writeln!(md, "{}\n", escape_markdown(&capacity.sentence()));
        md.push_str(&row(&Capacity::HEADINGS.map(str::to_owned)));
        md.push_str("|---:|---|---:|---:|---:|---:|---:|---|\n");
        for cells in capacity.rows() {
            md.push_str(&row(&cells));
        }
    }

    if !c.breakdowns.is_empty() {
        let _ = writeln!(md, "\n## Where the time goes\n");
        let _ = writeln!(
            md,
            "Each successful request's latency split by the server's `Server-Timing` and the client's timings, averaged over all requests and over the slowest 5%. The batch wait is a lower bound (to the last member's start); the rest is transfer and the client's own work.\n"
        );
        md.push_str(&row(&Breakdown::HEADINGS.map(str::to_owned)));
        md.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
        for b in &c.breakdowns {
            for cells in b.table_rows() {
                md.push_str(&row(&cells));
            }
        }
    }

    let _ = writeln!(md, "\n## Diagnosis (from measured data)\n");
    for line in &c.summary {
        let _ = writeln!(md, "**{}**  ", escape_markdown(line));
    }
    if !c.summary.is_empty() {
        md.push('\n');
    }
    if c.diagnosis.is_empty() {
        let _ = writeln!(
            md,
            "No finding: the logs lack the rows or columns the findings need."
        );
    }
    for f in &c.diagnosis {
        let _ = writeln!(md, "- `{}` {}", f.id, escape_markdown(&f.finding));
    }

    let _ = writeln!(md, "\n## Conditions\n");
    for (key, shown) in c.conditions.entries() {
        let _ = writeln!(
            md,
            "- {}: {}",
            escape_markdown(&key),
            escape_markdown(&shown)
        );
    }
    let _ = writeln!(
        md,
        "- SLA: P95 <= {} ms; failed requests allowed: {}",
        c.sla.threshold_ms, c.verdict.max_failed
    );
    md
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn file_note(file: Option<&str>) -> String {
    file.map_or(String::new(), |f| format!(" (`{}`)", escape_markdown(f)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_only_what_could_become_markup() {
        assert_eq!(escape_markdown("P95 <= 800 & more"), "P95 <= 800 & more");
        assert_eq!(
            escape_markdown("<script>a|b</script>&amp;"),
            "&lt;script>a\\|b&lt;/script>&amp;amp;"
        );
    }
}
