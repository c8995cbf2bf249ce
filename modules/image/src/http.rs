//! The Image's HTTP routes and settings: `PUT /api/v1/image_module/{id}/data` (the
//! bytes, with their Content-Type) and `GET /api/v1/image_module/{id}/data` (the
//! original, or a conversion: `?display=thumbnail|small|medium|large` or
//! `?width=&height=&format=png|jpeg|webp&quality=`), and the `[image]` section of
//! `wendelin.toml` ([`ImageConfig`]). [`ImageModule`] declares them to the server.

use std::collections::HashMap;

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::json;
use wendelin_core::{CoreError, Permission, Portal};
use wendelin_http::body::{content_length, read_body, too_large, BodyLimits, Reservation};
use wendelin_http::range::parse_content_range;
use wendelin_http::{
    blocking, blocking_http, blocking_read, Auth, CliCommand, Section, ServerError, ServerModule,
};

use crate::convert::{self, Conversion};
use crate::plot::{self, Plot};
use crate::{store, ImageConfig};

/// The Image module as the server sees it: its data routes and `[image]`.
pub struct ImageModule;

impl ServerModule for ImageModule {
    fn name(&self) -> &'static str {
        "image"
    }

    fn settings(&self) -> Option<Section> {
        Some(Section::of::<ImageConfig>("image", crate::configure))
    }

    fn routes(&self, cfg: &mut web::ServiceConfig) {
        routes(cfg);
    }

    fn commands(&self) -> Vec<CliCommand> {
        vec![CliCommand::of::<ImageCli>(|portal, cli| match cli.action {
            ImageAction::Previews => {
                let done = crate::make_previews(portal)?;
                println!(
                    "{}",
                    json!({"made": done.made, "skipped": done.skipped, "failed": done.failed})
                );
                Ok(())
            }
        })]
    }
}

/// Images.
#[derive(Debug, clap::Parser)]
#[command(name = "image")]
struct ImageCli {
    /// What to do.
    #[command(subcommand)]
    action: ImageAction,
}

/// Image sub-commands.
#[derive(Debug, clap::Subcommand)]
enum ImageAction {
    /// Keep a preview beside every image large enough to need one that has none (images
    /// uploaded before previews existed); prints how many were made, skipped, failed.
    Previews,
}

/// Registers `GET|PUT /api/v1/image_module/{id}/data`; must come before the generic
/// routes and before any other module's `…/{path}/data`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/image_module/{id}/data", web::get().to(download))
        .route("/api/v1/image_module/{id}/data", web::put().to(upload))
        .route("/api/v1/image_module/{id}/data", web::post().to(upload))
        .route("/api/v1/data_array_module/{id}/plot", web::get().to(plot))
        .route(
            "/data_array_module/{id}/DataArray_plot",
            web::get().to(plot),
        )
        .route(
            "/api/v1/data_array_module/{id}/saveAsImage",
            web::post().to(save_as_image),
        )
        .route(
            "/data_array_module/{id}/DataArray_saveAsImage",
            web::post().to(save_as_image),
        );
}

/// Renders the plot of the array `id` (View checked) on the read gate's pool.
async fn render_plot(
    portal: &web::Data<Portal>,
    user: &wendelin_core::User,
    id: &str,
    params: HashMap<String, String>,
) -> Result<(Vec<u8>, Plot), ServerError> {
    let config = crate::settings();
    let plot = plot::from_query(&params, config.max_output_side)?;
    let (p, u, path) = (
        portal.clone(),
        user.clone(),
        format!("data_array_module/{id}"),
    );
    let shown = plot.clone();
    let png = blocking_read(portal, move || {
        let dir = wendelin_data_array::for_read(&p, &u, &path)?;
        let array = wendelin_data_array::DataArray::open(&dir)
            .map_err(|e| CoreError::Invalid(format!("/{path}: {e}")))?;
        // The x array is read with the same right as the plotted one (a 404 otherwise).
        let x = match &shown.x_array {
            None => None,
            Some(x_path) => {
                let dir = wendelin_data_array::for_read(&p, &u, x_path)?;
                Some(
                    wendelin_data_array::DataArray::open(&dir)
                        .map_err(|e| CoreError::Invalid(format!("/{x_path}: {e}")))?,
                )
            }
        };
        Ok::<_, ServerError>(plot::render(&array, x.as_ref(), &shown, &config.plot_font)?)
    })
    .await?;
    Ok((png, plot))
}

/// `GET /api/v1/data_array_module/{id}/plot?kind=line|heatmap&width=&height=&title=
/// &x_label=&y_label=&log_x=&log_y=&x_start=&x_step=|sample_rate=|x_array=&start=&stop=
/// &columns=`
/// (also `GET /data_array_module/{id}/DataArray_plot?…`): the array drawn as a PNG, for
/// dashboards. Who may not View the array gets a 404.
async fn plot(
    portal: web::Data<Portal>,
    id: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
    auth: Auth,
) -> Result<HttpResponse, ServerError> {
    let (png, _) = render_plot(&portal, &auth.user, &id, query.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .content_type("image/png")
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
        .body(png))
}

/// `POST /api/v1/data_array_module/{id}/saveAsImage` (also
/// `…/DataArray_saveAsImage`) with the plot's parameters in the query string or a JSON
/// object: draws the plot and stores it as a new Image in `image_module` (Add portal
/// content there), related to the array (`data_array`); 201 with the Image.
async fn save_as_image(
    portal: web::Data<Portal>,
    id: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
    auth: Auth,
    body: Option<web::Json<serde_json::Map<String, serde_json::Value>>>,
) -> Result<HttpResponse, ServerError> {
    let mut params = query.into_inner();
    for (k, v) in body.map(web::Json::into_inner).unwrap_or_default() {
        let v = match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        params.insert(k, v);
    }
    let id = id.into_inner();
    let user = auth.user;
    let (png, plot) = render_plot(&portal, &user, &id, params).await?;
    let p = portal.clone();
    let doc = blocking(move || {
        let array_path = format!("data_array_module/{id}");
        let array = p.get(&user, &array_path)?;
        let title = if plot.title.is_empty() {
            format!(
                "Plot of {}",
                if array.title.is_empty() {
                    &array.id
                } else {
                    &array.title
                }
            )
        } else {
            plot.title.clone()
        };
        let mut properties = serde_json::Map::new();
        properties.insert("data_array".into(), json!(array_path));
        let new = wendelin_core::NewDocument {
            portal_type: Some(crate::IMAGE.into()),
            title,
            description: plot.describe(),
            properties,
            ..Default::default()
        };
        let image = p.create(&user, "image_module", new)?;
        if let Err(e) = crate::store_upload(&p, &user, &image.path, &png, Some("image/png"), None) {
            // Nothing half-made: the empty Image goes with the failure.
            let _ = p.delete(&user, &image.path, None);
            return Err(e);
        }
        p.get_json(&user, &image.path)
    })
    .await?;
    Ok(HttpResponse::Created().json(doc))
}

/// Responses may be kept by the asking browser only, and revalidated (the ETag) each
/// time: who may View an image can change.
const CACHE_CONTROL: &str = "private, no-cache";

fn body_limits() -> BodyLimits {
    let l = crate::upload_limits();
    BodyLimits {
        max_bytes: l.max_bytes,
        max_inflight_bytes: l.max_inflight_bytes,
        setting: l.setting,
    }
}

/// `PUT|POST /api/v1/image_module/{id}/data`: replaces the image's bytes, sent as the
/// body with their Content-Type, or as the `file` part of a `multipart/form-data` body
/// (`curl -F file=@photo.jpg`; the part's Content-Type is the declared one). 400 and
/// nothing stored unless they decode as the declared PNG, JPEG, GIF or WebP within the
/// limits.
async fn upload(
    portal: web::Data<Portal>,
    id: web::Path<String>,
    req: HttpRequest,
    auth: Auth,
    payload: web::Payload,
) -> Result<HttpResponse, ServerError> {
    let path = format!("image_module/{}", id.into_inner());
    let user = auth.user;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| ServerError::BadRequest("Content-Type is not text".into()))
        })
        .transpose()?;
    // Refused before the body is read: who may not write learns nothing more.
    let (p, u, pa) = (portal.clone(), user.clone(), path.clone());
    blocking(move || crate::checked(&p, &u, &pa, Permission::ModifyPortalContent)).await?;
    // The admin UI's uploader sends `Content-Range: bytes <at>-<end>/<total>`, `at`
    // being the size the page showed: an image is replaced whole, only if it still holds
    // `at` bytes (two people replacing from one page conflict, 409).
    let expected = match req.headers().get(header::CONTENT_RANGE) {
        None => None,
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| ServerError::BadRequest("Content-Range is not text".into()))?;
            match parse_content_range(v).map_err(ServerError::BadRequest)? {
                Some((a, b, _)) => Some((a, b - a + 1)),
                None => {
                    return Err(ServerError::BadRequest(
                        "an image upload is not resumable: send the whole file".into(),
                    ))
                }
            }
        }
    };
    let multipart = content_type.as_deref().is_some_and(|t| {
        t.trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
    });
    let (body, content_type, reservation) = if multipart {
        read_file_part(&req, payload).await?
    } else {
        let (body, reservation) = read_body(&req, payload, &body_limits()).await?;
        (body, content_type, reservation)
    };
    if let Some((_, len)) = expected {
        if body.len() as u64 != len {
            return Err(ServerError::BadRequest(format!(
                "Content-Range announces {len} bytes, the body has {}",
                body.len()
            )));
        }
    }
    let doc = blocking(move || {
        let _held = reservation;
        let at = expected.map(|(a, _)| a);
        crate::store_upload(&portal, &user, &path, &body, content_type.as_deref(), at)
    })
    .await?;
    let get = |k: &str| doc.get(k).ok().flatten().unwrap_or(serde_json::Value::Null);
    Ok(HttpResponse::Ok().json(json!({
        "path": doc.path,
        "format": get("format"),
        "content_type": get("content_type"),
        "width": get("width"),
        "height": get("height"),
        "byte_size": get("byte_size"),
        "sha256": get("sha256"),
        "serial": doc.serial,
    })))
}

/// The `file` part of a `multipart/form-data` body, with its declared Content-Type
/// (other parts are skipped), within `[image] max_upload_bytes`.
async fn read_file_part(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(Vec<u8>, Option<String>, Reservation), ServerError> {
    let limits = body_limits();
    let limit = limits.max_bytes;
    let declared = content_length(req);
    // The file is at most the request minus the other parts and the boundaries.
    if let Some(n) = declared.filter(|n| *n > limit.saturating_add(64 * 1024)) {
        return Err(too_large(n, &limits));
    }
    let reservation = Reservation::take(declared.unwrap_or(limit), limits.max_inflight_bytes)?;
    let bad = |e: &dyn std::fmt::Display| {
        ServerError::BadRequest(format!("the multipart body could not be read: {e}"))
    };
    let mut form = Multipart::new(req.headers(), payload);
    let mut file = None;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| bad(&e))?;
        if field.name() != Some("file") || file.is_some() {
            while let Some(chunk) = field.next().await {
                chunk.map_err(|e| bad(&e))?;
            }
            continue;
        }
        let content_type = field.content_type().map(ToString::to_string);
        let mut body = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| bad(&e))?;
            if body.len() + chunk.len() > limit {
                return Err(too_large(body.len() + chunk.len(), &limits));
            }
            body.extend_from_slice(&chunk);
        }
        file = Some((body, content_type));
    }
    let (body, content_type) = file
        .ok_or_else(|| ServerError::BadRequest("the multipart body has no 'file' part".into()))?;
    Ok((body, content_type, reservation))
}

/// Whether `If-None-Match` names `etag`.
fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        })
}

/// `GET /api/v1/image_module/{id}/data`: the original, or a conversion computed once
/// per source content (`X-Image-Conversion: computed|cached`). An image the caller may
/// not View is a 404, whatever is asked of it.
async fn download(
    portal: web::Data<Portal>,
    id: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
    req: HttpRequest,
    auth: Auth,
) -> Result<HttpResponse, ServerError> {
    let path = format!("image_module/{}", id.into_inner());
    let user = auth.user;
    let p = portal.clone();
    let doc = blocking_read(&portal, move || {
        Ok(crate::checked(&p, &user, &path, Permission::View)?)
    })
    .await?;
    let (sha, format) = crate::source_of(&doc).ok_or_else(|| {
        CoreError::NotFound(format!(
            "/{} has no picture yet: PUT its bytes to /api/v1/{}/data",
            doc.path, doc.path
        ))
    })?;
    let config = crate::settings();
    let query = query.into_inner();
    let conversion = Conversion::parse(|k| query.get(k).cloned(), format, config.max_output_side)?;
    let etag = match &conversion {
        None => format!("\"{sha}\""),
        Some(c) => format!("\"{}-{}\"", &sha[..16], c.key()),
    };
    if not_modified(&req, &etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
            .finish());
    }
    let mut resp = HttpResponse::Ok();
    resp.insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL));
    let Some(conversion) = conversion else {
        let bytes = blocking(move || crate::read_original(&portal, &doc, &sha)).await?;
        wendelin_http::headers::user_content(&mut resp, Some(convert::mime_of(format)));
        return Ok(resp.body(bytes));
    };
    let (bytes, how, source) = blocking_http(move || {
        let dir = store::doc_dir(portal.get_ref(), doc.uid)?;
        let file = store::derived_path(&dir, &sha, &conversion.key(), conversion.output.ext())?;
        if let Some(bytes) = store::read(&file)? {
            return Ok((web::Bytes::from(bytes), "cached", None));
        }
        // Identical requests at once: one computes, the others get its bytes.
        let mut source = "original";
        let (bytes, computed) = store::Flight::run(&file, || {
            let _slot = convert::decode_slot(config.max_decodes);
            // The preview's header first: its pixels are read only if it serves.
            if let Some((preview, out)) =
                crate::read_preview(&portal, &doc, &sha, |h| conversion.from_preview(h))?
            {
                source = "preview";
                return Ok(conversion.apply_sized(&preview, out)?);
            }
            let original = crate::read_original(&portal, &doc, &sha)?;
            let (img, _) =
                convert::decode_for(&original, Some(format), config.max_pixels, &conversion)?;
            Ok::<_, ServerError>(conversion.apply(&img)?)
        })?;
        let how = if computed { "computed" } else { "cached" };
        Ok((bytes, how, computed.then_some(source)))
    })
    .await?;
    wendelin_http::headers::user_content(&mut resp, Some(conversion.output.mime()));
    resp.insert_header(("x-image-conversion", how));
    if let Some(source) = source {
        // What the conversion was resized from: the preview kept at upload, or a decode
        // of the original.
        resp.insert_header(("x-image-source", source));
    }
    Ok(resp.body(bytes))
}
