//! The Rhai sandbox: one engine per process, built from the `[scripts]` settings, with
//! limits on operations, call depth, expression depth, string, array and map sizes and
//! wall time; no module imports (so no file access), and print/debug go to the log.
//! Rhai itself has no file, network, process or environment functions: the bindings
//! registered here are the only way out, and each is answered by the calling thread
//! with the caller's `Call` (its connection, transaction and host) as the calling user.
//!
//! A script runs on a worker thread (kept idle between scripts, see [`run`]): its
//! bindings are `'static` closures, which cannot hold the borrowed `Call`, so they send
//! requests over a channel to the calling thread, which serves them until the script is
//! done.

use std::cell::{Cell, RefCell};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult, ParseError, ParseErrorType, Scope, AST};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wendelin_core::catalog::{Count, Search};
use wendelin_core::{Call, CoreError, CoreResult, MethodOutput, NewDocument, Permission, User};

/// The `[scripts]` section of `wendelin.toml`: the sandbox's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScriptSettings {
    /// Rhai operations one script run may take (`max_operations`).
    pub max_operations: u64,
    /// Depth of function calls inside a script (`max_call_levels`).
    pub max_call_levels: u64,
    /// Nesting of expressions, checked when a script is compiled (`max_expr_depth`).
    pub max_expr_depth: u64,
    /// Longest string a script may build, in bytes (`max_string_size`).
    pub max_string_size: u64,
    /// Largest array (`max_array_size`).
    pub max_array_size: u64,
    /// Largest object map (`max_map_size`).
    pub max_map_size: u64,
    /// Wall time of one script run, with the scripts it calls, in milliseconds
    /// (`max_wall_ms`).
    pub max_wall_ms: u64,
    /// Largest `limit` of `portal.search` (`max_search_limit`).
    pub max_search_limit: u64,
}

impl Default for ScriptSettings {
    fn default() -> Self {
        ScriptSettings {
            max_operations: 10_000_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_string_size: 1 << 20,
            max_array_size: 100_000,
            max_map_size: 10_000,
            max_wall_ms: 5_000,
            max_search_limit: 1_000,
        }
    }
}

/// Scripts calling scripts (through `invoke`) nest at most this deep.
pub const MAX_NESTING: u32 = 8;
/// A returned value nests at most this deep (arrays and maps).
pub const MAX_RESULT_DEPTH: usize = 64;
/// Stack of the thread a script runs on (Rhai recursion uses the native stack).
const STACK_BYTES: usize = 16 << 20;
/// `max_call_levels` and `max_expr_depth` are capped here whatever the settings say: a
/// deeper recursion could overflow [`STACK_BYTES`], which aborts the process (256 levels
/// fit in an unoptimised build; 1,024 do not).
pub const MAX_DEPTH_CAP: u64 = 256;

static SETTINGS: OnceLock<ScriptSettings> = OnceLock::new();
static ENGINE: OnceLock<Engine> = OnceLock::new();

/// Sets the module's settings; the first call wins (call it before serving).
pub fn configure(settings: ScriptSettings) {
    let _ = SETTINGS.set(settings);
}

/// The settings in effect.
pub fn settings() -> ScriptSettings {
    SETTINGS.get().copied().unwrap_or_default()
}

fn size(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn engine() -> &'static Engine {
    ENGINE.get_or_init(|| build(settings()))
}

/// What a binding asks of the calling thread.
enum Request {
    Get(String),
    Search(String, i64),
    Invoke(Option<String>, String, Map<String, Value>),
    Create(String, Map<String, Value>),
    Fire(String, String, Map<String, Value>),
    /// Bytes `[start, start + len)` of the Data Stream at a path.
    ReadStream(String, u64, u64),
}

enum Msg {
    Ask(Request),
    Done(CoreResult<Value>),
}

/// On a worker: the way to and from the thread that runs its current script.
struct Link {
    to_caller: Sender<Msg>,
    from_caller: Receiver<ToScript>,
}

thread_local! {
    /// On a worker: the way to its caller.
    static LINK: RefCell<Option<Link>> = const { RefCell::new(None) };
    /// On a script's thread: when it must stop.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// On a calling thread: how many scripts are running (nested) and the outermost
    /// one's deadline, which nested scripts keep.
    static NESTING: Cell<(u32, Option<Instant>)> = const { Cell::new((0, None)) };
}

/// What scripts see as `portal`.
#[derive(Clone)]
struct PortalHandle;

fn ask(request: Request) -> Result<Dynamic, Box<EvalAltResult>> {
    ask_value(request).map(to_dynamic)
}

fn ask_value(request: Request) -> Result<Value, Box<EvalAltResult>> {
    LINK.with(|link| {
        let link = link.borrow();
        let Some(link) = link.as_ref() else {
            return Err("no portal outside a script run".into());
        };
        if link.to_caller.send(Msg::Ask(request)).is_err() {
            return Err("the caller is gone".into());
        }
        match link.from_caller.recv() {
            Ok(ToScript::Answer(Ok(v))) => Ok(v),
            Ok(ToScript::Answer(Err(message))) => Err(message.into()),
            Ok(ToScript::Run(_)) | Err(_) => Err("the caller is gone".into()),
        }
    })
}

fn args_of(map: rhai::Map) -> Result<Map<String, Value>, Box<EvalAltResult>> {
    match to_json(&Dynamic::from_map(map), 0)? {
        Value::Object(m) => Ok(m),
        _ => Ok(Map::new()),
    }
}

fn build(s: ScriptSettings) -> Engine {
    let mut e = Engine::new();
    // No `import`: the default resolver would read files.
    e.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    e.set_max_modules(0);
    e.set_max_operations(s.max_operations);
    e.set_max_call_levels(size(s.max_call_levels.min(MAX_DEPTH_CAP)));
    let depth = size(s.max_expr_depth.min(MAX_DEPTH_CAP));
    e.set_max_expr_depths(depth, depth);
    e.set_max_string_size(size(s.max_string_size));
    e.set_max_array_size(size(s.max_array_size));
    e.set_max_map_size(size(s.max_map_size));
    e.on_print(|text| tracing::info!(target: "wendelin_scripts", "{text}"));
    e.on_debug(|text, _, pos| tracing::debug!(target: "wendelin_scripts", "{pos}: {text}"));
    e.on_progress(|count| {
        if count % 1024 != 0 {
            return None;
        }
        match DEADLINE.with(Cell::get) {
            Some(t) if Instant::now() >= t => Some(Dynamic::from("max_wall_ms")),
            _ => None,
        }
    });
    // Rhai's `sleep` would block the script's thread (and the caller's connection)
    // without an operation being counted, past any wall time: refused instead.
    e.register_fn("sleep", |_: rhai::INT| -> Result<(), Box<EvalAltResult>> {
        Err("sleep is not available to scripts".into())
    });
    e.register_fn(
        "sleep",
        |_: rhai::FLOAT| -> Result<(), Box<EvalAltResult>> {
            Err("sleep is not available to scripts".into())
        },
    );
    e.register_type_with_name::<PortalHandle>("Portal");
    e.register_fn("get", |_: &mut PortalHandle, path: &str| {
        ask(Request::Get(path.to_owned()))
    });
    e.register_fn("search", |_: &mut PortalHandle, query: &str, limit: i64| {
        ask(Request::Search(query.to_owned(), limit))
    });
    e.register_fn("invoke", |_: &mut PortalHandle, path: &str, name: &str| {
        ask(Request::Invoke(
            Some(path.to_owned()),
            name.to_owned(),
            Map::new(),
        ))
    });
    e.register_fn(
        "invoke",
        |_: &mut PortalHandle, path: &str, name: &str, args: rhai::Map| {
            ask(Request::Invoke(
                Some(path.to_owned()),
                name.to_owned(),
                args_of(args)?,
            ))
        },
    );
    e.register_fn(
        "create",
        |_: &mut PortalHandle, container: &str, fields: rhai::Map| {
            ask(Request::Create(container.to_owned(), args_of(fields)?))
        },
    );
    e.register_fn(
        "transition",
        |_: &mut PortalHandle, path: &str, transition: &str| {
            ask(Request::Fire(
                path.to_owned(),
                transition.to_owned(),
                Map::new(),
            ))
        },
    );
    e.register_fn(
        "transition",
        |_: &mut PortalHandle, path: &str, transition: &str, variables: rhai::Map| {
            ask(Request::Fire(
                path.to_owned(),
                transition.to_owned(),
                args_of(variables)?,
            ))
        },
    );
    // Queue `method` on `context` (Base_activate with its checks and bounds).
    e.register_fn("activate", |method: &str, args: rhai::Map| {
        let mut queued = Map::new();
        queued.insert("method".into(), Value::from(method));
        queued.insert("args".into(), Value::Object(args_of(args)?));
        ask(Request::Invoke(None, "Base_activate".into(), queued))
    });
    // Data Streams: size, ranged reads (a blob), msgpack records from a value boundary.
    e.register_fn("stream_size", |_: &mut PortalHandle, path: &str| {
        ask(Request::Invoke(
            Some(path.to_owned()),
            "getSize".into(),
            Map::new(),
        ))
    });
    e.register_fn(
        "stream_read",
        |_: &mut PortalHandle,
         path: &str,
         start: i64,
         len: i64|
         -> Result<Dynamic, Box<EvalAltResult>> {
            let (Ok(start), Ok(len)) = (u64::try_from(start), u64::try_from(len)) else {
                return Err("stream_read: start and len must not be negative".into());
            };
            let max = settings().max_string_size;
            if len > max {
                return Err(format!(
                    "stream_read: {len} bytes at once is over max_string_size = {max}; read by ranges"
                )
                .into());
            }
            let bytes = ask_value(Request::ReadStream(path.to_owned(), start, len))?;
            let blob: rhai::Blob = match bytes {
                Value::Array(a) => a
                    .iter()
                    .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()).unwrap_or(0))
                    .collect(),
                _ => Vec::new(),
            };
            Ok(Dynamic::from_blob(blob))
        },
    );
    e.register_fn(
        "stream_records",
        |_: &mut PortalHandle, path: &str, start: i64, end: i64| {
            let mut args = Map::new();
            args.insert("start".into(), Value::from(start));
            args.insert("end".into(), Value::from(end));
            ask(Request::Invoke(
                Some(path.to_owned()),
                "readMsgpackChunkList".into(),
                args,
            ))
        },
    );
    // Data Arrays, through their methods (so with the checks of any call): shape,
    // dtype, a region (numpy slice syntax) as nested arrays, a reduction, an append.
    fn array_call(
        path: &str,
        name: &str,
        args: Map<String, Value>,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        ask(Request::Invoke(
            Some(path.to_owned()),
            name.to_owned(),
            args,
        ))
    }
    e.register_fn("array_shape", |_: &mut PortalHandle, path: &str| {
        array_call(path, "getShape", Map::new())
    });
    e.register_fn("array_dtype", |_: &mut PortalHandle, path: &str| {
        array_call(path, "getDtype", Map::new())
    });
    e.register_fn(
        "array_slice",
        |_: &mut PortalHandle, path: &str, region: &str| {
            let mut args = Map::new();
            args.insert("region".into(), Value::from(region));
            array_call(path, "getArraySlice", args)
        },
    );
    e.register_fn(
        "array_reduce",
        |_: &mut PortalHandle, path: &str, op: &str, region: &str| {
            let mut args = Map::new();
            args.insert("op".into(), Value::from(op));
            args.insert("region".into(), Value::from(region));
            array_call(path, "reduce", args)
        },
    );
    e.register_fn(
        "array_reduce",
        |_: &mut PortalHandle, path: &str, op: &str, region: &str, axis: i64| {
            let mut args = Map::new();
            args.insert("op".into(), Value::from(op));
            args.insert("region".into(), Value::from(region));
            args.insert("axis".into(), Value::from(axis));
            array_call(path, "reduce", args)
        },
    );
    e.register_fn(
        "array_append",
        |_: &mut PortalHandle, path: &str, data: rhai::Array| {
            let mut args = Map::new();
            args.insert("data".into(), to_json(&Dynamic::from_array(data), 0)?);
            array_call(path, "append", args)
        },
    );
    e.register_fn("invoke", |name: &str| {
        ask(Request::Invoke(None, name.to_owned(), Map::new()))
    });
    e.register_fn("invoke", |name: &str, args: rhai::Map| {
        ask(Request::Invoke(None, name.to_owned(), args_of(args)?))
    });
    e
}

/// Compiles a script (within the expression depth limit); an error gives its line and
/// column.
pub fn compile(name: &str, body: &str) -> CoreResult<AST> {
    engine()
        .compile(body)
        .map_err(|e| CoreError::Invalid(format!("script {name} does not compile: {}", why(&e))))
}

/// Checks that `body` compiles, as a Script is saved: the refusal names the line and
/// column of the error (see [`compile`], which gives the same at call time).
pub fn check_compiles(body: &str) -> CoreResult<()> {
    engine()
        .compile(body)
        .map(drop)
        .map_err(|e| CoreError::Invalid(format!("body does not compile: {}", why(&e))))
}

/// A compilation error as the user reads it: what is wrong (the expression depth by its
/// setting's name), then where, as "line L, column C".
fn why(e: &ParseError) -> String {
    let what = if matches!(*e.0, ParseErrorType::ExprTooDeep) {
        format!(
            "expression depth limit exceeded (max_expr_depth = {})",
            settings().max_expr_depth
        )
    } else {
        e.0.to_string()
    };
    match (e.1.line(), e.1.position()) {
        (Some(line), Some(column)) => format!("{what} at line {line}, column {column}"),
        (Some(line), None) => format!("{what} at line {line}"),
        _ => what,
    }
}

/// Runs a compiled script for `call` as `user` (the caller, with the script's proxy
/// roles), with `context` and `params` bound; returns its value as JSON.
///
/// The script evaluates on a worker thread taken from the process's idle workers (one
/// is started when none is idle), while this thread answers its bindings; the worker
/// goes back to the idle ones when the script is done. A script that calls a script
/// (through a binding answered here) takes a second worker, so nesting never waits for
/// a worker in use.
pub fn run(
    name: &str,
    ast: Arc<AST>,
    call: &mut Call<'_>,
    user: &User,
    context: Value,
    params: Value,
) -> CoreResult<Value> {
    let (depth, outer) = NESTING.with(Cell::get);
    if depth >= MAX_NESTING {
        return Err(CoreError::Invalid(format!(
            "script {name} stopped: nesting limit exceeded ({MAX_NESTING} scripts calling scripts)"
        )));
    }
    let s = settings();
    let mut deadline = Instant::now() + Duration::from_millis(s.max_wall_ms);
    if let Some(outer) = outer {
        deadline = deadline.min(outer);
    }
    let job = Job {
        name: name.to_owned(),
        ast,
        context,
        params,
        deadline,
    };
    let worker = Worker::start(job)?;
    let mut binding_error: Option<CoreError> = None;
    loop {
        match worker.from_script.recv() {
            Ok(Msg::Ask(request)) => {
                NESTING.with(|n| n.set((depth + 1, Some(deadline))));
                let answer = serve(request, call, user, &s);
                NESTING.with(|n| n.set((depth, outer)));
                let answer = answer.map_err(|e| {
                    let message = e.to_string();
                    binding_error = Some(e);
                    message
                });
                // The script waits for this answer (it asked and listens until answered).
                let _ = worker.to_script.send(ToScript::Answer(answer));
            }
            Ok(Msg::Done(out)) => {
                worker.idle();
                // A binding's own error (a conflict, a refusal) keeps its kind.
                return match (out, binding_error) {
                    (Err(CoreError::BadRequest(_)), Some(e)) => Err(e),
                    (out, _) => out,
                };
            }
            Err(_) => {
                // The worker panicked: its thread is gone (the panic stays there) and
                // the server goes on; it is not put back.
                return Err(CoreError::Internal(format!(
                    "script {name} ended without an answer"
                )));
            }
        }
    }
}

/// A script to evaluate on a worker.
struct Job {
    name: String,
    ast: Arc<AST>,
    context: Value,
    params: Value,
    deadline: Instant,
}

/// What the calling thread sends a worker: a script to run, or the answer to the
/// binding request the running script made (the two alternate: a worker asks only
/// while it runs a script, and then waits for the answer).
enum ToScript {
    Run(Job),
    Answer(Result<Value, String>),
}

/// A worker thread, as its caller holds it.
struct Worker {
    to_script: Sender<ToScript>,
    from_script: Receiver<Msg>,
}

/// Idle workers kept for the next scripts, at most [`MAX_IDLE_WORKERS`].
static IDLE: Mutex<Vec<Worker>> = Mutex::new(Vec::new());
/// More workers than this, idle at once, end (a burst of nested or concurrent scripts
/// does not leave its threads behind).
const MAX_IDLE_WORKERS: usize = 16;

impl Worker {
    /// An idle worker (or a new one) running `job`.
    fn start(job: Job) -> CoreResult<Worker> {
        let idle = IDLE.lock().ok().and_then(|mut idle| idle.pop());
        let job = match idle {
            Some(worker) => match worker.to_script.send(ToScript::Run(job)) {
                Ok(()) => return Ok(worker),
                // A worker that panicked earlier is gone: start another.
                Err(e) => match e.0 {
                    ToScript::Run(job) => job,
                    ToScript::Answer(_) => {
                        return Err(CoreError::Internal("script worker lost its job".into()))
                    }
                },
            },
            None => job,
        };
        let (to_script, from_caller) = channel::<ToScript>();
        let (to_caller, from_script) = channel::<Msg>();
        std::thread::Builder::new()
            .name("script worker".into())
            .stack_size(STACK_BYTES)
            .spawn(move || {
                LINK.with(|l| {
                    *l.borrow_mut() = Some(Link {
                        to_caller,
                        from_caller,
                    })
                });
                while let Some(job) = next_job() {
                    let out = evaluate(job);
                    let sent = LINK.with(|l| {
                        l.borrow()
                            .as_ref()
                            .is_some_and(|l| l.to_caller.send(Msg::Done(out)).is_ok())
                    });
                    if !sent {
                        break;
                    }
                }
            })
            .map_err(|e| CoreError::Internal(format!("cannot start a script worker: {e}")))?;
        let worker = Worker {
            to_script,
            from_script,
        };
        worker
            .to_script
            .send(ToScript::Run(job))
            .map_err(|_| CoreError::Internal("a new script worker ended at once".into()))?;
        Ok(worker)
    }

    /// Puts the worker back with the idle ones (or lets it end when enough are).
    fn idle(self) {
        if let Ok(mut idle) = IDLE.lock() {
            if idle.len() < MAX_IDLE_WORKERS {
                idle.push(self);
            }
        }
    }
}

/// On a worker: the next script to run, `None` when the worker is to end (its caller
/// side was dropped).
fn next_job() -> Option<Job> {
    LINK.with(|l| {
        let link = l.borrow();
        match link.as_ref()?.from_caller.recv() {
            Ok(ToScript::Run(job)) => Some(job),
            // An answer with no question pending: the protocol is broken, end.
            Ok(ToScript::Answer(_)) | Err(_) => None,
        }
    })
}

/// On a worker: evaluates a job's script with its deadline.
fn evaluate(job: Job) -> CoreResult<Value> {
    let s = settings();
    DEADLINE.with(|d| d.set(Some(job.deadline)));
    let mut vars = Scope::new();
    vars.push_constant("context", to_dynamic(job.context));
    vars.push_constant("params", to_dynamic(job.params));
    vars.push_constant("portal", PortalHandle);
    let out = match engine().eval_ast_with_scope::<Dynamic>(&mut vars, &job.ast) {
        Ok(v) => to_json(&v, 0).map_err(|e| failure(&job.name, &e, &s)),
        Err(e) => Err(failure(&job.name, &e, &s)),
    };
    DEADLINE.with(|d| d.set(None));
    out
}

/// Answers a binding's request on the calling thread, as `user`.
fn serve(
    request: Request,
    call: &mut Call<'_>,
    user: &User,
    s: &ScriptSettings,
) -> CoreResult<Value> {
    match request {
        Request::Get(path) => {
            match call
                .host
                .call_in(call.conn, user, &path, "asJSON", &Map::new(), false)
            {
                Ok(out) => Ok(output(out)),
                // Missing and hidden alike: not found, so `()`.
                Err(CoreError::NotFound(_)) => Ok(Value::Null),
                Err(e) => Err(e),
            }
        }
        Request::Search(query, limit) => {
            let max = i64::try_from(s.max_search_limit).unwrap_or(i64::MAX);
            let search = Search {
                query,
                sort_on: String::new(),
                limit: limit.clamp(1, max.max(1)),
                offset: 0,
            };
            let found = wendelin_core::catalog::search(
                call.conn,
                call.registry,
                None,
                &user.principals(),
                &search,
                Count::None,
            )?;
            let mut out = Vec::with_capacity(found.documents.len());
            for doc in &found.documents {
                out.push(Value::Object(doc.field_map()?));
            }
            Ok(Value::Array(out))
        }
        Request::Create(container, fields) => {
            let new = NewDocument::from_json(Value::Object(fields))?;
            call.require_writable("create a document")?;
            let doc = call.host.create_in(call.conn, user, &container, new)?;
            wendelin_core::document::to_json(call.conn, call.registry, &doc)
        }
        Request::Fire(path, transition, variables) => {
            call.require_writable("fire a transition")?;
            let doc = call
                .host
                .fire_in(call.conn, user, &path, &transition, &variables)?;
            wendelin_core::document::to_json(call.conn, call.registry, &doc)
        }
        Request::ReadStream(path, start, len) => {
            // As a call through the portal would: visible to the caller (else not
            // found), then Access contents information, and only a Data Stream.
            let doc = match wendelin_core::document::find(call.conn, path.trim_matches('/'))? {
                Some(doc)
                    if call
                        .host
                        .allowed_in(call.conn, user, &doc, Permission::View)? =>
                {
                    doc
                }
                _ => return Err(CoreError::NotFound(format!("no document at /{path}"))),
            };
            if doc.portal_type != wendelin_data_stream::DATA_STREAM {
                return Err(CoreError::BadRequest(format!(
                    "stream_read: /{path} is a {}, not a {}",
                    doc.portal_type,
                    wendelin_data_stream::DATA_STREAM
                )));
            }
            if !call.host.allowed_in(
                call.conn,
                user,
                &doc,
                Permission::AccessContentsInformation,
            )? {
                return Err(CoreError::Forbidden(format!(
                    "stream_read: reading /{path} needs Access contents information"
                )));
            }
            let size = wendelin_data_stream::size_of(call.host, &doc)?;
            let len = len.min(size.saturating_sub(start));
            let bytes = wendelin_data_stream::read_checked(call.host, &doc, start, len)?;
            Ok(Value::Array(bytes.into_iter().map(Value::from).collect()))
        }
        Request::Invoke(path, name, args) => {
            let path = path.unwrap_or_else(|| call.context.path.clone());
            let out = call
                .host
                .call_in(call.conn, user, &path, &name, &args, call.writable)?;
            Ok(output(out))
        }
    }
}

fn output(out: MethodOutput) -> Value {
    match out {
        MethodOutput::Json(v) => v,
        MethodOutput::Html(h) | MethodOutput::Text(h) => Value::String(h),
    }
}

/// The error a stopped script gives: a limit by its setting's name, else the script's own.
fn failure(name: &str, e: &EvalAltResult, s: &ScriptSettings) -> CoreError {
    let mut e = e;
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
    | EvalAltResult::ErrorInModule(_, inner, _) = e
    {
        e = inner;
    }
    let limit = |what: &str, key: &str, value: u64| {
        CoreError::Invalid(format!(
            "script {name} stopped: {what} limit exceeded ({key} = {value}) at {}",
            e.position()
        ))
    };
    match e {
        EvalAltResult::ErrorTooManyOperations(_) => {
            limit("operation", "max_operations", s.max_operations)
        }
        EvalAltResult::ErrorStackOverflow(_) => {
            limit("call depth", "max_call_levels", s.max_call_levels)
        }
        EvalAltResult::ErrorTerminated(..) => limit("wall time", "max_wall_ms", s.max_wall_ms),
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            let what = what.to_ascii_lowercase();
            if what.contains("string") {
                limit("string size", "max_string_size", s.max_string_size)
            } else if what.contains("array") {
                limit("array size", "max_array_size", s.max_array_size)
            } else {
                limit("map size", "max_map_size", s.max_map_size)
            }
        }
        EvalAltResult::ErrorTooManyModules(_) | EvalAltResult::ErrorModuleNotFound(..) => {
            CoreError::Invalid(format!("script {name}: import is not allowed"))
        }
        other => CoreError::BadRequest(format!("script {name} failed: {other}")),
    }
}

/// JSON as Rhai values.
fn to_dynamic(v: Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => b.into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        Value::String(s) => s.into(),
        Value::Array(a) => Dynamic::from_array(a.into_iter().map(to_dynamic).collect()),
        Value::Object(o) => Dynamic::from_map(
            o.into_iter()
                .map(|(k, v)| (k.into(), to_dynamic(v)))
                .collect(),
        ),
    }
}

/// A Rhai value as JSON (what a script returns); other types by their text.
fn to_json(d: &Dynamic, depth: usize) -> Result<Value, Box<EvalAltResult>> {
    if depth > MAX_RESULT_DEPTH {
        return Err(format!("value nests deeper than {MAX_RESULT_DEPTH} levels").into());
    }
    // Values captured by closures are shared: read them as plain values.
    let flat;
    let d = if d.is_shared() {
        flat = d.flatten_clone();
        &flat
    } else {
        d
    };
    if d.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = d.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = d.as_int() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = d.as_float() {
        return Ok(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number));
    }
    if d.is_string() || d.is_char() {
        return Ok(Value::String(d.to_string()));
    }
    if let Some(a) = d.read_lock::<rhai::Array>() {
        return a
            .iter()
            .map(|v| to_json(v, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if let Some(m) = d.read_lock::<rhai::Map>() {
        let mut out = Map::new();
        for (k, v) in m.iter() {
            out.insert(k.to_string(), to_json(v, depth + 1)?);
        }
        return Ok(Value::Object(out));
    }
    Ok(Value::String(d.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn eval(body: &str) -> Result<Value, CoreError> {
        let ast = compile("t", body)?;
        let s = settings();
        engine()
            .eval_ast::<Dynamic>(&ast)
            .map_err(|e| failure("t", &e, &s))
            .and_then(|v| to_json(&v, 0).map_err(|e| failure("t", &e, &s)))
    }

    #[test]
    fn values_come_back_as_json() {
        assert_eq!(
            eval(r#"#{a: [1, 2.5, "x", true, ()]}"#).unwrap(),
            serde_json::json!({"a": [1, 2.5, "x", true, null]})
        );
        // A variable a closure captured is shared.
        assert_eq!(
            eval("let n = 1; let f = || n + 1; n = 5; [n, f.call()]").unwrap(),
            serde_json::json!([5, 6])
        );
    }

    #[test]
    fn limits_are_named() {
        let e = eval("let s = \"x\"; loop { s += s; }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_string_size"), "{e}");
        let e = eval("fn f(n) { f(n + 1) } f(0)").unwrap_err().to_string();
        assert!(e.contains("max_call_levels"), "{e}");
        let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
        let e = eval(&deep).unwrap_err().to_string();
        assert!(e.contains("max_expr_depth"), "{e}");
        let started = Instant::now();
        let e = eval("sleep(5); 1").unwrap_err().to_string();
        assert!(e.contains("sleep is not available"), "{e}");
        let e = eval("sleep(5.0); 1").unwrap_err().to_string();
        assert!(e.contains("sleep is not available"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(1));
        let e = eval("import \"x\" as y; 1").unwrap_err().to_string();
        assert!(e.contains("import") || e.contains("compile"), "{e}");
    }
}
