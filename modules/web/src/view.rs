//! The admin UI's module views (their *Module view* tab): `WebSite_view` lists a site's
//! sections (as a tree) and the Web Pages it shows, each with its publication state,
//! and `WebPage_view` is the page editor — its fields, the body in a
//! `<textarea data-code="…">` (the UI's code editor upgrades it) and a live preview of
//! the unsaved draft, rendered by `POST /web/<site>/_preview` into a sandboxed iframe
//! (`static/web-editor.js`). Everything listed is what the viewer may View.

use askama::Template;
use wendelin_core::catalog::{Count, Search};
use wendelin_core::{Call, CoreError, CoreResult, Document, MethodOutput};

use crate::{Kind, CONTENT_TYPES, PAGE_FOLDER, SITE_FOLDER, WEB_PAGE, WEB_SECTION, WEB_SITE};

/// Sections listed per container, and levels of nested sections.
const MAX_SECTIONS: i64 = 200;
const MAX_DEPTH: usize = 8;
/// Web Pages listed on a site's view (the latest modified).
const MAX_PAGES: i64 = 200;

struct SectionRow {
    depth: usize,
    id: String,
    title: String,
    path: String,
    url: String,
    state: String,
    front_page: String,
    listing: String,
}

struct PageRow {
    role: String,
    reference: String,
    title: String,
    language: String,
    version: String,
    content_type: String,
    state: String,
    path: String,
    url: String,
}

#[derive(Template)]
#[template(path = "web_site_view.html")]
struct SiteView {
    title: String,
    url: String,
    state: String,
    front_page: String,
    stylesheet: String,
    scripts: String,
    arrays: Vec<String>,
    sections: Vec<SectionRow>,
    named: Vec<PageRow>,
    pages: Vec<PageRow>,
    more_pages: bool,
}

fn text(doc: &Document, key: &str) -> String {
    doc.get(key)
        .ok()
        .flatten()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn state_of(call: &mut Call<'_>, doc: &Document) -> CoreResult<String> {
    Ok(
        wendelin_core::document::workflow_states(call.conn, doc.uid)?
            .remove("publication_workflow")
            .unwrap_or_default(),
    )
}

/// The sections under `parent` the viewer may see, depth first.
fn sections(
    call: &mut Call<'_>,
    parent: &Document,
    base: &str,
    depth: usize,
    out: &mut Vec<SectionRow>,
) -> CoreResult<()> {
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    let principals = call.user.principals();
    let (children, _) = wendelin_core::document::children(
        call.conn,
        parent.uid,
        Some(&principals),
        MAX_SECTIONS,
        0,
    )?;
    for child in children.iter().filter(|c| c.portal_type == WEB_SECTION) {
        let url = format!("{base}{}/", child.id);
        out.push(SectionRow {
            depth,
            id: child.id.clone(),
            title: child.title.clone(),
            path: child.path.clone(),
            url: url.clone(),
            state: state_of(call, child)?,
            front_page: text(child, "front_page"),
            listing: text(child, "listing"),
        });
        sections(call, child, &url, depth + 1, out)?;
    }
    Ok(())
}

/// The Web Pages of `reference` (every version and language) the viewer may see.
fn pages_of(call: &mut Call<'_>, reference: &str, limit: i64) -> CoreResult<Vec<Document>> {
    let query = if reference.is_empty() {
        format!("portal_type:\"{WEB_PAGE}\"")
    } else if crate::is_name(reference) {
        format!("portal_type:\"{WEB_PAGE}\" AND page_reference:\"{reference}\"")
    } else {
        return Ok(Vec::new());
    };
    newest(call, query, limit)
}

/// The documents `query` finds for the caller, newest first, at most `limit` (no count).
fn newest(call: &mut Call<'_>, query: String, limit: i64) -> CoreResult<Vec<Document>> {
    let search = Search {
        query,
        sort_on: "modification_date desc".into(),
        limit,
        offset: 0,
    };
    let principals = call.user.principals();
    Ok(wendelin_core::catalog::search(
        call.conn,
        call.registry,
        None,
        &principals,
        &search,
        Count::None,
    )?
    .documents)
}

fn page_row(call: &mut Call<'_>, role: &str, site: &str, doc: &Document) -> CoreResult<PageRow> {
    let reference = text(doc, "page_reference");
    Ok(PageRow {
        role: role.to_owned(),
        url: format!("/web/{site}/{reference}"),
        reference,
        title: doc.title.clone(),
        language: text(doc, "language"),
        version: text(doc, "version"),
        content_type: text(doc, "content_type"),
        state: state_of(call, doc)?,
        path: doc.path.clone(),
    })
}

/// The `WebSite_view` module script.
pub fn site_view(call: &mut Call<'_>) -> CoreResult<MethodOutput> {
    let site = call.context.clone();
    if site.portal_type != WEB_SITE {
        return Err(CoreError::NotFound(format!(
            "/{} is not a Web Site",
            site.path
        )));
    }
    let base = format!("/web/{}/", site.id);
    let mut rows = Vec::new();
    sections(call, &site, &base, 0, &mut rows)?;
    // The pages the site names: its front page, theme and scripts, its sections' front
    // pages.
    let mut names: Vec<(String, String)> = Vec::new();
    names.push(("front page".into(), text(&site, "front_page")));
    names.push(("stylesheet".into(), text(&site, "stylesheet")));
    let scripts: Vec<String> = site
        .get("scripts")
        .ok()
        .flatten()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    for s in &scripts {
        names.push(("script".into(), s.clone()));
    }
    for r in &rows {
        names.push((format!("front page of {}", r.id), r.front_page.clone()));
    }
    let mut named = Vec::new();
    for (role, reference) in names.into_iter().filter(|(_, r)| !r.is_empty()) {
        let found = pages_of(call, &reference, 50)?;
        if found.is_empty() {
            named.push(PageRow {
                role: role.clone(),
                url: format!("{base}{reference}"),
                reference,
                title: String::new(),
                language: String::new(),
                version: String::new(),
                content_type: String::new(),
                state: "missing".into(),
                path: String::new(),
            });
            continue;
        }
        for doc in &found {
            named.push(page_row(call, &role, &site.id, doc)?);
        }
    }
    let all = pages_of(call, "", MAX_PAGES + 1)?;
    let more_pages = all.len() as i64 > MAX_PAGES;
    let mut pages = Vec::new();
    for doc in all.iter().take(MAX_PAGES as usize) {
        pages.push(page_row(call, "", &site.id, doc)?);
    }
    // A relation: in the document's JSON, not its properties.
    let json = wendelin_core::document::to_json(call.conn, call.registry, &site)?;
    let arrays = json
        .get("arrays")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let view = SiteView {
        title: site.title.clone(),
        url: base,
        state: state_of(call, &site)?,
        front_page: text(&site, "front_page"),
        stylesheet: text(&site, "stylesheet"),
        scripts: scripts.join(", "),
        arrays,
        sections: rows,
        named,
        pages,
        more_pages,
    };
    view.render()
        .map(MethodOutput::Html)
        .map_err(|e| CoreError::Internal(format!("WebSite_view failed: {e}")))
}

struct SiteChoice {
    id: String,
    title: String,
}

#[derive(Template)]
#[template(path = "web_page_view.html")]
struct PageView {
    path: String,
    serial: i64,
    title: String,
    reference: String,
    language: String,
    version: String,
    content_type: String,
    content_types: Vec<&'static str>,
    mode: &'static str,
    body: String,
    state: String,
    sites: Vec<SiteChoice>,
}

/// The code editor's mode for a content type.
pub fn code_mode(content_type: &str) -> &'static str {
    match Kind::of(content_type) {
        Some(Kind::Css) => "css",
        Some(Kind::Js) => "javascript",
        Some(Kind::Markdown) => "markdown",
        Some(Kind::Html | Kind::Tera) | None => "html",
    }
}

/// The `WebPage_view` module script: the page editor.
pub fn page_view(call: &mut Call<'_>) -> CoreResult<MethodOutput> {
    let page = call.context.clone();
    if page.portal_type != WEB_PAGE || !page.path.starts_with(&format!("{PAGE_FOLDER}/")) {
        return Err(CoreError::NotFound(format!(
            "/{} is not a Web Page",
            page.path
        )));
    }
    let sites = newest(call, format!("portal_type:\"{WEB_SITE}\""), 100)?
        .into_iter()
        .filter(|d| d.path.starts_with(&format!("{SITE_FOLDER}/")))
        .map(|d| SiteChoice {
            id: d.id.clone(),
            title: d.title.clone(),
        })
        .collect();
    let content_type = text(&page, "content_type");
    let view = PageView {
        path: page.path.clone(),
        serial: page.serial,
        title: page.title.clone(),
        reference: text(&page, "page_reference"),
        language: text(&page, "language"),
        version: text(&page, "version"),
        mode: code_mode(&content_type),
        content_types: CONTENT_TYPES.iter().map(|(t, _)| *t).collect(),
        content_type,
        body: text(&page, "text_content"),
        state: state_of(call, &page)?,
        sites,
    };
    view.render()
        .map(MethodOutput::Html)
        .map_err(|e| CoreError::Internal(format!("WebPage_view failed: {e}")))
}
