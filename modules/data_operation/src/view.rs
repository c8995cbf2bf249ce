//! What an analysis shows: inputs, outputs, progress, lag, rate, last error (the page
//! `DataAnalysis_view` and `wendelin analysis list`).

use askama::Template;
use serde_json::{json, Value};
use wendelin_core::db::DbConnection;
use wendelin_core::document::{self as docs};
use wendelin_core::{Call, CoreError, CoreResult, Document, Host, MethodOutput};

use crate::exec::{self, Progress};
use crate::{EXECUTE, PROGRESS_INDICATOR, REFRESH_WORKFLOW};

/// The state of an analysis as JSON.
pub fn describe(
    conn: &mut DbConnection,
    host: &dyn Host,
    analysis: &Document,
) -> CoreResult<Value> {
    let states = docs::workflow_states(conn, analysis.uid)?;
    let lines = exec::load_lines(conn, analysis)?;
    let mut offset = 0;
    let mut last_run = Value::Null;
    let mut rate = Value::Null;
    let mut rows = Value::Null;
    let mut output_errors = Value::Null;
    let mut size = 0;
    let mut last_append: Option<String> = None;
    for line in &lines {
        for d in &line.aggregates {
            if d.portal_type == PROGRESS_INDICATOR {
                let p = d.property_map()?;
                offset = p
                    .get("int_offset_index")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                last_run = p.get("last_run").cloned().unwrap_or(Value::Null);
                rate = p.get("bytes_per_second").cloned().unwrap_or(Value::Null);
                let progress: Progress = p
                    .get("state")
                    .cloned()
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default();
                rows = json!(progress.rows);
                output_errors = json!(progress.errors);
            }
        }
        if line.quantity < 0.0 {
            if let Some(s) = line.stream() {
                size += wendelin_data_stream::size_of(host, s)?;
                last_append = wendelin_data_stream::last_append(host, s)?.or(last_append);
            }
        }
    }
    let lag_bytes = size.saturating_sub(offset);
    // Seconds the oldest unprocessed byte has waited, at most: since the last run.
    let lag_seconds = if lag_bytes == 0 {
        0.0
    } else {
        last_run
            .as_str()
            .or(last_append.as_deref())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| {
                (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_milliseconds() as f64
                    / 1000.0
            })
            .unwrap_or(0.0)
            .max(0.0)
    };
    let last_error = wendelin_core::activity::list(conn, None, 1000)?
        .into_iter()
        .filter(|a| a.path == analysis.path && a.method == EXECUTE)
        .find_map(|a| a.last_error)
        .or_else(|| {
            output_errors.as_object().and_then(|o| {
                o.iter()
                    .next()
                    .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("")))
            })
        });
    let name = |l: &exec::Line| l.reference().to_owned();
    Ok(json!({
        "path": analysis.path, "title": analysis.title, "states": states,
        "offset": offset, "input_size": size, "lag_bytes": lag_bytes, "lag_seconds": lag_seconds,
        "last_run": last_run, "bytes_per_second": rate, "rows": rows, "last_error": last_error, "output_errors": output_errors,
        "operation": lines.iter().find_map(|l| l.operation.clone()),
        "inputs": lines.iter().filter(|l| l.quantity < 0.0)
            .flat_map(|l| l.aggregates.iter().map(move |d| json!([name(l), d.path]))).collect::<Vec<_>>(),
        "outputs": lines.iter().filter(|l| l.quantity > 0.0)
            .flat_map(|l| l.aggregates.iter().map(move |d| json!([name(l), d.path, d.portal_type]))).collect::<Vec<_>>(),
    }))
}

#[derive(Template)]
#[template(path = "data_analysis_view.html")]
struct DataAnalysisView {
    title: String,
    path: String,
    state: String,
    refresh: String,
    operation: String,
    offset: u64,
    input_size: u64,
    percent: String,
    lag_bytes: u64,
    lag_seconds: String,
    last_run: String,
    rate: String,
    last_error: String,
    inputs: Vec<(String, String)>,
    /// Reference, document path, portal type, and the output's error of its last run
    /// (empty when it was computed).
    outputs: Vec<(String, String, String, String)>,
}

fn pairs(v: &Value) -> Vec<Vec<String>> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    p.as_array()
                        .map(|x| {
                            x.iter()
                                .map(|s| s.as_str().unwrap_or("").to_owned())
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `DataAnalysis_view`: the analysis page.
pub fn view_method(call: &mut Call<'_>) -> CoreResult<MethodOutput> {
    let analysis = call.context.clone();
    let d = describe(call.conn, call.host, &analysis)?;
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let n = |k: &str| d.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (offset, size) = (n("offset"), n("input_size"));
    let page = DataAnalysisView {
        title: if analysis.title.is_empty() {
            analysis.id.clone()
        } else {
            analysis.title.clone()
        },
        path: analysis.path.clone(),
        state: d["states"]["data_analysis_workflow"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        refresh: d["states"][REFRESH_WORKFLOW]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        operation: s("operation"),
        offset,
        input_size: size,
        percent: if size == 0 {
            "100".into()
        } else {
            format!("{:.1}", offset as f64 * 100.0 / size as f64)
        },
        lag_bytes: n("lag_bytes"),
        lag_seconds: format!("{:.1}", d["lag_seconds"].as_f64().unwrap_or(0.0)),
        last_run: s("last_run"),
        rate: format!("{:.0}", d["bytes_per_second"].as_f64().unwrap_or(0.0)),
        last_error: s("last_error"),
        inputs: pairs(&d["inputs"])
            .into_iter()
            .map(|p| {
                (
                    p.first().cloned().unwrap_or_default(),
                    p.get(1).cloned().unwrap_or_default(),
                )
            })
            .collect(),
        outputs: pairs(&d["outputs"])
            .into_iter()
            .map(|p| {
                (
                    p.first().cloned().unwrap_or_default(),
                    p.get(1).cloned().unwrap_or_default(),
                    p.get(2).cloned().unwrap_or_default(),
                    p.first()
                        .and_then(|name| d["output_errors"].get(name))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                )
            })
            .collect(),
    };
    page.render()
        .map(MethodOutput::Html)
        .map_err(|e| CoreError::Internal(format!("DataAnalysis_view failed: {e}")))
}
