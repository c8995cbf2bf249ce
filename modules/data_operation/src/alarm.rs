//! The periodic step (Wendelin's alarm: `ERP5Site_createDataAnalysisList` and the steps
//! around it): one Data Analysis per (started Data Ingestion × validated Data
//! Transformation of its product), idempotently; finished batch ingestions stopped; a run
//! queued for every started analysis with input left, and the analyses of stopped batch
//! ingestions stopped once they have read everything.

use serde_json::{json, Map, Value};
use wendelin_core::activity;
use wendelin_core::catalog::{self, Count, Search};
use wendelin_core::db::DbConnection;
use wendelin_core::document::{self as docs};
use wendelin_core::{
    Call, CoreError, CoreResult, Document, Host, MethodOutput, NewDocument, Registry, User,
};

use crate::exec::{self, Progress};
use crate::{
    ANALYSIS_FOLDER, ANALYSIS_LINE, DATA_ANALYSIS, DATA_TRANSFORMATION, PROGRESS_FOLDER,
    PROGRESS_INDICATOR, REFRESH_WORKFLOW, TRANSFORMATION_LINE, USE_BATCH, USE_STREAM,
};

/// Documents matching `query` that `user` may View, every page.
fn search_all(
    conn: &mut DbConnection,
    registry: &Registry,
    user: &User,
    query: &str,
) -> CoreResult<Vec<Document>> {
    let principals = user.principals();
    let mut out = Vec::new();
    loop {
        let page = catalog::search(
            conn,
            registry,
            None,
            &principals,
            &Search {
                query: query.into(),
                sort_on: "uid".into(),
                limit: 1000,
                offset: out.len() as i64,
            },
            Count::None,
        )?;
        let n = page.documents.len();
        out.extend(page.documents);
        if n < 1000 {
            return Ok(out);
        }
    }
}

/// The method: creates the missing analyses, stops finished batch ingestions, queues the
/// runs due and stops the batch analyses that are done; returns what it did.
pub fn create_method(call: &mut Call<'_>) -> CoreResult<MethodOutput> {
    // Analyses first: a batch ingestion finished before the first step still gets its
    // analysis (the create step only looks at started ingestions).
    let created = create_analyses(call.conn, call.registry, call.user)?;
    let stopped = stop_finished_batches(call.conn, call.registry, call.host, call.user)?;
    let (queued, done) = queue_due(call.conn, call.registry, call.host, call.user)?;
    Ok(MethodOutput::Json(json!({
        "created": created, "stopped_ingestions": stopped, "queued": queued,
        "stopped_analyses": done,
    })))
}

/// The analyses of `ingestion` (its `causality` back-references).
fn analyses_of(conn: &mut DbConnection, ingestion: &Document) -> CoreResult<Vec<Document>> {
    let paths = docs::relations_to(conn, ingestion.uid, Some("causality"))?
        .remove("causality")
        .unwrap_or_default();
    let mut out = Vec::new();
    for path in paths {
        if let Some(a) = docs::find(conn, &path)? {
            if a.portal_type == DATA_ANALYSIS {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// The started Data Ingestions `user` may View.
fn started_ingestions(
    conn: &mut DbConnection,
    registry: &Registry,
    user: &User,
) -> CoreResult<Vec<Document>> {
    search_all(
        conn,
        registry,
        user,
        "portal_type:\"Data Ingestion\" AND data_ingestion_state:started",
    )
}

/// Whether `analysis` reads a batch ingestion (an input line of use
/// `big_data/ingestion/batch`).
fn reads_batch(conn: &mut DbConnection, analysis: &Document) -> CoreResult<bool> {
    let (lines, _) = docs::children(conn, analysis.uid, None, 1000, 0)?;
    for line in lines {
        let props = line.property_map()?;
        let quantity = props.get("quantity").and_then(Value::as_f64).unwrap_or(0.0);
        if quantity < 0.0 && props.get("use").and_then(Value::as_str) == Some(USE_BATCH) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a started ingestion is finished: its `stop_date` has passed, or none of its
/// streams grew for `idle` (zero: never by idleness).
fn finished(
    conn: &mut DbConnection,
    host: &dyn Host,
    ingestion: &Document,
    idle: std::time::Duration,
) -> CoreResult<bool> {
    let now = chrono::Utc::now();
    let props = ingestion.property_map()?;
    if let Some(stop) = props
        .get("stop_date")
        .and_then(Value::as_str)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    {
        if stop <= now {
            return Ok(true);
        }
    }
    if idle.is_zero() {
        return Ok(false);
    }
    let (lines, _) = docs::children(conn, ingestion.uid, None, 1000, 0)?;
    let mut newest: Option<chrono::DateTime<chrono::FixedOffset>> = None;
    for line in lines {
        let streams = docs::relations_from(conn, line.uid, Some("aggregate"))?
            .remove("aggregate")
            .unwrap_or_default();
        for path in streams {
            let Some(stream) = docs::find(conn, &path)? else {
                continue;
            };
            let Some(at) = wendelin_data_stream::last_append(host, &stream)?
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
            else {
                continue;
            };
            newest = Some(newest.map_or(at, |n| n.max(at)));
        }
    }
    let idle = chrono::Duration::from_std(idle).unwrap_or(chrono::Duration::MAX);
    Ok(newest.is_some_and(|at| now.signed_duration_since(at) >= idle))
}

/// Wendelin's first step: stops the started ingestions that a batch analysis reads and
/// that are finished ([`finished`]); returns their paths.
pub fn stop_finished_batches(
    conn: &mut DbConnection,
    registry: &Registry,
    host: &dyn Host,
    user: &User,
) -> CoreResult<Vec<String>> {
    let idle = std::time::Duration::from_secs(crate::settings().batch_idle_seconds);
    let ingestions = started_ingestions(conn, registry, user)?;
    let mut stopped = Vec::new();
    for ingestion in ingestions {
        let mut batch = false;
        for a in analyses_of(conn, &ingestion)? {
            if reads_batch(conn, &a)? {
                batch = true;
                break;
            }
        }
        if batch && finished(conn, host, &ingestion, idle)? {
            host.fire_in(conn, user, &ingestion.path, "stop", &Map::new())?;
            tracing::info!(ingestion = %ingestion.path, "batch ingestion finished: stopped");
            stopped.push(ingestion.path);
        }
    }
    Ok(stopped)
}

/// Paths of the analyses created.
pub fn create_analyses(
    conn: &mut DbConnection,
    registry: &Registry,
    user: &User,
) -> CoreResult<Vec<String>> {
    let ingestions = started_ingestions(conn, registry, user)?;
    if ingestions.is_empty() {
        return Ok(Vec::new());
    }
    let transformations = search_all(
        conn,
        registry,
        user,
        &format!("portal_type:\"{DATA_TRANSFORMATION}\" AND validation_state:validated"),
    )?;
    let mut created = Vec::new();
    for ingestion in &ingestions {
        // (product reference, streams) of each line of the ingestion.
        let (lines, _) = docs::children(conn, ingestion.uid, None, 1000, 0)?;
        let mut fed: Vec<(String, Vec<String>)> = Vec::new();
        for line in lines {
            let resource = line
                .property_map()?
                .get("resource")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let streams = docs::relations_from(conn, line.uid, Some("aggregate"))?
                .remove("aggregate")
                .unwrap_or_default();
            fed.push((resource, streams));
        }
        for tr in &transformations {
            let product = tr
                .property_map()?
                .get("resource")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if !fed.iter().any(|(r, _)| product.is_empty() || *r == product) {
                continue;
            }
            if exists(conn, ingestion, tr)? {
                continue;
            }
            created.push(create_one(conn, registry, user, ingestion, tr, &fed)?);
        }
    }
    Ok(created)
}

/// Whether an analysis of `ingestion` by `transformation` exists.
fn exists(conn: &mut DbConnection, ingestion: &Document, tr: &Document) -> CoreResult<bool> {
    for a in analyses_of(conn, ingestion)? {
        let spec = docs::relations_from(conn, a.uid, Some("specialise"))?;
        if spec.get("specialise").is_some_and(|p| p.contains(&tr.path)) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn get_or_create(
    conn: &mut DbConnection,
    registry: &Registry,
    user: &User,
    folder: &str,
    body: Value,
) -> CoreResult<Document> {
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if let Some(d) = docs::find(conn, &format!("{folder}/{id}"))? {
        return Ok(d);
    }
    docs::create(conn, registry, folder, NewDocument::from_json(body)?, user)
}

fn create_one(
    conn: &mut DbConnection,
    registry: &Registry,
    user: &User,
    ingestion: &Document,
    tr: &Document,
    fed: &[(String, Vec<String>)],
) -> CoreResult<String> {
    let id = format!(
        "{}-{}-{}",
        chrono::Utc::now().format("%d%m%Y"),
        ingestion.id,
        tr.id
    );
    let title = format!(
        "{} of {}",
        if tr.title.is_empty() {
            &tr.id
        } else {
            &tr.title
        },
        ingestion.id
    );
    let analysis = docs::create(
        conn,
        registry,
        ANALYSIS_FOLDER,
        NewDocument::from_json(json!({
            "portal_type": DATA_ANALYSIS, "id": id, "title": title,
            "specialise": tr.path, "causality": ingestion.path,
            "start_date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }))?,
        user,
    )?;
    let (lines, _) = docs::children(conn, tr.uid, None, 1000, 0)?;
    for line in lines
        .into_iter()
        .filter(|l| l.portal_type == TRANSFORMATION_LINE)
    {
        let props = line.property_map()?;
        let quantity = props.get("quantity").and_then(Value::as_f64).unwrap_or(0.0);
        let use_ = props
            .get("use")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let resource = props
            .get("resource")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut aggregate: Vec<String> = Vec::new();
        if quantity < 0.0 && (use_ == USE_STREAM || use_ == USE_BATCH || use_.is_empty()) {
            for (r, streams) in fed {
                if resource.is_empty() || *r == resource {
                    aggregate.extend(streams.iter().cloned());
                }
            }
        }
        let types: Vec<String> = props
            .get("aggregated_portal_type_list")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        for t in &types {
            let made_id = format!("{id}-{}", line.id);
            let made = match t.as_str() {
                "Data Array" => get_or_create(
                    conn,
                    registry,
                    user,
                    wendelin_data_array::FOLDER,
                    json!({
                        "portal_type": "Data Array", "id": made_id,
                        "title": format!("{} of {}", line.id, analysis.id),
                    }),
                )?,
                PROGRESS_INDICATOR => get_or_create(
                    conn,
                    registry,
                    user,
                    PROGRESS_FOLDER,
                    json!({
                        "portal_type": PROGRESS_INDICATOR, "id": made_id,
                        "title": format!("progress of {}", analysis.id),
                        "int_offset_index": 0,
                        "state": serde_json::to_value(Progress::default()).map_err(|e| CoreError::Internal(e.to_string()))?,
                    }),
                )?,
                other => {
                    return Err(CoreError::Invalid(format!(
                        "the line {} of /{} asks for a {other}: only Data Array and Progress Indicator are created",
                        line.id, tr.path
                    )))
                }
            };
            aggregate.push(made.path);
        }
        let mut body = Map::new();
        for key in [
            "quantity",
            "use",
            "resource",
            "aggregated_portal_type_list",
            "parameters",
            "view_axis",
            "view_index",
        ] {
            if let Some(v) = props.get(key).filter(|v| !v.is_null()) {
                body.insert(key.into(), v.clone());
            }
        }
        if let Some(op) = docs::relations_from(conn, line.uid, Some("data_operation"))?
            .remove("data_operation")
            .and_then(|p| p.into_iter().next())
        {
            body.insert("data_operation".into(), Value::from(op));
        }
        body.insert("portal_type".into(), Value::from(ANALYSIS_LINE));
        body.insert("id".into(), Value::from(line.id.clone()));
        body.insert("title".into(), Value::from(line.title.clone()));
        body.insert("aggregate".into(), json!(aggregate));
        docs::create(
            conn,
            registry,
            &analysis.path,
            NewDocument::from_json(Value::Object(body))?,
            user,
        )?;
    }
    Ok(analysis.path)
}

/// Whether a started analysis has work: a refresh asked, stream input beyond its offset,
/// or an input array changed since its last run began (arrays carry no offset the step
/// could compare: their `zarr.json`, rewritten by every append, is newer than that run).
pub fn due(conn: &mut DbConnection, host: &dyn Host, analysis: &Document) -> CoreResult<bool> {
    if !exec::in_state(conn, analysis, REFRESH_WORKFLOW, "current")? {
        return Ok(true);
    }
    let lines = exec::load_lines(conn, analysis)?;
    let pi = lines
        .iter()
        .flat_map(|l| l.aggregates.iter())
        .find(|d| d.portal_type == PROGRESS_INDICATOR)
        .map(Document::property_map)
        .transpose()?
        .unwrap_or_default();
    let offset = pi
        .get("int_offset_index")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    // When the last run began: its end less its length, less a second of slack for
    // clocks that tick coarser than a run.
    let began = pi
        .get("last_run")
        .and_then(Value::as_str)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|end| {
            let took = pi
                .get("state")
                .and_then(|s| s.get("last_run_seconds"))
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            let took = std::time::Duration::try_from_secs_f64(took.max(0.0) + 1.0)
                .unwrap_or(std::time::Duration::from_secs(1));
            std::time::SystemTime::from(end) - took
        });
    for line in lines.iter().filter(|l| l.quantity < 0.0) {
        if let Some(stream) = line.stream() {
            if wendelin_data_stream::size_of(host, stream)? > offset {
                return Ok(true);
            }
        }
        if let Some(array) = line.array() {
            let meta = wendelin_data_array::array_dir(host, array)?.join("zarr.json");
            let Ok(changed) = std::fs::metadata(&meta).and_then(|m| m.modified()) else {
                continue; // not written yet
            };
            if began.is_none_or(|b| changed >= b) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Queues a run of every started analysis that is due, and stops those that are not
/// due, read a batch ingestion whose ingestion is stopped, and have no run queued or
/// running (everything is read); returns the paths queued and the paths stopped.
pub fn queue_due(
    conn: &mut DbConnection,
    registry: &Registry,
    host: &dyn Host,
    user: &User,
) -> CoreResult<(Vec<String>, Vec<String>)> {
    let analyses = search_all(
        conn,
        registry,
        user,
        &format!("portal_type:\"{DATA_ANALYSIS}\" AND data_analysis_state:started"),
    )?;
    let mut queued = Vec::new();
    let mut stopped = Vec::new();
    for a in analyses {
        if due(conn, host, &a)? {
            if exec::queue_run(conn, user, &a.path, 0)? {
                queued.push(a.path);
            }
        } else if reads_batch(conn, &a)?
            && ingestion_stopped(conn, &a)?
            && !activity::is_queued(conn, &a.path, crate::EXECUTE)?
        {
            host.fire_in(conn, user, &a.path, "stop", &Map::new())?;
            tracing::info!(analysis = %a.path, "batch analysis done: stopped");
            stopped.push(a.path);
        }
    }
    Ok((queued, stopped))
}

/// Whether the ingestion `analysis` reads (its `causality`) is stopped.
fn ingestion_stopped(conn: &mut DbConnection, analysis: &Document) -> CoreResult<bool> {
    let causes = docs::relations_from(conn, analysis.uid, Some("causality"))?
        .remove("causality")
        .unwrap_or_default();
    for path in causes {
        if let Some(ingestion) = docs::find(conn, &path)? {
            if exec::in_state(conn, &ingestion, "data_ingestion_workflow", "stopped")? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
