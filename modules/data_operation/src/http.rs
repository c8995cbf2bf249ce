//! The data operation module as the server sees it: the `[data_operation]` section, the
//! scheduler `wendelin serve` starts (periodic step, and runs queued shortly after an
//! append to a stream an analysis reads), and `wendelin analysis list|run|reprocess`.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use wendelin_core::activity::{self, Activate};
use wendelin_core::document::{self as docs};
use wendelin_core::{CoreResult, Document, Portal, User};
use wendelin_http::{CliCommand, Section, ServerError, ServerModule};

use crate::{
    configure, exec, settings, OperationSettings, ANALYSIS_FOLDER, ANALYSIS_LINE, CREATE_ANALYSES,
    DATA_ANALYSIS, EXECUTE,
};

/// The module's server side.
pub struct DataOperationModule;

impl ServerModule for DataOperationModule {
    fn name(&self) -> &'static str {
        "data_operation"
    }

    fn settings(&self) -> Option<Section> {
        Some(Section::of::<OperationSettings>(
            "data_operation",
            configure,
        ))
    }

    fn start(&self, portal: &Portal) -> Result<(), ServerError> {
        wendelin_data_stream::on_append(appended);
        let portal = portal.clone();
        std::thread::Builder::new()
            .name("data-analysis".into())
            .spawn(move || scheduler(&portal))
            .map_err(|e| {
                ServerError::Internal(format!("cannot start the analysis scheduler: {e}"))
            })?;
        Ok(())
    }

    fn commands(&self) -> Vec<CliCommand> {
        vec![CliCommand::of::<AnalysisCli>(|portal, cli| {
            run_cli(portal, cli)
        })]
    }
}

/// Streams appended to since the scheduler last looked.
struct Dirty {
    streams: Mutex<BTreeSet<i64>>,
    wake: Condvar,
}

fn dirty() -> &'static Dirty {
    static DIRTY: OnceLock<Dirty> = OnceLock::new();
    DIRTY.get_or_init(|| Dirty {
        streams: Mutex::new(BTreeSet::new()),
        wake: Condvar::new(),
    })
}

/// The append listener: notes the stream and wakes the scheduler (no I/O here).
fn appended(_portal: &Portal, stream: &Document, _size: u64) {
    let d = dirty();
    d.streams
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(stream.uid);
    d.wake.notify_one();
}

/// Runs forever: the periodic step every `alarm_interval_seconds` (queued as an activity
/// with a serialization tag, so one node at a time runs it), and, `debounce_millis` after
/// appends, a run for each analysis reading the appended streams.
fn scheduler(portal: &Portal) {
    let s = settings();
    let interval = Duration::from_secs(s.alarm_interval_seconds);
    let debounce = Duration::from_millis(s.debounce_millis);
    let mut next_alarm = Instant::now() + Duration::from_secs(2);
    let d = dirty();
    loop {
        let streams = {
            let mut guard = d
                .streams
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            while guard.is_empty() && (interval.is_zero() || Instant::now() < next_alarm) {
                let wait = if interval.is_zero() {
                    Duration::from_secs(3600)
                } else {
                    next_alarm.saturating_duration_since(Instant::now())
                };
                guard = d
                    .wake
                    .wait_timeout(guard, wait)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            !guard.is_empty()
        };
        if streams {
            std::thread::sleep(debounce);
            let taken = std::mem::take(
                &mut *d
                    .streams
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            if let Err(e) = portal.db.write(|c| follow_appends(c, &taken)) {
                tracing::warn!(error = %e, "cannot queue the analyses of appended streams");
            }
        }
        if !interval.is_zero() && Instant::now() >= next_alarm {
            next_alarm = Instant::now() + interval;
            if let Err(e) = portal.db.write(queue_alarm) {
                tracing::warn!(error = %e, "cannot queue the periodic analysis step");
            }
        }
    }
}

/// Queues the periodic step unless it is queued.
fn queue_alarm(c: &mut wendelin_core::db::DbConnection) -> CoreResult<()> {
    if !activity::is_queued(c, ANALYSIS_FOLDER, CREATE_ANALYSES)? {
        activity::activate(
            c,
            "system",
            ANALYSIS_FOLDER,
            CREATE_ANALYSES,
            &Map::new(),
            &Activate {
                tag: Some("data_operation/alarm".into()),
                ..Activate::default()
            },
        )?;
    }
    Ok(())
}

/// For each appended stream: a run of every started analysis reading it, or, when none
/// reads it yet, the periodic step (which creates the analyses of new ingestions).
fn follow_appends(
    c: &mut wendelin_core::db::DbConnection,
    streams: &BTreeSet<i64>,
) -> CoreResult<()> {
    let mut unknown = false;
    for uid in streams {
        let lines = docs::relations_to(c, *uid, Some("aggregate"))?
            .remove("aggregate")
            .unwrap_or_default();
        let mut analyses = BTreeSet::new();
        for path in lines {
            if let Some(line) = docs::find(c, &path)? {
                if line.portal_type == ANALYSIS_LINE {
                    if let Some((parent, _)) = path.rsplit_once('/') {
                        analyses.insert(parent.to_owned());
                    }
                }
            }
        }
        if analyses.is_empty() && first_news(*uid) {
            unknown = true;
        }
        for path in analyses {
            let Some(a) = docs::find(c, &path)? else {
                continue;
            };
            if exec::in_state(c, &a, "data_analysis_workflow", "started")? {
                exec::queue_run(c, &User::system(), &path, 0)?;
            }
        }
    }
    if unknown {
        queue_alarm(c)?;
    }
    Ok(())
}

/// Whether a stream that no analysis reads should trigger the periodic step now: at most
/// once per 10 s per stream, so streams that feed no transformation do not run it at
/// every append.
fn first_news(stream: i64) -> bool {
    static SEEN: OnceLock<Mutex<std::collections::HashMap<i64, Instant>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let now = Instant::now();
    if seen.len() > 100_000 {
        seen.retain(|_, at| now.duration_since(*at) < Duration::from_secs(10));
    }
    match seen.get(&stream) {
        Some(at) if now.duration_since(*at) < Duration::from_secs(10) => false,
        _ => {
            seen.insert(stream, now);
            true
        }
    }
}

/// Data Analyses.
#[derive(Debug, clap::Parser)]
#[command(name = "analysis")]
struct AnalysisCli {
    /// What to do.
    #[command(subcommand)]
    action: AnalysisAction,
}

/// Data Analysis sub-commands.
#[derive(Debug, clap::Subcommand)]
enum AnalysisAction {
    /// List the analyses with their state and progress (JSON lines).
    List,
    /// Create the missing analyses, then run the given one (or every due one) until its
    /// input is used up, here, without the activity queue.
    Run {
        /// Path of the analysis (data_analysis_module/<id>); all due ones when omitted.
        path: Option<String>,
    },
    /// Reprocess an analysis from scratch: offsets to 0, outputs emptied, on its next run.
    Reprocess {
        /// Path of the analysis.
        path: String,
    },
    /// Set up the tutorial flow: a validated Data Transformation "WAV → channels →
    /// spectrum" for the ingestions of a product. Prints its path.
    TemplateWav {
        /// Reference of the Data Product (the second part of the fluentd tag).
        #[arg(long)]
        product: String,
        /// Id of the transformation.
        #[arg(long, default_value = "wav-spectrum")]
        id: String,
        /// Channels of the WAV files.
        #[arg(long, default_value_t = 2)]
        channels: u16,
        /// STFT window, in samples.
        #[arg(long, default_value_t = 4096)]
        window: u64,
        /// STFT hop, in samples.
        #[arg(long, default_value_t = 2048)]
        hop: u64,
        /// Leave out `spectrum_0` (the |rfft| of all of channel 0, recomputed as it
        /// grows): for long streams.
        #[arg(long)]
        no_spectrum: bool,
        /// MiB per chunk of the STFT's array (its line's `chunk_bytes`).
        #[arg(long, default_value_t = 1)]
        stft_chunk_mib: u64,
        /// Element type of the STFT's array (its line's `dtype`): float64 (numpy's) or
        /// float32 (half the bytes, each value rounded once from float64).
        #[arg(long, default_value = "float64", value_parser = ["float64", "float32"])]
        stft_dtype: String,
    },
}

/// One analysis as `analysis list` shows it.
pub fn describe(portal: &Portal, analysis: &Document) -> CoreResult<Value> {
    portal
        .db
        .read(|c| crate::view::describe(c, portal, analysis))
}

fn analyses(portal: &Portal, user: &User) -> CoreResult<Vec<Document>> {
    let found = portal.search(
        user,
        &wendelin_core::catalog::Search {
            query: format!("portal_type:\"{DATA_ANALYSIS}\""),
            sort_on: "uid".into(),
            limit: 10_000,
            offset: 0,
        },
    )?;
    Ok(found.documents)
}

fn run_cli(portal: &Portal, cli: AnalysisCli) -> Result<(), ServerError> {
    let user = User::system();
    match cli.action {
        AnalysisAction::List => {
            for a in analyses(portal, &user)? {
                println!("{}", describe(portal, &a)?);
            }
        }
        AnalysisAction::Run { path } => {
            portal.call(&user, ANALYSIS_FOLDER, CREATE_ANALYSES, &Map::new(), true)?;
            let paths = match path {
                Some(p) => vec![p.trim_matches('/').to_owned()],
                None => analyses(portal, &user)?
                    .into_iter()
                    .map(|a| a.path)
                    .collect(),
            };
            for p in paths {
                let mut steps = 0u64;
                loop {
                    let out = portal.call(&user, &p, EXECUTE, &Map::new(), true)?;
                    steps += 1;
                    let more = match &out {
                        wendelin_core::MethodOutput::Json(v) => {
                            v.get("more").and_then(Value::as_bool).unwrap_or(false)
                        }
                        _ => false,
                    };
                    if !more {
                        break;
                    }
                }
                let a = portal.get(&user, &p)?;
                println!("{} ({steps} steps)", describe(portal, &a)?);
            }
        }
        AnalysisAction::Reprocess { path } => {
            portal.fire(&user, path.trim_matches('/'), "plan_refresh", &Map::new())?;
            portal
                .db
                .write(|c| exec::queue_run(c, &user, path.trim_matches('/'), 0))?;
            println!("{path}: reprocessing from scratch on its next run");
        }
        AnalysisAction::TemplateWav {
            product,
            id,
            channels,
            window,
            hop,
            no_spectrum,
            stft_chunk_mib,
            stft_dtype,
        } => {
            let stft_dtype = serde_json::from_value(Value::String(stft_dtype))
                .map_err(|e| ServerError::BadRequest(format!("--stft-dtype: {e}")))?;
            let path = crate::template::provision_wav(
                portal,
                &user,
                &crate::template::WavTemplate {
                    id,
                    product,
                    channels,
                    window,
                    hop,
                    spectrum: !no_spectrum,
                    stft_chunk_bytes: stft_chunk_mib.saturating_mul(1 << 20),
                    stft_dtype,
                },
            )?;
            println!("{path}");
        }
    }
    Ok(())
}
