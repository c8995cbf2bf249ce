//! Data operations: the code that turns streams into arrays, and the analyses running it,
//! after Wendelin's erp5_wendelin model.
//!
//! - A **Data Transformation** is a recipe: its lines (sub-documents, the line's id being
//!   Wendelin's line `reference`) name inputs (negative `quantity`), outputs (positive),
//!   their `use` and the portal types to create for them, and one operation line whose
//!   `data_operation` is a **Data Operation** (`script_id`, `parameters`).
//! - A **Data Analysis** applies a transformation (`specialise`) to one Data Ingestion
//!   (`causality`); its lines copy the transformation's and `aggregate` the concrete
//!   Data Stream, Data Arrays and **Progress Indicator** (`int_offset_index`).
//! - [`alarm`] creates the analyses, [`exec`] runs them on the activity queue, exactly
//!   once: each run first cuts its outputs back to the rows its Progress Indicator
//!   records, then appends, then records offset and rows in the same transaction.

pub mod alarm;
pub mod exec;
pub mod http;
pub mod spectrum;
pub mod template;
pub mod view;
pub mod wav;

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wendelin_core::base::lifecycle_workflow;
use wendelin_core::security::permission_map;
use wendelin_core::{
    Module, OwnTransactions, Permission, PortalType, PropertyDef, PropertyType, Protected,
    Transition, Workflow,
};

/// Data Operation.
pub const DATA_OPERATION: &str = "Data Operation";
/// Data Transformation.
pub const DATA_TRANSFORMATION: &str = "Data Transformation";
/// A line of a Data Transformation.
pub const TRANSFORMATION_LINE: &str = "Data Transformation Line";
/// Data Analysis.
pub const DATA_ANALYSIS: &str = "Data Analysis";
/// A line of a Data Analysis.
pub const ANALYSIS_LINE: &str = "Data Analysis Line";
/// Progress Indicator.
pub const PROGRESS_INDICATOR: &str = "Progress Indicator";
/// The folder of analyses.
pub const ANALYSIS_FOLDER: &str = "data_analysis_module";
/// The folder of progress indicators.
pub const PROGRESS_FOLDER: &str = "progress_indicator_module";
/// The method an activity runs per analysis (Wendelin's name).
pub const EXECUTE: &str = "DataAnalysis_executeDataOperation";
/// The periodic step (Wendelin's name), run on the analysis folder.
pub const CREATE_ANALYSES: &str = "ERP5Site_createDataAnalysisList";
/// The refresh workflow.
pub const REFRESH_WORKFLOW: &str = "data_analysis_refresh_workflow";

/// `use` of a line fed by an ingestion's stream.
pub const USE_STREAM: &str = "big_data/ingestion/stream";
/// `use` of a batch ingestion line.
pub const USE_BATCH: &str = "big_data/ingestion/batch";
/// `use` of a computed (transient) output.
pub const USE_TRANSIENT: &str = "big_data/analysis/transient";

/// The `[data_operation]` section of `wendelin.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OperationSettings {
    /// Seconds between runs of the periodic step (creating analyses, queuing runs); 0
    /// turns it off.
    pub alarm_interval_seconds: u64,
    /// Most bytes of new input one run reads; it queues itself again while input remains.
    pub max_input_bytes: u64,
    /// An append to a stream feeding an analysis queues its run after this many
    /// milliseconds (appends meanwhile share that run).
    pub debounce_millis: u64,
    /// Largest memory a whole-signal operation (rfft) may take; larger inputs are
    /// refused with a message.
    pub memory_budget: u64,
    /// A started batch ingestion (one an analysis reads with use
    /// `big_data/ingestion/batch`) whose streams have not grown for this many seconds is
    /// finished: the periodic step stops it (0: only a passed `stop_date` finishes it).
    pub batch_idle_seconds: u64,
}

impl Default for OperationSettings {
    fn default() -> Self {
        OperationSettings {
            alarm_interval_seconds: 60,
            max_input_bytes: 8 << 20,
            debounce_millis: 200,
            memory_budget: 256 << 20,
            batch_idle_seconds: 300,
        }
    }
}

static SETTINGS: OnceLock<OperationSettings> = OnceLock::new();

/// Sets the module's settings; the first call wins (the server calls it at start-up).
pub fn configure(settings: OperationSettings) {
    let _ = SETTINGS.set(settings);
}

/// The settings in effect.
pub fn settings() -> OperationSettings {
    SETTINGS.get().copied().unwrap_or_default()
}

/// Properties shared by transformation and analysis lines.
fn line_properties(t: PortalType) -> PortalType {
    t.property(
        PropertyDef::new("quantity", PropertyType::Float)
            .describe("negative for an input, positive for an output, 0 for the operation line"),
    )
    .property(
        PropertyDef::new("use", PropertyType::String)
            .indexed()
            .describe(
            "big_data/ingestion/stream, big_data/ingestion/batch or big_data/analysis/transient",
        ),
    )
    .property(
        PropertyDef::new("resource", PropertyType::String)
            .indexed()
            .describe("the Data Product reference of an input line"),
    )
    .property(
        PropertyDef::new("aggregated_portal_type_list", PropertyType::Json)
            .default_value(Value::Array(Vec::new()))
            .describe("portal types created for the line: Data Array, Progress Indicator"),
    )
    .property(
        PropertyDef::new("data_operation", PropertyType::Relation).describe(
            "on the operation line: the Data Operation run (the other lines are its arguments)",
        ),
    )
    .property(
        PropertyDef::new("parameters", PropertyType::Json)
            .default_value(Value::Object(Default::default()))
            .describe(
                "operation parameters, or for an output computed from another line: \
                 {\"derive\": \"rfft|stft|aggregate\", \"of\": <line id>, …}",
            ),
    )
    .property(
        PropertyDef::new("view_axis", PropertyType::Int)
            .describe("a view of a 2-D Data Array: the axis selected (1: a column)"),
    )
    .property(
        PropertyDef::new("view_index", PropertyType::Int)
            .describe("a view of a 2-D Data Array: the index along view_axis"),
    )
}

/// The refresh states of an analysis: `current`, `refresh_planned` (reprocess asked),
/// `refresh_started` (offsets reset, catching up).
pub fn refresh_workflow() -> Workflow {
    let editors = &["Manager", "Owner", "Assignor", "Assignee"];
    let open = permission_map(&[]);
    Workflow::new(REFRESH_WORKFLOW, "Data Analysis refresh", "current")
        .state("current", "Current", open.clone())
        .state("refresh_planned", "Refresh planned", open.clone())
        .state("refresh_started", "Refresh started", open)
        .transition(
            Transition::new(
                "plan_refresh",
                "Reprocess from scratch",
                &["current", "refresh_started"],
                "refresh_planned",
            )
            .roles(editors),
        )
        .transition(
            Transition::new(
                "start_refresh",
                "Start refresh",
                &["refresh_planned"],
                "refresh_started",
            )
            .roles(editors),
        )
        .transition(
            Transition::new(
                "finish_refresh",
                "Finish refresh",
                &["refresh_started"],
                "current",
            )
            .roles(editors),
        )
}

/// The data operation module: operations, transformations, analyses, progress indicators.
pub fn module() -> Module {
    Module::new("data_operation")
        .workflow(
            lifecycle_workflow("data_analysis_workflow", DATA_ANALYSIS).after("restart", |ctx| {
                // A restarted analysis catches up with what arrived while it was stopped.
                exec::queue_run(ctx.conn, ctx.user, &ctx.document.path, 0).map(|_| ())
            }),
        )
        .workflow(refresh_workflow().after("plan_refresh", |ctx| {
            // Reprocessing starts with the next run: queue it now.
            exec::queue_run(ctx.conn, ctx.user, &ctx.document.path, 0).map(|_| ())
        }))
        .folder("data_operation_module", "Data Operations", &[DATA_OPERATION])
        .folder(
            "data_transformation_module",
            "Data Transformations",
            &[DATA_TRANSFORMATION],
        )
        .folder(ANALYSIS_FOLDER, "Data Analyses", &[DATA_ANALYSIS])
        .folder(PROGRESS_FOLDER, "Progress Indicators", &[PROGRESS_INDICATOR])
        .portal_type(
            PortalType::new(DATA_OPERATION, "data_operation_module")
                .describe(
                    "A named operation applied to data: a built-in (wav_decode, \
                     records_to_columns, rfft, stft, aggregate) or an ingestion step",
                )
                .property(
                    PropertyDef::new("script_id", PropertyType::String)
                        .required()
                        .indexed()
                        .describe("the method run by the operation"),
                )
                .property(
                    PropertyDef::new("parameters", PropertyType::Json)
                        .default_value(Value::Object(Default::default())),
                )
                .workflow("validation_workflow"),
        )
        .portal_type(
            PortalType::new(DATA_TRANSFORMATION, "data_transformation_module")
                .describe(
                    "A recipe: which operation turns which input resource into which outputs \
                     (its lines)",
                )
                .property(
                    PropertyDef::new("resource", PropertyType::String)
                        .indexed()
                        .describe("the Data Product reference of the ingestions it applies to"),
                )
                .workflow("validation_workflow")
                .allow(TRANSFORMATION_LINE),
        )
        .portal_type(line_properties(PortalType::new(
            TRANSFORMATION_LINE,
            "data_transformation_module",
        ))
        .describe("An input, output or the operation of a transformation; its id is its reference"))
        .portal_type(
            PortalType::new(DATA_ANALYSIS, ANALYSIS_FOLDER)
                .describe("A running application of a transformation to live data")
                .on_delete(exec::purge_run_lock)
                .property(PropertyDef::new("start_date", PropertyType::DateTime).indexed())
                .property(PropertyDef::new("stop_date", PropertyType::DateTime).indexed())
                .property(
                    PropertyDef::new("specialise", PropertyType::Relation)
                        .describe("the Data Transformation applied"),
                )
                .property(
                    PropertyDef::new("causality", PropertyType::Relation)
                        .describe("the Data Ingestion analysed"),
                )
                .workflow("data_analysis_workflow")
                .workflow(REFRESH_WORKFLOW)
                .allow(ANALYSIS_LINE),
        )
        .portal_type(
            line_properties(PortalType::new(ANALYSIS_LINE, ANALYSIS_FOLDER))
                .describe("An input, output or the operation of an analysis, with the documents it aggregates")
                .property(
                    PropertyDef::new("aggregate", PropertyType::Relation)
                        .multiple()
                        .describe("the Data Stream, Data Arrays or Progress Indicator of the line"),
                ),
        )
        .portal_type(
            PortalType::new(PROGRESS_INDICATOR, PROGRESS_FOLDER)
                .describe("How far an analysis has read its input, and what it wrote")
                .property(
                    PropertyDef::new("int_offset_index", PropertyType::Int)
                        .default_value(Value::from(0))
                        .indexed()
                        .describe("the input offset processed so far"),
                )
                .property(
                    PropertyDef::new("state", PropertyType::Json)
                        .default_value(Value::Object(Default::default()))
                        .describe("the operation's state: rows of each output, decoder state"),
                )
                .property(PropertyDef::new("last_run", PropertyType::DateTime))
                .property(PropertyDef::new("bytes_per_second", PropertyType::Float)),
        )
        .script(
            EXECUTE,
            // Its computation runs outside any transaction; it opens short ones itself.
            OwnTransactions(Protected::write(
                Permission::ModifyPortalContent,
                exec::execute_method,
            )),
        )
        .script("DataAnalysis_view", view::view_method)
        .script(
            CREATE_ANALYSES,
            Protected::write(Permission::ManagePortal, alarm::create_method),
        )
}
