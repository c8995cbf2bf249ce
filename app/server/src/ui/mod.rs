//! The browser admin UI under `/ui/`: server-rendered askama pages (templates in
//! `templates/ui/`), htmx for partial updates of listboxes and relation pickers.
//!
//! URLs: `/ui/` is the portal home (module tiles), `/ui/<module>` a module's listbox,
//! `/ui/<path>` a document's view; a last segment starting with `+` names a tab or an
//! action (`+edit`, `+history`, `+roles`, `+relations`, `+add`, `+fire`, `+bulk`,
//! `+upload`). Ids
//! cannot contain `+`, so these never clash with documents.
//!
//! Invariant: handlers only go through [`Portal`] methods, the same permission checks as
//! the JSON API. Forms that change data carry the session's CSRF token; pages never mark
//! user data as safe (askama escapes everything).

mod cache;
mod document;
pub mod form;
mod listbox;
mod upload;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use base64::Engine;
use serde_json::Value;
use wendelin_core::types::MODULE_FOLDER_TYPE;
use wendelin_core::{CoreError, Portal, User};

use crate::auth::{Auth, Via};
use crate::error::ServerError;

/// Registers the UI routes (before the API's catch-all traversal routes).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ui", web::get().to(redirect_home))
        .route("/ui/{tail:.*}", web::get().to(ui_get))
        .route("/ui/{tail:.*}/+upload", web::post().to(upload::ui_upload))
        .route("/ui/{tail:.*}", web::post().to(ui_post));
}

/// Drops the cached pages of a session (called at logout).
pub fn forget_session(token: &str) {
    cache::forget_session(token);
}

const FLASH_COOKIE: &str = "wendelin_flash";

/// A one-time message shown on the next page (after a redirect).
#[derive(Debug, Clone)]
pub struct Flash {
    /// `ok` or `error`.
    pub kind: String,
    /// Text shown.
    pub text: String,
}

impl Flash {
    fn ok(text: impl Into<String>) -> Flash {
        Flash {
            kind: "ok".into(),
            text: text.into(),
        }
    }
    fn error(text: impl Into<String>) -> Flash {
        Flash {
            kind: "error".into(),
            text: text.into(),
        }
    }
    fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}\n{}", self.kind, self.text))
    }
    fn decode(value: &str) -> Option<Flash> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (kind, text) = text.split_once('\n')?;
        Some(Flash {
            kind: if kind == "ok" { "ok" } else { "error" }.into(),
            text: text.chars().take(500).collect(),
        })
    }
}

/// The logged-in user of a UI request.
#[derive(Debug, Clone)]
pub struct Session {
    user: User,
    /// The session's CSRF token ("" for API-token requests, which need none).
    csrf: String,
    via_basic: bool,
    flash: Option<Flash>,
    /// The session cookie's token ("" without a session): the page cache's key.
    token: String,
    /// The change generation read before the session was resolved (sessions only).
    generation: Option<i64>,
}

impl Session {
    fn login(&self) -> &str {
        self.user.login.as_deref().unwrap_or("")
    }

    /// Forms that change data must come from our pages: the session's token in the form.
    fn check_csrf(&self, form: &form::Pairs) -> Result<(), ServerError> {
        self.check_csrf_token(form.get("csrf_token"))
    }

    /// [`Session::check_csrf`] for the `csrf_token` a form sent, if any.
    fn check_csrf_token(&self, token: Option<&str>) -> Result<(), ServerError> {
        if self.via_basic {
            return Err(ServerError::Core(CoreError::Forbidden(
                "the UI changes data only with a session (log in) or an API token".into(),
            )));
        }
        if self.csrf.is_empty() || token == Some(self.csrf.as_str()) {
            return Ok(());
        }
        Err(ServerError::Core(CoreError::Forbidden(
            "missing or wrong CSRF token in the form: reload the page and try again".into(),
        )))
    }
}

/// What every UI page shows around its content.
pub struct Chrome {
    /// Page title (escaped by askama like everything).
    pub title: String,
    /// Logged-in user.
    pub login: String,
    /// CSRF token for the page's forms.
    pub csrf: String,
    /// One-time message.
    pub flash: Option<Flash>,
    /// Breadcrumbs: (href, label).
    pub crumbs: Vec<(String, String)>,
    /// Cache-busted asset URLs.
    pub css: &'static str,
    /// htmx.
    pub htmx: &'static str,
    /// Our own script.
    pub js: &'static str,
    /// The code editor (script and style), which our script loads where a page has a
    /// `textarea[data-code]`.
    pub editor_js: &'static str,
    /// The code editor's style.
    pub editor_css: &'static str,
}

impl Chrome {
    fn new(session: &Session, title: impl Into<String>) -> Chrome {
        Chrome {
            title: title.into(),
            login: session.login().to_owned(),
            csrf: session.csrf.clone(),
            flash: session.flash.clone(),
            crumbs: vec![("/ui/".into(), "Home".into())],
            css: crate::assets::url("wendelin.css"),
            htmx: crate::assets::url("htmx.min.js"),
            js: crate::assets::url("wendelin.js"),
            editor_js: crate::assets::url("codemirror.min.js"),
            editor_css: crate::assets::url("codemirror.css"),
        }
    }

    /// Adds the crumbs of every container of `path` (module folder, parents).
    fn with_path(mut self, portal: &Portal, user: &User, path: &str) -> Chrome {
        let mut prefix = String::new();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(segment);
            let label = match portal.get(user, &prefix) {
                Ok(d) if d.portal_type == MODULE_FOLDER_TYPE => portal
                    .registry
                    .folder(&d.id)
                    .map(|f| f.title.clone())
                    .unwrap_or(d.id),
                Ok(d) => label_of(&d),
                Err(_) => segment.to_owned(),
            };
            self.crumbs.push((format!("/ui/{prefix}"), label));
        }
        self
    }
}

/// A document's label: its title, or its id when untitled.
pub fn label_of(doc: &wendelin_core::Document) -> String {
    if doc.title.is_empty() {
        doc.id.clone()
    } else {
        doc.title.clone()
    }
}

/// What a UI handler produces (built on the blocking pool; turned into a response after).
pub enum Out {
    /// A page with its status.
    Page(StatusCode, String),
    /// A page with its canonical URL, which htmx puts in the address bar (a listbox
    /// without the empty filters its form sent).
    PageAt(StatusCode, String, String),
    /// A fragment for htmx (no layout).
    Fragment(String),
    /// A page from (or just put in) the page cache.
    Cached(cache::Page),
    /// POST-redirect-GET, with a message for the next page.
    Redirect(String, Option<Flash>),
    /// A page that shows data kept outside the database (a column a module computes, such
    /// as the size of a file an append grows without moving the change generation): never
    /// put in the cache.
    Live(Box<Out>),
}

fn render<T: Template>(t: &T) -> Result<String, ServerError> {
    t.render()
        .map_err(|e| ServerError::Internal(format!("template failed: {e}")))
}

async fn redirect_home() -> HttpResponse {
    HttpResponse::MovedPermanently()
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}

/// Resolves the request's session, or answers with a redirect to the login page.
fn session_of(
    auth: Result<Auth, ServerError>,
    req: &HttpRequest,
) -> Result<Session, Box<HttpResponse>> {
    let flash = req
        .cookie(FLASH_COOKIE)
        .and_then(|c| Flash::decode(c.value()));
    match auth {
        Ok(Auth { user, via }) if user.login.is_some() => {
            let (csrf, via_basic, token, generation) = match via {
                Via::Session {
                    csrf,
                    token,
                    generation,
                } => (csrf, false, token, Some(generation)),
                Via::Basic => (String::new(), true, String::new(), None),
                Via::Token | Via::Anonymous => (String::new(), false, String::new(), None),
            };
            Ok(Session {
                user,
                csrf,
                via_basic,
                flash,
                token,
                generation,
            })
        }
        Ok(_) | Err(ServerError::Core(CoreError::Unauthorized(_))) => {
            let here = match req.query_string() {
                "" => req.path().to_owned(),
                q => format!("{}?{q}", req.path()),
            };
            let target = format!(
                "/login?{}",
                serde_urlencoded::to_string([("came_from", here)]).unwrap_or_default()
            );
            Err(Box::new(
                HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, target))
                    .finish(),
            ))
        }
        Err(e) => Err(Box::new(actix_web::ResponseError::error_response(&e))),
    }
}

/// Splits `a/b/+edit` into ("a/b", Some("edit")).
fn split_action(tail: &str) -> (String, Option<String>) {
    let tail = tail.trim_matches('/');
    match tail.rsplit_once('/') {
        Some((path, last)) if last.starts_with('+') => {
            (path.to_owned(), Some(last[1..].to_owned()))
        }
        None if tail.starts_with('+') => (String::new(), Some(tail[1..].to_owned())),
        _ => (tail.to_owned(), None),
    }
}

async fn ui_get(
    req: HttpRequest,
    portal: web::Data<Portal>,
    auth: Result<Auth, ServerError>,
    tail: web::Path<String>,
) -> HttpResponse {
    let session = match session_of(auth, &req) {
        Ok(s) => s,
        Err(response) => return *response,
    };
    let (path, action) = split_action(&tail);
    let raw_query = req.query_string().to_owned();
    let query = form::Pairs::from_query(&raw_query);
    // Pages computed from the database alone (home, listbox without full-text search,
    // document view), for a session without a message to show: served from the page
    // cache while the change generation (read when the session was resolved) is
    // unchanged (see `cache`) — without a trip to the blocking pool — and rendered once
    // for all the requests that miss them together.
    let cacheable = action.is_none()
        && session.flash.is_none()
        && query
            .as_ref()
            .is_ok_and(|q| q.get("q").is_none_or(|q| q.trim().is_empty()));
    let keyed = session.generation.filter(|_| cacheable).map(|generation| {
        let key = cache::key(&session.token, &session.user, &path, &raw_query);
        (key, generation)
    });
    let s = session.clone();
    let p = portal.clone();
    let render = move || get_page(&p, &s, &path, action.as_deref(), query);
    let Some((key, generation)) = keyed else {
        let result = wendelin_http::blocking_read(&portal, render).await;
        return finish(result, &session);
    };
    let (result, source) = match cache::lookup(&key, generation) {
        Some(page) => (Ok(Out::Cached(page)), cache::Source::Hit),
        None => cache::single_flight(&portal, key, generation, render).await,
    };
    let mut response = finish(result, &session);
    response.headers_mut().insert(
        header::HeaderName::from_static("x-page-cache"),
        header::HeaderValue::from_static(source.as_str()),
    );
    response
}

/// The page a GET of `/ui/<path>[/+action]` shows.
fn get_page(
    portal: &Portal,
    s: &Session,
    path: &str,
    action: Option<&str>,
    query: Result<form::Pairs, ServerError>,
) -> Result<Out, ServerError> {
    let query = query?;
    match action {
        None if path.is_empty() => home(portal, s),
        None => {
            let doc = portal.get(&s.user, path)?;
            if doc.portal_type == MODULE_FOLDER_TYPE {
                listbox::page(portal, s, &doc, &query)
            } else {
                document::view(portal, s, &doc)
            }
        }
        Some("edit") => document::edit_page(portal, s, path),
        Some("add") => document::add_page(portal, s, path, &query),
        Some("history") => document::history(portal, s, path),
        Some("roles") => document::roles(portal, s, path),
        Some("relations") => document::relations(portal, s, path),
        Some("module") => document::module_tab(portal, s, path, &query),
        Some("pick") => document::pick(portal, s, &query),
        Some(other) => Err(ServerError::Core(CoreError::NotFound(format!(
            "no page '+{other}'"
        )))),
    }
}

async fn ui_post(
    req: HttpRequest,
    portal: web::Data<Portal>,
    auth: Result<Auth, ServerError>,
    tail: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let session = match session_of(auth, &req) {
        Ok(s) => s,
        Err(response) => return *response,
    };
    let (path, action) = split_action(&tail);
    let s = session.clone();
    let result = wendelin_http::blocking_http(move || {
        let form = form::Pairs::from_body(&body)?;
        s.check_csrf(&form)?;
        match action.as_deref() {
            Some("edit") => document::edit_post(&portal, &s, &path, &form),
            Some("add") => document::add_post(&portal, &s, &path, &form),
            Some("fire") => document::fire(&portal, &s, &path, &form),
            Some("roles") => document::roles_post(&portal, &s, &path, &form),
            Some("bulk") => listbox::bulk(&portal, &s, &path, &form),
            _ => Err(ServerError::Core(CoreError::MethodNotAllowed(
                "nothing to post here".into(),
            ))),
        }
    })
    .await;
    finish(result, &session)
}

fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// Turns a handler's outcome into a response: pages clear a shown flash message, errors
/// become an error page in the layout.
fn finish(result: Result<Out, ServerError>, session: &Session) -> HttpResponse {
    let mut response = match result {
        Ok(Out::Live(out)) => return finish(Ok(*out), session),
        Ok(Out::Page(status, body)) => html(status, body),
        Ok(Out::PageAt(status, body, url)) => {
            let mut r = html(status, body);
            if let Ok(v) = header::HeaderValue::from_str(&url) {
                r.headers_mut()
                    .insert(header::HeaderName::from_static("hx-push-url"), v);
            }
            r
        }
        Ok(Out::Fragment(body)) => html(StatusCode::OK, body),
        Ok(Out::Cached(page)) => {
            let mut r = HttpResponse::build(page.status)
                .content_type("text/html; charset=utf-8")
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .body(page.body);
            if let Some(v) = page
                .url
                .and_then(|u| header::HeaderValue::from_str(&u).ok())
            {
                r.headers_mut()
                    .insert(header::HeaderName::from_static("hx-push-url"), v);
            }
            r
        }
        Ok(Out::Redirect(to, flash)) => {
            let mut r = HttpResponse::SeeOther();
            r.insert_header((header::LOCATION, to));
            if let Some(f) = flash {
                r.cookie(flash_cookie(f.encode()));
            }
            return r.finish();
        }
        Err(e) => error_page(&e, session),
    };
    if session.flash.is_some() {
        let mut gone = flash_cookie(String::new());
        gone.make_removal();
        let _ = response.add_cookie(&gone);
    }
    response
}

fn flash_cookie(value: String) -> Cookie<'static> {
    Cookie::build(FLASH_COOKIE, value)
        .path("/ui/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .finish()
}

#[derive(Template)]
#[template(path = "ui/error.html")]
struct ErrorPage {
    page: Chrome,
    status: u16,
    heading: &'static str,
    message: String,
}

/// The message a user may see for an error (server faults go to the log only).
pub fn public_message(e: &ServerError) -> String {
    let status = actix_web::ResponseError::status_code(e);
    if status.is_server_error() {
        tracing::error!(error = %e, "UI request failed");
        return "the server failed to handle the request; the details are in its log".into();
    }
    crate::error::public_message(e)
}

fn error_page(e: &ServerError, session: &Session) -> HttpResponse {
    let status = actix_web::ResponseError::status_code(e);
    let heading = match status.as_u16() {
        400 => "Bad request",
        403 => "Forbidden",
        404 => "Not found",
        405 => "Not allowed here",
        409 => "Conflict",
        422 => "Invalid",
        s if s >= 500 => "Server error",
        _ => "Error",
    };
    let mut page = Chrome::new(session, heading);
    page.flash = None;
    let body = ErrorPage {
        page,
        status: status.as_u16(),
        heading,
        message: public_message(e),
    }
    .render()
    .unwrap_or_else(|_| heading.to_owned());
    html(status, body)
}

#[derive(Template)]
#[template(path = "ui/home.html")]
struct HomePage {
    page: Chrome,
    tiles: Vec<Tile>,
}

struct Tile {
    href: String,
    title: String,
    types: String,
    count: i64,
}

/// The portal home: one tile per module folder the user may View, with the number of
/// documents in it they may View.
fn home(portal: &Portal, s: &Session) -> Result<Out, ServerError> {
    let mut tiles = Vec::new();
    for folder in portal.registry.folders() {
        let doc = match portal.get(&s.user, &folder.id) {
            Ok(d) => d,
            Err(CoreError::NotFound(_) | CoreError::Forbidden(_) | CoreError::Unauthorized(_)) => {
                continue
            }
            Err(e) => return Err(e.into()),
        };
        let found = portal.search(
            &s.user,
            &wendelin_core::catalog::Search {
                query: wendelin_core::catalog::folder_scope(&portal.registry, &doc),
                sort_on: String::new(),
                limit: 1,
                offset: 0,
            },
        )?;
        tiles.push(Tile {
            href: format!("/ui/{}", folder.id),
            title: folder.title.clone(),
            types: folder.allowed_content_types.join(", "),
            count: found.total,
        });
    }
    tiles.sort_by(|a, b| a.title.cmp(&b.title));
    let page = HomePage {
        page: Chrome::new(s, "Home"),
        tiles,
    };
    Ok(Out::Page(StatusCode::OK, render(&page)?))
}

/// A JSON value as one line of text for display and form fields.
pub fn display(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| display(Some(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Some(v) => v.to_string(),
    }
}
