//! Who is asking: the [`Auth`] extractor reads a bearer API token, HTTP Basic
//! credentials or the session cookie, and enforces CSRF tokens on cookie-authenticated
//! state-changing requests. Login and logout handlers live here too.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, Method};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use serde_json::json;
use wendelin_core::generation;
use wendelin_core::users::{self, LoginOutcome};
use wendelin_core::{CoreError, Portal, User};

use crate::config::Config;
use crate::error::ServerError;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "wendelin_session";
/// Header carrying the CSRF token on cookie-authenticated API writes.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Binds a login form to the browser that fetched it (against login CSRF: another site
/// cannot read it, and a SameSite=Strict cookie is not sent with its cross-site posts).
pub const LOGIN_COOKIE: &str = "wendelin_login";

/// How the request was authenticated.
#[derive(Debug, Clone)]
pub enum Via {
    /// No credentials.
    Anonymous,
    /// Session cookie (browsers); carries the session's CSRF token.
    Session {
        /// The session's CSRF token.
        csrf: String,
        /// The session token itself (for logout).
        token: String,
        /// The database's change generation read before the session was resolved
        /// ([`wendelin_core::generation`]): caches of this request may use it.
        generation: i64,
    },
    /// `Authorization: Bearer` API token.
    Token,
    /// `Authorization: Basic` (fluentd and other machine clients).
    Basic,
}

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Who.
    pub user: User,
    /// How.
    pub via: Via,
}

fn client_address(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Whether the request's Content-Type starts with one of `types`.
fn content_type_is(req: &HttpRequest, types: &[&str]) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| types.iter().any(|t| ct.starts_with(t)))
}

fn is_json(req: &HttpRequest) -> bool {
    content_type_is(req, &["application/json"])
}

/// Paths whose handlers take the CSRF token from a posted form's `csrf_token` field (and
/// check it before anything runs): the admin UI and the logout form. Everywhere else a
/// cookie-authenticated write must carry the token in [`CSRF_HEADER`], so a handler that
/// never reads a form cannot be reached by a cross-site form post.
fn checks_form_token(path: &str) -> bool {
    path.starts_with("/ui/") || path == "/logout"
}

fn is_form(req: &HttpRequest) -> bool {
    content_type_is(
        req,
        &["application/x-www-form-urlencoded", "multipart/form-data"],
    )
}

impl FromRequest for Auth {
    type Error = ServerError;
    type Future = Pin<Box<dyn Future<Output = Result<Auth, ServerError>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut actix_web::dev::Payload) -> Self::Future {
        let portal = req.app_data::<web::Data<Portal>>().cloned();
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().map(str::to_owned));
        let cookie = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned());
        let csrf_header = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let safe_method = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        let form = is_form(req) && checks_form_token(req.path());
        let address = client_address(req);
        Box::pin(async move {
            let portal = portal
                .ok_or_else(|| ServerError::Internal("portal missing from app data".into()))?;
            let auth = match authorization {
                Some(Err(_)) => {
                    return Err(unauthorized("the Authorization header is not valid text"))
                }
                Some(Ok(value)) => {
                    let (scheme, rest) = value.split_once(' ').unwrap_or((value.as_str(), ""));
                    if scheme.eq_ignore_ascii_case("bearer") {
                        let token = rest.trim().to_owned();
                        let user =
                            blocking(move || portal.db.read(|c| users::token_user(c, &token)))
                                .await?;
                        Auth {
                            user,
                            via: Via::Token,
                        }
                    } else if scheme.eq_ignore_ascii_case("basic") {
                        let (login, password) = decode_basic(rest.trim())?;
                        let user =
                            blocking(move || basic_checked(&portal, &login, &password, &address))
                                .await?;
                        Auth {
                            user,
                            via: Via::Basic,
                        }
                    } else {
                        return Err(unauthorized("use Authorization: Bearer <token> or Basic"));
                    }
                }
                None => match cookie {
                    Some(token) => {
                        let t = token.clone();
                        let (user, csrf, generation) = blocking(move || {
                            // Read first: a session resolved afterwards is at least
                            // as new as the generation it is remembered with.
                            let generation = portal.db.read(generation::current)?;
                            let cache = SessionCache::get();
                            let found = match cache.lookup(&t, generation) {
                                Some(known) => known,
                                None => {
                                    let found = portal.db.read(|c| users::session_user(c, &t))?;
                                    cache.remember(&t, &found, generation);
                                    found
                                }
                            };
                            Ok((found.0, found.1, generation))
                        })
                        .await?;
                        Auth {
                            user,
                            via: Via::Session {
                                csrf,
                                token,
                                generation,
                            },
                        }
                    }
                    None => Auth {
                        user: User::anonymous(),
                        via: Via::Anonymous,
                    },
                },
            };
            // Cookies ride along on cross-site requests: writes made with a session must
            // prove they come from our pages. Form posts to the handlers that read the
            // token from the body are checked there; every other write here, whatever
            // its Content-Type.
            if let Via::Session { csrf, .. } = &auth.via {
                if !safe_method && !form && csrf_header.as_deref() != Some(csrf.as_str()) {
                    return Err(ServerError::Core(CoreError::Forbidden(format!(
                        "missing or wrong CSRF token: send the session's token in the {CSRF_HEADER} header"
                    ))));
                }
            }
            Ok(auth)
        })
    }
}

fn unauthorized(msg: &str) -> ServerError {
    ServerError::Core(CoreError::Unauthorized(msg.to_owned()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CoreError> + Send + 'static,
) -> Result<T, ServerError> {
    web::block(f)
        .await
        .map_err(|e| ServerError::Internal(format!("blocking task failed: {e}")))?
        .map_err(ServerError::Core)
}

fn decode_basic(encoded: &str) -> Result<(String, String), ServerError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| unauthorized("Basic credentials are not valid base64"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| unauthorized("Basic credentials are not UTF-8"))?;
    let (login, password) = text
        .split_once(':')
        .ok_or_else(|| unauthorized("Basic credentials must be login:password"))?;
    Ok((login.to_owned(), password.to_owned()))
}

/// Sessions resolved recently (token → user and CSRF token), so that a browser's request
/// costs one read of the change generation instead of the session, user and group reads.
/// An entry counts while the generation it was read at is current — a logout, a session
/// revoked by a password change, a change of the user's roles or groups, in any process,
/// bumps it (triggers on `sessions` updates and deletes, `users`, `user_groups`) — and at
/// most [`SESSION_CACHE_TTL`], which bounds how late an expiry is noticed. Bounded to
/// [`SESSION_CACHE_MAX`] sessions; quick_cache evicts the coldest when full.
struct SessionCache {
    entries: quick_cache::sync::Cache<String, KnownSession>,
}

#[derive(Clone)]
struct KnownSession {
    user: User,
    csrf: String,
    generation: i64,
    until: std::time::Instant,
}

/// How long a resolved session is trusted without reading the database again.
pub const SESSION_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);
const SESSION_CACHE_MAX: usize = 10_000;

impl SessionCache {
    fn get() -> &'static SessionCache {
        static CACHE: std::sync::OnceLock<SessionCache> = std::sync::OnceLock::new();
        CACHE.get_or_init(|| SessionCache {
            entries: quick_cache::sync::Cache::new(SESSION_CACHE_MAX),
        })
    }

    fn lookup(&self, token: &str, generation: i64) -> Option<(User, String)> {
        self.entries
            .get(token)
            .filter(|e| e.generation == generation && e.until > std::time::Instant::now())
            .map(|e| (e.user, e.csrf))
    }

    fn remember(&self, token: &str, (user, csrf): &(User, String), generation: i64) {
        self.entries.insert(
            token.to_owned(),
            KnownSession {
                user: user.clone(),
                csrf: csrf.clone(),
                generation,
                until: std::time::Instant::now() + SESSION_CACHE_TTL,
            },
        );
    }

    fn forget(&self, token: &str) {
        self.entries.remove(token);
    }
}

/// HTTP Basic credentials verified recently, so that a machine client sending them on
/// every request (fluent-plugin-wendelin does) pays argon2 once per few minutes, not per
/// request. An entry holds a salted digest of the password and the stored hash it was
/// checked against: it counts only while that hash is unchanged (a password change or
/// rehash ends it) and for the exact same password. Bounded to [`BASIC_CACHE_MAX`] logins.
struct BasicCache {
    salt: String,
    entries: quick_cache::sync::Cache<String, VerifiedBasic>,
}

#[derive(Clone)]
struct VerifiedBasic {
    digest: [u8; 32],
    stored_hash: String,
    until: std::time::Instant,
}

const BASIC_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(300);
const BASIC_CACHE_MAX: usize = 10_000;

impl BasicCache {
    fn get() -> &'static BasicCache {
        static CACHE: std::sync::OnceLock<BasicCache> = std::sync::OnceLock::new();
        CACHE.get_or_init(|| BasicCache {
            salt: users::generate_password(),
            entries: quick_cache::sync::Cache::new(BASIC_CACHE_MAX),
        })
    }

    fn digest(&self, login: &str, password: &str) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for part in [self.salt.as_str(), login, password] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    fn verified(&self, login: &str, password: &str, stored_hash: &str) -> bool {
        let digest = self.digest(login, password);
        self.entries.get(login).is_some_and(|e| {
            e.until > std::time::Instant::now()
                && e.stored_hash == stored_hash
                // Constant time: no early exit on the first differing byte.
                && e.digest.iter().zip(&digest).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        })
    }

    fn remember(&self, login: &str, password: &str, stored_hash: String) {
        let digest = self.digest(login, password);
        self.entries.insert(
            login.to_owned(),
            VerifiedBasic {
                digest,
                stored_hash,
                until: std::time::Instant::now() + BASIC_CACHE_TTL,
            },
        );
    }
}

/// HTTP Basic: a recent verification of the same password against the same stored hash
/// stands; otherwise the throttled, argon2-checked login.
fn basic_checked(
    portal: &Portal,
    login: &str,
    password: &str,
    address: &str,
) -> Result<User, CoreError> {
    let cache = BasicCache::get();
    if let Some(stored) = portal.db.read(|c| users::password_hash_of(c, login))? {
        if cache.verified(login, password, &stored) {
            return portal.db.read(|c| users::load_user(c, login));
        }
    }
    let user = login_checked(portal, login, password, address)?;
    // Read after the login, which may have rehashed the password.
    if let Some(stored) = portal.db.read(|c| users::password_hash_of(c, login))? {
        cache.remember(login, password, stored);
    }
    Ok(user)
}

/// Checks a password with throttling; the failure count is committed even when the
/// attempt fails.
fn login_checked(
    portal: &Portal,
    login: &str,
    password: &str,
    address: &str,
) -> Result<User, CoreError> {
    match portal
        .db
        .write(|c| users::attempt_login(c, login, password, address))?
    {
        LoginOutcome::Success(user) => Ok(user),
        LoginOutcome::Failure(e) => Err(e),
    }
}

/// Login credentials, as JSON or as a form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginForm {
    login: String,
    password: String,
    /// Where a browser goes after logging in (a local path).
    came_from: Option<String>,
    /// A form's copy of the login cookie ([`LOGIN_COOKIE`]).
    login_token: Option<String>,
}

/// The logout form: its CSRF token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogoutForm {
    csrf_token: Option<String>,
}

/// An HttpOnly cookie of ours, Secure over https or with `cookie_secure`.
fn our_cookie(
    config: &Config,
    req: &HttpRequest,
    name: &'static str,
    value: String,
    path: &'static str,
    same_site: SameSite,
    max_age_seconds: i64,
) -> Cookie<'static> {
    let secure = config.cookie_secure || req.connection_info().scheme() == "https";
    Cookie::build(name, value)
        .path(path)
        .http_only(true)
        .same_site(same_site)
        .secure(secure)
        .max_age(actix_web::cookie::time::Duration::seconds(max_age_seconds))
        .finish()
}

/// A local path to go back to; anything else becomes "/". The target is resolved the way
/// a browser resolves a Location (WHATWG URL parsing: tabs and newlines dropped, `\\`
/// read as `/`), and only a result on this server is kept, re-serialised from the parsed
/// form, so `/\t/evil.example` or `/\\evil.example` cannot leave the site.
fn safe_redirect(came_from: Option<&str>) -> String {
    const HERE: &str = "http://wendelin.invalid/";
    let local = came_from.filter(|p| p.starts_with('/')).and_then(|p| {
        let base = url::Url::parse(HERE).ok()?;
        let target = base.join(p).ok()?;
        (target.origin() == base.origin()).then(|| {
            let mut out = target.path().to_owned();
            if let Some(q) = target.query() {
                out.push('?');
                out.push_str(q);
            }
            out
        })
    });
    local.unwrap_or_else(|| "/".to_owned())
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    came_from: &'a str,
    message: &'a str,
    login_token: &'a str,
}

/// The login form, with a fresh login token in a hidden field and in [`LOGIN_COOKIE`].
fn login_form(
    config: &Config,
    req: &HttpRequest,
    status: actix_web::http::StatusCode,
    came_from: &str,
    message: &str,
) -> Result<HttpResponse, ServerError> {
    let token = users::random_token();
    let page = LoginPage {
        came_from,
        message,
        login_token: &token,
    }
    .render()
    .map_err(|e| ServerError::Internal(format!("login page: {e}")))?;
    let cookie = our_cookie(
        config,
        req,
        LOGIN_COOKIE,
        token,
        "/login",
        SameSite::Strict,
        12 * 3600,
    );
    Ok(HttpResponse::build(status)
        .cookie(cookie)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/html; charset=utf-8")
        .body(page))
}

/// `GET /login`: the login form.
pub async fn login_page(
    req: HttpRequest,
    config: web::Data<Config>,
) -> Result<HttpResponse, ServerError> {
    let query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default();
    // Browsers that open the login page by itself land in the admin UI afterwards.
    let came_from = match query.get("came_from") {
        Some(p) => safe_redirect(Some(p)),
        None => "/ui/".to_owned(),
    };
    login_form(
        &config,
        &req,
        actix_web::http::StatusCode::OK,
        &came_from,
        "",
    )
}

/// `POST /login` with JSON `{login, password}` or a form: opens a session.
pub async fn login(
    req: HttpRequest,
    portal: web::Data<Portal>,
    config: web::Data<Config>,
    body: web::Bytes,
) -> Result<HttpResponse, ServerError> {
    let form = is_form(&req);
    let creds: LoginForm = if form {
        serde_urlencoded_form(&body)?
    } else if is_json(&req) {
        serde_json::from_slice(&body)
            .map_err(|e| ServerError::BadRequest(format!("bad login body: {e}")))?
    } else {
        // A text/plain form can carry a JSON-looking body: only real JSON is JSON.
        return Err(ServerError::Unsupported(
            "log in with a form or with Content-Type: application/json".into(),
        ));
    };
    if form {
        let cookie = req.cookie(LOGIN_COOKIE);
        let fresh = match (&creds.login_token, &cookie) {
            (Some(t), Some(c)) => !t.is_empty() && t.as_str() == c.value(),
            _ => false,
        };
        if !fresh {
            tracing::info!(login = %creds.login, "form login without a matching login token");
            let came_from = safe_redirect(creds.came_from.as_deref());
            return login_form(
                &config,
                &req,
                actix_web::http::StatusCode::FORBIDDEN,
                &came_from,
                "This login form has expired or was sent from another site: please log in again.",
            );
        }
    }
    let address = client_address(&req);
    let came_from = creds.came_from.clone();
    let ttl = chrono::Duration::hours(config.session_ttl_hours.into());
    let p = portal.clone();
    let login = creds.login.clone();
    let result = blocking(move || {
        let user = login_checked(&p, &creds.login, &creds.password, &address)?;
        let (token, csrf) =
            p.db.write(|c| users::create_session(c, &creds.login, ttl))?;
        Ok((user, token, csrf))
    })
    .await;
    let (user, token, csrf) = match result {
        Ok(ok) => ok,
        Err(e) if form => {
            tracing::info!(%login, "login refused");
            return login_form_error(&config, &req, &e, came_from);
        }
        Err(e) => return Err(e),
    };
    tracing::info!(%login, "login");
    let cookie = our_cookie(
        &config,
        &req,
        SESSION_COOKIE,
        token,
        "/",
        SameSite::Lax,
        ttl.num_seconds(),
    );
    if form {
        let target = safe_redirect(came_from.as_deref());
        return Ok(HttpResponse::SeeOther()
            .cookie(cookie)
            .insert_header((header::LOCATION, target))
            .finish());
    }
    Ok(HttpResponse::Ok().cookie(cookie).json(json!({
        "login": user.login,
        "roles": user.roles,
        "groups": user.groups,
        "csrf_token": csrf,
    })))
}

fn login_form_error(
    config: &Config,
    req: &HttpRequest,
    e: &ServerError,
    came_from: Option<String>,
) -> Result<HttpResponse, ServerError> {
    let status = actix_web::ResponseError::status_code(e);
    let message = match e {
        ServerError::Core(CoreError::Throttled(m, _)) => m.clone(),
        _ => "wrong login or password".to_owned(),
    };
    let came_from = safe_redirect(came_from.as_deref());
    login_form(config, req, status, &came_from, &message)
}

fn serde_urlencoded_form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ServerError> {
    web::Query::<T>::from_query(&String::from_utf8_lossy(body))
        .map(|q| q.into_inner())
        .map_err(|e| ServerError::BadRequest(format!("bad form: {e}")))
}

/// `POST /logout`: ends the session. A form must carry the session's `csrf_token`; JSON
/// callers send it in the header (checked by [`Auth`]).
pub async fn logout(
    req: HttpRequest,
    auth: Auth,
    portal: web::Data<Portal>,
    body: web::Bytes,
) -> Result<HttpResponse, ServerError> {
    let Via::Session { csrf, token, .. } = auth.via else {
        return Err(ServerError::BadRequest(
            "no session to end (send the session cookie)".into(),
        ));
    };
    if is_form(&req) {
        let form: LogoutForm = serde_urlencoded_form(&body)?;
        if form.csrf_token.as_deref() != Some(csrf.as_str()) {
            return Err(ServerError::Core(CoreError::Forbidden(
                "missing or wrong CSRF token in the form".into(),
            )));
        }
    }
    SessionCache::get().forget(&token);
    crate::ui::forget_session(&token);
    let t = token.clone();
    blocking(move || portal.db.write(|c| users::revoke_session(c, &t))).await?;
    // Forgotten again after the revocation committed: a request resolving the session
    // meanwhile may have cached it.
    SessionCache::get().forget(&token);
    let mut gone = Cookie::build(SESSION_COOKIE, "")
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .finish();
    gone.make_removal();
    if is_form(&req) {
        return Ok(HttpResponse::SeeOther()
            .cookie(gone)
            .insert_header((header::LOCATION, "/login"))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .cookie(gone)
        .json(json!({"logged_out": true})))
}

/// `GET /api/v1/me`: who the credentials belong to.
pub async fn me(auth: Auth) -> HttpResponse {
    let csrf = match &auth.via {
        Via::Session { csrf, .. } => Some(csrf.clone()),
        _ => None,
    };
    HttpResponse::Ok().json(json!({
        "login": auth.user.login,
        "roles": auth.user.roles,
        "groups": auth.user.groups,
        "csrf_token": csrf,
    }))
}

#[cfg(test)]
mod tests {
    use super::safe_redirect;

    #[test]
    fn redirects_after_login_stay_on_the_site() {
        for (given, kept) in [
            (
                "/ui/data_stream_module?sort=title",
                "/ui/data_stream_module?sort=title",
            ),
            ("/ui/", "/ui/"),
            ("/a/../ui/", "/ui/"),
        ] {
            assert_eq!(safe_redirect(Some(given)), kept, "{given}");
        }
        for evil in [
            "//evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "https://evil.example/",
            " //evil.example",
            "javascript:alert(1)",
        ] {
            assert_eq!(safe_redirect(Some(evil)), "/", "{evil:?}");
        }
        assert_eq!(safe_redirect(None), "/");
    }
}
