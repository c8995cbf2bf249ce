//! The public web origin: with `[web] listen` set, `wendelin serve` starts a second HTTP
//! listener that serves published sites to anonymous visitors, and nothing else:
//! `/web/<site>/…` (pages, hashed assets, the decimations of the site's arrays), the
//! vendored chart files under `/web-static/`, the decimation of arrays Anonymous may View
//! (`/api/v1/data_array_module/<id>/decimate`), and the sites' service worker
//! (`/web/<site>/_sw.js`). Everything else is a 404: no admin UI, no other API, no
//! preview.
//!
//! Every request is anonymous: its `Cookie` and `Authorization` headers are removed
//! before anything reads them. So the pages here need no sandbox (cookies are not
//! isolated by port: a browser sends the admin session's cookie to this listener too,
//! and it is ignored); they run in this origin and may register the service worker that
//! keeps a site readable offline. Their policy is [`PUBLIC_CSP`]: [`crate::http::WEB_CSP`]
//! without `sandbox`, with `worker-src 'self'`.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpResponse, HttpServer};
use wendelin_core::{CoreError, Portal, User};
use wendelin_http::ServerError;

use crate::http::{not_found, serve, site_root, static_file};
use crate::is_name;

/// The policy of every answer of the public origin: this origin's scripts, styles,
/// images, data and workers only; no inline script, no plugins, never framed.
pub const PUBLIC_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; worker-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The sites' service worker (ours, not an editable page).
const SERVICE_WORKER: &[u8] = include_bytes!("../static/wendelin-sw.js");

/// Binds `[web] listen`.
pub fn bind(listen: &str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(listen).map_err(|e| {
        ServerError::Config(format!(
            "cannot listen for web sites ([web] listen) on {listen}: {e}"
        ))
    })
}

/// Serves the public origin on `listener` from a thread of its own (with its own actix
/// system; it lives as long as the process); returns its address.
pub fn spawn(listener: TcpListener, portal: Portal) -> Result<SocketAddr, ServerError> {
    let addr = listener.local_addr()?;
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let data = web::Data::new(portal);
    let (ready, started) = std::sync::mpsc::channel::<std::io::Result<()>>();
    std::thread::Builder::new()
        .name("web-public".into())
        .spawn(move || {
            let result = actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .wrap(wendelin_http::headers::defaults())
                        // Outermost: credentials go before any extractor runs.
                        .wrap(from_fn(anonymous))
                        .app_data(data.clone())
                        .configure(routes)
                        .default_service(web::to(missing))
                })
                .workers(workers)
                .client_request_timeout(Duration::from_secs(10))
                .keep_alive(Duration::from_secs(30))
                .tcp_nodelay(true)
                // The process ends with the admin listener, which handles the signals.
                .disable_signals()
                .listen(listener);
                match server {
                    Ok(server) => {
                        let _ = ready.send(Ok(()));
                        server.run().await
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        Ok(())
                    }
                }
            });
            if let Err(e) = result {
                tracing::error!(error = %e, "the public web listener stopped");
            }
        })?;
    started
        .recv()
        .map_err(|_| ServerError::Internal("the public web listener did not start".into()))?
        .map_err(|e| ServerError::Config(format!("cannot serve web sites on {addr}: {e}")))?;
    tracing::info!(%addr, "web sites listening");
    println!("web sites on http://{addr}/web/");
    Ok(addr)
}

/// The public routes; anything else, and any other method, is the 404 page.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let page = |path: &str| web::resource(path.to_owned()).default_service(web::to(missing));
    cfg.service(page("/web/{site}").route(web::get().to(site_root)))
        .service(page("/web/{site}/_sw.js").route(web::get().to(service_worker)))
        .service(
            page("/web/{site}/{tail:.*}")
                .route(web::get().to(serve))
                .route(web::head().to(serve)),
        )
        .service(page("/web-static/{file}").route(web::get().to(static_file)))
        .service(
            page("/api/v1/data_array_module/{id}/decimate").route(web::get().to(public_decimate)),
        );
}

async fn missing() -> HttpResponse {
    not_found()
}

/// Middleware: the request loses its credentials; the response gets [`PUBLIC_CSP`].
async fn anonymous(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let headers = req.headers_mut();
    headers.remove(header::COOKIE);
    headers.remove(header::AUTHORIZATION);
    let mut resp = next.call(req).await?;
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PUBLIC_CSP),
    );
    Ok(resp)
}

/// `GET /web/<site>/_sw.js`: the service worker, whose scope is the site
/// (`/web/<site>/`). Revalidated at every registration (`no-cache`).
async fn service_worker(site: web::Path<String>) -> HttpResponse {
    if !is_name(&site) {
        return not_found();
    }
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(SERVICE_WORKER)
}

/// `GET /api/v1/data_array_module/<id>/decimate`: the chart data of an array Anonymous
/// may View (a chart of an array its site does not publish); else the 404 page.
async fn public_decimate(
    portal: web::Data<Portal>,
    id: web::Path<String>,
    q: web::Query<wendelin_data_array::http::DecimateQuery>,
) -> Result<HttpResponse, ServerError> {
    if !is_name(&id) {
        return Ok(not_found());
    }
    let path = format!("data_array_module/{id}");
    let p = portal.clone();
    let dir = wendelin_http::blocking(move || {
        wendelin_data_array::for_read(&p, &User::anonymous(), &path)
    })
    .await;
    match dir {
        Ok(dir) => wendelin_data_array::http::decimate_response(&portal, dir, q.into_inner()).await,
        Err(ServerError::Core(
            CoreError::NotFound(_) | CoreError::Unauthorized(_) | CoreError::Forbidden(_),
        )) => Ok(not_found()),
        Err(e) => Err(e),
    }
}
