//! The Data Array's HTTP routes: `.npy` (or raw bytes) appends and region writes,
//! streamed `.npy` reads, reductions, and the array served read-only as a Zarr v3 store.
//! Handlers check permissions through [`crate::for_read`] / [`crate::for_write`] (the
//! Portal), then call the module on the blocking pool. [`DataArrayModule`] declares them
//! to the server with the `[data_array]` settings and `wendelin array import`.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use wendelin_core::{Portal, User};
use wendelin_http::{Auth, CliCommand, Section, ServerError, ServerModule};

use crate as arrays;
use crate::{npy, ArrayError, ArraySettings, DataArray, Dtype, Op, Region};

/// The Data Array module as the server sees it: its routes, the `[data_array]` section
/// ([`ArraySettings`]) and `wendelin array import`.
pub struct DataArrayModule;

impl ServerModule for DataArrayModule {
    fn name(&self) -> &'static str {
        "data_array"
    }

    fn settings(&self) -> Option<Section> {
        Some(Section::of::<ArraySettings>(
            "data_array",
            arrays::configure,
        ))
    }

    fn routes(&self, cfg: &mut web::ServiceConfig) {
        routes(cfg);
    }

    fn commands(&self) -> Vec<CliCommand> {
        vec![CliCommand::of::<ArrayCli>(|portal, cli| match cli.action {
            ArrayAction::Import { path, title } => {
                let doc = arrays::import(portal, &User::system(), &path, &title)?;
                println!("{}", doc.path);
                Ok(())
            }
        })]
    }
}

/// Data Arrays.
#[derive(Debug, clap::Parser)]
#[command(name = "array")]
struct ArrayCli {
    /// What to do.
    #[command(subcommand)]
    action: ArrayAction,
}

/// Data Array sub-commands.
#[derive(Debug, clap::Subcommand)]
enum ArrayAction {
    /// Register an existing Zarr v3 array directory (e.g. written by zarr-python) as a
    /// Data Array; the data stays where it is. Prints the new document's path.
    Import {
        /// Directory holding the array's zarr.json.
        path: std::path::PathBuf,
        /// Title of the document.
        #[arg(long, default_value = "")]
        title: String,
    },
}

/// Registers the Data Array routes; must come before the generic `/api/v1/{path}` routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    const BASE: &str = "/api/v1/data_array_module/{id}";
    cfg.route(&format!("{BASE}/append"), web::post().to(append))
        .route(&format!("{BASE}/write"), web::post().to(write))
        .route(&format!("{BASE}/read"), web::get().to(read))
        .route(&format!("{BASE}/reduce"), web::get().to(reduce))
        .route(&format!("{BASE}/decimate"), web::get().to(decimate))
        .route(&format!("{BASE}/zarr/{{key:.*}}"), web::get().to(zarr_key))
        .route(&format!("{BASE}/zarr/{{key:.*}}"), web::head().to(zarr_key));
}

fn doc_path(id: &str) -> String {
    format!("{}/{id}", arrays::FOLDER)
}

fn array_err(e: ArrayError) -> ServerError {
    ServerError::Core(e.into())
}

/// The body as (dtype, shape, data offset): `.npy`, or raw little-endian bytes described by
/// `X-Array-Dtype` and `X-Array-Shape` headers.
fn parse_body(req: &HttpRequest, body: &[u8]) -> Result<(Dtype, Vec<u64>, usize), ServerError> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    match header("x-array-dtype") {
        Some(dtype) => {
            let dtype = Dtype::parse(dtype).map_err(array_err)?;
            let shape_text = header("x-array-shape").ok_or_else(|| {
                ServerError::BadRequest("raw bytes need an X-Array-Shape header, e.g. 100,3".into())
            })?;
            let shape = shape_text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<u64>().map_err(|_| {
                        ServerError::BadRequest(format!("X-Array-Shape: '{s}' is not a size"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((dtype, shape, 0))
        }
        None => {
            let h = npy::parse(body).map_err(array_err)?;
            Ok((h.dtype, h.shape, h.data_offset))
        }
    }
}

/// `POST …/append`: rows along the first axis.
async fn append(
    portal: web::Data<Portal>,
    id: web::Path<String>,
    auth: Auth,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, ServerError> {
    let path = doc_path(&id);
    let user = auth.user;
    let is_json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        // `{"data": [[…]]}`: the dispatch method DataArray_append.
        let args = match serde_json::from_slice(&body) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => {
                return Err(ServerError::BadRequest(
                    "a JSON append body must be an object with 'data'".into(),
                ))
            }
        };
        let out = wendelin_http::blocking_http(move || {
            Ok(portal.call(&user, &path, "append", &args, true)?)
        })
        .await?;
        return match out {
            wendelin_core::MethodOutput::Json(v) => Ok(HttpResponse::Ok().json(v)),
            wendelin_core::MethodOutput::Html(h) => Ok(HttpResponse::Ok().body(h)),
            wendelin_core::MethodOutput::Text(t) => Ok(HttpResponse::Ok()
                .content_type("text/plain; charset=utf-8")
                .body(t)),
        };
    }
    let (dtype, shape, offset) = parse_body(&req, &body)?;
    let new_shape = wendelin_http::blocking_http(move || {
        let dir = arrays::for_write(&portal, &user, &path)?;
        DataArray::with_writer(&dir, |a| a.append(dtype, &shape, &body[offset..]))
            .map_err(array_err)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "shape": new_shape })))
}

/// Region parameter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionQuery {
    region: Option<String>,
}

/// `POST …/write?region=a:b,c:d`.
async fn write(
    portal: web::Data<Portal>,
    id: web::Path<String>,
    auth: Auth,
    q: web::Query<RegionQuery>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, ServerError> {
    let (dtype, shape, offset) = parse_body(&req, &body)?;
    let path = doc_path(&id);
    let user = auth.user;
    let text = q.into_inner().region.unwrap_or_default();
    wendelin_http::blocking_http(move || {
        let dir = arrays::for_write(&portal, &user, &path)?;
        DataArray::with_writer(&dir, |a| {
            let region = arrays::region::parse_write(&text, a.shape())?;
            a.write(&region, dtype, &shape, &body[offset..])
        })
        .map_err(array_err)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The receiving end of a streamed body.
struct Chunks(mpsc::Receiver<Result<Bytes, ServerError>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, ServerError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().0.poll_recv(cx)
    }
}

/// Size of one streamed piece of a read.
const READ_SLAB: usize = 4 << 20;

/// `GET …/read?region=…`: the region as `.npy`, produced slab by slab on a blocking thread
/// and streamed; errors found before the first byte (permission, bad region) are 4xx.
async fn read(
    portal: web::Data<Portal>,
    id: web::Path<String>,
    auth: Auth,
    q: web::Query<RegionQuery>,
) -> Result<HttpResponse, ServerError> {
    let path = doc_path(&id);
    let user = auth.user;
    let text = q.into_inner().region.unwrap_or_default();
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, ServerError>>(4);
    actix_web::rt::task::spawn_blocking(move || produce_read(&portal, &user, &path, &text, &tx));
    let first = rx
        .recv()
        .await
        .ok_or_else(|| ServerError::Internal("the read stopped before its header".into()))??;
    let rest = Chunks(rx);
    let body = futures_stream_prepend(first, rest);
    Ok(HttpResponse::Ok()
        .content_type("application/x-npy")
        .streaming(body))
}

fn produce_read(
    portal: &Portal,
    user: &User,
    path: &str,
    text: &str,
    tx: &mpsc::Sender<Result<Bytes, ServerError>>,
) {
    let send = |item| tx.blocking_send(item).is_ok();
    let dir = match arrays::for_read(portal, user, path) {
        Ok(dir) => dir,
        Err(e) => {
            send(Err(e.into()));
            return;
        }
    };
    // Under the shared lock for the whole read: a region write spanning several chunks is
    // seen whole or not at all (a slow client holds writers back meanwhile).
    let outcome = DataArray::with_reader(&dir, |array| {
        stream_region(array, text, path, &send);
        Ok(())
    });
    if let Err(e) = outcome {
        send(Err(array_err(e)));
    }
}

fn stream_region(
    array: &DataArray,
    text: &str,
    path: &str,
    send: &dyn Fn(Result<Bytes, ServerError>) -> bool,
) {
    let region = match Region::parse(text, array.shape()) {
        Ok(r) => r,
        Err(e) => {
            send(Err(array_err(e)));
            return;
        }
    };
    let header = npy::header(array.dtype(), &region.out_shape());
    if !send(Ok(Bytes::from(header))) {
        return;
    }
    let result = array.read(&region, READ_SLAB, |bytes| {
        if send(Ok(Bytes::copy_from_slice(bytes))) {
            Ok(())
        } else {
            Err(ArrayError::Storage("the client went away".into()))
        }
    });
    if let Err(e) = result {
        tracing::error!(error = %e, path, "array read failed while streaming");
        send(Err(ServerError::Internal(e.to_string())));
    }
}

/// The header first, then the slabs.
fn futures_stream_prepend(
    first: Bytes,
    rest: Chunks,
) -> impl futures_core::Stream<Item = Result<Bytes, ServerError>> {
    struct Prepend(Option<Bytes>, Chunks);
    impl futures_core::Stream for Prepend {
        type Item = Result<Bytes, ServerError>;
        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            let this = self.get_mut();
            if let Some(b) = this.0.take() {
                return Poll::Ready(Some(Ok(b)));
            }
            Pin::new(&mut this.1).poll_next(cx)
        }
    }
    Prepend(Some(first), rest)
}

/// Reduction parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReduceQuery {
    op: String,
    axis: Option<usize>,
    region: Option<String>,
    #[serde(rename = "where")]
    predicate: Option<String>,
}

/// `GET …/reduce?op=mean&axis=0&region=…&where=gt:0`.
async fn reduce(
    portal: web::Data<Portal>,
    id: web::Path<String>,
    auth: Auth,
    q: web::Query<ReduceQuery>,
) -> Result<HttpResponse, ServerError> {
    let q = q.into_inner();
    let op = Op::parse(&q.op, q.predicate.as_deref()).map_err(array_err)?;
    let path = doc_path(&id);
    let user = auth.user;
    let budget = arrays::settings().memory_budget;
    let (result, shape, workers) = wendelin_http::blocking_http(move || {
        let dir = arrays::for_read(&portal, &user, &path)?;
        DataArray::with_reader(&dir, |a| {
            let region = Region::parse(q.region.as_deref().unwrap_or(""), a.shape())?;
            arrays::reduce::reduce(a, &region, op, q.axis, budget)
        })
        .map_err(array_err)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "op": q.op, "axis": q.axis, "result": result, "shape": shape, "workers": workers,
    })))
}

/// Decimation parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecimateQuery {
    /// Only 0: series run along the first axis.
    pub axis: Option<usize>,
    /// Bins (the chart's width in pixels); default 1000.
    pub bins: Option<usize>,
    /// First index; default 0.
    pub start: Option<u64>,
    /// One past the last index; default the array's length.
    pub stop: Option<u64>,
    /// Indices of the other axes, comma-separated (default all 0).
    pub at: Option<String>,
    /// `json` (default) or `f64` (little-endian float64: x…, min…, max…).
    pub format: Option<String>,
}

impl DecimateQuery {
    /// The `at` indices.
    pub fn at(&self) -> Result<Vec<u64>, ServerError> {
        self.at
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u64>()
                    .map_err(|_| ServerError::BadRequest(format!("at: '{s}' is not an index")))
            })
            .collect()
    }
}

/// Runs a decimation on the array directory `dir` (permission checked by the caller)
/// and answers it as JSON or binary float64 (`X-Decimate-Bins` says how many bins).
pub async fn decimate_response(
    portal: &Portal,
    dir: std::path::PathBuf,
    q: DecimateQuery,
) -> Result<HttpResponse, ServerError> {
    if q.axis.unwrap_or(0) != 0 {
        return Err(ServerError::BadRequest(
            "decimate runs along axis 0 only (select the others with 'at')".into(),
        ));
    }
    let binary = match q.format.as_deref() {
        None | Some("json") => false,
        Some("f64") => true,
        Some(other) => {
            return Err(ServerError::BadRequest(format!(
                "format must be json or f64, not '{other}'"
            )))
        }
    };
    let at = q.at()?;
    let (bins, start, stop) = (q.bins.unwrap_or(1000), q.start.unwrap_or(0), q.stop);
    // Behind the read gate: a decimation is a read of the whole series.
    let (d, shape) = wendelin_http::blocking_read(portal, move || {
        DataArray::with_reader(&dir, |a| {
            Ok((
                arrays::decimate(a, start, stop, bins, &at)?,
                a.shape().to_vec(),
            ))
        })
        .map_err(array_err)
    })
    .await?;
    if binary {
        return Ok(HttpResponse::Ok()
            .content_type("application/octet-stream")
            .insert_header(("x-decimate-bins", d.x.len().to_string()))
            .insert_header((
                "x-array-shape",
                shape
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ))
            .body(d.to_f64_bytes()));
    }
    // NaN (a bin of NaN only) is null in JSON.
    let num =
        |v: &[f64]| -> Vec<Option<f64>> { v.iter().map(|x| (!x.is_nan()).then_some(*x)).collect() };
    Ok(HttpResponse::Ok().json(json!({
        "shape": shape, "start": d.start, "stop": d.stop, "bins": d.x.len(),
        "x": d.x, "min": num(&d.min), "max": num(&d.max),
    })))
}

/// `GET …/decimate?axis=0&bins=1200&start=&stop=&at=&format=json|f64`: min and max per
/// bin of a series ([`crate::decimate()`]).
async fn decimate(
    portal: web::Data<Portal>,
    id: web::Path<String>,
    auth: Auth,
    q: web::Query<DecimateQuery>,
) -> Result<HttpResponse, ServerError> {
    let path = doc_path(&id);
    let user = auth.user;
    let p = portal.clone();
    let dir = wendelin_http::blocking(move || arrays::for_read(&p, &user, &path)).await?;
    decimate_response(&portal, dir, q.into_inner()).await
}

/// `GET …/zarr/{key}`: one key of the Zarr store (`zarr.json`, `c/0/1`, …); a missing key
/// is 404, which Zarr readers take as "fill value".
async fn zarr_key(
    req: HttpRequest,
    portal: web::Data<Portal>,
    params: web::Path<(String, String)>,
    auth: Auth,
) -> Result<HttpResponse, ServerError> {
    let range = req
        .headers()
        .get(actix_web::http::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (id, key) = params.into_inner();
    let path = doc_path(&id);
    let user = auth.user;
    let found = wendelin_http::blocking_http(move || {
        let dir = arrays::for_read(&portal, &user, &path)?;
        DataArray::recover_if_needed(&dir)
            .and_then(|()| DataArray::store_key(&dir, &key))
            .map(|bytes| bytes.map(|b| (key.ends_with(".json"), b)))
            .map_err(array_err)
    })
    .await?;
    if let (Some(range), Some((_, bytes))) = (range.as_deref(), found.as_ref()) {
        // Sharded arrays are read by byte ranges (the shard index is a suffix range).
        let total = bytes.len() as u64;
        match wendelin_http::range::parse_range(range, total).map(|(first, last)| (first, last + 1))
        {
            Ok((start, end)) => {
                let (s, e) = (
                    usize::try_from(start).unwrap_or(0),
                    usize::try_from(end).unwrap_or(0),
                );
                return Ok(HttpResponse::PartialContent()
                    .content_type("application/octet-stream")
                    .insert_header((
                        "Content-Range",
                        format!("bytes {start}-{}/{total}", end - 1),
                    ))
                    .insert_header(("Accept-Ranges", "bytes"))
                    .body(bytes[s..e].to_vec()));
            }
            Err(wendelin_http::range::RangeError::Unsatisfiable) => {
                return Ok(HttpResponse::RangeNotSatisfiable()
                    .insert_header(("Content-Range", format!("bytes */{total}")))
                    .body(format!(
                        "range '{range}' is outside this key of {total} bytes"
                    )));
            }
            // Not a single byte range: the whole key, as HTTP allows.
            Err(_) => {}
        }
    }
    match found {
        Some((true, bytes)) => Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(bytes)),
        Some((false, bytes)) => Ok(HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(bytes)),
        None => Err(ServerError::Core(wendelin_core::CoreError::NotFound(
            "no such key in this Zarr store".into(),
        ))),
    }
}
