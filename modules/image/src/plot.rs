//! Plots of Data Arrays, drawn in Rust (plotters) as PNG: line plots of one or several
//! series (min/max decimated per pixel column, so an array of any length draws every
//! peak), with x from the index, a step and a start (or a sample rate) or from a second
//! array (`x_array`, unevenly spaced x: pixel columns are ranges of x), linear or log
//! axes; heatmaps of 2-D arrays (a spectrogram: axis 0 across, axis 1 up, max-pooled per
//! pixel). The array is read slab by slab: memory stays bounded by the picture, not the
//! array. Served by `GET /api/v1/<array>/plot` and saved by `POST …/saveAsImage`
//! ([`crate::http`]).

use std::collections::HashMap;
use std::sync::OnceLock;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use wendelin_core::{CoreError, CoreResult};
use wendelin_data_array::region::Dim;
use wendelin_data_array::{decimate, DataArray, Region};

/// Font family the plots' text is drawn with (registered from `[image] plot_font`).
const FAMILY: &str = "sans-serif";
/// Bytes read from the array at once for a heatmap.
const SLAB_BYTES: usize = 4 << 20;
/// Most series one line plot draws.
pub const MAX_SERIES: usize = 16;
/// Smallest picture side.
const MIN_SIDE: u32 = 64;
/// Series colours, in order (matplotlib's first ones, so plots look familiar).
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// What to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One or several series against x.
    Line,
    /// A 2-D array as colours.
    Heatmap,
}

/// A plot's parameters, from a query string or a JSON object of strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    /// Line or heatmap.
    pub kind: Kind,
    /// Picture width, pixels.
    pub width: u32,
    /// Picture height, pixels.
    pub height: u32,
    /// Caption.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Logarithmic x axis (points at x ≤ 0 are left out).
    pub log_x: bool,
    /// Logarithmic y axis (values ≤ 0 are left out); for a heatmap, colours by log10.
    pub log_y: bool,
    /// x of element i is `x_start + i × x_step`.
    pub x_start: f64,
    /// See `x_start`.
    pub x_step: f64,
    /// First element (axis 0) drawn.
    pub start: u64,
    /// One past the last element drawn (default: the array's length).
    pub stop: Option<u64>,
    /// For a 2-D line plot, the columns (indices along axis 1) drawn as series.
    pub columns: Vec<u64>,
    /// A 1-D Data Array (its path, e.g. `data_array_module/7`) holding the x of each
    /// element, instead of `x_start` and `x_step`: x need not be evenly spaced.
    pub x_array: Option<String>,
}

impl Plot {
    /// Parses the parameters; `max_side` bounds width and height.
    pub fn parse(get: impl Fn(&str) -> Option<String>, max_side: u32) -> CoreResult<Plot> {
        let bad = |m: String| CoreError::BadRequest(m);
        let side = |key: &str, default: u32| -> CoreResult<u32> {
            match get(key) {
                None => Ok(default),
                Some(v) => match v.parse::<u32>() {
                    Ok(n) if (MIN_SIDE..=max_side).contains(&n) => Ok(n),
                    _ => Err(bad(format!(
                        "{key} must be a whole number of pixels from {MIN_SIDE} to {max_side} ([image] max_output_side), not '{v}'"
                    ))),
                },
            }
        };
        let flag = |key: &str| -> CoreResult<bool> {
            match get(key).as_deref() {
                None | Some("" | "0" | "false" | "no") => Ok(false),
                Some("1" | "true" | "yes") => Ok(true),
                Some(v) => Err(bad(format!("{key} must be true or false, not '{v}'"))),
            }
        };
        let number = |key: &str, default: f64| -> CoreResult<f64> {
            match get(key) {
                None => Ok(default),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| bad(format!("{key} must be a finite number, not '{v}'"))),
            }
        };
        let index = |key: &str| -> CoreResult<Option<u64>> {
            get(key)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| bad(format!("{key} must be an index (0, 1, …), not '{v}'")))
                })
                .transpose()
        };
        let kind = match get("kind").as_deref() {
            None | Some("line") => Kind::Line,
            Some("heatmap") => Kind::Heatmap,
            Some(v) => return Err(bad(format!("kind must be line or heatmap, not '{v}'"))),
        };
        let mut x_step = number("x_step", 1.0)?;
        if get("sample_rate").is_some() {
            let rate = number("sample_rate", 1.0)?;
            if rate <= 0.0 {
                return Err(bad(format!("sample_rate must be positive, not '{rate}'")));
            }
            x_step = 1.0 / rate;
        }
        if x_step <= 0.0 {
            return Err(bad(format!("x_step must be positive, not '{x_step}'")));
        }
        let x_array = match get("x_array") {
            None => None,
            Some(v) if v.trim().is_empty() => None,
            Some(v) => {
                if ["x_start", "x_step", "sample_rate"]
                    .iter()
                    .any(|k| get(k).is_some())
                {
                    return Err(bad(
                        "give x either as x_array or as x_start with x_step or sample_rate, not both"
                            .into(),
                    ));
                }
                let path = v.trim().trim_start_matches('/').to_owned();
                if path.len() > 200 || path.split('/').any(|s| s.is_empty() || s == "..") {
                    return Err(bad(format!(
                        "x_array must be the path of a Data Array (data_array_module/7), not '{v}'"
                    )));
                }
                Some(path)
            }
        };
        let columns = match get("columns") {
            None => Vec::new(),
            Some(v) => v
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    s.trim().parse::<u64>().map_err(|_| {
                        bad(format!(
                            "columns must be indices separated by commas, not '{v}'"
                        ))
                    })
                })
                .collect::<CoreResult<Vec<u64>>>()?,
        };
        if columns.len() > MAX_SERIES {
            return Err(bad(format!("at most {MAX_SERIES} columns are drawn")));
        }
        let text = |key: &str| -> CoreResult<String> {
            let v = get(key).unwrap_or_default();
            if v.chars().count() > 200 {
                return Err(bad(format!("{key} is longer than 200 characters")));
            }
            Ok(v)
        };
        Ok(Plot {
            kind,
            width: side("width", 800)?,
            height: side("height", 400)?,
            title: text("title")?,
            x_label: text("x_label")?,
            y_label: text("y_label")?,
            log_x: flag("log_x")?,
            log_y: flag("log_y")?,
            x_start: number("x_start", 0.0)?,
            x_step,
            start: index("start")?.unwrap_or(0),
            stop: index("stop")?,
            columns,
            x_array,
        })
    }

    /// The parameters as a map (what `saveAsImage` records on the Image).
    pub fn describe(&self) -> String {
        format!(
            "{} plot {}×{}{}{}",
            if self.kind == Kind::Line {
                "line"
            } else {
                "heatmap"
            },
            self.width,
            self.height,
            if self.log_x { ", log x" } else { "" },
            if self.log_y { ", log y" } else { "" },
        )
    }
}

/// Registers the font the first time a plot is drawn; the error says what to install.
fn font(path: &str) -> CoreResult<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = std::fs::read(path).map_err(|e| {
            format!(
                "plots need a TrueType font at {path} ([image] plot_font): {e}; install fonts-dejavu-core or point plot_font at another .ttf"
            )
        })?;
        // Registered once per process, for its lifetime: plotters keeps a 'static slice.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
            .map_err(|_| format!("{path} is not a TrueType font ([image] plot_font)"))
    })
    .clone()
    .map_err(CoreError::Internal)
}

fn drawing<E: std::fmt::Debug>(e: E) -> CoreError {
    CoreError::Internal(format!("drawing the plot failed: {e:?}"))
}

/// Draws `plot` of `array` as a PNG; `x` is the array `plot.x_array` names, opened by
/// the caller (who checked that the user may read it).
pub fn render(
    array: &DataArray,
    x: Option<&DataArray>,
    plot: &Plot,
    font_path: &str,
) -> CoreResult<Vec<u8>> {
    font(font_path)?;
    let shape = array.shape().to_vec();
    if shape.is_empty() || shape.len() > 2 {
        return Err(CoreError::BadRequest(format!(
            "plots draw 1-D and 2-D arrays; this one has {} dimensions",
            shape.len()
        )));
    }
    if array.dtype().is_complex() {
        return Err(CoreError::BadRequest(
            "complex arrays are not plotted: store their magnitude".into(),
        ));
    }
    let (w, h) = (plot.width, plot.height);
    let mut rgb = vec![255u8; (w as usize) * (h as usize) * 3];
    {
        let root = BitMapBackend::with_buffer_and_format(&mut rgb, (w, h))
            .map_err(drawing)?
            .into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        match plot.kind {
            Kind::Line => line(&root, array, x, &shape, plot)?,
            Kind::Heatmap if x.is_some() => {
                return Err(CoreError::BadRequest(
                    "x_array is for line plots; a heatmap's x is x_start and x_step".into(),
                ))
            }
            Kind::Heatmap => heatmap(&root, array, &shape, plot)?,
        }
        root.present().map_err(drawing)?;
    }
    let picture = image::RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| CoreError::Internal("plot buffer of the wrong size".into()))?;
    let mut png = std::io::Cursor::new(Vec::new());
    picture
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| CoreError::Internal(format!("encoding the plot failed: {e}")))?;
    Ok(png.into_inner())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// One decimated series: (x, min, max) per pixel column.
type Series = Vec<(f64, f64, f64)>;

fn line(
    root: &Area<'_>,
    array: &DataArray,
    x: Option<&DataArray>,
    shape: &[u64],
    plot: &Plot,
) -> CoreResult<()> {
    let columns: Vec<Option<u64>> = if shape.len() == 1 {
        if !plot.columns.is_empty() {
            return Err(CoreError::BadRequest(
                "columns select series of a 2-D array; this one is 1-D".into(),
            ));
        }
        vec![None]
    } else if plot.columns.is_empty() {
        vec![Some(0)]
    } else {
        plot.columns.iter().map(|c| Some(*c)).collect()
    };
    let bins = plot.width as usize;
    let mut all: Vec<(String, Series)> = Vec::new();
    let xs = match x {
        Some(x) => Some(XAxis::of(x, shape[0], plot, bins)?),
        None => None,
    };
    for column in &columns {
        let at: Vec<u64> = column.iter().copied().collect();
        let series: Series = match &xs {
            Some(xs) => xs.series(array, &at)?,
            None => {
                let d = decimate(array, plot.start, plot.stop, bins, &at)
                    .map_err(|e| CoreError::BadRequest(e.to_string()))?;
                #[allow(clippy::cast_precision_loss)]
                d.x.iter()
                    .zip(d.min.iter().zip(&d.max))
                    .map(|(&i, (&lo, &hi))| (plot.x_start + i as f64 * plot.x_step, lo, hi))
                    .collect()
            }
        };
        let series: Series = series
            .into_iter()
            .filter(|(x, lo, hi)| lo.is_finite() && hi.is_finite() && (!plot.log_x || *x > 0.0))
            .map(|(x, lo, hi)| {
                if plot.log_y {
                    // Values ≤ 0 have no place on a log axis: the bin keeps its positive part.
                    (x, if lo > 0.0 { lo } else { hi }, hi)
                } else {
                    (x, lo, hi)
                }
            })
            .filter(|(_, lo, hi)| !plot.log_y || (*lo > 0.0 && *hi > 0.0))
            .collect();
        let name = match column {
            Some(c) if columns.len() > 1 => format!("column {c}"),
            _ => String::new(),
        };
        all.push((name, series));
    }
    let points = || all.iter().flat_map(|(_, s)| s.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, lo, hi) in points() {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(lo);
        y1 = y1.max(hi);
    }
    if !x0.is_finite() {
        // Nothing to draw (an empty array or no positive value on a log axis): the frame.
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        if plot.log_x {
            (x0, x1) = (1.0, 10.0);
        }
        if plot.log_y {
            (y0, y1) = (1.0, 10.0);
        }
    }
    let (x1, y1) = (widen(x0, x1, plot.log_x), widen(y0, y1, plot.log_y));
    match (plot.log_x, plot.log_y) {
        (false, false) => chart(root, plot, x0..x1, y0..y1, &all),
        (true, false) => chart(root, plot, (x0..x1).log_scale(), y0..y1, &all),
        (false, true) => chart(root, plot, x0..x1, (y0..y1).log_scale(), &all),
        (true, true) => chart(root, plot, (x0..x1).log_scale(), (y0..y1).log_scale(), &all),
    }
}

/// Elements of the x and y arrays read at once when x comes from an array (two slabs of
/// 2 MiB of float64).
const XY_STEP: u64 = 1 << 18;

/// x taken from a second array (`x_array`): pixel columns are ranges of x, not of the
/// index, so unevenly spaced x (frequencies of a log sweep, timestamps) land where they
/// belong. Both arrays are read in step, [`XY_STEP`] elements at a time.
struct XAxis<'a> {
    array: &'a DataArray,
    start: u64,
    stop: u64,
    /// Smallest and largest x drawn (finite; positive on a log axis); NaN when none.
    lo: f64,
    hi: f64,
    bins: usize,
    log: bool,
}

fn array_error(e: wendelin_data_array::ArrayError) -> CoreError {
    CoreError::BadRequest(e.to_string())
}

/// The region `start..stop` of the first axis at the indices `at` of the others.
fn series_region(start: u64, stop: u64, at: &[u64], shape: &[u64]) -> Region {
    let mut dims = vec![Dim {
        start,
        stop,
        step: 1,
        keep: true,
    }];
    for axis in 1..shape.len() {
        let i = at.get(axis - 1).copied().unwrap_or(0);
        dims.push(Dim {
            start: i,
            stop: i + 1,
            step: 1,
            keep: false,
        });
    }
    Region { dims }
}

impl<'a> XAxis<'a> {
    /// Checks `x` against the plotted array's length `len` and finds its range (one pass).
    fn of(x: &'a DataArray, len: u64, plot: &Plot, bins: usize) -> CoreResult<XAxis<'a>> {
        let shape = x.shape();
        if shape.len() != 1 || x.dtype().is_complex() {
            return Err(CoreError::BadRequest(format!(
                "x_array must be a 1-D real array; {} has shape {shape:?} and dtype {}",
                plot.x_array.as_deref().unwrap_or(""),
                x.dtype().name()
            )));
        }
        if shape[0] != len {
            return Err(CoreError::BadRequest(format!(
                "x_array {} has {} elements but the array plotted has {len} along its first axis",
                plot.x_array.as_deref().unwrap_or(""),
                shape[0]
            )));
        }
        let stop = plot.stop.unwrap_or(len).min(len);
        if plot.start > stop {
            return Err(CoreError::BadRequest(format!(
                "start {} is past stop {stop}",
                plot.start
            )));
        }
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        let dtype = x.dtype();
        let mut values = Vec::new();
        x.read(
            &series_region(plot.start, stop, &[], shape),
            SLAB_BYTES,
            |bytes| {
                values.clear();
                dtype.extend_f64(bytes, &mut values);
                for &v in &values {
                    if v.is_finite() && (!plot.log_x || v > 0.0) {
                        lo = lo.min(v);
                        hi = hi.max(v);
                    }
                }
                Ok(())
            },
        )
        .map_err(array_error)?;
        if lo > hi {
            (lo, hi) = (f64::NAN, f64::NAN);
        }
        Ok(XAxis {
            array: x,
            start: plot.start,
            stop,
            lo,
            hi,
            bins: bins.max(1),
            log: plot.log_x,
        })
    }

    /// The pixel column of `x`, if it is drawn.
    fn bin(&self, x: f64) -> Option<usize> {
        if !x.is_finite() || (self.log && x <= 0.0) || !(self.lo <= x && x <= self.hi) {
            return None;
        }
        let t = if self.hi <= self.lo {
            0.0
        } else if self.log {
            (x.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (x - self.lo) / (self.hi - self.lo)
        };
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        Some(((t * self.bins as f64) as usize).min(self.bins - 1))
    }

    /// The series `y[start..stop, at…]` decimated per pixel column of x: for each column
    /// holding a point, the middle of its points' x and their smallest and largest y.
    fn series(&self, y: &DataArray, at: &[u64]) -> CoreResult<Series> {
        for (axis, (&i, &len)) in at.iter().zip(y.shape().iter().skip(1)).enumerate() {
            if i >= len {
                return Err(CoreError::BadRequest(format!(
                    "at: index {i} is outside axis {} of length {len}",
                    axis + 1
                )));
            }
        }
        let n = self.bins;
        let (mut xlo, mut xhi) = (vec![f64::INFINITY; n], vec![f64::NEG_INFINITY; n]);
        let (mut ylo, mut yhi) = (vec![f64::INFINITY; n], vec![f64::NEG_INFINITY; n]);
        if self.lo.is_nan() {
            return Ok(Vec::new());
        }
        let (xt, yt) = (self.array.dtype(), y.dtype());
        let (mut xv, mut yv) = (Vec::new(), Vec::new());
        let mut a = self.start;
        while a < self.stop {
            let b = self.stop.min(a.saturating_add(XY_STEP));
            xv.clear();
            yv.clear();
            self.array
                .read(
                    &series_region(a, b, &[], self.array.shape()),
                    SLAB_BYTES,
                    |bytes| {
                        xt.extend_f64(bytes, &mut xv);
                        Ok(())
                    },
                )
                .map_err(array_error)?;
            y.read(&series_region(a, b, at, y.shape()), SLAB_BYTES, |bytes| {
                yt.extend_f64(bytes, &mut yv);
                Ok(())
            })
            .map_err(array_error)?;
            for (&x, &v) in xv.iter().zip(&yv) {
                let Some(c) = self.bin(x) else { continue };
                if v.is_nan() {
                    continue;
                }
                xlo[c] = xlo[c].min(x);
                xhi[c] = xhi[c].max(x);
                ylo[c] = ylo[c].min(v);
                yhi[c] = yhi[c].max(v);
            }
            a = b;
        }
        Ok((0..n)
            .filter(|&c| xlo[c] <= xhi[c])
            .map(|c| ((xlo[c] + xhi[c]) / 2.0, ylo[c], yhi[c]))
            .collect())
    }
}

/// A chart's frame: margins, room for the axes' labels, the caption.
fn framed<'a, 'b>(root: &'a Area<'b>, plot: &Plot) -> ChartBuilder<'a, 'static, BitMapBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder
        .margin(10)
        .x_label_area_size(if plot.x_label.is_empty() { 24 } else { 40 })
        .y_label_area_size(if plot.y_label.is_empty() { 56 } else { 72 });
    if !plot.title.is_empty() {
        builder.caption(&plot.title, (FAMILY, 18));
    }
    builder
}

/// An axis needs a range: a single value gets one around it.
fn widen(lo: f64, hi: f64, log: bool) -> f64 {
    if hi > lo {
        hi
    } else if log {
        lo * 10.0
    } else {
        lo + 1.0
    }
}

fn chart<X, Y>(root: &Area<'_>, plot: &Plot, x: X, y: Y, all: &[(String, Series)]) -> CoreResult<()>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut builder = framed(root, plot);
    let mut chart = builder.build_cartesian_2d(x, y).map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc(plot.x_label.as_str())
        .y_desc(plot.y_label.as_str())
        .label_style((FAMILY, 12))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(drawing)?;
    for (n, (name, series)) in all.iter().enumerate() {
        let colour = COLOURS[n % COLOURS.len()];
        // Down and up through each pixel column's min and max: every peak is drawn, and
        // a series at full resolution (min = max) is a plain line.
        let path = series
            .iter()
            .flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)])
            .collect::<Vec<_>>();
        let drawn = chart
            .draw_series(LineSeries::new(path, colour.stroke_width(1)))
            .map_err(drawing)?;
        if !name.is_empty() {
            drawn
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
        }
    }
    if all.len() > 1 {
        chart
            .configure_series_labels()
            .label_font((FAMILY, 12))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(drawing)?;
    }
    Ok(())
}

fn heatmap(root: &Area<'_>, array: &DataArray, shape: &[u64], plot: &Plot) -> CoreResult<()> {
    if shape.len() != 2 {
        return Err(CoreError::BadRequest(
            "a heatmap draws a 2-D array (axis 0 across, axis 1 up)".into(),
        ));
    }
    let (rows, cols) = (shape[0], shape[1]);
    let stop = plot.stop.unwrap_or(rows).min(rows);
    if plot.start > stop {
        return Err(CoreError::BadRequest(format!(
            "start {} is past stop {stop}",
            plot.start
        )));
    }
    let mut builder = framed(root, plot);
    #[allow(clippy::cast_precision_loss)]
    let (x0, x1) = (
        plot.x_start + plot.start as f64 * plot.x_step,
        plot.x_start + stop.max(plot.start + 1) as f64 * plot.x_step,
    );
    #[allow(clippy::cast_precision_loss)]
    let mut chart = builder
        .build_cartesian_2d(x0..x1, 0.0..(cols.max(1) as f64))
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(plot.x_label.as_str())
        .y_desc(plot.y_label.as_str())
        .label_style((FAMILY, 12))
        .draw()
        .map_err(drawing)?;
    let area = chart.plotting_area();
    let (pw, ph) = area.dim_in_pixel();
    let grid = pool(
        array,
        plot,
        plot.start,
        stop,
        cols,
        pw as usize,
        ph as usize,
    )?;
    let (gw, gh) = (grid.width, grid.height);
    let (lo, hi) = grid.range();
    let span = if hi > lo { hi - lo } else { 1.0 };
    let (left, top) = area.get_base_pixel();
    let backend = root;
    for px in 0..pw as usize {
        let gx = px * gw / (pw as usize).max(1);
        for py in 0..ph as usize {
            // Row 0 of the picture is the highest column index.
            let gy = (ph as usize - 1 - py) * gh / (ph as usize).max(1);
            let v = grid.at(gx, gy);
            let colour = if v.is_finite() {
                viridis((v - lo) / span)
            } else {
                RGBColor(255, 255, 255)
            };
            #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)]
            backend
                .draw_pixel((left + px as i32, top + py as i32), &colour)
                .map_err(drawing)?;
        }
    }
    Ok(())
}

/// Max-pooled values: `width` × `height` cells over rows × columns.
struct Grid {
    width: usize,
    height: usize,
    cells: Vec<f64>,
}

impl Grid {
    fn at(&self, x: usize, y: usize) -> f64 {
        self.cells
            .get(
                x.min(self.width.saturating_sub(1)) * self.height
                    + y.min(self.height.saturating_sub(1)),
            )
            .copied()
            .unwrap_or(f64::NAN)
    }
    fn range(&self) -> (f64, f64) {
        self.cells
            .iter()
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            })
    }
}

/// Reads rows `start..stop` slab by slab and keeps the maximum of each cell (log10 with
/// `log_y`): memory is the grid and one slab, whatever the array's size.
#[allow(clippy::too_many_arguments)]
fn pool(
    array: &DataArray,
    plot: &Plot,
    start: u64,
    stop: u64,
    cols: u64,
    width: usize,
    height: usize,
) -> CoreResult<Grid> {
    let rows = stop - start;
    let gw = usize::try_from(rows)
        .unwrap_or(usize::MAX)
        .clamp(1, width.max(1));
    let gh = usize::try_from(cols)
        .unwrap_or(usize::MAX)
        .clamp(1, height.max(1));
    let mut grid = Grid {
        width: gw,
        height: gh,
        cells: vec![f64::NAN; gw * gh],
    };
    if rows == 0 || cols == 0 {
        return Ok(grid);
    }
    let region = Region::parse(&format!("{start}:{stop},:"), array.shape())
        .map_err(|e| CoreError::BadRequest(e.to_string()))?;
    let dtype = array.dtype();
    let ncols = usize::try_from(cols).unwrap_or(usize::MAX);
    let mut values = Vec::new();
    let mut row = 0u64;
    let mut carry: Vec<f64> = Vec::new();
    array
        .read(&region, SLAB_BYTES, |bytes| {
            values.clear();
            values.append(&mut carry);
            dtype.extend_f64(bytes, &mut values);
            let whole = values.len() / ncols * ncols;
            for r in values[..whole].chunks(ncols) {
                #[allow(clippy::cast_possible_truncation)]
                let gx = ((u128::from(row) * gw as u128) / u128::from(rows)) as usize;
                for (c, &v) in r.iter().enumerate() {
                    let v = if plot.log_y {
                        if v > 0.0 {
                            v.log10()
                        } else {
                            continue;
                        }
                    } else {
                        v
                    };
                    let gy = c * gh / ncols;
                    let cell = &mut grid.cells[gx * gh + gy];
                    // NaN (empty so far) or smaller: the cell takes v.
                    if cell.is_nan() || *cell < v {
                        *cell = v;
                    }
                }
                row += 1;
            }
            carry.extend_from_slice(&values[whole..]);
            Ok(())
        })
        .map_err(|e| CoreError::BadRequest(e.to_string()))?;
    Ok(grid)
}

/// Viridis, by linear interpolation between a few of its stops; `t` in 0..=1.
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let mix = |p: f64, q: f64| (p + (q - p) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The query parameters a plot reads, for [`Plot::parse`].
pub fn from_query(query: &HashMap<String, String>, max_side: u32) -> CoreResult<Plot> {
    Plot::parse(|k| query.get(k).cloned(), max_side)
}
