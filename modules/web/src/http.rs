//! Serving web sites: `GET /web/<site>/` (the front page), `/web/<site>/<section>/…/<page
//! reference>`, `/web/<site>/_asset/<reference>.<hash>.<css|js>` (immutable), the charts'
//! data of the arrays a site publishes (`/web/<site>/_arrays/<id>/decimate`), the vendored
//! chart assets under `/web-static/`, and the Clone action
//! (`POST /api/v1/web_site_module/<id>/clone`, `POST /api/v1/web_page_module/<id>/clone`).
//!
//! Everything is looked up as the visitor: anonymous visitors see published documents
//! only, and a draft is the same 404 as a missing page. Rendered pages are cached per
//! (path, language, visitor's principals) while the change generation read before the
//! render is current, and answered with an ETag (304 on `If-None-Match`). Pages under
//! `/web/` carry [`WEB_CSP`] here, on the admin UI's origin; the public web origin
//! ([`crate::public`], `[web] listen`) serves the same pages to anonymous visitors
//! without the sandbox.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use wendelin_core::{CoreError, CoreResult, NewDocument, Permission, Portal, User};
use wendelin_http::{
    blocking, blocking_http, blocking_read, Auth, Section, ServerError, ServerModule, Via,
};

use crate::render::{self, escape, RenderError, Visit};
use crate::{
    find_page, is_name, is_published, Kind, PAGE_FOLDER, SITE_FOLDER, WEB_PAGE, WEB_SECTION,
    WEB_SITE,
};

/// The policy of `/web/`: this origin's scripts, styles, images and data only; no inline
/// script, no plugins, never framed; and sandboxed without `allow-same-origin`, so a
/// page's scripts run in an opaque origin: whoever may edit a published page cannot
/// script its visitors' sessions (cookies are not theirs to send or read, and this
/// origin's API and admin UI answer them as a cross-site stranger). What a page's
/// scripts fetch from the site (chart data) is served with CORS for that reason.
pub const WEB_CSP: &str = "sandbox allow-scripts allow-forms allow-popups \
allow-popups-to-escape-sandbox allow-downloads; default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One body for every page that is missing or that the visitor may not see.
const NOT_FOUND: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Not found</title></head><body><h1>Not found</h1><p>There is no such page.</p></body></html>";

/// What a visitor sees of a page that failed.
const BROKEN: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Page unavailable</title></head><body><h1>Page unavailable</h1><p>This page cannot be shown at the moment.</p></body></html>";

/// The web module as the server sees it: its routes and `[web]`.
pub struct WebModule;

impl ServerModule for WebModule {
    fn name(&self) -> &'static str {
        "web"
    }

    fn settings(&self) -> Option<Section> {
        Some(Section::of::<crate::WebConfig>("web", crate::configure))
    }

    fn routes(&self, cfg: &mut web::ServiceConfig) {
        routes(cfg);
    }

    /// The public web origin ([`crate::public`]), when `[web] listen` names an address.
    fn start(&self, portal: &Portal) -> Result<(), ServerError> {
        let listen = &crate::settings().listen;
        if listen.trim().is_empty() {
            return Ok(());
        }
        let listener = crate::public::bind(listen.trim())?;
        crate::public::spawn(listener, portal.clone())?;
        Ok(())
    }
}

/// Registers the web routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/web/{site}/_preview", web::post().to(preview))
        .route("/web/{site}", web::get().to(site_root))
        .route("/web/{site}/{tail:.*}", web::get().to(serve))
        .route("/web/{site}/{tail:.*}", web::head().to(serve))
        .route("/web-static/{file}", web::get().to(static_file))
        .route(
            "/api/v1/web_site_module/{id}/clone",
            web::post().to(clone_site),
        )
        .route(
            "/api/v1/web_page_module/{id}/clone",
            web::post().to(clone_page),
        );
}

/// The vendored files: uPlot (MIT, see static/uPlot.LICENSE) and the chart component.
const STATIC: &[(&str, &str, &[u8])] = &[
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../static/uPlot.min.css"),
    ),
    (
        "wendelin-chart.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/wendelin-chart.js"),
    ),
    (
        "web-editor.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/web-editor.js"),
    ),
    (
        "web-editor.css",
        "text/css; charset=utf-8",
        include_bytes!("../static/web-editor.css"),
    ),
    (
        "uPlot.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../static/uPlot.LICENSE"),
    ),
];

pub(crate) async fn static_file(file: web::Path<String>) -> HttpResponse {
    match STATIC.iter().find(|(n, _, _)| *n == file.as_str()) {
        Some((_, ct, bytes)) => HttpResponse::Ok()
            .content_type(*ct)
            .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
            .body(*bytes),
        None => not_found(),
    }
}

pub(crate) async fn site_root(site: web::Path<String>) -> HttpResponse {
    HttpResponse::MovedPermanently()
        .insert_header((header::LOCATION, format!("/web/{}/", site.into_inner())))
        .finish()
}

pub(crate) fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, WEB_CSP))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(NOT_FOUND)
}

/// A response computed for a path.
#[derive(Clone)]
struct Page {
    status: u16,
    content_type: &'static str,
    body: web::Bytes,
    etag: String,
    /// Served at a hashed URL: never changes.
    immutable: bool,
    /// May be kept in the cache (no live data, no preview, 200).
    cacheable: bool,
}

impl Page {
    fn new(status: u16, kind_type: &'static str, body: Vec<u8>) -> Page {
        let etag = format!("\"{}\"", &hex(&Sha256::digest(&body))[..32]);
        Page {
            status,
            content_type: kind_type,
            body: web::Bytes::from(body),
            etag,
            immutable: false,
            cacheable: status == 200,
        }
    }

    fn missing() -> Page {
        let mut p = Page::new(
            404,
            "text/html; charset=utf-8",
            NOT_FOUND.as_bytes().to_vec(),
        );
        p.cacheable = false;
        p
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<String, (i64, Page)> for Weight {
    fn weight(&self, key: &String, page: &(i64, Page)) -> u64 {
        (key.len() + page.1.body.len() + 64) as u64
    }
}

type Pages = quick_cache::sync::Cache<String, (i64, Page), Weight>;

fn cache() -> &'static Pages {
    static CACHE: OnceLock<Pages> = OnceLock::new();
    CACHE.get_or_init(|| {
        let bytes = crate::settings().cache_bytes.max(1 << 20);
        Pages::with_weighter(4096, bytes, Weight)
    })
}

fn respond(req: &HttpRequest, page: &Page, hit: &'static str, preview: bool) -> HttpResponse {
    let cache_control = if page.immutable {
        "public, max-age=31536000, immutable"
    } else if preview {
        "private, no-store"
    } else {
        "no-cache"
    };
    let matches = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().trim_start_matches("W/") == page.etag);
    let mut resp = if page.status == 200 && matches {
        HttpResponse::NotModified()
    } else {
        HttpResponse::build(StatusCode::from_u16(page.status).unwrap_or(StatusCode::OK))
    };
    resp.insert_header((header::CONTENT_SECURITY_POLICY, WEB_CSP))
        .insert_header((header::CACHE_CONTROL, cache_control))
        .insert_header((header::VARY, "Cookie, Authorization"))
        .insert_header(("x-page-cache", hit));
    if page.status == 200 {
        resp.insert_header((header::ETAG, page.etag.clone()));
    }
    if page.status == 200 && matches {
        return resp.finish();
    }
    resp.content_type(page.content_type)
        .body(page.body.to_vec())
}

#[derive(serde::Deserialize)]
struct Options {
    preview: Option<String>,
    language: Option<String>,
}

/// `GET /web/<site>/<tail>`.
pub(crate) async fn serve(
    portal: web::Data<Portal>,
    params: web::Path<(String, String)>,
    query: web::Query<Map<String, Value>>,
    req: HttpRequest,
    auth: Result<Auth, ServerError>,
) -> Result<HttpResponse, ServerError> {
    // A public page answers whoever asks: credentials that do not hold (an expired
    // session's cookie) make an anonymous visitor, not an error.
    let auth = auth.unwrap_or(Auth {
        user: User::anonymous(),
        via: Via::Anonymous,
    });
    let (site, tail) = params.into_inner();
    if !is_name(&site) {
        return Ok(not_found());
    }
    let options: Options =
        serde_json::from_value(Value::Object(query.into_inner())).unwrap_or(Options {
            preview: None,
            language: None,
        });
    let user = auth.user.clone();
    // Drafts only for the logged in who ask for them.
    let preview = user.login.is_some() && options.preview.as_deref().is_some_and(|p| p == "1");
    let language = options.language.filter(|l| is_name(l));
    if let Some(rest) = tail.strip_prefix("_arrays/") {
        return published_array(portal, &site, rest, &user, &req).await;
    }
    let mut principals = user.principals();
    principals.sort();
    let key = format!(
        "{site}\n{tail}\n{}\n{}",
        language.as_deref().unwrap_or(""),
        principals.join(",")
    );
    let generation = match &auth.via {
        Via::Session { generation, .. } => *generation,
        _ => {
            let p = portal.clone();
            blocking(move || p.db.read(wendelin_core::generation::current)).await?
        }
    };
    if !preview {
        if let Some((g, page)) = cache().get(&key) {
            if g == generation {
                return Ok(respond(&req, &page, "hit", false));
            }
        }
    }
    let config = crate::settings();
    let timeout = Duration::from_millis(config.render_timeout_ms);
    let visit = Arc::new(Visit {
        portal: portal.clone().into_inner(),
        user,
        site: site.clone(),
        arrays: Vec::new(),
        deadline: Instant::now() + timeout,
        preview,
        language: language.clone().unwrap_or_default(),
    });
    let p = portal.clone();
    let work = blocking_read(&p, move || Ok(page_for(visit, &tail)));
    // A render past its deadline is answered now; its thread ends on its own (see
    // render's documentation).
    let page = match actix_web::rt::time::timeout(timeout + Duration::from_millis(500), work).await
    {
        Ok(r) => r?,
        Err(_) => Page::new(503, "text/html; charset=utf-8", BROKEN.as_bytes().to_vec()),
    };
    if page.cacheable && !preview {
        cache().insert(key, (generation, page.clone()));
    }
    Ok(respond(&req, &page, "miss", preview))
}

/// Computes what `/web/<site>/<tail>` shows `visit.user`.
fn page_for(visit: Arc<Visit>, tail: &str) -> Page {
    match resolve(visit, tail) {
        Ok(Some(p)) => p,
        Ok(None) => Page::missing(),
        Err(CoreError::NotFound(_) | CoreError::Unauthorized(_) | CoreError::Forbidden(_)) => {
            Page::missing()
        }
        Err(e) => {
            tracing::error!(error = %e, "web page failed");
            let mut p = Page::new(500, "text/html; charset=utf-8", BROKEN.as_bytes().to_vec());
            p.cacheable = false;
            p
        }
    }
}

/// What the page editor posts to `/web/<site>/_preview`: the page edited and its unsaved
/// fields.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewBody {
    page: String,
    title: Option<String>,
    content_type: Option<String>,
    text_content: Option<String>,
}

/// `POST /web/<site>/_preview`: the page at `page` as it would show in the site with the
/// posted fields instead of its stored ones — rendered as the logged-in author, drafts
/// included, never cached. A session must send its CSRF token (X-CSRF-Token), as for
/// every write; visitors who are not logged in, and pages or sites the author may not
/// see, get the 404 of a missing page.
async fn preview(
    portal: web::Data<Portal>,
    site: web::Path<String>,
    auth: Auth,
    body: web::Json<PreviewBody>,
) -> Result<HttpResponse, ServerError> {
    let site = site.into_inner();
    let body = body.into_inner();
    if auth.user.login.is_none() || !is_name(&site) {
        return Ok(not_found());
    }
    if let Some(t) = body
        .content_type
        .as_deref()
        .filter(|t| Kind::of(t).is_none())
    {
        let known: Vec<&str> = crate::CONTENT_TYPES.iter().map(|(t, _)| *t).collect();
        return Err(ServerError::BadRequest(format!(
            "content_type '{t}' is not one of {}",
            known.join(", ")
        )));
    }
    let timeout = Duration::from_millis(crate::settings().render_timeout_ms);
    let visit = Arc::new(Visit {
        portal: portal.clone().into_inner(),
        user: auth.user,
        site,
        arrays: Vec::new(),
        deadline: Instant::now() + timeout,
        preview: true,
        language: String::new(),
    });
    let p = portal.clone();
    let work = blocking_read(&p, move || {
        Ok(match preview_page(visit, body) {
            Ok(Some(page)) => page,
            Ok(None)
            | Err(CoreError::NotFound(_) | CoreError::Unauthorized(_) | CoreError::Forbidden(_)) => {
                Page::missing()
            }
            Err(e) => {
                tracing::error!(error = %e, "web page preview failed");
                Page::new(500, "text/html; charset=utf-8", BROKEN.as_bytes().to_vec())
            }
        })
    });
    let page = match actix_web::rt::time::timeout(timeout + Duration::from_millis(500), work).await
    {
        Ok(r) => r?,
        Err(_) => Page::new(503, "text/html; charset=utf-8", BROKEN.as_bytes().to_vec()),
    };
    Ok(
        HttpResponse::build(StatusCode::from_u16(page.status).unwrap_or(StatusCode::OK))
            .content_type(page.content_type)
            .insert_header((header::CONTENT_SECURITY_POLICY, WEB_CSP))
            .insert_header((header::CACHE_CONTROL, "private, no-store"))
            .body(page.body),
    )
}

fn preview_page(visit: Arc<Visit>, body: PreviewBody) -> CoreResult<Option<Page>> {
    let site_path = format!("{SITE_FOLDER}/{}", visit.site);
    let Some(site) = shown(&visit, &site_path, WEB_SITE)? else {
        return Ok(None);
    };
    let Some(mut page) = shown(&visit, body.page.trim_matches('/'), WEB_PAGE)? else {
        return Ok(None);
    };
    if let Value::Object(m) = &mut page {
        for (key, value) in [
            ("title", body.title),
            ("content_type", body.content_type),
            ("text_content", body.text_content),
        ] {
            if let Some(v) = value {
                m.insert(key.into(), Value::from(v));
            }
        }
    }
    let (visit, language) = in_site(&visit, &site);
    let place = Place {
        site,
        trail: Vec::new(),
        base: format!("/web/{}", visit.site),
        language,
    };
    let mut shown_page = show_page(&visit, &place, &page)?;
    shown_page.cacheable = false;
    Ok(Some(shown_page))
}

/// The visit inside `site`: the arrays it publishes, the language shown (the one asked,
/// else the site's).
fn in_site(visit: &Arc<Visit>, site: &Value) -> (Arc<Visit>, String) {
    let arrays: Vec<String> = site
        .get("arrays")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let language = if visit.language.is_empty() {
        text(site, "language")
    } else {
        visit.language.clone()
    };
    let inside = Arc::new(Visit {
        portal: visit.portal.clone(),
        user: visit.user.clone(),
        site: visit.site.clone(),
        arrays,
        deadline: visit.deadline,
        preview: visit.preview,
        language: language.clone(),
    });
    (inside, language)
}

/// A document as JSON if the visitor may see it here: of type `portal_type`, published
/// unless previewing.
fn shown(visit: &Visit, path: &str, portal_type: &str) -> CoreResult<Option<Value>> {
    match visit.portal.get_json(&visit.user, path) {
        Ok(j) => Ok(
            (j.get("portal_type").and_then(Value::as_str) == Some(portal_type)
                && (visit.preview || is_published(&j)))
            .then_some(j),
        ),
        Err(CoreError::NotFound(_) | CoreError::Unauthorized(_) | CoreError::Forbidden(_)) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn text(j: &Value, key: &str) -> String {
    j.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}

/// The hash of an asset's URL: its content.
fn asset_hash(body: &str) -> String {
    hex(&Sha256::digest(body.as_bytes()))[..16].to_owned()
}

/// Everything a page is shown with: the site, the sections leading to it.
struct Place {
    site: Value,
    trail: Vec<Value>,
    base: String,
    language: String,
}

fn resolve(visit: Arc<Visit>, tail: &str) -> CoreResult<Option<Page>> {
    let site_path = format!("{SITE_FOLDER}/{}", visit.site);
    let Some(site) = shown(&visit, &site_path, WEB_SITE)? else {
        return Ok(None);
    };
    let fallback = text(&site, "language");
    let (visit, language) = in_site(&visit, &site);
    let segments: Vec<&str> = tail.split('/').collect();
    if segments.first() == Some(&"_asset") && segments.len() == 2 {
        return asset(&visit, segments[1], &language, &fallback);
    }
    let (last, sections) = segments.split_last().unwrap_or((&"", &[]));
    let mut container = site_path.clone();
    let mut trail = Vec::new();
    let mut base = format!("/web/{}", visit.site);
    for seg in sections {
        if !is_name(seg) {
            return Ok(None);
        }
        container = format!("{container}/{seg}");
        base = format!("{base}/{seg}");
        match shown(&visit, &container, WEB_SECTION)? {
            Some(s) => trail.push(s),
            None => return Ok(None),
        }
    }
    let mut place = Place {
        site,
        trail,
        base,
        language: language.clone(),
    };
    // The container's own page: its front page, or a section's listing, or the site's
    // index of sections.
    let container_page = |place: &Place| -> CoreResult<Option<Page>> {
        let holder = place.trail.last().unwrap_or(&place.site);
        let front = text(holder, "front_page");
        if !front.is_empty() {
            return match find_page(
                &visit.portal,
                &visit.user,
                &front,
                &language,
                &fallback,
                visit.preview,
            )? {
                Some((_, page)) => show_page(&visit, place, &page).map(Some),
                None => Ok(None),
            };
        }
        listing(&visit, place).map(Some)
    };
    if last.is_empty() {
        return container_page(&place);
    }
    if !is_name(last) {
        return Ok(None);
    }
    // A section named so, else a page of that reference.
    let child = format!("{container}/{last}");
    if let Some(section) = shown(&visit, &child, WEB_SECTION)? {
        place.trail.push(section);
        place.base = format!("{}/{last}", place.base);
        return container_page(&place);
    }
    match find_page(
        &visit.portal,
        &visit.user,
        last,
        &language,
        &fallback,
        visit.preview,
    )? {
        Some((_, page)) => show_page(&visit, &place, &page).map(Some),
        None => Ok(None),
    }
}

/// `_asset/<reference>.<hash>.<ext>`: a CSS or JavaScript page at the URL of its current
/// content, cached for good by browsers; another hash is a 404.
fn asset(visit: &Visit, name: &str, language: &str, fallback: &str) -> CoreResult<Option<Page>> {
    let mut parts = name.rsplitn(3, '.');
    let (Some(ext), Some(hash), Some(reference)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ok(None);
    };
    let Some((_, page)) = find_page(
        &visit.portal,
        &visit.user,
        reference,
        language,
        fallback,
        visit.preview,
    )?
    else {
        return Ok(None);
    };
    let body = text(&page, "text_content");
    let kind = Kind::of(&text(&page, "content_type"));
    match kind {
        Some(k @ (Kind::Css | Kind::Js)) if k.extension() == ext && asset_hash(&body) == hash => {
            let mut p = Page::new(200, k.served_as(), body.into_bytes());
            p.immutable = true;
            Ok(Some(p))
        }
        _ => Ok(None),
    }
}

/// The hashed URL of the CSS or JavaScript page `reference`, when there is one.
fn asset_url(visit: &Visit, place: &Place, reference: &str) -> CoreResult<Option<String>> {
    if reference.is_empty() {
        return Ok(None);
    }
    let fallback = text(&place.site, "language");
    let Some((_, page)) = find_page(
        &visit.portal,
        &visit.user,
        reference,
        &place.language,
        &fallback,
        visit.preview,
    )?
    else {
        return Ok(None);
    };
    let Some(k @ (Kind::Css | Kind::Js)) = Kind::of(&text(&page, "content_type")) else {
        return Ok(None);
    };
    Ok(Some(format!(
        "/web/{}/_asset/{reference}.{}.{}",
        visit.site,
        asset_hash(&text(&page, "text_content")),
        k.extension()
    )))
}

/// A section's listing (its catalog query, as the visitor) or, for the site, the index
/// of its sections.
fn listing(visit: &Arc<Visit>, place: &Place) -> CoreResult<Page> {
    let mut body = String::new();
    match place.trail.last() {
        Some(section) => {
            body.push_str(&format!("<h1>{}</h1>", escape(&text(section, "title"))));
            let query = text(section, "listing");
            if !query.is_empty() {
                let max = crate::settings().max_search_limit;
                let limit = section
                    .get("listing_limit")
                    .and_then(Value::as_i64)
                    .unwrap_or(20)
                    .clamp(1, max);
                let search = wendelin_core::catalog::Search {
                    query,
                    sort_on: "modification_date desc".into(),
                    limit,
                    offset: 0,
                };
                let found = visit.portal.search_counted(
                    &visit.user,
                    &search,
                    wendelin_core::catalog::Count::None,
                )?;
                let docs = visit.portal.documents_json(&found.documents)?;
                body.push_str("<ul class=\"listing\">");
                for d in docs.iter().filter(|d| {
                    visit.preview
                        || d.pointer("/workflow_states/publication_workflow").is_none()
                        || is_published(d)
                }) {
                    let title = escape(&text(d, "title"));
                    let reference = text(d, "page_reference");
                    if text(d, "portal_type") == WEB_PAGE && is_name(&reference) {
                        body.push_str(&format!(
                            "<li><a href=\"{}/{reference}\">{title}</a></li>",
                            place.base
                        ));
                    } else {
                        body.push_str(&format!("<li>{title}</li>"));
                    }
                }
                body.push_str("</ul>");
            }
        }
        None => {
            body.push_str(&format!("<h1>{}</h1>", escape(&text(&place.site, "title"))));
        }
    }
    let title = place
        .trail
        .last()
        .map(|s| text(s, "title"))
        .unwrap_or_default();
    let html = layout(visit, place, &title, &body)?;
    Ok(Page::new(200, Kind::Html.served_as(), html.into_bytes()))
}

/// Whether an HTML body is a whole document (then served without the layout).
fn whole_document(body: &str) -> bool {
    let head: String = body
        .trim_start()
        .chars()
        .take(9)
        .collect::<String>()
        .to_ascii_lowercase();
    head.starts_with("<!doctype") || head.starts_with("<html")
}

/// A Web Page as the visitor sees it.
fn show_page(visit: &Arc<Visit>, place: &Place, page: &Value) -> CoreResult<Page> {
    let body = text(page, "text_content");
    let Some(kind) = Kind::of(&text(page, "content_type")) else {
        return Ok(Page::missing());
    };
    let title = text(page, "title");
    let (html, live) = match kind {
        Kind::Css | Kind::Js => return Ok(Page::new(200, kind.served_as(), body.into_bytes())),
        Kind::Html => (body, false),
        Kind::Markdown => (render::markdown(&body), false),
        Kind::Tera => {
            let context = json!({
                "site": {
                    "id": visit.site,
                    "title": text(&place.site, "title"),
                    "url": format!("/web/{}/", visit.site),
                    "language": place.language,
                },
                "page": {
                    "title": title,
                    "description": text(page, "description"),
                    "reference": text(page, "page_reference"),
                    "version": text(page, "version"),
                    "language": text(page, "language"),
                    "path": text(page, "path"),
                },
                "section_url": format!("{}/", place.base),
                "visitor": { "login": visit.user.login },
                "preview": visit.preview,
            });
            match render::render_tera(visit.clone(), &body, &context) {
                Ok((out, flags)) => (out, flags.live.load(std::sync::atomic::Ordering::Relaxed)),
                Err(RenderError::Core(e)) => return Err(e),
                Err(e) => return Ok(failed(visit, page, &e)),
            }
        }
    };
    let html = if whole_document(&html) {
        html
    } else {
        layout(visit, place, &title, &html)?
    };
    let mut p = Page::new(200, Kind::Html.served_as(), html.into_bytes());
    p.cacheable = !live;
    Ok(p)
}

/// A template that failed: authors — who may edit the page, or write Web Pages at all
/// (a published page is frozen for its owner) — see why, with the line; other visitors
/// a plain page.
fn failed(visit: &Visit, page: &Value, e: &RenderError) -> Page {
    let path = text(page, "path");
    let may =
        |path: &str, p: Permission| visit.portal.allowed(&visit.user, path, p).unwrap_or(false);
    let author = visit.user.login.is_some()
        && (may(&path, Permission::ModifyPortalContent)
            || may(PAGE_FOLDER, Permission::AddPortalContent));
    let status = if matches!(e, RenderError::TimedOut(_)) {
        503
    } else {
        500
    };
    let body = if author {
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Template error</title></head><body><h1>This page failed to render</h1><p>/{}</p><pre class=\"template-error\">{}</pre></body></html>",
            escape(&path),
            escape(&e.to_string())
        )
    } else {
        BROKEN.to_owned()
    };
    tracing::info!(page = %path, error = %e, "web page failed to render");
    let mut p = Page::new(status, "text/html; charset=utf-8", body.into_bytes());
    p.cacheable = false;
    p
}

/// The site's layout around a page's HTML: theme stylesheet, scripts, navigation.
fn layout(visit: &Visit, place: &Place, title: &str, body: &str) -> CoreResult<String> {
    let site_title = text(&place.site, "title");
    let mut head = String::new();
    if let Some(url) = asset_url(visit, place, &text(&place.site, "stylesheet"))? {
        head.push_str(&format!(
            "<link rel=\"stylesheet\" href=\"{}\">",
            escape(&url)
        ));
    }
    if let Some(scripts) = place.site.get("scripts").and_then(Value::as_array) {
        for s in scripts.iter().filter_map(Value::as_str) {
            if let Some(url) = asset_url(visit, place, s)? {
                head.push_str(&format!("<script defer src=\"{}\"></script>", escape(&url)));
            }
        }
    }
    let site_path = format!("{SITE_FOLDER}/{}", visit.site);
    let (children, _) = visit.portal.children(&visit.user, &site_path, 100, 0)?;
    let sections: Vec<_> = children
        .into_iter()
        .filter(|d| d.portal_type == WEB_SECTION)
        .collect();
    let states = visit.portal.documents_json(&sections)?;
    let mut nav = String::new();
    for (d, j) in sections.iter().zip(&states) {
        if visit.preview || is_published(j) {
            nav.push_str(&format!(
                "<li><a href=\"/web/{}/{}/\">{}</a></li>",
                visit.site,
                d.id,
                escape(&d.title)
            ));
        }
    }
    let full_title = if title.is_empty() || title == site_title {
        site_title.clone()
    } else {
        format!("{title} – {site_title}")
    };
    Ok(format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title>{head}</head><body><header><a class=\"site-title\" href=\"/web/{}/\">{}</a><nav><ul>{nav}</ul></nav></header><main>{body}</main></body></html>",
        escape(&place.language),
        escape(&full_title),
        visit.site,
        escape(&site_title),
    ))
}

/// `GET /web/<site>/_arrays/<id>/decimate`: the chart data of an array the site
/// publishes (its `arrays` relation), for whoever may see the site.
async fn published_array(
    portal: web::Data<Portal>,
    site: &str,
    rest: &str,
    user: &User,
    req: &HttpRequest,
) -> Result<HttpResponse, ServerError> {
    let Some(id) = rest.strip_suffix("/decimate").filter(|id| is_name(id)) else {
        return Ok(not_found());
    };
    let array_path = format!("data_array_module/{id}");
    let site_path = format!("{SITE_FOLDER}/{site}");
    let (p, u, a) = (portal.clone(), user.clone(), array_path.clone());
    let dir = blocking(move || {
        let site = match p.get_json(&u, &site_path) {
            Ok(s) => s,
            Err(CoreError::Unauthorized(_) | CoreError::Forbidden(_)) => {
                return Err(CoreError::NotFound("no such page".into()))
            }
            Err(e) => return Err(e),
        };
        let published = site.get("portal_type").and_then(Value::as_str) == Some(WEB_SITE)
            && is_published(&site)
            && site
                .get("arrays")
                .and_then(Value::as_array)
                .is_some_and(|l| l.iter().any(|x| x.as_str() == Some(a.as_str())));
        if !published {
            return Err(CoreError::NotFound("no such page".into()));
        }
        wendelin_data_array::for_read(&p, &User::system(), &a)
    })
    .await;
    let dir = match dir {
        Ok(d) => d,
        Err(ServerError::Core(CoreError::NotFound(_))) => return Ok(not_found()),
        Err(e) => return Err(e),
    };
    let q = web::Query::<wendelin_data_array::http::DecimateQuery>::from_query(req.query_string())
        .map_err(|e| ServerError::BadRequest(e.to_string()))?;
    let mut resp =
        wendelin_data_array::http::decimate_response(&portal, dir, q.into_inner()).await?;
    // Read by the page's scripts, which run in an opaque origin (the sandbox of WEB_CSP):
    // public data of a published site.
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        header::HeaderValue::from_static("x-decimate-bins, x-array-shape"),
    );
    Ok(resp)
}

/// Clones a document with its properties (and, for a site, its sections), as a draft
/// owned by the caller, into the same container: `{"id": …, "title": …}` optional.
fn clone_doc(
    portal: &Portal,
    user: &User,
    path: &str,
    id: Option<String>,
    title: Option<String>,
) -> CoreResult<Value> {
    let source = portal.get_json(user, path)?;
    let container = path.rsplit_once('/').map(|(c, _)| c).unwrap_or("");
    let copy = copy_into(portal, user, container, &source, id, title)?;
    Ok(copy)
}

fn new_from(source: &Value, id: Option<String>, title: Option<String>) -> CoreResult<NewDocument> {
    let portal_type = text(source, "portal_type");
    let skip = [
        "uid",
        "path",
        "id",
        "module",
        "portal_type",
        "owner",
        "creation_date",
        "modification_date",
        "serial",
        "parent",
        "parent_uid",
        "workflow_states",
        "properties",
        "block_acquisition",
        "reference",
        "title",
        "description",
    ];
    let mut props = serde_json::Map::new();
    if let Some(obj) = source.as_object() {
        for (k, v) in obj {
            if !skip.contains(&k.as_str()) && !v.is_null() {
                props.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(NewDocument {
        portal_type: Some(portal_type),
        id,
        title: title.unwrap_or_else(|| text(source, "title")),
        reference: None,
        description: text(source, "description"),
        properties: props,
    })
}

fn copy_into(
    portal: &Portal,
    user: &User,
    container: &str,
    source: &Value,
    id: Option<String>,
    title: Option<String>,
) -> CoreResult<Value> {
    let new = new_from(source, id, title)?;
    let doc = portal.create(user, container, new)?;
    if text(source, "portal_type") != WEB_PAGE {
        let (children, _) = portal.children(user, &text(source, "path"), 1000, 0)?;
        for child in children.iter().filter(|c| c.portal_type == WEB_SECTION) {
            let j = portal.get_json(user, &child.path)?;
            copy_into(portal, user, &doc.path, &j, Some(child.id.clone()), None)?;
        }
    }
    portal.get_json(user, &doc.path)
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CloneBody {
    id: Option<String>,
    title: Option<String>,
}

async fn clone_any(
    portal: web::Data<Portal>,
    path: String,
    portal_type: &'static str,
    auth: Auth,
    body: web::Bytes,
) -> Result<HttpResponse, ServerError> {
    let args: CloneBody = if body.is_empty() {
        CloneBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ServerError::BadRequest(format!("the clone body: {e}")))?
    };
    let user = auth.user;
    let copy = blocking_http(move || {
        portal.checked(&user, &path, portal_type, Permission::View)?;
        Ok(clone_doc(&portal, &user, &path, args.id, args.title)?)
    })
    .await?;
    Ok(HttpResponse::Created().json(copy))
}

async fn clone_site(
    portal: web::Data<Portal>,
    id: web::Path<String>,
    auth: Auth,
    body: web::Bytes,
) -> Result<HttpResponse, ServerError> {
    let path = format!("{SITE_FOLDER}/{}", id.into_inner());
    clone_any(portal, path, WEB_SITE, auth, body).await
}

async fn clone_page(
    portal: web::Data<Portal>,
    id: web::Path<String>,
    auth: Auth,
    body: web::Bytes,
) -> Result<HttpResponse, ServerError> {
    let path = format!("{PAGE_FOLDER}/{}", id.into_inner());
    clone_any(portal, path, WEB_PAGE, auth, body).await
}
