//! Rendering pages: tera templates with a curated set of functions that run as the
//! visitor (every one goes through the Portal's permission checks), Markdown, and the
//! site's layout around a page.
//!
//! Limits. Tera has no fuel, so they are enforced around it: the output goes through a
//! writer that refuses to grow past `[web] max_output_bytes` and fails once
//! `[web] render_timeout_ms` has passed; every function checks the deadline too and
//! counts against [`MAX_CALLS`]; every `for` loop's body starts with a call that checks
//! the deadline ([`with_ticks`]), so a loop stops at its next turn after it, writing or
//! not; `range()` hands out at most [`MAX_RANGE`] numbers per render. Before parsing,
//! templates over [`MAX_TEMPLATE_BYTES`] or nesting past [`MAX_NESTING`] (a stack
//! overflow aborts the process) are refused, and so are the tags that would escape these
//! checks ([`REFUSED_TAGS`]): `macro` (recursion), `filter` blocks and `set_global`
//! (output or strings built in memory across turns), `include`/`import`/`extends` (there
//! is one template). What is left: one expression is not interrupted — a filter over a
//! large value (`join` with a long separator, `replace`) or a chain of `~` in `set`s
//! builds its string whole, in memory, before anything checks it. Who may edit tera pages
//! is trusted with that; the server stops waiting at the deadline (503) either way.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Map, Value};
use tera::{Context, Tera};
use wendelin_core::catalog::{Count, Search};
use wendelin_core::{CoreError, MethodOutput, Portal, User};

/// Functions called by one render at most (catalog searches, documents, arrays).
pub const MAX_CALLS: u64 = 200;
/// Numbers `range()` hands out in one render, in all.
pub const MAX_RANGE: u64 = 10_000;
/// Tags refused in templates (see the module's documentation).
pub const REFUSED_TAGS: &[&str] = &[
    "macro",
    "import",
    "include",
    "extends",
    "filter",
    "set_global",
];

/// Where the vendored chart assets are served.
pub const STATIC_PREFIX: &str = "/web-static";

/// Who renders what, where.
pub struct Visit {
    /// The portal.
    pub portal: Arc<Portal>,
    /// The visitor: every function runs as them.
    pub user: User,
    /// The site's id (`/web/<id>/`).
    pub site: String,
    /// Data Arrays the site publishes (paths): their charts read through the site.
    pub arrays: Vec<String>,
    /// When the render must have ended.
    pub deadline: Instant,
    /// Drafts are shown (`?preview=1` of a logged-in user).
    pub preview: bool,
    /// The page's language.
    pub language: String,
}

/// What a render found out besides its output.
#[derive(Default)]
pub struct Flags {
    /// It read something the change generation does not follow (array shapes, method
    /// results): never cached.
    pub live: AtomicBool,
    /// A chart's scripts are already in the output.
    pub chart: AtomicBool,
    /// The deadline passed.
    pub timed_out: AtomicBool,
    calls: AtomicU64,
    range: AtomicU64,
}

/// Why a render failed.
#[derive(Debug)]
pub enum RenderError {
    /// The template is wrong (parse or render error): the message, with its line when
    /// tera gives one, is for the page's authors only.
    Template(String),
    /// The output passed `[web] max_output_bytes`.
    TooLarge(usize),
    /// `[web] render_timeout_ms` passed.
    TimedOut(u64),
    /// A kernel error outside the template (e.g. the database).
    Core(CoreError),
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenderError::Template(m) => write!(f, "template error: {m}"),
            RenderError::TooLarge(n) => write!(
                f,
                "the page's output passed {n} bytes ([web] max_output_bytes)"
            ),
            RenderError::TimedOut(ms) => write!(
                f,
                "the page took longer than {ms} ms to render ([web] render_timeout_ms)"
            ),
            RenderError::Core(e) => write!(f, "{e}"),
        }
    }
}

/// Escapes text for HTML element content and quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Markdown to HTML (CommonMark; HTML written in it passes, as in an HTML page).
pub fn markdown(body: &str) -> String {
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, pulldown_cmark::Parser::new(body));
    out
}

/// The first refused tag of `body` with its line, if any.
pub fn refused_tag(body: &str) -> Option<(usize, &'static str)> {
    let mut at = 0;
    while let Some(i) = body[at..].find("{%") {
        let start = at + i;
        let rest = body[start + 2..]
            .trim_start_matches(['-', '+'])
            .trim_start();
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if let Some(tag) = REFUSED_TAGS.iter().find(|t| **t == word) {
            let line = body[..start].matches('\n').count() + 1;
            return Some((line, tag));
        }
        at = start + 2;
    }
    None
}

/// Deepest nesting of block tags (`if`, `for`, …) and brackets, together, in a template:
/// tera parses and renders recursively, and a deep enough template overflows the
/// thread's stack, which aborts the process (200 nested `if`s do on a 2 MiB stack in a
/// debug build) before any other limit is checked.
pub const MAX_NESTING: usize = 64;

/// Largest template, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 256 << 10;

/// Where `body` nests deeper than [`MAX_NESTING`]: the line, if it does.
pub fn too_deep(body: &str) -> Option<usize> {
    let (mut blocks, mut brackets) = (0usize, 0usize);
    let mut line = 1;
    let mut rest = body;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("{%") {
            let tag = after.trim_start_matches(['-', '+']).trim_start();
            if tag.starts_with("end") {
                blocks = blocks.saturating_sub(1);
            } else if ["if ", "for ", "block ", "raw", "filter ", "macro "]
                .iter()
                .any(|t| tag.starts_with(t))
            {
                blocks += 1;
            }
        }
        match c {
            '\n' => line += 1,
            '(' | '[' | '{' => brackets += 1,
            ')' | ']' | '}' => brackets = brackets.saturating_sub(1),
            _ => {}
        }
        // One stack: a bracket inside a block nests one deeper than the block.
        if blocks + brackets > MAX_NESTING {
            return Some(line);
        }
        rest = &rest[c.len_utf8()..];
    }
    None
}

/// The function every loop turn calls (see [`with_ticks`]).
const TICK: &str = "__tick";

/// `body` with a call of [`TICK`] at the start of every `for` loop's body: tera has no
/// fuel, so each turn of a loop checks the deadline this way, whether or not the loop
/// writes anything. No newline is added (error lines stay right); after a tag closed with
/// `-%}` the call trims the whitespace that follows, as the tag would have.
pub fn with_ticks(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 64);
    let mut rest = body;
    while let Some(i) = rest.find("{%") {
        let (before, tag) = rest.split_at(i);
        out.push_str(before);
        let word = tag[2..].trim_start_matches(['-', '+']).trim_start();
        let Some(end) = tag.find("%}") else {
            out.push_str(tag);
            return out;
        };
        let (whole, after) = tag.split_at(end + 2);
        out.push_str(whole);
        if word.starts_with("for ") {
            if whole.ends_with("-%}") {
                out.push_str(&format!("{{{{ {TICK}() -}}}}"));
            } else {
                out.push_str(&format!("{{{{ {TICK}() }}}}"));
            }
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The output of a render, bounded in size and time.
struct Limited<'a> {
    out: Vec<u8>,
    max: usize,
    deadline: Instant,
    flags: &'a Flags,
    too_large: bool,
}

impl Write for Limited<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.max {
            self.too_large = true;
            return Err(std::io::Error::other("output limit"));
        }
        if Instant::now() > self.deadline {
            self.flags.timed_out.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other("time limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A tera error with its causes (the line of a parse error is in one of them).
fn describe(e: &tera::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

type Shared = (Arc<Visit>, Arc<Flags>);

/// Before every function: the deadline, then the call budget.
fn enter(shared: &Shared) -> tera::Result<()> {
    let (visit, flags) = shared;
    if Instant::now() > visit.deadline {
        flags.timed_out.store(true, Ordering::Relaxed);
        return Err(tera::Error::msg("time limit"));
    }
    if flags.calls.fetch_add(1, Ordering::Relaxed) >= MAX_CALLS {
        return Err(tera::Error::msg(format!(
            "more than {MAX_CALLS} function calls in one page"
        )));
    }
    Ok(())
}

fn arg_str<'a>(args: &'a HashMap<String, Value>, name: &str) -> tera::Result<&'a str> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| tera::Error::msg(format!("missing text argument '{name}'")))
}

fn kernel(e: CoreError) -> tera::Error {
    tera::Error::msg(e.to_string())
}

/// The URL a chart reads an array's decimation from: through the site when the site
/// publishes it, else the API (where the visitor's own View applies).
pub fn decimate_url(visit: &Visit, path: &str) -> String {
    let path = path.trim_matches('/');
    match path.strip_prefix("data_array_module/") {
        Some(id) if visit.arrays.iter().any(|a| a == path) => {
            format!("/web/{}/_arrays/{id}/decimate", visit.site)
        }
        _ => format!("/api/v1/{path}/decimate"),
    }
}

/// A Data Array as templates see it (the visitor must be able to View it, or the site
/// publish it).
fn array_info(visit: &Visit, path: &str) -> tera::Result<Value> {
    let path = path.trim_matches('/');
    let system = User::system();
    // A published array is read as the system: the site's editors chose to show it.
    let user = if visit.arrays.iter().any(|a| a == path) {
        &system
    } else {
        &visit.user
    };
    let doc = visit.portal.get_json(user, path).map_err(kernel)?;
    if doc.get("portal_type").and_then(Value::as_str) != Some("Data Array") {
        return Err(tera::Error::msg(format!("/{path} is not a Data Array")));
    }
    let call = |name: &str| match visit.portal.call(user, path, name, &Map::new(), false) {
        Ok(MethodOutput::Json(v)) => Ok(v),
        Ok(MethodOutput::Html(h) | MethodOutput::Text(h)) => Ok(Value::from(h)),
        Err(e) => Err(kernel(e)),
    };
    Ok(json!({
        "path": path,
        "title": doc.get("title"),
        "shape": call("getShape")?,
        "dtype": call("getDtype")?,
        "decimate_url": decimate_url(visit, path),
        "read_url": format!("/api/v1/{path}/read"),
        "zarr_url": format!("/api/v1/{path}/zarr/"),
    }))
}

/// The chart component's HTML: a container the vendored script fills (uPlot), loading
/// the scripts with the first chart of the page.
pub fn chart_html(
    visit: &Visit,
    flags: &Flags,
    array: &str,
    title: &str,
    live: u64,
    height: u64,
) -> String {
    let mut out = String::new();
    if !flags.chart.swap(true, Ordering::Relaxed) {
        out.push_str(&format!(
            "<link rel=\"stylesheet\" href=\"{STATIC_PREFIX}/uPlot.min.css\">\
<script defer src=\"{STATIC_PREFIX}/uPlot.iife.min.js\"></script>\
<script defer src=\"{STATIC_PREFIX}/wendelin-chart.js\"></script>"
        ));
    }
    out.push_str(&format!(
        "<div class=\"wendelin-chart\" data-src=\"{}\" data-title=\"{}\" data-live=\"{live}\" data-height=\"{height}\"></div>",
        escape(&decimate_url(visit, array)),
        escape(title),
    ));
    out
}

struct Chart(Shared);

impl tera::Function for Chart {
    fn call(&self, args: &HashMap<String, Value>) -> tera::Result<Value> {
        enter(&self.0)?;
        let array = arg_str(args, "array")?;
        let title = args.get("title").and_then(Value::as_str).unwrap_or("");
        let num = |k: &str, d: u64| args.get(k).and_then(Value::as_u64).unwrap_or(d);
        let (live, height) = (num("live", 0).min(3600), num("height", 300).clamp(50, 2000));
        let (visit, flags) = &self.0;
        Ok(Value::from(chart_html(
            visit, flags, array, title, live, height,
        )))
    }

    // Built here from escaped parts.
    fn is_safe(&self) -> bool {
        true
    }
}

/// Registers the functions on `tera`, each bound to this visit.
fn register(tera: &mut Tera, shared: &Shared) {
    let s = shared.clone();
    tera.register_function("search", move |args: &HashMap<String, Value>| {
        enter(&s)?;
        let (visit, _) = &s;
        let max = crate::settings().max_search_limit;
        let limit = args.get("limit").and_then(Value::as_i64).unwrap_or(10);
        if !(1..=max).contains(&limit) {
            return Err(tera::Error::msg(format!(
                "search: limit must be 1..={max} ([web] max_search_limit)"
            )));
        }
        let search = Search {
            query: arg_str(args, "query")?.to_owned(),
            sort_on: args
                .get("sort_on")
                .and_then(Value::as_str)
                .unwrap_or("modification_date desc")
                .to_owned(),
            limit,
            offset: 0,
        };
        let found = visit
            .portal
            .search_counted(&visit.user, &search, Count::None)
            .map_err(kernel)?;
        let docs = visit
            .portal
            .documents_json(&found.documents)
            .map_err(kernel)?;
        // Anonymous visitors and previewless readers see published documents only, as
        // the site's pages.
        Ok(Value::from(
            docs.into_iter()
                .filter(|d| visit.preview || visible_unpreviewed(d))
                .collect::<Vec<_>>(),
        ))
    });
    let s = shared.clone();
    tera.register_function("doc", move |args: &HashMap<String, Value>| {
        enter(&s)?;
        let (visit, _) = &s;
        let path = arg_str(args, "path")?.trim_matches('/');
        let doc = visit.portal.get_json(&visit.user, path).map_err(kernel)?;
        if !visit.preview && !visible_unpreviewed(&doc) {
            return Err(tera::Error::msg(format!("no document at /{path}")));
        }
        Ok(doc)
    });
    let s = shared.clone();
    tera.register_function("array", move |args: &HashMap<String, Value>| {
        enter(&s)?;
        let (visit, flags) = &s;
        flags.live.store(true, Ordering::Relaxed);
        array_info(visit, arg_str(args, "path")?)
    });
    let s = shared.clone();
    tera.register_function("call", move |args: &HashMap<String, Value>| {
        enter(&s)?;
        let (visit, flags) = &s;
        flags.live.store(true, Ordering::Relaxed);
        let path = arg_str(args, "path")?.trim_matches('/');
        let method = arg_str(args, "method")?;
        let margs = match args.get("args") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(tera::Error::msg("call: args must be a map")),
        };
        // Read-only: a method that changes data is refused (as over HTTP GET).
        match visit
            .portal
            .call(&visit.user, path, method, &margs, false)
            .map_err(kernel)?
        {
            MethodOutput::Json(v) => Ok(v),
            MethodOutput::Html(h) | MethodOutput::Text(h) => Ok(Value::from(h)),
        }
    });
    let s = shared.clone();
    tera.register_function("url", move |args: &HashMap<String, Value>| {
        enter(&s)?;
        let page = arg_str(args, "page")?;
        Ok(Value::from(format!(
            "/web/{}/{}",
            s.0.site,
            page.trim_matches('/')
        )))
    });
    tera.register_function("chart", Chart(shared.clone()));
    let s = shared.clone();
    tera.register_function("range", move |args: &HashMap<String, Value>| {
        let (_, flags) = &s;
        let int = |k: &str, d: i64| args.get(k).and_then(Value::as_i64).unwrap_or(d);
        let (start, end, step) = (int("start", 0), int("end", 0), int("step_by", 1));
        if step <= 0 {
            return Err(tera::Error::msg("range: step_by must be positive"));
        }
        let n = u64::try_from((end - start).max(0))
            .unwrap_or(0)
            .div_ceil(step.unsigned_abs());
        if flags.range.fetch_add(n, Ordering::Relaxed) + n > MAX_RANGE {
            return Err(tera::Error::msg(format!(
                "range: more than {MAX_RANGE} numbers in one page"
            )));
        }
        Ok(Value::from(
            (0..n)
                .map(|i| start + i64::try_from(i).unwrap_or(0) * step)
                .collect::<Vec<_>>(),
        ))
    });
    let s = shared.clone();
    tera.register_function(TICK, move |_: &HashMap<String, Value>| {
        let (visit, flags) = &s;
        if Instant::now() > visit.deadline {
            flags.timed_out.store(true, Ordering::Relaxed);
            return Err(tera::Error::msg("time limit"));
        }
        Ok(Value::from(""))
    });
    // The environment (database URL, secrets) is not the visitor's business.
    tera.register_function("get_env", |_: &HashMap<String, Value>| {
        Err(tera::Error::msg("get_env is not available in web pages"))
    });
}

/// Whether a document a template reads may be shown without preview: published, or of
/// a type without publication (a Data Array, a Person the visitor may View).
fn visible_unpreviewed(doc: &Value) -> bool {
    doc.pointer("/workflow_states/publication_workflow")
        .is_none()
        || crate::is_published(doc)
}

/// Renders the tera template `body` for `visit` with `context`; HTML-escapes every value
/// printed unless marked `| safe`.
pub fn render_tera(
    visit: Arc<Visit>,
    body: &str,
    context: &Value,
) -> Result<(String, Arc<Flags>), RenderError> {
    let config = crate::settings();
    if body.len() > MAX_TEMPLATE_BYTES {
        return Err(RenderError::Template(format!(
            "the template has {} bytes, more than {MAX_TEMPLATE_BYTES}",
            body.len()
        )));
    }
    if let Some(line) = too_deep(body) {
        return Err(RenderError::Template(format!(
            "line {line}: blocks or brackets nested deeper than {MAX_NESTING}"
        )));
    }
    if let Some((line, tag)) = refused_tag(body) {
        return Err(RenderError::Template(format!(
            "line {line}: {{% {tag} %}} is not available in web pages"
        )));
    }
    let flags = Arc::new(Flags::default());
    let shared: Shared = (visit.clone(), flags.clone());
    let mut tera = Tera::default();
    register(&mut tera, &shared);
    // `.html`: auto-escaping on.
    tera.add_raw_template("page.html", &with_ticks(body))
        .map_err(|e| RenderError::Template(describe(&e)))?;
    let context =
        Context::from_value(context.clone()).map_err(|e| RenderError::Template(describe(&e)))?;
    let mut out = Limited {
        out: Vec::new(),
        max: config.max_output_bytes,
        deadline: visit.deadline,
        flags: &flags,
        too_large: false,
    };
    let result = tera.render_to("page.html", &context, &mut out);
    if out.too_large {
        return Err(RenderError::TooLarge(config.max_output_bytes));
    }
    if flags.timed_out.load(Ordering::Relaxed) || Instant::now() > visit.deadline {
        return Err(RenderError::TimedOut(config.render_timeout_ms));
    }
    result.map_err(|e| RenderError::Template(describe(&e)))?;
    let text = String::from_utf8(out.out)
        .map_err(|_| RenderError::Template("the output is not UTF-8".into()))?;
    Ok((text, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_tags_are_found_with_their_line() {
        assert_eq!(refused_tag("a\n{%- macro f() %}"), Some((2, "macro")));
        assert_eq!(
            refused_tag("{% set_global x = 1 %}"),
            Some((1, "set_global"))
        );
        assert_eq!(
            refused_tag("{%filter upper%}x{%endfilter%}"),
            Some((1, "filter"))
        );
        assert_eq!(
            refused_tag("{% for x in y %}{% set a = 1 %}{% endfor %}"),
            None
        );
        assert_eq!(refused_tag("{% if macros %}"), None);
    }

    #[test]
    fn deep_nesting_is_refused_before_tera_sees_it() {
        let deep = "{% if true %}".repeat(65) + &"{% endif %}".repeat(65);
        assert_eq!(too_deep(&deep), Some(1));
        let ok = "{% if true %}".repeat(30) + &"{% endif %}".repeat(30);
        assert_eq!(too_deep(&ok), None);
        // Sequential blocks do not add up.
        let flat = "{% for x in y %}{% if x %}{{ x }}{% endif %}{% endfor %}\n".repeat(200);
        assert_eq!(too_deep(&flat), None);
        let parens = format!("a\n{{{{ {}1{} }}}}", "(".repeat(70), ")".repeat(70));
        assert_eq!(too_deep(&parens), Some(2));
        let both = "{% if true %}".repeat(40) + "{{ " + &"(".repeat(40) + "1" + &")".repeat(40);
        assert_eq!(too_deep(&both), Some(1));
    }

    #[test]
    fn every_loop_turn_ticks() {
        assert_eq!(
            with_ticks("a{% for x in y %}{{ x }}{% endfor %}\n{%- for z in w -%} b{% endfor %}"),
            "a{% for x in y %}{{ __tick() }}{{ x }}{% endfor %}\n{%- for z in w -%}{{ __tick() -}} b{% endfor %}"
        );
        assert_eq!(with_ticks("{% if a %}{% endif %}"), "{% if a %}{% endif %}");
        assert_eq!(with_ticks("x {% for"), "x {% for");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<script>\"'&"), "&lt;script&gt;&quot;&#39;&amp;");
    }
}
