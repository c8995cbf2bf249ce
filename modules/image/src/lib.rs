//! Images: pictures uploaded or produced by analyses. The bytes live outside the database
//! ([`store`]: `<data_dir>/images/<uid>/<sha256>`), the document carries what they are
//! (`format`, `width`, `height`, `byte_size`, `content_type`, `sha256`, indexed). An
//! upload is stored only if it decodes as PNG, JPEG, GIF or WebP within the pixel limit
//! ([`convert`]); conversions (`?display=small`, `?width=&format=webp`, …) are computed
//! once per source content and cached beside it. Routes and settings: [`http`].

pub mod convert;
pub mod http;
pub mod plot;
pub mod store;

use std::sync::OnceLock;

use askama::Template;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wendelin_core::types::UploadLimits;
use wendelin_core::{
    Call, CoreError, CoreResult, Document, DocumentPatch, MethodOutput, Module, Permission, Portal,
    PortalType, PropertyDef, PropertyType, User,
};

/// The portal type name.
pub const IMAGE: &str = "Image";

/// The `[image]` section of `wendelin.toml`; each key is also set by
/// `WENDELIN_IMAGE_<KEY>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    /// Largest image accepted or converted, in pixels (width × height, read from the
    /// file's header before decoding).
    pub max_pixels: u64,
    /// Largest width or height of a conversion, in pixels.
    pub max_output_side: u32,
    /// Images decoded at once in this process (uploads being checked, conversions being
    /// computed); more wait. Each may hold `max_pixels` × 8 bytes.
    pub max_decodes: usize,
    /// Largest upload (`PUT …/data`, the UI's upload form), in bytes.
    pub max_upload_bytes: usize,
    /// Upload bytes being handled at once above which uploads get 503 + Retry-After.
    pub max_inflight_bytes: usize,
    /// The TrueType font plots of Data Arrays write their text with.
    pub plot_font: String,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            max_pixels: 100_000_000,
            max_output_side: 4096,
            max_decodes: 4,
            max_upload_bytes: 64 << 20,
            max_inflight_bytes: 256 << 20,
            plot_font: "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".into(),
        }
    }
}

static CONFIG: OnceLock<ImageConfig> = OnceLock::new();

/// Applies the section (the first call wins; the server calls it before serving).
pub fn configure(config: ImageConfig) {
    let _ = CONFIG.set(config);
}

/// The settings in effect.
pub fn settings() -> ImageConfig {
    CONFIG.get().cloned().unwrap_or_default()
}

/// The limits of uploads (`[image] max_upload_bytes`).
pub fn upload_limits() -> UploadLimits {
    let c = settings();
    UploadLimits {
        max_bytes: c.max_upload_bytes,
        max_inflight_bytes: c.max_inflight_bytes,
        setting: "[image] max_upload_bytes",
    }
}

/// The Image at `path` if `user` holds `permission` on it (an Image one may not View is
/// not found, [`Portal::checked`]).
pub fn checked(
    portal: &Portal,
    user: &User,
    path: &str,
    permission: Permission,
) -> CoreResult<Document> {
    portal.checked(user, path, IMAGE, permission)
}

fn text_prop(doc: &Document, name: &str) -> Option<String> {
    doc.get(name)
        .ok()
        .flatten()
        .and_then(|v| v.as_str().map(str::to_owned))
}

/// The stored bytes' size (0 while the image has none).
pub fn byte_size(doc: &Document) -> u64 {
    doc.get("byte_size")
        .ok()
        .flatten()
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

/// What a document's stored original is: its SHA-256 and format, `None` before an upload.
pub fn source_of(doc: &Document) -> Option<(String, image::ImageFormat)> {
    let sha = text_prop(doc, "sha256").filter(|s| store::is_sha256(s))?;
    let name = text_prop(doc, "format")?;
    let (format, _, _) = convert::FORMATS.iter().find(|(_, n, _)| *n == name)?;
    Some((sha, *format))
}

/// The conversion key of a document's preview ([`convert::preview`]): its file sits
/// with the conversions, `derived/<sha256>-preview.raw`, and goes with them.
pub const PREVIEW_KEY: &str = "preview";

/// The open file of the whole preview kept beside the original `sha` of a document,
/// past its header; `None` when there is none, or it is not whole (its length is not
/// the one its header gives: a file cut short, say).
fn open_preview(
    portal: &Portal,
    doc: &Document,
    sha: &str,
) -> CoreResult<Option<(std::fs::File, convert::PreviewHeader)>> {
    use std::io::Read;
    let dir = store::doc_dir(portal, doc.uid)?;
    let path = store::derived_path(&dir, sha, PREVIEW_KEY, "raw")?;
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut head = [0u8; convert::PREVIEW_HEADER];
    if file.read_exact(&mut head).is_err() {
        return Ok(None);
    }
    let Some(header) = convert::PreviewHeader::parse(&head) else {
        return Ok(None);
    };
    if file.metadata()?.len() != header.file_len() {
        return Ok(None);
    }
    Ok(Some((file, header)))
}

/// The preview kept beside the original `sha` of a document, with what `serves` makes
/// of its header (e.g. the conversion's output size); its pixels are read only when
/// `serves` gives something.
pub fn read_preview<T>(
    portal: &Portal,
    doc: &Document,
    sha: &str,
    serves: impl FnOnce(&convert::PreviewHeader) -> Option<T>,
) -> CoreResult<Option<(image::DynamicImage, T)>> {
    use std::io::Read;
    let Some((mut file, header)) = open_preview(portal, doc, sha)? else {
        return Ok(None);
    };
    let Some(served) = serves(&header) else {
        return Ok(None);
    };
    let mut pixels =
        Vec::with_capacity((header.file_len() as usize).saturating_sub(convert::PREVIEW_HEADER));
    file.read_to_end(&mut pixels)?;
    Ok(header.image(pixels).map(|img| (img, served)))
}

/// What [`make_previews`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PreviewsMade {
    /// Previews written.
    pub made: u64,
    /// Images that have a whole preview already, or need none (too small, not 8-bit).
    pub skipped: u64,
    /// Images whose original could not be read or decoded (logged).
    pub failed: u64,
}

/// Keeps a preview beside every image that needs one and has none (uploaded before
/// previews existed, or the file lost): `wendelin image previews`. Runs as the system
/// user over every Image, one decode at a time.
pub fn make_previews(portal: &Portal) -> CoreResult<PreviewsMade> {
    let user = User::system();
    let config = settings();
    let mut out = PreviewsMade::default();
    let mut offset = 0;
    loop {
        let found = portal.search(
            &user,
            &wendelin_core::catalog::Search {
                query: format!("portal_type:\"{IMAGE}\""),
                sort_on: "uid".into(),
                limit: 500,
                offset,
            },
        )?;
        if found.documents.is_empty() {
            return Ok(out);
        }
        offset += found.documents.len() as i64;
        for doc in found.documents {
            let Some((sha, format)) = source_of(&doc) else {
                out.skipped += 1;
                continue;
            };
            if open_preview(portal, &doc, &sha)?.is_some() {
                out.skipped += 1;
                continue;
            }
            let made = read_original(portal, &doc, &sha).and_then(|bytes| {
                let info = convert::check(&bytes, Some(format), config.max_pixels, 1)?;
                let Some(preview) = info.preview else {
                    return Ok(false);
                };
                // Under the document's lock, as uploads: a replacement committed since
                // removed the original, and its cleanup would miss this file.
                let dir = store::doc_dir(portal, doc.uid)?;
                let _held = store::lock(&dir)?;
                if !store::original_path(&dir, &sha)?.exists() {
                    return Ok(false);
                }
                store::write_atomic(
                    &store::derived_path(&dir, &sha, PREVIEW_KEY, "raw")?,
                    &preview,
                )?;
                Ok(true)
            });
            match made {
                Ok(true) => out.made += 1,
                Ok(false) => out.skipped += 1,
                Err(e) => {
                    tracing::warn!(path = %doc.path, error = %e, "no preview made");
                    out.failed += 1;
                }
            }
        }
    }
}

/// The original's bytes of a document (permission checked by the caller).
pub fn read_original(portal: &Portal, doc: &Document, sha: &str) -> CoreResult<Vec<u8>> {
    let dir = store::doc_dir(portal, doc.uid)?;
    store::read(&store::original_path(&dir, sha)?)?
        .ok_or_else(|| CoreError::NotFound(format!("the bytes of /{} are not stored", doc.path)))
}

/// Stores `bytes` as the image at `path`, replacing what it held, as `user` (permission
/// *Modify portal content*): they must decode as PNG, JPEG, GIF or WebP (agreeing with
/// `content_type` when one is declared) within `[image] max_pixels`, else nothing is
/// stored (a 400). With `expected_size`, only if the image holds that many bytes now
/// (the UI's form: two people replacing from the same page conflict). Returns the
/// updated document.
pub fn store_upload(
    portal: &Portal,
    user: &User,
    path: &str,
    bytes: &[u8],
    content_type: Option<&str>,
    expected_size: Option<u64>,
) -> CoreResult<Document> {
    // The cheap refusal first: someone who may not write learns nothing from a decode.
    let first = checked(portal, user, path, Permission::ModifyPortalContent)?;
    let declared = convert::declared_format(content_type)?;
    let config = settings();
    let info = convert::check(bytes, declared, config.max_pixels, config.max_decodes)?;
    let sha = store::sha256_hex(bytes);
    // One replacement of a document at a time (across processes): a replacement's
    // cleanup removes the files of every other content of the document, which must not
    // hit an upload in flight; the document is checked again under the lock.
    let _held = store::lock(&store::doc_dir(portal, first.uid)?)?;
    let doc = checked(portal, user, path, Permission::ModifyPortalContent)?;
    if doc.uid != first.uid {
        return Err(CoreError::Conflict(format!(
            "/{path} is another document than when the upload began"
        )));
    }
    if let Some(at) = expected_size {
        let size = byte_size(&doc);
        if at != size {
            return Err(CoreError::Conflict(format!(
                "the image holds {size} bytes now, not {at}: reload it before replacing it"
            )));
        }
    }
    let dir = store::doc_dir(portal, doc.uid)?;
    let file = store::original_path(&dir, &sha)?;
    if !file.exists() {
        store::write_atomic(&file, bytes)?;
    }
    if let Some(preview) = &info.preview {
        // Only a cache of the decode: conversions decode the original without it.
        let kept = store::derived_path(&dir, &sha, PREVIEW_KEY, "raw")
            .map_err(|e| e.to_string())
            .and_then(|f| store::write_atomic(&f, preview).map_err(|e| e.to_string()));
        if let Err(e) = kept {
            tracing::warn!(path, error = %e, "the preview of an upload could not be kept");
        }
    }
    let mut properties = Map::new();
    properties.insert(
        "content_type".into(),
        Value::from(convert::mime_of(info.format)),
    );
    properties.insert(
        "format".into(),
        Value::from(convert::format_name(info.format)),
    );
    properties.insert("width".into(), Value::from(info.width));
    properties.insert("height".into(), Value::from(info.height));
    properties.insert("byte_size".into(), Value::from(bytes.len() as u64));
    properties.insert("sha256".into(), Value::from(sha.clone()));
    let updated = portal.update(
        user,
        path,
        DocumentPatch {
            serial: Some(doc.serial),
            properties,
            ..Default::default()
        },
    )?;
    // The previous content and its conversions; a failure leaves files the next upload
    // or the delete hook removes.
    let _ = store::keep_only(&dir, &sha);
    Ok(updated)
}

/// What an upload records must stay coherent when edited through the generic API: a
/// `format` of the four, a `content_type` that is its MIME type, a `sha256` that is a
/// digest (it names a file of the document's own directory only).
fn consistent(props: &Map<String, Value>) -> CoreResult<()> {
    // An empty field of the UI's forms is no value.
    let text = |k: &str| {
        props
            .get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let format = match text("format") {
        None => None,
        Some(name) => Some(
            convert::FORMATS
                .iter()
                .find(|(_, n, _)| *n == name)
                .ok_or_else(|| {
                    CoreError::Invalid(format!(
                        "format must be png, jpeg, gif or webp, not '{name}'"
                    ))
                })?,
        ),
    };
    if let (Some((_, name, mime)), Some(ct)) = (format, text("content_type")) {
        if ct != *mime {
            return Err(CoreError::Invalid(format!(
                "content_type of a {name} image is {mime}, not '{ct}'"
            )));
        }
    }
    if let Some(sha) = text("sha256") {
        if !store::is_sha256(sha) {
            return Err(CoreError::Invalid(
                "sha256 must be 64 lowercase hexadecimal digits".into(),
            ));
        }
    }
    Ok(())
}

/// Removes a deleted image's files (the kernel's delete hook; idempotent).
fn purge(portal: &Portal, uid: i64) -> CoreResult<()> {
    Ok(store::remove(&store::doc_dir(portal, uid)?)?)
}

/// The image module: `image_module` holding Image documents.
pub fn module() -> Module {
    Module::new("image")
        // `GET|PUT /api/v1/image_module/<id>/data` (the bytes and their conversions).
        .reserve_ids(&["data"])
        .folder("image_module", "Images", &[IMAGE])
        .portal_type(
            PortalType::new(IMAGE, "image_module")
                .describe("A picture: a chart, a plot or a photo (PNG, JPEG, GIF or WebP)")
                .on_delete(purge)
                .validate(consistent)
                .property(PropertyDef::new("content_type", PropertyType::String).indexed())
                .property(PropertyDef::new("format", PropertyType::String).indexed())
                .property(PropertyDef::new("width", PropertyType::Int).indexed())
                .property(PropertyDef::new("height", PropertyType::Int).indexed())
                .property(PropertyDef::new("byte_size", PropertyType::Int).indexed())
                .property(PropertyDef::new("sha256", PropertyType::String))
                .property(
                    PropertyDef::new("data_array", PropertyType::Relation)
                        .describe("the Data Array a plot was drawn from (saveAsImage)"),
                )
                .workflow("publication_workflow")
                .listbox_columns(&[
                    "title",
                    "format",
                    "width",
                    "height",
                    "owner",
                    "publication_state",
                    "modification_date",
                ])
                // The Image module's listbox offers a gallery of these (`?view=gallery`).
                .thumbnail(|doc| {
                    source_of(doc).map(|_| format!("/api/v1/{}/data?display=thumbnail", doc.path))
                })
                .holds_file(
                    |_, doc| Ok(byte_size(doc)),
                    |doc| format!("/api/v1/{}/data", doc.path),
                )
                .accepts_upload(upload_limits, |portal, user, path, bytes, at| {
                    let doc = store_upload(portal, user, path, bytes, None, Some(at))?;
                    let size = byte_size(&doc);
                    Ok((doc, size))
                }),
        )
        .script("DataArray_view", data_array_view)
        .script("Image_view", |call: &mut Call<'_>| {
            let doc = call.context;
            let int = |k: &str| {
                doc.get(k)
                    .ok()
                    .flatten()
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0)
            };
            let base = format!("/api/v1/{}/data", doc.path);
            let mut conversions: Vec<(String, String)> = convert::DISPLAYS
                .iter()
                .map(|(name, _)| ((*name).to_owned(), format!("{base}?display={name}")))
                .collect();
            conversions.push(("WebP".into(), format!("{base}?format=webp")));
            conversions.push(("JPEG".into(), format!("{base}?format=jpeg")));
            let page = ImageView {
                title: if doc.title.is_empty() {
                    doc.id.as_str()
                } else {
                    doc.title.as_str()
                },
                path: &doc.path,
                description: &doc.description,
                has_picture: source_of(doc).is_some(),
                format: text_prop(doc, "format").unwrap_or_default(),
                width: int("width"),
                height: int("height"),
                byte_size: byte_size(doc),
                conversions,
            };
            page.render()
                .map(MethodOutput::Html)
                .map_err(|e| CoreError::Internal(format!("Image_view failed: {e}")))
        })
}

#[derive(Template)]
#[template(path = "image_view.html")]
struct ImageView<'a> {
    title: &'a str,
    path: &'a str,
    description: &'a str,
    has_picture: bool,
    format: String,
    width: u64,
    height: u64,
    byte_size: u64,
    conversions: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "data_array_view.html")]
struct DataArrayView<'a> {
    title: &'a str,
    path: &'a str,
    shape: String,
    dtype: String,
    plot: String,
    drawable: bool,
    why: String,
}

/// The module view of a Data Array: its shape and type and a plot preview (a line for
/// 1-D, a heatmap for 2-D), drawn by `GET …/plot` ([`plot`]).
fn data_array_view(call: &mut Call<'_>) -> CoreResult<MethodOutput> {
    let doc = call.context;
    let opened = wendelin_data_array::array_dir(call.host, doc).and_then(|dir| {
        wendelin_data_array::DataArray::open(&dir).map_err(|e| CoreError::Invalid(e.to_string()))
    });
    let (shape, dtype, why) = match &opened {
        Ok(a) => (
            format!("{:?}", a.shape()),
            format!("{:?}", a.dtype()),
            match a.shape().len() {
                1 | 2 if a.shape().first().is_some_and(|n| *n > 0) => String::new(),
                1 | 2 => "Nothing to plot yet: the array is empty.".to_owned(),
                n => format!("Plots draw 1-D and 2-D arrays; this one has {n} dimensions."),
            },
        ),
        Err(e) => (
            String::new(),
            String::new(),
            format!("The array cannot be read: {e}"),
        ),
    };
    let kind = match &opened {
        Ok(a) if a.shape().len() == 2 && a.shape()[1] > 16 => "heatmap",
        _ => "line",
    };
    let page = DataArrayView {
        title: if doc.title.is_empty() {
            &doc.id
        } else {
            &doc.title
        },
        path: &doc.path,
        shape,
        dtype,
        plot: format!("/api/v1/{}/plot?kind={kind}&width=800&height=300", doc.path),
        drawable: why.is_empty(),
        why,
    };
    page.render()
        .map(MethodOutput::Html)
        .map_err(|e| CoreError::Internal(format!("DataArray_view failed: {e}")))
}
