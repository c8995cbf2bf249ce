//! HTTP routes: health, the JSON API over documents, the OpenAPI document, and URL
//! traversal (`/person_module/1/getTitle`). Handlers are thin: they extract, call the
//! portal on the blocking pool (reads behind the read gate, [`read`]), and render.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use wendelin_core::dispatch::{Resolution, Target};
use wendelin_core::types::MODULE_FOLDER_TYPE;
use wendelin_core::{DocumentPatch, MethodOutput, NewDocument, Portal, Traversal, User};

use crate::auth::{self, Auth};
use crate::error::ServerError;

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // The modules' routes first: they are more specific than the catch-alls below.
    crate::module_routes(cfg);
    cfg.route("/health", web::get().to(health))
        .route("/login", web::get().to(auth::login_page))
        .route("/login", web::post().to(auth::login))
        .route("/logout", web::post().to(auth::logout))
        .route("/api/v1/me", web::get().to(auth::me))
        .route("/api/v1/openapi.json", web::get().to(openapi))
        .route("/api/v1/types", web::get().to(types))
        .route("/api/v1/catalog", web::get().to(catalog))
        .route("/api/v1/activities", web::get().to(list_activities))
        .route(
            "/api/v1/activities/{id}/retry",
            web::post().to(retry_activity),
        )
        .configure(|cfg| {
            for (path, _) in FIXED {
                cfg.route(path, web::route().to(unrouted));
            }
        })
        .route("/api/v1/{path:.*}/workflows", web::get().to(workflows))
        .route(
            "/api/v1/{path:.*}/transitions/{transition}",
            web::post().to(fire),
        )
        .route("/api/v1/{path:.*}", web::get().to(api_get))
        .route("/api/v1/{path:.*}", web::post().to(api_post))
        .route("/api/v1/{path:.*}", web::patch().to(api_patch))
        .route("/api/v1/{path:.*}", web::delete().to(api_delete))
        .route("/{path:.*}", web::get().to(traverse_get))
        .route("/{path:.*}", web::post().to(traverse_post))
        // Last: any other method on any path is a 405 naming the methods it answers (or a
        // 404), and OPTIONS lists them.
        .route("/{path:.*}", web::route().to(unrouted));
}

/// The methods the resource a traversal found answers (its `Allow` header), once the
/// caller may View it: a resource the caller may not see is a 404 like a missing one.
fn allow_of(portal: &Portal, user: &User, found: &Traversal) -> Result<String, ServerError> {
    Ok(match found {
        Traversal::Name(doc, name) => match portal.resolve(user, &doc.path, name)? {
            // A name that resolves to nothing is no resource at all.
            None => {
                return Err(ServerError::Core(wendelin_core::CoreError::NotFound(
                    format!("/{} has no method or property '{name}'", doc.path),
                )))
            }
            // A method that changes data answers POST only (GET is a 405): clients
            // (the Python client) ask OPTIONS which verb to call a method by.
            Some(Resolution {
                target: Target::Method(m),
                ..
            }) if !m.read_only() => "POST".to_owned(),
            Some(_) => "GET, POST".to_owned(),
        },
        Traversal::Object(doc) if doc.path.is_empty() => "GET".to_owned(),
        Traversal::Object(doc) => {
            portal.get(user, &doc.path)?;
            if doc.portal_type == MODULE_FOLDER_TYPE {
                "GET, POST".to_owned()
            } else if wendelin_core::document::allowed_types(&portal.registry, doc).is_empty()
                // A sub-document answers what the API's `<folder>/{id}/{method}` declares
                // (POST there creates in it: refused when its type contains nothing).
                && doc.path.matches('/').count() < 2
            {
                "GET, PATCH, DELETE".to_owned()
            } else {
                "GET, POST, PATCH, DELETE".to_owned()
            }
        }
    })
}

/// A 405 for `method` on what `found` is, unless the resource answers it (`Ok(())`).
fn check_method(
    portal: &Portal,
    user: &User,
    found: &Traversal,
    method: &str,
) -> Result<(), ServerError> {
    let allow = allow_of(portal, user, found)?;
    if allow.split(", ").any(|m| m == method) {
        return Ok(());
    }
    let what = match found {
        Traversal::Name(doc, name) => format!("/{}/{name} (a method)", doc.path),
        Traversal::Object(doc) if doc.portal_type == MODULE_FOLDER_TYPE => {
            format!("/{} (a module folder)", doc.path)
        }
        Traversal::Object(doc) => format!("/{}", doc.path),
    };
    Err(ServerError::MethodNotAllowed(
        format!("{what} does not answer {method}; it answers {allow}"),
        allow,
    ))
}

/// Fixed resources and the methods they answer.
const FIXED: &[(&str, &str)] = &[
    ("/health", "GET"),
    ("/login", "GET, POST"),
    ("/logout", "POST"),
    ("/api/v1/me", "GET"),
    ("/api/v1/openapi.json", "GET"),
    ("/api/v1/types", "GET"),
    ("/api/v1/catalog", "GET"),
    ("/api/v1/activities", "GET"),
];

/// Any method no route above took: OPTIONS lists the methods of the resource, anything
/// else is a 405 with them in `Allow` (404 for what does not exist or is not viewable).
async fn unrouted(
    portal: web::Data<Portal>,
    req: HttpRequest,
    auth: Auth,
) -> Result<HttpResponse, ServerError> {
    let method = req.method().as_str().to_owned();
    let path = req.path().to_owned();
    let fixed = FIXED
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, allow)| (*allow).to_owned())
        .or_else(|| {
            if path.starts_with("/static/") {
                Some("GET".to_owned())
            } else if path == "/ui" || path.starts_with("/ui/") {
                Some("GET, POST".to_owned())
            } else {
                None
            }
        });
    let allow = match fixed {
        Some(allow) => allow,
        None => {
            let target = path
                .strip_prefix("/api/v1/")
                .unwrap_or(&path)
                .trim_matches('/')
                .to_owned();
            let user = auth.user;
            wendelin_http::blocking_http(move || {
                let found = portal.traverse(&target)?;
                allow_of(&portal, &user, &found)
            })
            .await?
        }
    };
    if method == "OPTIONS" {
        return Ok(HttpResponse::NoContent()
            .insert_header((header::ALLOW, allow))
            .finish());
    }
    Err(ServerError::MethodNotAllowed(
        format!("{path} does not answer {method}; it answers {allow}"),
        allow,
    ))
}

/// Runs blocking kernel work off the async workers.
async fn blocking(
    f: impl FnOnce() -> Result<Reply, ServerError> + Send + 'static,
) -> Result<HttpResponse, ServerError> {
    wendelin_http::blocking_http(f)
        .await
        .map(HttpResponse::from)
}

/// [`blocking`] for read-only work, behind the read gate ([`wendelin_http::blocking_read`]):
/// listings, catalog searches and read-only calls never take the connections writes need.
async fn read(
    portal: &Portal,
    f: impl FnOnce() -> Result<Reply, ServerError> + Send + 'static,
) -> Result<HttpResponse, ServerError> {
    wendelin_http::blocking_read(portal, f)
        .await
        .map(HttpResponse::from)
}

async fn health(portal: web::Data<Portal>) -> Result<HttpResponse, ServerError> {
    blocking(move || {
        let root = portal.get(&User::anonymous(), "")?;
        Ok(json_reply(json!({
            "status": "ok",
            "backend": format!("{:?}", portal.db.backend()).to_lowercase(),
            "portal": root.title,
        })))
    })
    .await
}

async fn openapi(portal: web::Data<Portal>) -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document(&portal.registry))
}

async fn types(portal: web::Data<Portal>) -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::types(&portal.registry))
}

/// Listing parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<i64>,
    offset: Option<i64>,
    contents: Option<bool>,
}

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 1000;

fn query_map(req: &HttpRequest) -> Result<Map<String, Value>, ServerError> {
    let pairs: Vec<(String, String)> = serde_urlencoded_pairs(req.query_string())?;
    Ok(pairs
        .into_iter()
        .map(|(k, v)| (k, Value::from(v)))
        .collect())
}

fn serde_urlencoded_pairs(qs: &str) -> Result<Vec<(String, String)>, ServerError> {
    web::Query::<Vec<(String, String)>>::from_query(qs)
        .map(|q| q.into_inner())
        .map_err(|e| ServerError::BadRequest(format!("malformed query string: {e}")))
}

/// What a blocking handler body produces; turned into a response on the async side
/// (responses are not `Send`).
enum Reply {
    Ok(MethodOutput),
    Created(String, Value),
    NoContent,
}

impl From<Reply> for HttpResponse {
    fn from(reply: Reply) -> HttpResponse {
        match reply {
            Reply::Ok(MethodOutput::Json(v)) => HttpResponse::Ok().json(v),
            Reply::Ok(MethodOutput::Html(h)) => HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .body(h),
            Reply::Ok(MethodOutput::Text(t)) => HttpResponse::Ok()
                .content_type("text/plain; charset=utf-8")
                .body(t),
            Reply::Created(location, v) => HttpResponse::Created()
                .insert_header((header::LOCATION, location))
                .json(v),
            Reply::NoContent => HttpResponse::NoContent().finish(),
        }
    }
}

fn render(out: MethodOutput) -> Reply {
    Reply::Ok(out)
}

fn json_reply(v: Value) -> Reply {
    Reply::Ok(MethodOutput::Json(v))
}

async fn api_get(
    portal: web::Data<Portal>,
    path: web::Path<String>,
    req: HttpRequest,
    auth: Auth,
) -> Result<HttpResponse, ServerError> {
    let path = path.into_inner();
    let args = query_map(&req)?;
    let query_string = req.query_string().to_owned();
    // A module folder's listing (the path names one; folders are made at start-up) is
    // computed from the database alone: concurrent identical ones run once.
    if portal.registry.folder(&path).is_some() {
        let generation = generation_of(&portal, &auth).await?;
        let key = flight_key(&auth.user, &path, &query_string);
        let user = auth.user;
        let gate = portal.clone();
        let (result, got) = flights()
            .run(&gate, key, generation, move || {
                json_bytes(&listing(&portal, &user, &path, &query_string)?)
            })
            .await;
        return Ok(shared_json(result?, got));
    }
    let user = auth.user;
    let gate = portal.clone();
    read(&gate, move || match portal.traverse(&path)? {
        Traversal::Object(doc) => {
            let listing_here = doc.portal_type == MODULE_FOLDER_TYPE || doc.path.is_empty();
            let q = list_query(&query_string)?;
            page_of(&q)?;
            if listing_here || q.contents.unwrap_or(false) {
                Ok(json_reply(listing(
                    &portal,
                    &user,
                    &doc.path,
                    &query_string,
                )?))
            } else {
                Ok(json_reply(portal.get_json(&user, &doc.path)?))
            }
        }
        Traversal::Name(doc, name) => {
            Ok(render(portal.call(&user, &doc.path, &name, &args, false)?))
        }
    })
    .await
}

fn list_query(query_string: &str) -> Result<ListQuery, ServerError> {
    web::Query::from_query(query_string)
        .map(|q: web::Query<ListQuery>| q.into_inner())
        .map_err(|e| ServerError::BadRequest(format!("bad listing parameters: {e}")))
}

/// The (limit, offset) a listing query asks for, within bounds.
fn page_of(q: &ListQuery) -> Result<(i64, i64), ServerError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let offset = q.offset.unwrap_or(0);
    if !(1..=MAX_LIMIT).contains(&limit) || offset < 0 {
        return Err(ServerError::BadRequest(format!(
            "limit must be 1..={MAX_LIMIT} and offset ≥ 0 (got limit={limit}, offset={offset})"
        )));
    }
    Ok((limit, offset))
}

/// The documents directly in `path` the user may View, a page of them as the query
/// string asks (`limit`, `offset`), with their total.
fn listing(
    portal: &Portal,
    user: &User,
    path: &str,
    query_string: &str,
) -> Result<Value, ServerError> {
    let (limit, offset) = page_of(&list_query(query_string)?)?;
    let (items, total) = portal.children(user, path, limit, offset)?;
    let items = portal.documents_json(&items)?;
    Ok(json!({
        "items": items, "total": total, "limit": limit, "offset": offset,
    }))
}

/// The listings and catalog searches running now, shared by identical requests
/// ([`wendelin_http::flight`]); results are JSON bodies.
fn flights() -> &'static wendelin_http::flight::Flights<web::Bytes> {
    static FLIGHTS: std::sync::OnceLock<wendelin_http::flight::Flights<web::Bytes>> =
        std::sync::OnceLock::new();
    FLIGHTS.get_or_init(Default::default)
}

/// What a shared read depends on besides the data: who asks (login, roles, groups, which
/// decide what they may View) and what they ask.
fn flight_key(user: &User, path: &str, query: &str) -> String {
    format!(
        "{:?}",
        (&user.login, &user.roles, &user.groups, path, query)
    )
}

/// The change generation, read before anything the request computes: the one its session
/// was resolved at, else read now (token, Basic, anonymous).
async fn generation_of(portal: &web::Data<Portal>, auth: &Auth) -> Result<i64, ServerError> {
    if let auth::Via::Session { generation, .. } = auth.via {
        return Ok(generation);
    }
    let portal = portal.clone();
    wendelin_http::blocking(move || portal.db.read(wendelin_core::generation::current)).await
}

fn json_bytes(value: &Value) -> Result<web::Bytes, ServerError> {
    serde_json::to_vec(value)
        .map(web::Bytes::from)
        .map_err(|e| ServerError::Internal(format!("cannot serialize JSON: {e}")))
}

/// A JSON body from a flight; `X-Single-Flight` says whether this request ran the read
/// (`miss`) or took another's (`shared`).
fn shared_json(body: web::Bytes, got: wendelin_http::flight::Got) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("x-single-flight", got.as_str()))
        .body(body)
}

/// Whether a catalog query has full-text terms (words or phrases without a key), whose
/// results follow the full-text index rather than the change generation.
fn has_fulltext(expr: &wendelin_core::query::Expr) -> bool {
    use wendelin_core::query::Expr;
    match expr {
        Expr::Text(_) => true,
        Expr::And(items) | Expr::Or(items) => items.iter().any(has_fulltext),
        Expr::Not(inner) => has_fulltext(inner),
        Expr::Compare { .. } | Expr::In { .. } | Expr::Range { .. } | Expr::IsNull { .. } => false,
    }
}

/// Whether the request says its body is JSON (`application/json` or `…+json`).
fn says_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| v == "application/json" || v.ends_with("+json"))
}

/// A JSON request body; an empty body is `null` (a method called without arguments).
fn json_body(req: &HttpRequest, bytes: &[u8]) -> Result<Value, ServerError> {
    parse_body(says_json(req), bytes)
}

/// [`json_body`] once the Content-Type was read (`json`: it says JSON).
fn parse_body(json: bool, bytes: &[u8]) -> Result<Value, ServerError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    if !json {
        return Err(ServerError::Unsupported(
            "the request body must be JSON (Content-Type: application/json)".into(),
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ServerError::BadRequest(format!("bad JSON body: {e}")))
}

async fn api_post(
    portal: web::Data<Portal>,
    path: web::Path<String>,
    auth: Auth,
    req: HttpRequest,
    bytes: web::Bytes,
) -> Result<HttpResponse, ServerError> {
    let user = auth.user;
    let path = path.into_inner();
    let body = json_body(&req, &bytes)?;
    blocking(move || match portal.traverse(&path)? {
        found @ Traversal::Object(_) if body.is_null() => {
            check_method(&portal, &user, &found, "POST")?;
            Err(ServerError::BadRequest(
                "creating a document needs a JSON object (or an array of them)".into(),
            ))
        }
        Traversal::Object(container) if body.is_array() => {
            check_method(
                &portal,
                &user,
                &Traversal::Object(container.clone()),
                "POST",
            )?;
            // Bulk creation: all or nothing, one transaction.
            let news = match body {
                Value::Array(items) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| {
                        NewDocument::from_json(item)
                            .map_err(|e| ServerError::BadRequest(format!("document {i}: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                _ => Vec::new(),
            };
            let uids = portal.create_many(&user, &container.path, news)?;
            Ok(Reply::Created(
                format!("/api/v1/{}", container.path),
                json!({ "created": uids.len() }),
            ))
        }
        Traversal::Object(container) => {
            check_method(
                &portal,
                &user,
                &Traversal::Object(container.clone()),
                "POST",
            )?;
            let doc = portal.create(&user, &container.path, NewDocument::from_json(body)?)?;
            let json = portal.get_json(&user, &doc.path)?;
            Ok(Reply::Created(format!("/api/v1/{}", doc.path), json))
        }
        Traversal::Name(doc, name) => {
            let args = match body {
                Value::Object(m) => m,
                Value::Null => Map::new(),
                _ => {
                    return Err(ServerError::BadRequest(
                        "method arguments must be a JSON object".into(),
                    ))
                }
            };
            Ok(render(portal.call(&user, &doc.path, &name, &args, true)?))
        }
    })
    .await
}

/// The serial a write is based on: the body's `serial`, else an `If-Match: "N"` header.
fn if_match(req: &HttpRequest) -> Result<Option<i64>, ServerError> {
    match req.headers().get(header::IF_MATCH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| {
                ServerError::BadRequest("If-Match must hold the document serial, e.g. \"3\"".into())
            }),
    }
}

async fn api_patch(
    portal: web::Data<Portal>,
    path: web::Path<String>,
    auth: Auth,
    bytes: web::Bytes,
    req: HttpRequest,
) -> Result<HttpResponse, ServerError> {
    let user = auth.user;
    let path = path.into_inner();
    let if_match = if_match(&req)?;
    let json = says_json(&req);
    blocking(move || {
        // What the path names decides first: a PATCH of a module folder or a method is a
        // 405 whatever its body.
        check_method(&portal, &user, &portal.traverse(&path)?, "PATCH")?;
        let body = match parse_body(json, &bytes)? {
            Value::Null => {
                return Err(ServerError::BadRequest(
                    "an edit needs a JSON object body".into(),
                ))
            }
            v => v,
        };
        let mut patch = DocumentPatch::from_json(body)?;
        if patch.serial.is_none() {
            patch.serial = if_match;
        }
        let doc = portal.update(&user, &path, patch)?;
        Ok(json_reply(portal.get_json(&user, &doc.path)?))
    })
    .await
}

/// Deletion parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    serial: Option<i64>,
}

async fn api_delete(
    portal: web::Data<Portal>,
    path: web::Path<String>,
    auth: Auth,
    req: HttpRequest,
) -> Result<HttpResponse, ServerError> {
    let user = auth.user;
    let path = path.into_inner();
    let query_string = req.query_string().to_owned();
    let if_match = if_match(&req);
    blocking(move || {
        // A DELETE of a module folder or a method is a 405 whatever its parameters.
        check_method(&portal, &user, &portal.traverse(&path)?, "DELETE")?;
        let query: DeleteQuery = web::Query::from_query(&query_string)
            .map(|q: web::Query<DeleteQuery>| q.into_inner())
            .map_err(|e| ServerError::BadRequest(format!("bad query string: {e}")))?;
        let serial = match query.serial {
            Some(s) => Some(s),
            None => if_match?,
        };
        portal.delete(&user, &path, serial)?;
        Ok(Reply::NoContent)
    })
    .await
}

async fn traverse_get(
    portal: web::Data<Portal>,
    path: web::Path<String>,
    req: HttpRequest,
    auth: Auth,
) -> Result<HttpResponse, ServerError> {
    let user = auth.user;
    let path = path.into_inner();
    let args = query_map(&req)?;
    let gate = portal.clone();
    read(&gate, move || {
        let (target, name) = match portal.traverse(&path)? {
            Traversal::Object(doc) => (doc.path, "view".to_owned()),
            Traversal::Name(doc, name) => (doc.path, name),
        };
        Ok(render(portal.call(&user, &target, &name, &args, false)?))
    })
    .await
}

/// POST by traversal takes JSON only; with a session cookie the CSRF header is required
/// (see [`Auth`]).
async fn traverse_post(
    portal: web::Data<Portal>,
    path: web::Path<String>,
    auth: Auth,
    req: HttpRequest,
    bytes: web::Bytes,
) -> Result<HttpResponse, ServerError> {
    let user = auth.user;
    let path = path.into_inner();
    let args = match json_body(&req, &bytes)? {
        Value::Object(m) => m,
        _ => {
            return Err(ServerError::BadRequest(
                "method arguments must be a JSON object".into(),
            ))
        }
    };
    blocking(move || match portal.traverse(&path)? {
        Traversal::Name(doc, name) => {
            Ok(render(portal.call(&user, &doc.path, &name, &args, true)?))
        }
        Traversal::Object(doc) => Err(ServerError::BadRequest(format!(
            "POST /{} names a document, not a method; use POST /api/v1/{} to create inside it",
            doc.path, doc.path
        ))),
    })
    .await
}

async fn workflows(
    portal: web::Data<Portal>,
    path: web::Path<String>,
    auth: Auth,
) -> Result<HttpResponse, ServerError> {
    let path = path.into_inner();
    let gate = portal.clone();
    read(&gate, move || {
        let status = portal.workflows(&auth.user, &path)?;
        Ok(json_reply(json!({ "workflows": status })))
    })
    .await
}

async fn fire(
    portal: web::Data<Portal>,
    params: web::Path<(String, String)>,
    auth: Auth,
    body: Option<web::Json<Value>>,
) -> Result<HttpResponse, ServerError> {
    let (path, transition) = params.into_inner();
    let vars = match body.map(web::Json::into_inner) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(ServerError::BadRequest(
                "transition variables must be a JSON object".into(),
            ))
        }
    };
    blocking(move || {
        let doc = portal.fire(&auth.user, &path, &transition, &vars)?;
        let status = portal.workflows(&auth.user, &doc.path)?;
        Ok(json_reply(
            json!({ "path": doc.path, "serial": doc.serial, "workflows": status }),
        ))
    })
    .await
}

/// Catalog parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogQuery {
    q: Option<String>,
    sort_on: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
    count: Option<String>,
}

/// `GET /api/v1/catalog?q=…&sort_on=…&limit=…&offset=…&count=exact|none`: documents the
/// caller may View; `count=none` skips counting (`total` is then null, `more` says
/// whether matches follow the page).
async fn catalog(
    portal: web::Data<Portal>,
    auth: Auth,
    req: HttpRequest,
) -> Result<HttpResponse, ServerError> {
    let q: CatalogQuery = web::Query::from_query(req.query_string())
        .map(|q: web::Query<CatalogQuery>| q.into_inner())
        .map_err(|e| ServerError::BadRequest(format!("bad catalog parameters: {e}")))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let offset = q.offset.unwrap_or(0);
    if !(1..=MAX_LIMIT).contains(&limit) || offset < 0 {
        return Err(ServerError::BadRequest(format!(
            "limit must be 1..={MAX_LIMIT} and offset ≥ 0 (got limit={limit}, offset={offset})"
        )));
    }
    let count: wendelin_core::catalog::Count = match q.count.as_deref() {
        None => wendelin_core::catalog::Count::Exact,
        Some(c) => c.parse()?,
    };
    let search = wendelin_core::catalog::Search {
        query: q.q.unwrap_or_default(),
        sort_on: q.sort_on.unwrap_or_default(),
        limit,
        offset,
    };
    // Searches of the catalog alone (no full-text term; a query that does not parse is
    // left to report its error) depend on the data through the change generation only:
    // concurrent identical ones run once.
    let structured = wendelin_core::query::parse(&search.query)
        .is_ok_and(|expr| !expr.as_ref().is_some_and(has_fulltext));
    let gate = portal.clone();
    if structured {
        let generation = generation_of(&portal, &auth).await?;
        let key = flight_key(&auth.user, "/api/v1/catalog", req.query_string());
        let (result, got) = flights()
            .run(&gate, key, generation, move || {
                json_bytes(&catalog_page(&portal, &auth.user, &search, count)?)
            })
            .await;
        return Ok(shared_json(result?, got));
    }
    read(&gate, move || {
        Ok(json_reply(catalog_page(
            &portal, &auth.user, &search, count,
        )?))
    })
    .await
}

/// A catalog page as the endpoint answers it.
fn catalog_page(
    portal: &Portal,
    user: &User,
    search: &wendelin_core::catalog::Search,
    count: wendelin_core::catalog::Count,
) -> Result<Value, ServerError> {
    let found = portal.search_counted(user, search, count)?;
    let items = portal.documents_json(&found.documents)?;
    Ok(json!({
        "items": items,
        "total": found.exact.then_some(found.total),
        "more": found.more,
        "limit": search.limit,
        "offset": search.offset,
    }))
}

/// Activity listing parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivityQuery {
    state: Option<String>,
    limit: Option<i64>,
}

async fn list_activities(
    portal: web::Data<Portal>,
    auth: Auth,
    q: web::Query<ActivityQuery>,
) -> Result<HttpResponse, ServerError> {
    let q = q.into_inner();
    let gate = portal.clone();
    read(&gate, move || {
        let items = portal.activities(
            &auth.user,
            q.state.as_deref(),
            q.limit.unwrap_or(1000).clamp(1, 10_000),
        )?;
        Ok(json_reply(json!({ "activities": items })))
    })
    .await
}

async fn retry_activity(
    portal: web::Data<Portal>,
    auth: Auth,
    id: web::Path<i64>,
) -> Result<HttpResponse, ServerError> {
    let id = id.into_inner();
    blocking(move || {
        portal.retry_activity(&auth.user, id)?;
        Ok(json_reply(json!({ "activity": id, "state": "queued" })))
    })
    .await
}
