//! Web sites, sections and pages: how results are published. A Web Site (in
//! `web_site_module`) holds Web Sections; Web Pages (in `web_page_module`) are found by
//! their `page_reference` and `language`, the highest published `version` winning, and
//! served under `/web/<site>/…` ([`http`]) as HTML, Markdown, tera templates rendered as
//! the visitor ([`render`]), CSS or JavaScript. Publication is `publication_workflow`:
//! a draft is seen only by those who may View it, and only with `?preview=1`.

pub mod http;
pub mod public;
pub mod render;
pub mod view;

use std::cmp::Ordering;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wendelin_core::catalog::{Count, Search};
use wendelin_core::{
    CoreError, CoreResult, Document, Module, Portal, PortalType, PropertyDef, PropertyType, User,
};

/// The portal types.
pub const WEB_SITE: &str = "Web Site";
/// A page container inside a site.
pub const WEB_SECTION: &str = "Web Section";
/// A page.
pub const WEB_PAGE: &str = "Web Page";
/// Folder of sites.
pub const SITE_FOLDER: &str = "web_site_module";
/// Folder of pages.
pub const PAGE_FOLDER: &str = "web_page_module";

/// What a Web Page's body is (`content_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `text/html`: served as written (inside the site's layout unless it is a whole
    /// document).
    Html,
    /// `text/markdown`: converted to HTML.
    Markdown,
    /// `text/x-tera`: a tera template rendered as the visitor.
    Tera,
    /// `text/css`.
    Css,
    /// `text/javascript`.
    Js,
}

/// The content types a Web Page may declare.
pub const CONTENT_TYPES: &[(&str, Kind)] = &[
    ("text/html", Kind::Html),
    ("text/markdown", Kind::Markdown),
    ("text/x-tera", Kind::Tera),
    ("text/css", Kind::Css),
    ("text/javascript", Kind::Js),
];

impl Kind {
    /// The kind of a declared content type.
    pub fn of(content_type: &str) -> Option<Kind> {
        CONTENT_TYPES
            .iter()
            .find(|(t, _)| *t == content_type.trim())
            .map(|(_, k)| *k)
    }

    /// The Content-Type served.
    pub fn served_as(self) -> &'static str {
        match self {
            Kind::Html | Kind::Markdown | Kind::Tera => "text/html; charset=utf-8",
            Kind::Css => "text/css; charset=utf-8",
            Kind::Js => "text/javascript; charset=utf-8",
        }
    }

    /// The file extension of its hashed asset URL.
    pub fn extension(self) -> &'static str {
        match self {
            Kind::Css => "css",
            Kind::Js => "js",
            _ => "html",
        }
    }
}

/// The `[web]` section of `wendelin.toml`; each key is also `WENDELIN_WEB_<KEY>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Longest a tera template may render, in milliseconds.
    pub render_timeout_ms: u64,
    /// Largest rendered page, in bytes.
    pub max_output_bytes: usize,
    /// Most documents one `search()` of a template or one section listing returns.
    pub max_search_limit: i64,
    /// Bytes of rendered pages kept in memory by this process.
    pub cache_bytes: u64,
    /// The address of the public web origin (`127.0.0.1:8081`): a second listener that
    /// serves published sites to anonymous visitors only, without the sandbox, so that
    /// pages work offline ([`public`]). Empty: off.
    pub listen: String,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            render_timeout_ms: 2000,
            max_output_bytes: 1 << 20,
            max_search_limit: 100,
            cache_bytes: 64 << 20,
            listen: String::new(),
        }
    }
}

static CONFIG: OnceLock<WebConfig> = OnceLock::new();

/// Applies the section (the first call wins; the server calls it before serving).
pub fn configure(config: WebConfig) {
    let _ = CONFIG.set(config);
}

/// The settings in effect.
pub fn settings() -> &'static WebConfig {
    static DEFAULT: OnceLock<WebConfig> = OnceLock::new();
    CONFIG
        .get()
        .unwrap_or_else(|| DEFAULT.get_or_init(WebConfig::default))
}

/// Names in URLs and catalog queries: `[A-Za-z0-9_.-]`, 1 to 200 characters.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn text(props: &Map<String, Value>, key: &str) -> Option<String> {
    props
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The checks of a Web Page's properties: names that go into URLs and queries, a known
/// content type.
fn check_page(props: &Map<String, Value>) -> CoreResult<()> {
    for key in ["page_reference", "language", "version"] {
        if let Some(v) = text(props, key) {
            if !is_name(&v) {
                return Err(CoreError::Invalid(format!(
                    "{key} '{v}' may only hold letters, digits, '_', '.' and '-'"
                )));
            }
        }
    }
    if let Some(t) = text(props, "content_type") {
        if Kind::of(&t).is_none() {
            let known: Vec<&str> = CONTENT_TYPES.iter().map(|(t, _)| *t).collect();
            return Err(CoreError::Invalid(format!(
                "content_type '{t}' is not one of {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

/// The checks of a site's or section's page references.
fn check_container(props: &Map<String, Value>) -> CoreResult<()> {
    for key in ["front_page", "stylesheet", "language"] {
        if let Some(v) = text(props, key) {
            if !is_name(&v) {
                return Err(CoreError::Invalid(format!(
                    "{key} '{v}' may only hold letters, digits, '_', '.' and '-'"
                )));
            }
        }
    }
    if let Some(scripts) = props.get("scripts").filter(|v| !v.is_null()) {
        let ok = scripts
            .as_array()
            .is_some_and(|a| a.iter().all(|s| s.as_str().is_some_and(is_name)));
        if !ok {
            return Err(CoreError::Invalid(
                "scripts must be a list of JavaScript page references".into(),
            ));
        }
    }
    Ok(())
}

/// The web module: web sites with their sections, and web pages.
pub fn module() -> Module {
    Module::new("web")
        .folder(SITE_FOLDER, "Web Sites", &[WEB_SITE])
        .folder(PAGE_FOLDER, "Web Pages", &[WEB_PAGE])
        // `/api/v1/web_site_module/<site>/clone`, `/api/v1/web_page_module/<page>/clone`.
        .reserve_ids(&["clone"])
        .portal_type(
            PortalType::new(WEB_SITE, SITE_FOLDER)
                .describe("A published site at /web/<id>/: a tree of sections showing web pages")
                .validate(check_container)
                .property(
                    PropertyDef::new("front_page", PropertyType::String)
                        .describe("page reference of the Web Page shown at /web/<site>/"),
                )
                .property(
                    PropertyDef::new("language", PropertyType::String)
                        .default_value(Value::from("en"))
                        .describe("language of the pages shown unless ?language= asks another"),
                )
                .property(
                    PropertyDef::new("stylesheet", PropertyType::String)
                        .describe("page reference of the theme: a text/css Web Page"),
                )
                .property(
                    PropertyDef::new("scripts", PropertyType::Json)
                        .describe("page references of text/javascript Web Pages every page loads"),
                )
                .property(
                    PropertyDef::new("arrays", PropertyType::Relation)
                        .multiple()
                        .describe("Data Arrays whose data the site's charts show to its visitors (decimated)"),
                )
                .workflow("publication_workflow")
                .allow(WEB_SECTION),
        )
        .portal_type(
            PortalType::new(WEB_SECTION, SITE_FOLDER)
                .describe("A part of a web site (/web/<site>/<section>/): its front page, or a listing")
                .validate(check_container)
                .property(
                    PropertyDef::new("front_page", PropertyType::String)
                        .describe("page reference of the Web Page shown at the section's URL"),
                )
                .property(
                    PropertyDef::new("listing", PropertyType::String)
                        .describe("catalog query of the documents listed when there is no front page"),
                )
                .property(
                    PropertyDef::new("listing_limit", PropertyType::Int)
                        .default_value(Value::from(20)),
                )
                .workflow("publication_workflow")
                .allow(WEB_SECTION),
        )
        .portal_type(
            PortalType::new(WEB_PAGE, PAGE_FOLDER)
                .describe("An HTML, Markdown, tera template, CSS or JavaScript page")
                .validate(check_page)
                .property(
                    PropertyDef::new("page_reference", PropertyType::String)
                        .indexed()
                        .describe("the name in URLs; versions and translations share it"),
                )
                .property(PropertyDef::new("text_content", PropertyType::Text).full_text())
                .property(
                    PropertyDef::new("content_type", PropertyType::String)
                        .default_value(Value::from("text/html"))
                        .choices(&CONTENT_TYPES.iter().map(|(t, _)| *t).collect::<Vec<_>>())
                        .describe("text/html, text/markdown, text/x-tera, text/css or text/javascript"),
                )
                .property(
                    PropertyDef::new("language", PropertyType::String)
                        .default_value(Value::from("en"))
                        .indexed(),
                )
                .property(
                    PropertyDef::new("version", PropertyType::String)
                        .default_value(Value::from("1"))
                        .indexed()
                        .describe("the highest published version is served (1 < 2 < 10)"),
                )
                .workflow("publication_workflow"),
        )
        .script("WebSite_view", view::site_view)
        .script("WebPage_view", view::page_view)
}

/// Orders versions as people count: digit runs by value, the rest as text
/// (`1 < 2 < 10`, `1.9 < 1.10`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn parts(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let o = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    pa.len().cmp(&pb.len())
}

/// Whether a document (as JSON, with its `workflow_states`) is published.
pub fn is_published(json: &Value) -> bool {
    matches!(
        json.pointer("/workflow_states/publication_workflow")
            .and_then(Value::as_str),
        Some("published" | "published_alive")
    )
}

/// The Web Page served for `reference` to `user`: among the pages of that reference the
/// user may View (published ones only unless `preview`), those in `language` if any,
/// else in `fallback`, else any; of them the highest version, then the latest modified.
pub fn find_page(
    portal: &Portal,
    user: &User,
    reference: &str,
    language: &str,
    fallback: &str,
    preview: bool,
) -> CoreResult<Option<(Document, Value)>> {
    if !is_name(reference) {
        return Ok(None);
    }
    let search = Search {
        query: format!("portal_type:\"{WEB_PAGE}\" AND page_reference:\"{reference}\""),
        sort_on: "modification_date desc".into(),
        limit: 200,
        offset: 0,
    };
    let found = portal.search_counted(user, &search, Count::None)?;
    let jsons = portal.documents_json(&found.documents)?;
    let candidates: Vec<(Document, Value)> = found
        .documents
        .into_iter()
        .zip(jsons)
        .filter(|(_, j)| preview || is_published(j))
        .collect();
    let lang = |j: &Value| {
        j.get("language")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let wanted = [language, fallback]
        .into_iter()
        .find(|l| candidates.iter().any(|(_, j)| lang(j) == *l));
    let version = |j: &Value| {
        j.get("version")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    Ok(candidates
        .into_iter()
        .filter(|(_, j)| wanted.is_none_or(|l| lang(j) == l))
        // Sorted newest first: `max_by` keeps the last of equals, so reverse.
        .rev()
        .max_by(|(_, a), (_, b)| compare_versions(&version(a), &version(b))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_like_people() {
        let mut v = vec!["10", "2", "1", "1.10", "1.9", "001.2", "b", "a"];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(v, vec!["1", "001.2", "1.9", "1.10", "2", "10", "a", "b"]);
        assert_eq!(compare_versions("", "1"), Ordering::Less);
    }
}
