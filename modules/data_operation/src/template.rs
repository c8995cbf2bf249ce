//! One-command set-up of the tutorial flow: a Data Transformation "WAV → channels →
//! spectrum" for the ingestions of a product, with its Data Operation, validated.

use serde_json::{json, Map, Value};
use wendelin_core::{CoreError, CoreResult, Document, NewDocument, Portal, User};

use crate::{DATA_OPERATION, DATA_TRANSFORMATION, TRANSFORMATION_LINE, USE_STREAM, USE_TRANSIENT};

/// What [`provision_wav`] creates.
#[derive(Debug, Clone)]
pub struct WavTemplate {
    /// Id of the transformation.
    pub id: String,
    /// Reference of the Data Product whose ingestions it analyses.
    pub product: String,
    /// Channels of the WAV files (one array per channel).
    pub channels: u16,
    /// STFT window and hop, in samples (of channel 0).
    pub window: u64,
    /// STFT hop.
    pub hop: u64,
    /// Whether to keep `spectrum_0`, the |rfft| of all of channel 0 (recomputed whole as
    /// the channel grows, refused above `memory_budget`: leave it out for long streams).
    pub spectrum: bool,
    /// Bytes per chunk of `stft_0`'s array (its line's `chunk_bytes`; the CLI's default
    /// is the arrays' 1 MiB). 4 MiB chunks (fewer files) did not make the 1 GiB bench
    /// faster on this VM (bench/RESULTS.md, 2026-12-07 afternoon), and a viewer reading a
    /// few rows decodes a whole chunk.
    pub stft_chunk_bytes: u64,
    /// The element type of `stft_0` (its line's `dtype`): float64 as numpy computes it,
    /// or float32, half the bytes.
    pub stft_dtype: crate::spectrum::Precision,
}

fn ensure(portal: &Portal, user: &User, folder: &str, body: Value) -> CoreResult<Document> {
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let path = format!("{folder}/{id}");
    match portal.get(user, &path) {
        Ok(d) => Ok(d),
        Err(CoreError::NotFound(_)) => portal.create(user, folder, NewDocument::from_json(body)?),
        Err(e) => Err(e),
    }
}

fn validate(portal: &Portal, user: &User, path: &str) -> CoreResult<()> {
    let states = portal.workflows(user, path)?;
    if states
        .iter()
        .any(|s| s.workflow == "validation_workflow" && s.state == "draft")
    {
        portal.fire(user, path, "validate", &Map::new())?;
    }
    Ok(())
}

/// Creates (or completes) the transformation: input `stream` (the ingestion's Data
/// Stream), outputs `channel_<n>` (Data Arrays), `spectrum_0` (|rfft| of channel 0),
/// `stft_0` (Hann STFT of channel 0), `progress` (Progress Indicator), and the
/// operation line running `wav_decode`. Returns its path.
pub fn provision_wav(portal: &Portal, user: &User, t: &WavTemplate) -> CoreResult<String> {
    if t.channels == 0 || t.window == 0 || t.hop == 0 {
        return Err(CoreError::BadRequest(
            "channels, window and hop must be positive".into(),
        ));
    }
    let op = ensure(
        portal,
        user,
        "data_operation_module",
        json!({"portal_type": DATA_OPERATION, "id": "wav_decode", "reference": "wav_decode",
               "title": "Decode WAV into channel arrays", "script_id": "wav_decode",
               "parameters": {"field": "data"}}),
    )?;
    validate(portal, user, &op.path)?;
    let tr = ensure(
        portal,
        user,
        "data_transformation_module",
        json!({"portal_type": DATA_TRANSFORMATION, "id": t.id, "title": "WAV → channels → spectrum",
               "resource": t.product}),
    )?;
    let mut lines = vec![
        json!({"id": "stream", "title": "WAV bytes", "quantity": -1.0, "use": USE_STREAM,
               "resource": t.product}),
        json!({"id": "operation", "title": "decode", "quantity": 0.0, "data_operation": op.path}),
    ];
    for c in 0..t.channels {
        lines.push(
            json!({"id": format!("channel_{c}"), "title": format!("channel {c}"),
            "quantity": 1.0, "use": USE_TRANSIENT, "aggregated_portal_type_list": ["Data Array"]}),
        );
    }
    if t.spectrum {
        lines.push(
            json!({"id": "spectrum_0", "title": "|rfft| of channel 0", "quantity": 1.0,
            "use": USE_TRANSIENT, "aggregated_portal_type_list": ["Data Array"],
            "parameters": {"derive": "rfft", "of": "channel_0"}}),
        );
    }
    lines.push(
        json!({"id": "stft_0", "title": "STFT of channel 0", "quantity": 1.0,
        "use": USE_TRANSIENT, "aggregated_portal_type_list": ["Data Array"],
        "parameters": {"derive": "stft", "of": "channel_0", "window": t.window, "hop": t.hop,
                       "window_fn": "hann", "scale": "magnitude",
                       "chunk_bytes": t.stft_chunk_bytes,
                       "dtype": t.stft_dtype.dtype()}}),
    );
    lines.push(
        json!({"id": "progress", "title": "progress", "quantity": 1.0,
        "use": USE_TRANSIENT, "aggregated_portal_type_list": ["Progress Indicator"]}),
    );
    for mut line in lines {
        line["portal_type"] = Value::from(TRANSFORMATION_LINE);
        ensure(portal, user, &tr.path, line)?;
    }
    validate(portal, user, &tr.path)?;
    Ok(tr.path)
}
