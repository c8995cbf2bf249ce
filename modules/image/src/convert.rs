//! Checking uploads and computing conversions with the `image` crate (PNG, JPEG, GIF and
//! WebP decoders only). A file is read in two steps: its header's dimensions first,
//! refused above the pixel limit before any pixel is decoded (a decompression bomb
//! costs a header read), then the whole decode under an allocation limit sized from
//! those dimensions.

use std::io::Cursor;
use std::sync::{Condvar, Mutex, PoisonError};

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use wendelin_core::{CoreError, CoreResult};

/// The formats stored, by name and MIME type.
pub const FORMATS: &[(ImageFormat, &str, &str)] = &[
    (ImageFormat::Png, "png", "image/png"),
    (ImageFormat::Jpeg, "jpeg", "image/jpeg"),
    (ImageFormat::Gif, "gif", "image/gif"),
    (ImageFormat::WebP, "webp", "image/webp"),
];

/// The name of a stored format (`png`, `jpeg`, `gif`, `webp`).
pub fn format_name(f: ImageFormat) -> &'static str {
    FORMATS
        .iter()
        .find(|(g, _, _)| *g == f)
        .map_or("unknown", |(_, n, _)| n)
}

/// The MIME type of a stored format.
pub fn mime_of(f: ImageFormat) -> &'static str {
    FORMATS
        .iter()
        .find(|(g, _, _)| *g == f)
        .map_or("application/octet-stream", |(_, _, m)| m)
}

/// Decodes running in this process, bounded by `[image] max_decodes`: each holds up to
/// `max_pixels` × 8 bytes, so the bound is what keeps many large uploads or
/// conversions at once from exhausting memory (the blocking pool has hundreds of
/// threads).
static DECODES: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// A decode slot, held while a decoded image is alive; freed on drop.
pub struct DecodeSlot(());

/// Waits for a decode slot (at most `max` held at once).
pub fn decode_slot(max: usize) -> DecodeSlot {
    let (busy, freed) = &DECODES;
    let mut n = busy.lock().unwrap_or_else(PoisonError::into_inner);
    while *n >= max.max(1) {
        n = freed.wait(n).unwrap_or_else(PoisonError::into_inner);
    }
    *n += 1;
    DecodeSlot(())
}

impl Drop for DecodeSlot {
    fn drop(&mut self) {
        let (busy, freed) = &DECODES;
        let mut n = busy.lock().unwrap_or_else(PoisonError::into_inner);
        *n = n.saturating_sub(1);
        freed.notify_one();
    }
}

/// What an accepted upload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Its format, as its bytes say (and its Content-Type agrees).
    pub format: ImageFormat,
    /// Width and height once its EXIF orientation is applied.
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// The preview to keep beside a large original ([`preview`]), in its file format.
    pub preview: Option<Vec<u8>>,
}

/// The box a preview is fitted in. An upload at least twice its side is kept with a
/// preview this size, made from the decode that checks the upload anyway; conversions
/// that fit in half of it (`thumbnail`, `small`, `medium`, any box up to 768 pixels)
/// are resized from the preview instead of decoding the original again (the same
/// margin as Pillow's `thumbnail`, whose draft decode stays at least twice the box).
pub const PREVIEW_SIDE: u32 = 1536;

/// First bytes of a preview file: then its width and height, the original's width and
/// height (u32, little-endian), the number of 8-bit channels (1–4) and 3 zero bytes,
/// then the pixels, row by row.
const PREVIEW_MAGIC: &[u8; 4] = b"WPV1";
pub const PREVIEW_HEADER: usize = 24;

/// The preview file of a decoded upload, when the upload is large enough to need one
/// and its pixels are 8-bit (16-bit and float images are converted from the original).
pub fn preview(img: &DynamicImage) -> Option<Vec<u8>> {
    if img.width().max(img.height()) < 2 * PREVIEW_SIDE {
        return None;
    }
    let channels: u8 = match img {
        DynamicImage::ImageLuma8(_) => 1,
        DynamicImage::ImageLumaA8(_) => 2,
        DynamicImage::ImageRgb8(_) => 3,
        DynamicImage::ImageRgba8(_) => 4,
        _ => return None,
    };
    let (w, h) = Conversion {
        width: Some(PREVIEW_SIDE),
        height: Some(PREVIEW_SIDE),
        output: Output::Png,
    }
    .fit(img.width(), img.height());
    let small = downscale(img, w, h);
    let mut out = Vec::with_capacity(PREVIEW_HEADER + small.as_bytes().len());
    out.extend_from_slice(PREVIEW_MAGIC);
    out.extend_from_slice(&small.width().to_le_bytes());
    out.extend_from_slice(&small.height().to_le_bytes());
    out.extend_from_slice(&img.width().to_le_bytes());
    out.extend_from_slice(&img.height().to_le_bytes());
    out.extend_from_slice(&[channels, 0, 0, 0]);
    out.extend_from_slice(small.as_bytes());
    Some(out)
}

/// `img` resized to `w` × `h` by an area average (a box filter over the source pixels
/// each output pixel covers): fast_image_resize's SIMD convolution, or `image`'s
/// `thumbnail_exact` for a pixel type the former refuses.
pub fn downscale(img: &DynamicImage, w: u32, h: u32) -> DynamicImage {
    use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
    let mut out = DynamicImage::new(w, h, img.color());
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Box));
    match Resizer::new().resize(img, &mut out, &options) {
        Ok(()) => out,
        Err(e) => {
            tracing::debug!("fast_image_resize refused a {:?} image ({e})", img.color());
            img.thumbnail_exact(w, h)
        }
    }
}

/// What the first [`PREVIEW_HEADER`] bytes of a preview file say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviewHeader {
    /// The preview's width and height.
    pub size: (u32, u32),
    /// The original's width and height (its EXIF orientation applied).
    pub original: (u32, u32),
    channels: u8,
}

impl PreviewHeader {
    /// The header at the start of `head`, if it is one.
    pub fn parse(head: &[u8]) -> Option<PreviewHeader> {
        let head = head.get(..PREVIEW_HEADER)?;
        if &head[..4] != PREVIEW_MAGIC {
            return None;
        }
        let word = |at: usize| head[at..at + 4].try_into().ok().map(u32::from_le_bytes);
        Some(PreviewHeader {
            size: (word(4)?, word(8)?),
            original: (word(12)?, word(16)?),
            channels: head[20],
        })
    }

    /// The length of the whole file this header starts.
    pub fn file_len(&self) -> u64 {
        let (w, h) = self.size;
        PREVIEW_HEADER as u64 + u64::from(w) * u64::from(h) * u64::from(self.channels)
    }

    /// The preview's image from its pixels (the file after the header).
    pub fn image(&self, pixels: Vec<u8>) -> Option<DynamicImage> {
        let (w, h) = self.size;
        match self.channels {
            1 => image::GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8),
            2 => image::GrayAlphaImage::from_raw(w, h, pixels).map(DynamicImage::ImageLumaA8),
            3 => image::RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8),
            4 => image::RgbaImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgba8),
            _ => None,
        }
    }
}

/// The image in a preview file and the original's width and height; `None` when the
/// bytes are not a whole preview (a file cut short, say: the conversion then decodes
/// the original).
pub fn read_preview(bytes: Vec<u8>) -> Option<(DynamicImage, (u32, u32))> {
    let header = PreviewHeader::parse(&bytes)?;
    if bytes.len() as u64 != header.file_len() {
        return None;
    }
    let mut pixels = bytes;
    pixels.drain(..PREVIEW_HEADER);
    Some((header.image(pixels)?, header.original))
}

/// The format an upload declares: `None` for no declaration (`application/octet-stream`
/// or no Content-Type: the bytes say); SVG and any other type are refused.
pub fn declared_format(content_type: Option<&str>) -> CoreResult<Option<ImageFormat>> {
    let Some(ct) = content_type else {
        return Ok(None);
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence.is_empty() || essence == "application/octet-stream" {
        return Ok(None);
    }
    if essence == "image/svg+xml" {
        return Err(CoreError::BadRequest(
            "SVG images are refused: an SVG file is a document that may carry scripts and \
             links; upload PNG, JPEG, GIF or WebP"
                .into(),
        ));
    }
    match FORMATS.iter().find(|(_, _, m)| *m == essence) {
        Some((f, _, _)) => Ok(Some(*f)),
        None => Err(CoreError::BadRequest(format!(
            "an image must be PNG, JPEG, GIF or WebP, not '{essence}'"
        ))),
    }
}

/// Decodes `bytes` fully (so a truncated or corrupt file is refused), checking that they
/// are one of the four formats, agree with `declared`, and hold at most `max_pixels`.
/// Holds a decode slot ([`decode_slot`]) while it decodes.
pub fn check(
    bytes: &[u8],
    declared: Option<ImageFormat>,
    max_pixels: u64,
    max_decodes: usize,
) -> CoreResult<Checked> {
    let _slot = decode_slot(max_decodes);
    let (img, format) = decode(bytes, declared, max_pixels)?;
    Ok(Checked {
        format,
        width: img.width(),
        height: img.height(),
        preview: preview(&img),
    })
}

/// The format the bytes are in, if one of the four.
fn sniff(bytes: &[u8]) -> CoreResult<ImageFormat> {
    if looks_like_svg(bytes) {
        return Err(CoreError::BadRequest(
            "SVG images are refused: an SVG file is a document that may carry scripts and \
             links; upload PNG, JPEG, GIF or WebP"
                .into(),
        ));
    }
    match image::guess_format(bytes) {
        Ok(f) if FORMATS.iter().any(|(g, _, _)| *g == f) => Ok(f),
        _ => Err(CoreError::BadRequest(
            "the file is not a PNG, JPEG, GIF or WebP image".into(),
        )),
    }
}

fn looks_like_svg(bytes: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).to_ascii_lowercase();
    let t = head.trim_start_matches('\u{feff}').trim_start();
    t.starts_with("<svg") || (t.starts_with("<?xml") && head.contains("<svg"))
}

/// Decodes the image in `bytes` with its EXIF orientation applied (JPEG, WebP), after
/// refusing, from the header alone, more than `max_pixels` pixels.
pub fn decode(
    bytes: &[u8],
    declared: Option<ImageFormat>,
    max_pixels: u64,
) -> CoreResult<(DynamicImage, ImageFormat)> {
    let format = sniff(bytes)?;
    if let Some(d) = declared {
        if d != format {
            return Err(CoreError::BadRequest(format!(
                "the file is declared {} but its bytes are {}",
                mime_of(d),
                mime_of(format)
            )));
        }
    }
    let bad = |e: image::ImageError| {
        CoreError::BadRequest(format!(
            "the file is not a readable {} image: {e}",
            format_name(format)
        ))
    };
    complete(bytes, format)?;
    let (w, h) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(bad)?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(CoreError::BadRequest(format!(
            "the image is {w} × {h} = {pixels} pixels, above the limit of {max_pixels} \
             ([image] max_pixels): refused before decoding"
        )));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    // 4 channels of 16 bits per pixel at most, and room for the decoder's own buffers.
    limits.max_alloc = Some(pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(bad)?;
    let orientation = decoder.orientation().map_err(bad)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(bad)?;
    img.apply_orientation(orientation);
    Ok((img, format))
}

/// [`decode`] for `conversion`: a JPEG at least twice the conversion's box is decoded by
/// libjpeg-turbo at the smallest of its scaling factors (1/8, 2/8, … 7/8) that still
/// covers the box (scaled IDCT, as Pillow's draft mode), never whole. Everything else,
/// and any JPEG libjpeg-turbo will not decode so (CMYK, lossless, a warning such as
/// extraneous bytes), goes through [`decode`], whose checks and messages apply; the same
/// checks come first here (format, completeness, pixel limit from the header).
pub fn decode_for(
    bytes: &[u8],
    declared: Option<ImageFormat>,
    max_pixels: u64,
    conversion: &Conversion,
) -> CoreResult<(DynamicImage, ImageFormat)> {
    if sniff(bytes)? != ImageFormat::Jpeg || declared.is_some_and(|d| d != ImageFormat::Jpeg) {
        return decode(bytes, declared, max_pixels);
    }
    complete(bytes, ImageFormat::Jpeg)?;
    match scaled_jpeg(bytes, max_pixels, conversion) {
        Some(img) => Ok((img, ImageFormat::Jpeg)),
        None => decode(bytes, declared, max_pixels),
    }
}

/// The scaled decode of [`decode_for`], `None` when it does not apply or libjpeg-turbo
/// fails (the caller then decodes whole, with the `image` crate's checks and messages).
fn scaled_jpeg(bytes: &[u8], max_pixels: u64, conversion: &Conversion) -> Option<DynamicImage> {
    let mut tj = turbojpeg::Decompressor::new().ok()?;
    // The header only (no pixel): size, colour space, coding.
    let header = tj.read_header(bytes).ok()?;
    let (w, h) = (
        u32::try_from(header.width).ok()?,
        u32::try_from(header.height).ok()?,
    );
    let format = match header.colorspace {
        turbojpeg::Colorspace::YCbCr | turbojpeg::Colorspace::RGB => turbojpeg::PixelFormat::RGB,
        turbojpeg::Colorspace::Gray => turbojpeg::PixelFormat::GRAY,
        // CMYK and YCCK JPEGs are rare: decoded whole (to RGB) by the `image` crate.
        _ => return None,
    };
    // The box as stored and as displayed (the EXIF orientation may swap the sides): the
    // scaled image must cover both.
    let ((aw, ah), (bw, bh)) = (conversion.fit(w, h), conversion.fit(h, w));
    let (need_w, need_h) = (aw.max(bh), ah.max(bw));
    if header.is_lossless
        || need_w.saturating_mul(2) > w
        || need_h.saturating_mul(2) > h
        || u64::from(w) * u64::from(h) > max_pixels
    {
        // Lossless JPEGs do not scale; too little to gain; or refused by `decode` with
        // its message.
        return None;
    }
    let factor = (1..8)
        .map(|n| turbojpeg::ScalingFactor::new(n, 8))
        .find(|f| {
            f.scale(header.width) >= need_w as usize && f.scale(header.height) >= need_h as usize
        })?;
    tj.set_scaling_factor(factor).ok()?;
    // A progressive file of thousands of tiny scans costs time, not pixels: bounded as
    // libjpeg-turbo's own fuzzers and djpeg -maxscan do.
    tj.set_scan_limit(500).ok()?;
    // As Pillow's draft mode: plain chroma upsampling, not the smoothed one (the resize
    // that follows smooths anyway).
    tj.set_fast_upsample(true).ok()?;
    let (sw, sh) = (factor.scale(header.width), factor.scale(header.height));
    let pitch = sw.checked_mul(format.size())?;
    let mut pixels = vec![0u8; pitch.checked_mul(sh)?];
    let out = turbojpeg::Image {
        pixels: pixels.as_mut_slice(),
        width: sw,
        pitch,
        height: sh,
        format,
    };
    // An error or warning (corrupt data, extraneous bytes): decoded by `decode` instead.
    if let Err(e) = tj.decompress(bytes, out) {
        tracing::debug!("libjpeg-turbo did not decode a JPEG ({e}): decoded whole instead");
        return None;
    }
    let (sw, sh) = (u32::try_from(sw).ok()?, u32::try_from(sh).ok()?);
    let mut img = match format {
        turbojpeg::PixelFormat::GRAY => {
            DynamicImage::ImageLuma8(image::GrayImage::from_raw(sw, sh, pixels)?)
        }
        _ => DynamicImage::ImageRgb8(image::RgbImage::from_raw(sw, sh, pixels)?),
    };
    img.apply_orientation(jpeg_orientation(bytes));
    Some(img)
}

/// The EXIF orientation of a JPEG, from its APP1 segment (headers only, the bytes
/// borrowed); none when it has no EXIF or no orientation tag.
fn jpeg_orientation(bytes: &[u8]) -> image::metadata::Orientation {
    let options = zune_core::options::DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX);
    let mut header = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(bytes),
        options,
    );
    header
        .decode_headers()
        .ok()
        .and_then(|()| header.exif())
        .and_then(|exif| image::metadata::Orientation::from_exif_chunk(exif))
        .unwrap_or(image::metadata::Orientation::NoTransforms)
}

/// Refuses a JPEG or GIF cut short, which their decoders would fill in silently: a JPEG
/// must have its end-of-image marker after the start of its last scan (inside scan data
/// `FF` is always followed by `00` or a restart marker, so `FF DA` there starts a scan),
/// a GIF its trailer. PNG and WebP decoders refuse truncation themselves.
fn complete(bytes: &[u8], format: ImageFormat) -> CoreResult<()> {
    let whole = match format {
        ImageFormat::Jpeg => {
            // The same test read from both ends, so that neither search crosses the scan
            // data (most of a file: walking its `FF 00` pairs cost milliseconds): the last
            // of the `FF DA` and `FF D9` markers is an end of image, and a scan starts
            // somewhere (then before it), the first `FF DA` being near the start.
            let last = memchr::memrchr_iter(0xFF, bytes)
                .find(|&at| matches!(bytes.get(at + 1), Some(0xDA | 0xD9)));
            last.is_some_and(|at| bytes.get(at + 1) == Some(&0xD9))
                && memchr::memmem::find(bytes, &[0xFF, 0xDA]).is_some()
        }
        ImageFormat::Gif => bytes.last() == Some(&0x3B),
        _ => true,
    };
    if whole {
        Ok(())
    } else {
        Err(CoreError::BadRequest(format!(
            "the file is not a readable {} image: it is truncated (no end marker)",
            format_name(format)
        )))
    }
}

/// Output formats of conversions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Lossless.
    Png,
    /// With a quality 1–100.
    Jpeg(u8),
    /// Lossless (the `image` crate encodes WebP losslessly only).
    WebP,
}

impl Output {
    /// File extension and cache-key part.
    pub fn ext(self) -> &'static str {
        match self {
            Output::Png => "png",
            Output::Jpeg(_) => "jpeg",
            Output::WebP => "webp",
        }
    }

    /// The MIME type served.
    pub fn mime(self) -> &'static str {
        match self {
            Output::Png => "image/png",
            Output::Jpeg(_) => "image/jpeg",
            Output::WebP => "image/webp",
        }
    }
}

/// A conversion, in its canonical form: a box the image is fitted into (never enlarged),
/// and an output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversion {
    /// Largest width, `None` for any.
    pub width: Option<u32>,
    /// Largest height, `None` for any.
    pub height: Option<u32>,
    /// The output format.
    pub output: Output,
}

/// Named sizes of `?display=`: the side of the square box.
pub const DISPLAYS: &[(&str, u32)] = &[
    ("thumbnail", 128),
    ("small", 320),
    ("medium", 640),
    ("large", 1280),
];

/// Default JPEG quality.
pub const DEFAULT_QUALITY: u8 = 85;

impl Conversion {
    /// Parses `display`, `width`, `height`, `format`, `quality` (`None` when none is
    /// given: the original is wanted). `source` is the stored format (the default output
    /// when it is PNG, JPEG or WebP; GIF converts to PNG). Sides above `max_side` are
    /// refused.
    pub fn parse(
        get: impl Fn(&str) -> Option<String>,
        source: ImageFormat,
        max_side: u32,
    ) -> CoreResult<Option<Conversion>> {
        let (display, width, height, format, quality) = (
            get("display"),
            get("width"),
            get("height"),
            get("format"),
            get("quality"),
        );
        if display.is_none()
            && width.is_none()
            && height.is_none()
            && format.is_none()
            && quality.is_none()
        {
            return Ok(None);
        }
        let side = |name: &str, v: Option<String>| -> CoreResult<Option<u32>> {
            let Some(v) = v else { return Ok(None) };
            match v.trim().parse::<u32>() {
                Ok(n) if (1..=max_side).contains(&n) => Ok(Some(n)),
                _ => Err(CoreError::BadRequest(format!(
                    "'{name}' must be a number of pixels from 1 to {max_side} \
                     ([image] max_output_side), not '{v}'"
                ))),
            }
        };
        let (mut width, mut height) = (side("width", width)?, side("height", height)?);
        if let Some(d) = display {
            if width.is_some() || height.is_some() {
                return Err(CoreError::BadRequest(
                    "give either 'display' or 'width'/'height', not both".into(),
                ));
            }
            let names: Vec<_> = DISPLAYS.iter().map(|(n, _)| *n).collect();
            let (_, s) = DISPLAYS.iter().find(|(n, _)| *n == d).ok_or_else(|| {
                CoreError::BadRequest(format!(
                    "'display' must be one of {}, not '{d}'",
                    names.join(", ")
                ))
            })?;
            let s = (*s).min(max_side);
            (width, height) = (Some(s), Some(s));
        }
        let quality = match quality {
            None => None,
            Some(q) => match q.trim().parse::<u8>() {
                Ok(n) if (1..=100).contains(&n) => Some(n),
                _ => {
                    return Err(CoreError::BadRequest(format!(
                        "'quality' must be from 1 to 100, not '{q}'"
                    )))
                }
            },
        };
        let output = match format.as_deref() {
            None => match source {
                ImageFormat::Jpeg => Output::Jpeg(quality.unwrap_or(DEFAULT_QUALITY)),
                ImageFormat::WebP => Output::WebP,
                _ => Output::Png,
            },
            Some("png") => Output::Png,
            Some("jpeg" | "jpg") => Output::Jpeg(quality.unwrap_or(DEFAULT_QUALITY)),
            Some("webp") => Output::WebP,
            Some(other) => {
                return Err(CoreError::BadRequest(format!(
                    "'format' must be png, jpeg or webp, not '{other}'"
                )))
            }
        };
        if quality.is_some() && !matches!(output, Output::Jpeg(_)) {
            return Err(CoreError::BadRequest(
                "'quality' applies to JPEG output only (PNG and WebP are lossless)".into(),
            ));
        }
        Ok(Some(Conversion {
            width,
            height,
            output,
        }))
    }

    /// The cache key: what the result depends on besides the source's bytes.
    pub fn key(&self) -> String {
        let side = |s: Option<u32>| s.map_or_else(|| "any".to_owned(), |n| n.to_string());
        let q = match self.output {
            Output::Jpeg(q) => format!("-q{q}"),
            _ => String::new(),
        };
        format!(
            "w{}-h{}-{}{q}",
            side(self.width),
            side(self.height),
            self.output.ext()
        )
    }

    /// The output's size for a `w` × `h` source: fitted into the box, never enlarged.
    pub fn fit(&self, w: u32, h: u32) -> (u32, u32) {
        let bw = self.width.unwrap_or(w).min(w);
        let bh = self.height.unwrap_or(h).min(h);
        if w == 0 || h == 0 {
            return (w, h);
        }
        // The largest scale keeping both sides in the box.
        let (sx, sy) = (f64::from(bw) / f64::from(w), f64::from(bh) / f64::from(h));
        let s = sx.min(sy).min(1.0);
        let side = |v: u32| ((f64::from(v) * s).round() as u32).max(1);
        (side(w), side(h))
    }

    /// The output's size (fitted to the original's) when it may be resized from the
    /// preview `header` describes: the preview is at least twice that size on both sides.
    pub fn from_preview(&self, header: &PreviewHeader) -> Option<(u32, u32)> {
        let ((pw, ph), (w, h)) = (header.size, header.original);
        let (ow, oh) = self.fit(w, h);
        (pw >= 2 * ow && ph >= 2 * oh).then_some((ow, oh))
    }

    /// Resizes and encodes `img` (metadata is not carried over: the encoders write pixels).
    pub fn apply(&self, img: &DynamicImage) -> CoreResult<Vec<u8>> {
        self.apply_sized(img, self.fit(img.width(), img.height()))
    }

    /// [`Conversion::apply`] to an output of `(w, h)`: the fit of the original, when `img`
    /// is its preview.
    pub fn apply_sized(&self, img: &DynamicImage, (w, h): (u32, u32)) -> CoreResult<Vec<u8>> {
        let resized = if (w, h) == (img.width(), img.height()) {
            img.clone()
        } else {
            downscale(img, w, h)
        };
        let mut out = Vec::new();
        let failed = |e: image::ImageError| CoreError::Internal(format!("encoding failed: {e}"));
        match self.output {
            Output::Png => resized
                .write_with_encoder(PngEncoder::new(&mut out))
                .map_err(failed)?,
            Output::Jpeg(q) => DynamicImage::ImageRgb8(resized.to_rgb8())
                .write_with_encoder(JpegEncoder::new_with_quality(&mut out, q))
                .map_err(failed)?,
            Output::WebP => {
                let rgba = if resized.color().has_alpha() {
                    DynamicImage::ImageRgba8(resized.to_rgba8())
                } else {
                    DynamicImage::ImageRgb8(resized.to_rgb8())
                };
                rgba.write_with_encoder(WebPEncoder::new_lossless(&mut out))
                    .map_err(failed)?
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use image::ImageEncoder;

    fn params<'a>(q: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            q.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn conversions_parse_to_one_canonical_key() {
        let a = Conversion::parse(params(&[("display", "small")]), ImageFormat::Png, 4096)
            .unwrap()
            .unwrap();
        let b = Conversion::parse(
            params(&[("width", "320"), ("height", "320"), ("format", "png")]),
            ImageFormat::Png,
            4096,
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.key(), b.key());
        assert_eq!(
            Conversion::parse(params(&[]), ImageFormat::Png, 4096).unwrap(),
            None
        );
        let j = Conversion::parse(params(&[("width", "10")]), ImageFormat::Jpeg, 4096)
            .unwrap()
            .unwrap();
        assert_eq!(j.key(), "w10-hany-jpeg-q85");
        for bad in [
            &[("display", "huge")][..],
            &[("width", "0")],
            &[("width", "5000")],
            &[("format", "svg")],
            &[("quality", "101")],
            &[("quality", "50"), ("format", "png")],
            &[("display", "small"), ("width", "3")],
        ] {
            assert!(
                Conversion::parse(params(bad), ImageFormat::Png, 4096).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn fit_keeps_the_aspect_and_never_enlarges() {
        let c = |w, h| Conversion {
            width: w,
            height: h,
            output: Output::Png,
        };
        assert_eq!(c(Some(100), Some(100)).fit(400, 200), (100, 50));
        assert_eq!(c(None, Some(100)).fit(400, 200), (200, 100));
        assert_eq!(c(Some(1000), Some(1000)).fit(40, 20), (40, 20));
        assert_eq!(c(Some(1), Some(1)).fit(1000, 1), (1, 1));
    }

    /// A `w` × `h` JPEG written by libjpeg-turbo: quadrants red, green / blue, white
    /// (their grey levels for `GRAY`), or four CMYK inks; progressive on request.
    fn turbo_jpeg(
        w: usize,
        h: usize,
        format: turbojpeg::PixelFormat,
        progressive: bool,
    ) -> Vec<u8> {
        let n = format.size();
        let colours: [[u8; 4]; 4] = match format {
            turbojpeg::PixelFormat::GRAY => [[76; 4], [150; 4], [29; 4], [255; 4]],
            turbojpeg::PixelFormat::CMYK => {
                [[255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 255, 0], [0, 0, 0, 0]]
            }
            _ => [
                [255, 0, 0, 0],
                [0, 255, 0, 0],
                [0, 0, 255, 0],
                [255, 255, 255, 0],
            ],
        };
        let mut pixels = Vec::with_capacity(w * h * n);
        for y in 0..h {
            for x in 0..w {
                let q = usize::from(x >= w / 2) + 2 * usize::from(y >= h / 2);
                pixels.extend_from_slice(&colours[q][..n]);
            }
        }
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_quality(90).unwrap();
        c.set_progressive(progressive).unwrap();
        c.set_subsamp(match format {
            turbojpeg::PixelFormat::GRAY => turbojpeg::Subsamp::Gray,
            _ => turbojpeg::Subsamp::Sub2x2,
        })
        .unwrap();
        let image = turbojpeg::Image {
            pixels: pixels.as_slice(),
            width: w,
            pitch: w * n,
            height: h,
            format,
        };
        c.compress_to_vec(image).unwrap()
    }

    #[test]
    fn a_preview_is_kept_only_for_large_8_bit_images_and_reads_back() {
        let rgb = DynamicImage::ImageRgb8(image::RgbImage::from_fn(3100, 40, |x, y| {
            image::Rgb([(x % 256) as u8, y as u8, 7])
        }));
        let file = preview(&rgb).unwrap();
        let (back, original) = read_preview(file.clone()).unwrap();
        assert_eq!(original, (3100, 40));
        assert_eq!((back.width(), back.height()), (1536, 20));
        assert_eq!(back, downscale(&rgb, 1536, 20));
        // Cut short, lengthened or of another kind: not a preview.
        assert!(read_preview(file[..file.len() - 1].to_vec()).is_none());
        assert!(read_preview([file.as_slice(), &[0]].concat()).is_none());
        assert!(read_preview(b"WPV2".iter().chain(&file[4..]).copied().collect()).is_none());
        // Too small to need one; 16-bit pixels are converted from the original.
        assert!(preview(&rgb.crop_imm(0, 0, 3071, 40)).is_none());
        assert!(preview(&DynamicImage::ImageRgb16(rgb.to_rgb16())).is_none());
    }

    fn thumbnail() -> Conversion {
        Conversion {
            width: Some(128),
            height: Some(128),
            output: Output::Png,
        }
    }

    #[test]
    fn large_jpegs_are_decoded_scaled_by_libjpeg_turbo() {
        // Baseline and progressive colour, and grey: 1/8 covers 128 × 96 of 1600 × 1200.
        for (format, progressive) in [
            (turbojpeg::PixelFormat::RGB, false),
            (turbojpeg::PixelFormat::RGB, true),
            (turbojpeg::PixelFormat::GRAY, false),
        ] {
            let bytes = turbo_jpeg(1600, 1200, format, progressive);
            let img = scaled_jpeg(&bytes, 1 << 30, &thumbnail());
            assert!(
                img.is_some(),
                "{format:?} progressive {progressive}: not scaled"
            );
            let img = img.unwrap();
            assert_eq!((img.width(), img.height()), (200, 150), "{format:?}");
            let grey = format == turbojpeg::PixelFormat::GRAY;
            assert_eq!(img.color().has_color(), !grey, "{format:?}");
            let rgb = img.to_rgb8();
            let near = |x, y, q: [u8; 3]| {
                let p = rgb.get_pixel(x, y).0;
                assert!(
                    p.iter().zip(q).all(|(a, b)| a.abs_diff(b) < 40),
                    "{format:?} ({x}, {y}): {p:?} not {q:?}"
                );
            };
            if grey {
                near(20, 20, [76; 3]);
                near(180, 130, [255; 3]);
            } else {
                near(20, 20, [255, 0, 0]);
                near(180, 20, [0, 255, 0]);
                near(20, 130, [0, 0, 255]);
                near(180, 130, [255, 255, 255]);
            }
            // Through decode_for and the conversion: the same thumbnail.
            let (img, f) =
                decode_for(&bytes, Some(ImageFormat::Jpeg), 1 << 30, &thumbnail()).unwrap();
            assert_eq!(
                (img.width(), img.height(), f),
                (200, 150, ImageFormat::Jpeg)
            );
            let png = thumbnail().apply(&img).unwrap();
            let t = image::load_from_memory(&png).unwrap();
            assert_eq!((t.width(), t.height()), (128, 96));
        }
        // The EXIF orientation (6: turn 90° clockwise), read from the header.
        // TIFF header, one IFD entry: Orientation (0x0112), SHORT, 1 value, 6.
        let mut exif = b"II*\0".to_vec();
        for (v, n) in [
            (8u32, 4),
            (1, 2),
            (0x0112, 2),
            (3, 2),
            (1, 4),
            (6, 4),
            (0, 4),
        ] {
            exif.extend_from_slice(&v.to_le_bytes()[..n]);
        }
        let mut rotated = Vec::new();
        let mut enc = JpegEncoder::new_with_quality(&mut rotated, 90);
        enc.set_exif_metadata(exif).unwrap();
        let rgb = image::RgbImage::from_fn(1600, 1200, |x, _| {
            image::Rgb([if x < 800 { 255 } else { 0 }, 0, 0])
        });
        enc.write_image(rgb.as_raw(), 1600, 1200, image::ExtendedColorType::Rgb8)
            .unwrap();
        let img = scaled_jpeg(&rotated, 1 << 30, &thumbnail())
            .unwrap()
            .to_rgb8();
        assert_eq!(img.dimensions(), (150, 200));
        // The left half (red) is now on top.
        assert!(img.get_pixel(75, 20).0[0] > 200 && img.get_pixel(75, 180).0[0] < 50);
        // The smallest factor covering the box: 3/8 of 1600 for 512 (2/8 would be 400).
        let bytes = turbo_jpeg(1600, 1200, turbojpeg::PixelFormat::RGB, false);
        let c = Conversion {
            width: Some(512),
            height: Some(512),
            output: Output::Png,
        };
        let img = scaled_jpeg(&bytes, 1 << 30, &c).unwrap();
        assert_eq!((img.width(), img.height()), (600, 450));
    }

    #[test]
    fn other_jpegs_are_decoded_whole_with_the_same_checks() {
        // CMYK: not scaled, decoded whole (to colour) by the `image` crate.
        let cmyk = turbo_jpeg(1600, 1200, turbojpeg::PixelFormat::CMYK, false);
        assert!(scaled_jpeg(&cmyk, 1 << 30, &thumbnail()).is_none());
        let (img, _) = decode_for(&cmyk, Some(ImageFormat::Jpeg), 1 << 30, &thumbnail()).unwrap();
        assert_eq!((img.width(), img.height()), (1600, 1200));
        // A box more than half the image: decoded whole.
        let small = turbo_jpeg(200, 150, turbojpeg::PixelFormat::RGB, false);
        assert!(scaled_jpeg(&small, 1 << 30, &thumbnail()).is_none());
        // Above the pixel limit: refused from the header, with decode's message.
        let bytes = turbo_jpeg(1600, 1200, turbojpeg::PixelFormat::RGB, false);
        let e = decode_for(&bytes, None, 1_000_000, &thumbnail())
            .unwrap_err()
            .to_string();
        assert!(e.contains("above the limit"), "{e}");
        // Truncated: refused (no end marker), before any decoder runs.
        let e = decode_for(&bytes[..bytes.len() / 2], None, 1 << 30, &thumbnail())
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");
        // A progressive file cut after its first scans is truncated too; bytes after the
        // end marker are not.
        let progressive = turbo_jpeg(1600, 1200, turbojpeg::PixelFormat::RGB, true);
        let e = decode_for(
            &progressive[..progressive.len() * 3 / 4],
            None,
            1 << 30,
            &thumbnail(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("truncated"), "{e}");
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(b"trailing bytes \xff\x00");
        assert!(decode_for(&trailing, None, 1 << 30, &thumbnail()).is_ok());
        // Corrupt scan data with its end marker kept: libjpeg-turbo fails, the whole
        // decode answers (the `image` crate decodes what it can or refuses; never a panic).
        let mut corrupt = bytes.clone();
        let mid = corrupt.len() / 2;
        for b in &mut corrupt[mid..mid + 64] {
            *b = 0xFF;
        }
        assert!(scaled_jpeg(&corrupt, 1 << 30, &thumbnail()).is_none());
        match decode_for(&corrupt, None, 1 << 30, &thumbnail()) {
            Ok((img, _)) => assert_eq!((img.width(), img.height()), (1600, 1200)),
            Err(e) => assert!(e.to_string().contains("not a readable jpeg"), "{e}"),
        }
    }

    #[test]
    fn svg_and_other_types_are_refused() {
        assert!(declared_format(Some("image/svg+xml")).is_err());
        assert!(declared_format(Some("text/html")).is_err());
        assert_eq!(
            declared_format(Some("image/png; q=1")).unwrap(),
            Some(ImageFormat::Png)
        );
        let svg = b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>";
        let e = check(svg, None, 100, 1).unwrap_err().to_string();
        assert!(e.contains("SVG"), "{e}");
    }
}
