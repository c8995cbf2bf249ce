//! Data Arrays: persistent N-dimensional arrays bigger than RAM, stored as Zarr v3 arrays
//! (written and read with `zarrs`) so that zarr-python, dask and xarray read them directly.
//!
//! A Data Array document owns one Zarr array in `<data_dir>/arrays/<uid>/` (for an
//! imported array, a symbolic link made by `wendelin array import` to the directory the
//! operator named; `zarr_path` only records it). The Zarr metadata
//! (`zarr.json`) is the truth about shape; the document's `dtype`, `shape`, `chunk_shape`,
//! `codec`, `fill_value` and `dimension_names` properties are the creation parameters, and
//! the array is created from them on first use. See [`store`] for the atomicity scheme.

pub mod decimate;
pub mod dtype;
pub mod error;
pub mod http;
pub mod npy;
pub mod reduce;
pub mod region;
pub mod store;

use std::path::PathBuf;

use serde_json::{json, Map, Value};
use wendelin_core::{
    Call, CoreError, CoreResult, Document, Host, MethodOutput, Module, NewDocument, Permission,
    Portal, PortalType, PropertyDef, PropertyType, Protected, User,
};

/// The module's settings: the `[data_array]` section of `wendelin.toml` (see
/// [`http::DataArrayModule`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArraySettings {
    /// Bytes a reduction or a streamed read may hold in decoded chunks
    /// (`[data_array] memory_budget`).
    pub memory_budget: u64,
}

impl Default for ArraySettings {
    fn default() -> Self {
        ArraySettings {
            memory_budget: 256 * 1024 * 1024,
        }
    }
}

static SETTINGS: std::sync::OnceLock<ArraySettings> = std::sync::OnceLock::new();

/// Sets the module's settings; the first call wins (call it before serving).
pub fn configure(settings: ArraySettings) {
    let _ = SETTINGS.set(settings);
}

/// The settings in effect.
pub fn settings() -> ArraySettings {
    SETTINGS.get().copied().unwrap_or_default()
}

pub use decimate::{decimate, Decimation};
pub use dtype::Dtype;
pub use error::{ArrayError, ArrayResult};
pub use reduce::Op;
pub use region::Region;
pub use store::{
    default_chunk_shape, sync_paths, Codec, CreateOptions, DataArray, MAX_CHUNK_BYTES,
};

/// The portal type this module stores arrays for.
pub const PORTAL_TYPE: &str = "Data Array";
/// The module folder holding Data Arrays.
pub const FOLDER: &str = "data_array_module";
/// Default memory budget of a reduction or a streamed read, in bytes.
pub const DEFAULT_BUDGET: u64 = 256 << 20;
/// Largest slice returned as JSON by `getArraySlice`, in elements.
pub const MAX_JSON_ELEMENTS: u64 = 1_000_000;

/// The data array module: `data_array_module` holding Data Array documents.
pub fn module() -> Module {
    Module::new("data_array")
        // `/api/v1/<array>/append|write|read|reduce|decimate|zarr/…`.
        .reserve_ids(&["append", "write", "read", "reduce", "decimate", "zarr"])
        .folder(FOLDER, "Data Arrays", &[PORTAL_TYPE])
        .portal_type(
            PortalType::new(PORTAL_TYPE, FOLDER)
                .describe("A persistent N-dimensional array, bigger than RAM, stored as Zarr v3")
                .on_delete(purge)
                // A shape, chunking or codec that makes no storable array is refused when
                // the document is created or edited, not at its first use.
                .validate(|props| {
                    store::check_options(&options_from(props)?)?;
                    Ok(())
                })
                .property(
                    PropertyDef::new("dtype", PropertyType::String)
                        .default_value(Value::from("float64"))
                        .indexed()
                        .describe("element type: bool, int8..int64, uint8..uint64, float32, float64, complex64, complex128"),
                )
                .property(
                    PropertyDef::new("shape", PropertyType::Json)
                        .default_value(json!([0]))
                        .describe("shape at creation; the current shape is the Zarr metadata's (getShape)"),
                )
                .property(PropertyDef::new("chunk_shape", PropertyType::Json).describe("chunk shape; default about 1 MiB per chunk"))
                .property(PropertyDef::new("shard_shape", PropertyType::Json).describe("optional: group chunks into shards of this shape (a multiple of chunk_shape), one file per shard"))
                .property(PropertyDef::new("codec", PropertyType::String).describe("chunk compression: none (default) or zstd"))
                .property(PropertyDef::new("fill_value", PropertyType::Json).describe("Zarr v3 fill value; default 0"))
                .property(PropertyDef::new("dimension_names", PropertyType::Json))
                .property(PropertyDef::new("zarr_path", PropertyType::String).describe("where an imported Zarr array came from (informational: the server reads <data_dir>/arrays/<uid>, a link for imports)"))
                .property(PropertyDef::new("source", PropertyType::Relation).describe("the Data Stream it was computed from"))
                .workflow("validation_workflow"),
        )
        .script("DataArray_getShape", |call: &mut Call<'_>| {
            let dir = ensure(call.host, call.context)?;
            let shape = DataArray::with_reader(&dir, |a| Ok(a.shape().to_vec()))?;
            Ok(MethodOutput::Json(json!(shape)))
        })
        .script("DataArray_getDtype", |call: &mut Call<'_>| {
            let dir = ensure(call.host, call.context)?;
            let dtype = DataArray::with_reader(&dir, |a| Ok(a.dtype()))?;
            Ok(MethodOutput::Json(json!(dtype.name())))
        })
        .script("DataArray_getChunkShape", |call: &mut Call<'_>| {
            let dir = ensure(call.host, call.context)?;
            let chunk = DataArray::with_reader(&dir, |a| a.chunk_shape())?;
            Ok(MethodOutput::Json(json!(chunk)))
        })
        .script("DataArray_getArraySlice", |call: &mut Call<'_>| {
            let dir = ensure(call.host, call.context)?;
            let text = call.arg_str("region").unwrap_or("").to_owned();
            Ok(MethodOutput::Json(DataArray::with_reader(&dir, |a| json_slice(a, &text))?))
        })
        .script("DataArray_reduce", |call: &mut Call<'_>| {
            let dir = ensure(call.host, call.context)?;
            let op = Op::parse(call.arg_str("op").unwrap_or("mean"), call.arg_str("where"))?;
            let axis = match call.args.get("axis") {
                None | Some(Value::Null) => None,
                Some(v) => Some(axis_arg(v)?),
            };
            let text = call.arg_str("region").unwrap_or("").to_owned();
            let (value, shape, _) = DataArray::with_reader(&dir, |a| {
                let region = Region::parse(&text, a.shape())?;
                reduce::reduce(a, &region, op, axis, DEFAULT_BUDGET)
            })?;
            Ok(MethodOutput::Json(json!({"result": value, "shape": shape})))
        })
        .script(
            "DataArray_append",
            Protected::write(Permission::ModifyPortalContent, |call: &mut Call<'_>| {
                let dir = ensure(call.host, call.context)?;
                let data = call.args.get("data").ok_or_else(|| {
                    CoreError::BadRequest("append needs 'data': a (nested) list of numbers".into())
                })?;
                let shape = DataArray::with_writer(&dir, |a| {
                    let (shape, bytes) = json_to_bytes(a.dtype(), data)?;
                    a.append(a.dtype(), &shape, &bytes)
                })?;
                Ok(MethodOutput::Json(json!({"shape": shape})))
            }),
        )
        .script(
            "DataArray_resize",
            Protected::write(Permission::ModifyPortalContent, |call: &mut Call<'_>| {
                let dir = ensure(call.host, call.context)?;
                let shape: Vec<u64> = call
                    .args
                    .get("shape")
                    .cloned()
                    .and_then(|v| serde_json::from_value(v).ok())
                    .ok_or_else(|| CoreError::BadRequest("resize needs 'shape': a list of sizes".into()))?;
                DataArray::with_writer(&dir, |a| a.resize(&shape))?;
                Ok(MethodOutput::Json(json!({"shape": shape})))
            }),
        )
}

fn axis_arg(v: &Value) -> CoreResult<usize> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .and_then(|a| usize::try_from(a).ok())
        .ok_or_else(|| {
            CoreError::BadRequest(format!("axis must be a non-negative integer, not {v}"))
        })
}

/// The directory of the array a Data Array document owns.
pub fn array_dir(host: &(impl Host + ?Sized), doc: &Document) -> CoreResult<PathBuf> {
    if doc.portal_type != PORTAL_TYPE {
        return Err(CoreError::BadRequest(format!(
            "/{} is a {}, not a {PORTAL_TYPE}",
            doc.path, doc.portal_type
        )));
    }
    // Never a path from a property: anyone who may edit the document could point it at
    // another array or any directory. An import links its directory here instead.
    Ok(arrays_root(host)?.join(doc.uid.to_string()))
}

/// Drops a deleted array's directory (the kernel's delete hook; idempotent). An imported
/// array is a link to the directory it came from: the link goes, the import's files stay.
fn purge(portal: &Portal, uid: i64) -> CoreResult<()> {
    let dir = arrays_root(portal)?.join(uid.to_string());
    match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
        Ok(m) if m.file_type().is_symlink() => Ok(std::fs::remove_file(&dir)?),
        Ok(_) => Ok(std::fs::remove_dir_all(&dir)?),
    }
}

fn arrays_root(host: &(impl Host + ?Sized)) -> CoreResult<PathBuf> {
    Ok(host
        .data_dir()
        .ok_or_else(|| CoreError::Internal("the portal has no data directory".into()))?
        .join("arrays"))
}

/// The array's directory, creating the array from the document's properties on first use.
pub fn ensure(host: &(impl Host + ?Sized), doc: &Document) -> CoreResult<PathBuf> {
    let dir = array_dir(host, doc)?;
    if dir.join("zarr.json").is_file() {
        return Ok(dir);
    }
    let options = create_options(doc)?;
    match DataArray::create(&dir, &options) {
        Ok(_) => Ok(dir),
        // Another request created it meanwhile.
        Err(_) if dir.join("zarr.json").is_file() => Ok(dir),
        Err(e) => Err(e.into()),
    }
}

/// Creation parameters from a document's properties.
pub fn create_options(doc: &Document) -> CoreResult<CreateOptions> {
    options_from(&doc.property_map()?)
}

/// Creation parameters from a Data Array's property values.
fn options_from(props: &serde_json::Map<String, Value>) -> CoreResult<CreateOptions> {
    let prop = |name: &str| -> CoreResult<Option<Value>> {
        Ok(props.get(name).filter(|v| !v.is_null()).cloned())
    };
    let list = |name: &str| -> CoreResult<Option<Vec<u64>>> {
        prop(name)?
            .map(|v| {
                serde_json::from_value::<Vec<u64>>(v.clone()).map_err(|_| {
                    CoreError::BadRequest(format!("{name} must be a list of sizes, not {v}"))
                })
            })
            .transpose()
    };
    let dtype = prop("dtype")?;
    let dtype = Dtype::parse(dtype.as_ref().and_then(Value::as_str).unwrap_or("float64"))?;
    let codec = prop("codec")?;
    Ok(CreateOptions {
        dtype,
        shape: list("shape")?.unwrap_or_else(|| vec![0]),
        chunk_shape: list("chunk_shape")?,
        shard_shape: list("shard_shape")?,
        codec: Codec::parse(codec.as_ref().and_then(Value::as_str).unwrap_or("none"))?,
        fill_value: prop("fill_value")?,
        dimension_names: prop("dimension_names")?
            .map(|v| {
                serde_json::from_value::<Vec<String>>(v.clone()).map_err(|_| {
                    CoreError::BadRequest(format!(
                        "dimension_names must be a list of strings, not {v}"
                    ))
                })
            })
            .transpose()?,
    })
}

/// Looks up a Data Array whose contents the user may access (*Access contents
/// information*, as for stream bytes) and returns its array directory.
pub fn for_read(portal: &Portal, user: &User, path: &str) -> CoreResult<PathBuf> {
    let doc = portal.checked(
        user,
        path,
        PORTAL_TYPE,
        Permission::AccessContentsInformation,
    )?;
    ensure(portal, &doc)
}

/// Looks up a Data Array the user may modify and returns its array directory.
pub fn for_write(portal: &Portal, user: &User, path: &str) -> CoreResult<PathBuf> {
    let doc = portal.checked(user, path, PORTAL_TYPE, Permission::ModifyPortalContent)?;
    ensure(portal, &doc)
}

/// Registers an existing Zarr v3 array directory as a new Data Array document (the array
/// stays where it is).
pub fn import(
    portal: &Portal,
    user: &User,
    dir: &std::path::Path,
    title: &str,
) -> CoreResult<Document> {
    let dir = dir
        .canonicalize()
        .map_err(|e| CoreError::BadRequest(format!("cannot open {}: {e}", dir.display())))?;
    let array = DataArray::open(&dir)?;
    let mut properties = Map::new();
    properties.insert("dtype".into(), json!(array.dtype().name()));
    properties.insert("shape".into(), json!(array.shape()));
    properties.insert("chunk_shape".into(), json!(array.chunk_shape()?));
    properties.insert("zarr_path".into(), json!(dir.display().to_string()));
    if let Some(names) = array
        .metadata()?
        .get("dimension_names")
        .filter(|v| !v.is_null())
    {
        properties.insert("dimension_names".into(), names.clone());
    }
    let doc = portal.create(
        user,
        FOLDER,
        NewDocument {
            portal_type: Some(PORTAL_TYPE.into()),
            id: None,
            title: title.to_owned(),
            reference: None,
            description: String::new(),
            properties,
        },
    )?;
    // The operator named this directory on the command line: link it as the array's own.
    let root = arrays_root(portal)?;
    std::fs::create_dir_all(&root)?;
    std::os::unix::fs::symlink(&dir, root.join(doc.uid.to_string()))?;
    Ok(doc)
}

/// A small region as nested JSON lists.
fn json_slice(array: &DataArray, text: &str) -> ArrayResult<Value> {
    let region = Region::parse(text, array.shape())?;
    let shape = region.out_shape();
    let n = npy::element_count(&shape).unwrap_or(u64::MAX);
    if n > MAX_JSON_ELEMENTS {
        return Err(ArrayError::BadRequest(format!(
            "a slice of {n} elements is too large for JSON (at most {MAX_JSON_ELEMENTS}); use GET …/read for .npy"
        )));
    }
    let mut bytes = Vec::new();
    array.read(&region, usize::MAX, |b| {
        bytes.extend_from_slice(b);
        Ok(())
    })?;
    let flat = bytes_to_json(array.dtype(), &bytes);
    Ok(nest(&flat, &shape))
}

fn nest(flat: &[Value], shape: &[u64]) -> Value {
    match shape {
        [] => flat.first().cloned().unwrap_or(Value::Null),
        [n, rest @ ..] => {
            let step = usize::try_from(npy::element_count(rest).unwrap_or(0)).unwrap_or(0);
            Value::Array(
                (0..usize::try_from(*n).unwrap_or(0))
                    .map(|i| nest(&flat[i * step..(i + 1) * step], rest))
                    .collect(),
            )
        }
    }
}

fn bytes_to_json(dtype: Dtype, bytes: &[u8]) -> Vec<Value> {
    let float = |x: f64| {
        if x.is_finite() {
            json!(x)
        } else {
            json!(x.to_string())
        }
    };
    match dtype {
        Dtype::Bool => bytes.iter().map(|&b| json!(b != 0)).collect(),
        Dtype::C64 => bytes
            .chunks_exact(8)
            .map(|c| {
                let re = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                let im = f32::from_le_bytes([c[4], c[5], c[6], c[7]]);
                json!([float(f64::from(re)), float(f64::from(im))])
            })
            .collect(),
        Dtype::C128 => bytes
            .chunks_exact(16)
            .map(|c| {
                let mut v = Vec::new();
                Dtype::F64.extend_f64(c, &mut v);
                json!(v.into_iter().map(float).collect::<Vec<_>>())
            })
            .collect(),
        Dtype::I64 => bytes
            .chunks_exact(8)
            .map(|c| {
                json!(i64::from_le_bytes([
                    c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
                ]))
            })
            .collect(),
        Dtype::U64 => bytes
            .chunks_exact(8)
            .map(|c| {
                json!(u64::from_le_bytes([
                    c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
                ]))
            })
            .collect(),
        Dtype::F32 | Dtype::F64 => {
            let mut v = Vec::new();
            dtype.extend_f64(bytes, &mut v);
            v.into_iter().map(float).collect()
        }
        _ => {
            let mut v = Vec::new();
            dtype.extend_f64(bytes, &mut v);
            #[allow(clippy::cast_possible_truncation)]
            v.into_iter().map(|x| json!(x as i64)).collect()
        }
    }
}

/// A (nested) JSON list of numbers as little-endian bytes of `dtype`, with its shape.
pub fn json_to_bytes(dtype: Dtype, data: &Value) -> ArrayResult<(Vec<u64>, Vec<u8>)> {
    let mut shape = Vec::new();
    let mut probe = data;
    while let Value::Array(items) = probe {
        if dtype.is_complex()
            && items.len() == 2
            && items.iter().all(Value::is_number)
            && !shape.is_empty()
        {
            break;
        }
        shape.push(items.len() as u64);
        match items.first() {
            Some(first) => probe = first,
            None => break,
        }
    }
    let mut bytes = Vec::new();
    fill_bytes(dtype, data, &shape, &mut bytes)?;
    Ok((shape, bytes))
}

fn fill_bytes(dtype: Dtype, v: &Value, shape: &[u64], out: &mut Vec<u8>) -> ArrayResult<()> {
    let ragged = || ArrayError::BadRequest("data is not a rectangular list of numbers".into());
    match shape {
        [n, rest @ ..] => {
            let items = v.as_array().ok_or_else(ragged)?;
            if items.len() as u64 != *n {
                return Err(ragged());
            }
            items
                .iter()
                .try_for_each(|x| fill_bytes(dtype, x, rest, out))
        }
        [] => scalar_bytes(dtype, v, out),
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn scalar_bytes(dtype: Dtype, v: &Value, out: &mut Vec<u8>) -> ArrayResult<()> {
    let bad = || ArrayError::BadRequest(format!("{v} is not a valid {} element", dtype.name()));
    let int = || v.as_i64().ok_or_else(bad);
    let uint = || v.as_u64().ok_or_else(bad);
    let float = || v.as_f64().ok_or_else(bad);
    let ranged = |x: i64, lo: i64, hi: i64| {
        if (lo..=hi).contains(&x) {
            Ok(x)
        } else {
            Err(bad())
        }
    };
    match dtype {
        Dtype::Bool => out.push(u8::from(v.as_bool().ok_or_else(bad)?)),
        Dtype::I8 => {
            out.extend((ranged(int()?, i8::MIN.into(), i8::MAX.into())? as i8).to_le_bytes())
        }
        Dtype::I16 => {
            out.extend((ranged(int()?, i16::MIN.into(), i16::MAX.into())? as i16).to_le_bytes())
        }
        Dtype::I32 => {
            out.extend((ranged(int()?, i32::MIN.into(), i32::MAX.into())? as i32).to_le_bytes())
        }
        Dtype::I64 => out.extend(int()?.to_le_bytes()),
        Dtype::U8 => out.extend((ranged(int()?, 0, u8::MAX.into())? as u8).to_le_bytes()),
        Dtype::U16 => out.extend((ranged(int()?, 0, u16::MAX.into())? as u16).to_le_bytes()),
        Dtype::U32 => out.extend((ranged(int()?, 0, u32::MAX.into())? as u32).to_le_bytes()),
        Dtype::U64 => out.extend(uint()?.to_le_bytes()),
        Dtype::F32 => out.extend((float()? as f32).to_le_bytes()),
        Dtype::F64 => out.extend(float()?.to_le_bytes()),
        Dtype::C64 | Dtype::C128 => {
            let pair = v.as_array().filter(|a| a.len() == 2).ok_or_else(bad)?;
            for part in pair {
                let x = part.as_f64().ok_or_else(bad)?;
                if dtype == Dtype::C64 {
                    out.extend((x as f32).to_le_bytes());
                } else {
                    out.extend(x.to_le_bytes());
                }
            }
        }
    }
    Ok(())
}
