//! A module's listbox: its documents from the catalog (security-filtered, exact count),
//! with sortable columns, a filter per column, a search box, pages, row selection with a
//! bulk workflow action, and add buttons for the types the folder allows. A folder
//! holding a type with thumbnails (`PortalType::thumbnail`) is also shown as a gallery
//! (`?view=gallery`): the same rows, as pictures.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use askama::Template;
use wendelin_core::catalog::{folder_scope, quote, Kind, Search};
use wendelin_core::{CoreError, Document, Permission, Portal};

use super::form::{label, Pairs};
use super::{label_of, render, Chrome, Flash, Out, Session};
use crate::error::ServerError;

/// Rows per page unless the URL says otherwise.
pub const PAGE_SIZE: i64 = 50;
const PAGE_SIZES: [i64; 4] = [20, 50, 100, 200];

/// One column: a catalog key, or a value the module computes per row.
struct Column {
    key: String,
    /// Computed by the module: neither sorted nor filtered.
    computed: bool,
    label: String,
    filter: String,
    /// Link that sorts by this column (toggling the order when it is the current one).
    sort_href: String,
    /// `ascending`, `descending` or `none` (for aria-sort).
    sorted: &'static str,
}

struct Row {
    path: String,
    href: String,
    cells: Vec<String>,
    /// The thumbnail's URL in a gallery ("" when the document has none).
    thumbnail: String,
}

/// The thumbnail URL of each type of a folder that has them, by type name.
type Thumbnails = BTreeMap<String, Arc<wendelin_core::types::ThumbnailFn>>;

/// The listbox's state, as carried by its URL.
#[derive(Debug, Clone, Default)]
struct State {
    q: String,
    filters: BTreeMap<String, String>,
    sort_on: String,
    order: String,
    page: i64,
    size: i64,
    /// `gallery`, or "" for the table.
    view: String,
}

impl State {
    fn from_query(query: &Pairs, keys: &[String]) -> State {
        let mut s = State {
            q: query.get("q").unwrap_or("").trim().to_owned(),
            sort_on: query.get("sort_on").unwrap_or("").to_owned(),
            order: match query.get("sort_order") {
                Some("asc") => "asc".into(),
                Some("desc") => "desc".into(),
                _ => String::new(),
            },
            page: query
                .get("page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1)
                .max(1),
            size: query
                .get("size")
                .and_then(|p| p.parse().ok())
                .filter(|n| PAGE_SIZES.contains(n))
                .unwrap_or(PAGE_SIZE),
            view: match query.get("view") {
                Some("gallery") => "gallery".into(),
                _ => String::new(),
            },
            ..State::default()
        };
        for key in keys {
            if let Some(v) = query.get(&format!("f_{key}")) {
                if !v.trim().is_empty() {
                    s.filters.insert(key.clone(), v.trim().to_owned());
                }
            }
        }
        if !keys.contains(&s.sort_on) {
            s.sort_on = String::new();
        }
        s
    }

    fn params(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !self.q.is_empty() {
            out.push(("q".into(), self.q.clone()));
        }
        for (k, v) in &self.filters {
            out.push((format!("f_{k}"), v.clone()));
        }
        if !self.sort_on.is_empty() {
            out.push(("sort_on".into(), self.sort_on.clone()));
            out.push(("sort_order".into(), self.order.clone()));
        }
        if self.page > 1 {
            out.push(("page".into(), self.page.to_string()));
        }
        if self.size != PAGE_SIZE {
            out.push(("size".into(), self.size.to_string()));
        }
        if !self.view.is_empty() {
            out.push(("view".into(), self.view.clone()));
        }
        out
    }

    fn href(&self, base: &str) -> String {
        let params = self.params();
        if params.is_empty() {
            return base.to_owned();
        }
        format!(
            "{base}?{}",
            serde_urlencoded::to_string(&params).unwrap_or_default()
        )
    }
}

/// A column filter as typed in the header (`boiler`, `>=10`, `!=draft`) as a query clause:
/// text columns match by substring unless an operator or `%` is given.
fn filter_clause(key: &str, kind: Kind, text: &str) -> String {
    let ops = [">=", "<=", "!=", ">", "<", "="];
    if let Some(op) = ops.iter().find(|op| text.starts_with(**op)) {
        return format!("{key}:{op}{}", quote(text[op.len()..].trim()));
    }
    match kind {
        Kind::Text if !text.contains('%') => format!("{key}:{}", quote(&format!("%{text}%"))),
        _ => format!("{key}:{}", quote(text)),
    }
}

#[derive(Template)]
#[template(path = "ui/listbox.html")]
struct ListboxPage {
    page: Chrome,
    title: String,
    base: String,
    q: String,
    columns: Vec<Column>,
    rows: Vec<Row>,
    total: i64,
    first: i64,
    last: i64,
    pages: Vec<(i64, String, bool)>,
    prev: String,
    next: String,
    error: String,
    add: Vec<(String, String)>,
    transitions: Vec<(String, String)>,
    return_to: String,
    size: i64,
    sizes: Vec<i64>,
    sort_on: String,
    sort_order: String,
    /// Whether the gallery is offered (the folder holds a type with thumbnails).
    gallery: bool,
    /// `gallery` when shown as one, else "".
    view: String,
    /// The same listing as a table and as a gallery ("" when not offered).
    table_href: String,
    gallery_href: String,
    /// Column filters in effect, carried by the gallery's form (it shows no filter row).
    filters: Vec<(String, String)>,
}

/// The catalog keys a module's listbox shows: the columns its types declare
/// (`PortalType::listbox_columns`, in order, without repeats); when none declares any,
/// identity, the indexed properties and workflow states of the types it holds, and the
/// modification date.
fn column_keys(portal: &Portal, folder: &Document) -> Vec<String> {
    let registry = &portal.registry;
    let types: Vec<String> = registry
        .folder(&folder.id)
        .map(|f| f.allowed_content_types.clone())
        .unwrap_or_default();
    let mut declared: Vec<String> = Vec::new();
    for t in types.iter().filter_map(|t| registry.portal_type(t)) {
        for key in &t.listbox_columns {
            if !declared.contains(key) {
                declared.push(key.clone());
            }
        }
    }
    if !declared.is_empty() {
        return declared;
    }
    let mut keys: Vec<String> = vec!["title".into(), "id".into(), "reference".into()];
    let mut states = Vec::new();
    for t in types.iter().filter_map(|t| registry.portal_type(t)) {
        for p in t.properties.iter().filter(|p| p.indexed) {
            if !keys.contains(&p.name) {
                keys.push(p.name.clone());
            }
        }
        for wf in t.workflows.iter().filter_map(|w| registry.workflow(w)) {
            let key = wf.state_variable();
            if !states.contains(&key) {
                states.push(key);
            }
        }
    }
    keys.extend(states);
    keys.push("modification_date".into());
    keys
}

/// The thumbnail URLs of the folder's types that have them (see `PortalType::thumbnail`).
fn thumbnails(portal: &Portal, folder: &Document) -> Thumbnails {
    let registry = &portal.registry;
    registry
        .folder(&folder.id)
        .map(|f| f.allowed_content_types.clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|t| registry.portal_type(t))
        .filter_map(|t| Some((t.name.clone(), t.thumbnail.clone()?)))
        .collect()
}

/// The columns among `keys` that the folder's types compute (not catalog keys), by key.
fn computed_columns(
    portal: &Portal,
    folder: &Document,
    keys: &[String],
) -> BTreeMap<String, wendelin_core::types::ComputedColumn> {
    let registry = &portal.registry;
    let types = registry
        .folder(&folder.id)
        .map(|f| f.allowed_content_types.clone())
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for t in types.iter().filter_map(|t| registry.portal_type(t)) {
        for key in keys {
            if let Some(c) = t.computed(key) {
                out.entry(key.clone()).or_insert_with(|| c.clone());
            }
        }
    }
    out
}

/// The transitions of the workflows of the types a folder holds: the bulk actions.
fn bulk_transitions(portal: &Portal, folder: &Document) -> Vec<(String, String)> {
    let registry = &portal.registry;
    let mut out: Vec<(String, String)> = Vec::new();
    for t in registry
        .folder(&folder.id)
        .map(|f| f.allowed_content_types.clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|t| registry.portal_type(t))
    {
        for wf in t.workflows.iter().filter_map(|w| registry.workflow(w)) {
            for tr in &wf.transitions {
                if !out.iter().any(|(id, _)| *id == tr.id) {
                    out.push((tr.id.clone(), tr.title.clone()));
                }
            }
        }
    }
    out
}

/// `GET /ui/<module>`: the folder's documents found by the catalog for the listbox's
/// state (its URL), as rows of cells under sortable, filterable columns, with a pager,
/// add buttons and the bulk actions.
pub fn page(
    portal: &Portal,
    s: &Session,
    folder: &Document,
    query: &Pairs,
) -> Result<Out, ServerError> {
    let keys = column_keys(portal, folder);
    let computed = computed_columns(portal, folder, &keys);
    let catalog_keys: Vec<String> = keys
        .iter()
        .filter(|k| !computed.contains_key(*k))
        .cloned()
        .collect();
    let mut state = State::from_query(query, &catalog_keys);
    let thumbnails = thumbnails(portal, folder);
    if thumbnails.is_empty() {
        state.view = String::new();
    }
    let base = format!("/ui/{}", folder.path);
    let (found, error) = match portal.search(&s.user, &search_of(portal, folder, &state)) {
        Ok(r) => (Some(r), String::new()),
        Err(e @ (CoreError::BadRequest(_) | CoreError::Invalid(_))) => {
            (None, crate::error::public_message(&ServerError::Core(e)))
        }
        Err(e) => return Err(e.into()),
    };
    let (documents, total) = found.map(|r| (r.documents, r.total)).unwrap_or_default();
    let shown = if state.view.is_empty() {
        None
    } else {
        Some(&thumbnails)
    };
    let rows = rows(portal, &documents, &keys, &computed, shown)?;
    let pager = Pager::new(&state, &base, total, rows.len());
    let title = portal
        .registry
        .folder(&folder.id)
        .map(|f| f.title.clone())
        .unwrap_or_else(|| folder.id.clone());
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let view_href = |view: &str| {
        let mut v = state.clone();
        v.view = view.to_owned();
        v.href(&base)
    };
    let (table_href, gallery_href) = if thumbnails.is_empty() {
        (String::new(), String::new())
    } else {
        (view_href(""), view_href("gallery"))
    };
    let listbox = ListboxPage {
        page: Chrome::new(s, title.clone()).with_path(portal, &s.user, &folder.path),
        title,
        q: state.q.clone(),
        columns: columns(&keys, &computed, &state, &base),
        rows,
        total,
        first: pager.first,
        last: pager.last,
        prev: pager.prev,
        next: pager.next,
        pages: pager.pages,
        error,
        add: add_links(portal, s, folder, &base)?,
        transitions: bulk_transitions(portal, folder),
        return_to: state.href(&base),
        size: state.size,
        sizes: PAGE_SIZES.to_vec(),
        sort_on: state.sort_on.clone(),
        sort_order: state.order.clone(),
        gallery: !thumbnails.is_empty(),
        view: state.view.clone(),
        table_href,
        gallery_href,
        filters: state
            .filters
            .iter()
            .map(|(k, v)| (format!("f_{k}"), v.clone()))
            .collect(),
        base,
    };
    let canonical = listbox.return_to.clone();
    let out = Out::PageAt(status, render(&listbox)?, canonical);
    Ok(if computed.is_empty() {
        out
    } else {
        Out::Live(Box::new(out))
    })
}

/// The catalog search a listbox state asks for: the folder's documents, each column
/// filter, the search box's words, the sort (newest first by default, by relevance for a
/// search), the page.
fn search_of(portal: &Portal, folder: &Document, state: &State) -> Search {
    let schema = portal.registry.catalog();
    let mut clauses = vec![folder_scope(&portal.registry, folder)];
    for (key, text) in &state.filters {
        let kind = schema.column(key).map(|c| c.kind).unwrap_or(Kind::Text);
        clauses.push(filter_clause(key, kind, text));
    }
    if !state.q.is_empty() {
        // Appended without parentheses, so that its words stay top-level full-text terms;
        // an OR would bind looser than our ANDs, so then it is enclosed.
        let has_or = state
            .q
            .split_whitespace()
            .any(|w| w.eq_ignore_ascii_case("or"));
        clauses.push(if has_or {
            format!("({})", state.q)
        } else {
            state.q.clone()
        });
    }
    let sort_on = match (state.sort_on.as_str(), state.q.is_empty()) {
        ("", true) => "modification_date desc".to_owned(),
        // A search without a chosen order ranks by relevance.
        ("", false) => String::new(),
        (key, _) => format!(
            "{key} {}",
            if state.order == "desc" { "desc" } else { "asc" }
        ),
    };
    Search {
        query: clauses.join(" AND "),
        sort_on,
        limit: state.size,
        offset: (state.page - 1) * state.size,
    }
}

/// One row per document: a cell per column key (workflow states read for the whole page
/// at once, computed columns asked of the module), and its thumbnail in a gallery.
fn rows(
    portal: &Portal,
    documents: &[Document],
    keys: &[String],
    computed: &BTreeMap<String, wendelin_core::types::ComputedColumn>,
    thumbnails: Option<&Thumbnails>,
) -> Result<Vec<Row>, ServerError> {
    let uids: Vec<i64> = documents.iter().map(|d| d.uid).collect();
    let mut states = portal.workflow_states_of(&uids)?;
    let state_keys: BTreeMap<String, String> = portal
        .registry
        .workflows()
        .map(|w| (w.state_variable(), w.id.clone()))
        .collect();
    let mut rows = Vec::with_capacity(documents.len());
    for doc in documents {
        let wf_states = states.remove(&doc.uid).unwrap_or_default();
        let mut cells = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(column) = computed.get(key) {
                cells.push((column.value)(portal, doc)?);
                continue;
            }
            let text = match key.as_str() {
                "title" => label_of(doc),
                "modification_date" => doc.modification_date.format("%Y-%m-%d %H:%M").to_string(),
                "creation_date" => doc.creation_date.format("%Y-%m-%d %H:%M").to_string(),
                k => match state_keys.get(k) {
                    Some(wf) => wf_states.get(wf).cloned().unwrap_or_default(),
                    None => super::display(doc.get(k)?.as_ref()),
                },
            };
            cells.push(text);
        }
        let thumbnail = thumbnails
            .and_then(|t| t.get(&doc.portal_type))
            .and_then(|url| url(doc))
            .unwrap_or_default();
        rows.push(Row {
            href: format!("/ui/{}", doc.path),
            path: doc.path.clone(),
            cells,
            thumbnail,
        });
    }
    Ok(rows)
}

/// The column headers: label, current filter, and the link that sorts by the column
/// (toggling the order of the current one, back to the first page).
fn columns(
    keys: &[String],
    computed: &BTreeMap<String, wendelin_core::types::ComputedColumn>,
    state: &State,
    base: &str,
) -> Vec<Column> {
    keys.iter()
        .map(|key| {
            let current = state.sort_on == *key;
            let mut next = state.clone();
            next.sort_on = key.clone();
            next.order = if current && state.order == "asc" {
                "desc".into()
            } else {
                "asc".into()
            };
            next.page = 1;
            Column {
                key: key.clone(),
                computed: computed.contains_key(key),
                label: match (computed.get(key), key.as_str()) {
                    (Some(c), _) => c.label.clone(),
                    (None, "id") => "Id".into(),
                    (None, "modification_date") => "Modified".into(),
                    (None, k) => label(k),
                },
                filter: state.filters.get(key).cloned().unwrap_or_default(),
                sort_href: next.href(base),
                sorted: match (current, state.order.as_str()) {
                    (true, "desc") => "descending",
                    (true, _) => "ascending",
                    _ => "none",
                },
            }
        })
        .collect()
}

/// The pager: which rows this page shows (1-based, 0 when none), the page links (the
/// first, the last and two on each side of the current one; 0 marks a gap), previous and
/// next ("" at the ends).
struct Pager {
    first: i64,
    last: i64,
    pages: Vec<(i64, String, bool)>,
    prev: String,
    next: String,
}

impl Pager {
    fn new(state: &State, base: &str, total: i64, shown: usize) -> Pager {
        let page_count = ((total + state.size - 1) / state.size).max(1);
        let at = |n: i64| {
            let mut p = state.clone();
            p.page = n;
            p.href(base)
        };
        let mut pages = Vec::new();
        for n in 1..=page_count {
            if n == 1 || n == page_count || (n - state.page).abs() <= 2 {
                pages.push((n, at(n), n == state.page));
            } else if pages.last().is_some_and(|(m, _, _)| *m > 0) {
                pages.push((0, String::new(), false));
            }
        }
        let first = if total == 0 {
            0
        } else {
            (state.page - 1) * state.size + 1
        };
        Pager {
            first,
            last: (first + i64::try_from(shown).unwrap_or(0) - 1).max(0),
            prev: if state.page > 1 {
                at(state.page - 1)
            } else {
                String::new()
            },
            next: if state.page < page_count {
                at(state.page + 1)
            } else {
                String::new()
            },
            pages,
        }
    }
}

/// An add button per type the folder allows, when the user may add content there.
fn add_links(
    portal: &Portal,
    s: &Session,
    folder: &Document,
    base: &str,
) -> Result<Vec<(String, String)>, ServerError> {
    if !portal.allowed(&s.user, &folder.path, Permission::AddPortalContent)? {
        return Ok(Vec::new());
    }
    Ok(portal
        .registry
        .folder(&folder.id)
        .map(|f| f.allowed_content_types.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let href = format!(
                "{base}/+add?{}",
                serde_urlencoded::to_string([("type", t.as_str())]).unwrap_or_default()
            );
            (href, t)
        })
        .collect())
}

/// `POST /ui/<module>/+bulk`: fires one transition on every selected document the user
/// may fire it on, and says how many it changed and why the others were refused.
pub fn bulk(portal: &Portal, s: &Session, path: &str, form: &Pairs) -> Result<Out, ServerError> {
    let folder = portal.get(&s.user, path)?;
    let back = form
        .get("return_to")
        .filter(|r| r.starts_with("/ui/") && !r.contains("//"))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("/ui/{}", folder.path));
    let transition = form.get("transition").unwrap_or("").to_owned();
    let paths = form.all("path");
    if transition.is_empty() || paths.is_empty() {
        return Ok(Out::Redirect(
            back,
            Some(Flash::error("select documents and an action first")),
        ));
    }
    let mut vars = serde_json::Map::new();
    if let Some(c) = form.get("comment").filter(|c| !c.trim().is_empty()) {
        vars.insert("comment".into(), c.into());
    }
    let mut done = 0;
    let mut refused = Vec::new();
    for p in &paths {
        let inside = p
            .strip_prefix(&format!("{}/", folder.path))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'));
        if !inside {
            refused.push(format!("{p}: not in this module"));
            continue;
        }
        match portal.fire(&s.user, p, &transition, &vars) {
            Ok(_) => done += 1,
            Err(e) => refused.push(format!(
                "{p}: {}",
                super::public_message(&ServerError::Core(e))
            )),
        }
    }
    let flash = if refused.is_empty() {
        Flash::ok(format!("{transition}: done on {done} document(s)"))
    } else {
        Flash::error(format!(
            "{transition}: done on {done}, refused on {} — {}",
            refused.len(),
            refused
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ))
    };
    Ok(Out::Redirect(back, Some(flash)))
}
