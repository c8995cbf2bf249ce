//! Logging in and out: `GET|POST /login`, `POST /logout`, `GET /api/v1/me`. Who is asking
//! is `wendelin_http::auth` (the `Auth` extractor).

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use serde_json::json;
use wendelin_core::users;
use wendelin_core::{CoreError, Portal};
pub use wendelin_http::auth::{
    client_address, is_form, is_json, login_checked, unauthorized, Auth, SessionCache, Via,
    CSRF_HEADER, LOGIN_COOKIE, SESSION_CACHE_TTL, SESSION_COOKIE,
};
use wendelin_http::blocking;

use crate::config::Config;
use crate::error::ServerError;

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
            ("/ui/some_module?sort=title", "/ui/some_module?sort=title"),
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
