//! Who is asking: the [`Auth`] extractor reads a bearer API token, HTTP Basic
//! credentials or the session cookie, and enforces CSRF tokens on cookie-authenticated
//! state-changing requests. The login and logout handlers are the server's.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::{header, Method};
use actix_web::{web, FromRequest, HttpRequest};
use wendelin_core::generation;
use wendelin_core::users::{self, LoginOutcome};
use wendelin_core::{CoreError, Portal, User};

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

pub fn client_address(req: &HttpRequest) -> String {
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

pub fn is_json(req: &HttpRequest) -> bool {
    content_type_is(req, &["application/json"])
}

/// Paths whose handlers take the CSRF token from a posted form's `csrf_token` field (and
/// check it before anything runs): the admin UI and the logout form. Everywhere else a
/// cookie-authenticated write must carry the token in [`CSRF_HEADER`], so a handler that
/// never reads a form cannot be reached by a cross-site form post.
fn checks_form_token(path: &str) -> bool {
    path.starts_with("/ui/") || path == "/logout"
}

pub fn is_form(req: &HttpRequest) -> bool {
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
        let cookie = session_cookie(req);
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
                        let user = crate::blocking(move || {
                            portal.db.read(|c| users::token_user(c, &token))
                        })
                        .await?;
                        Auth {
                            user,
                            via: Via::Token,
                        }
                    } else if scheme.eq_ignore_ascii_case("basic") {
                        let (login, password) = decode_basic(rest.trim())?;
                        let user = crate::blocking(move || {
                            basic_checked(&portal, &login, &password, &address)
                        })
                        .await?;
                        Auth {
                            user,
                            via: Via::Basic,
                        }
                    } else {
                        return Err(unauthorized("use Authorization: Bearer <token> or Basic"));
                    }
                }
                None => match cookie? {
                    Some(token) => {
                        let t = token.clone();
                        let (user, csrf, generation) = crate::blocking(move || {
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

/// The session cookie's value, refusing a request that carries two different ones.
///
/// Browsers do not separate cookies by port, and a parent domain's cookies reach every
/// subdomain: a page of another origin on this host (a published site's script on the
/// public web origin, say) can set a `wendelin_session` cookie with a narrower path,
/// which the browser then sends first, beside the real one. Taking the first would log
/// the visitor in as whoever planted it; refusing the pair makes the planted cookie only
/// a nuisance, which the message tells how to clear.
fn session_cookie(req: &HttpRequest) -> Result<Option<String>, ServerError> {
    let mut found: Option<String> = None;
    if let Ok(cookies) = req.cookies() {
        for c in cookies.iter().filter(|c| c.name() == SESSION_COOKIE) {
            match &found {
                Some(v) if v != c.value() => {
                    tracing::warn!(
                        path = %req.path(),
                        address = %client_address(req),
                        "refused a request carrying two different session cookies"
                    );
                    return Err(ServerError::Core(CoreError::BadRequest(format!(
                        "the request carries two different {SESSION_COOKIE} cookies: one was \
                         set by another page on this host name or a parent domain (cookies \
                         are not separated by port). Clear this site's cookies in the \
                         browser and log in again"
                    ))));
                }
                Some(_) => {}
                None => found = Some(c.value().to_owned()),
            }
        }
    }
    Ok(found)
}

pub fn unauthorized(msg: &str) -> ServerError {
    ServerError::Core(CoreError::Unauthorized(msg.to_owned()))
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
pub struct SessionCache {
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
    pub fn get() -> &'static SessionCache {
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

    pub fn forget(&self, token: &str) {
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
pub fn login_checked(
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
