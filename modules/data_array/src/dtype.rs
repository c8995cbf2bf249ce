//! Element types: their Zarr v3 names, sizes, `.npy` descriptors and conversion to `f64`
//! for reductions.

use crate::error::ArrayError;

/// The element types a Data Array can hold (little-endian in memory and on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// `bool`, one byte.
    Bool,
    /// `int8`.
    I8,
    /// `int16`.
    I16,
    /// `int32`.
    I32,
    /// `int64`.
    I64,
    /// `uint8`.
    U8,
    /// `uint16`.
    U16,
    /// `uint32`.
    U32,
    /// `uint64`.
    U64,
    /// `float32`.
    F32,
    /// `float64`.
    F64,
    /// `complex64`: two `float32`.
    C64,
    /// `complex128`: two `float64`.
    C128,
}

impl Dtype {
    /// Every supported type.
    pub const ALL: [Dtype; 13] = [
        Dtype::Bool,
        Dtype::I8,
        Dtype::I16,
        Dtype::I32,
        Dtype::I64,
        Dtype::U8,
        Dtype::U16,
        Dtype::U32,
        Dtype::U64,
        Dtype::F32,
        Dtype::F64,
        Dtype::C64,
        Dtype::C128,
    ];

    /// The Zarr v3 (and numpy) name.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "bool",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::I64 => "int64",
            Dtype::U8 => "uint8",
            Dtype::U16 => "uint16",
            Dtype::U32 => "uint32",
            Dtype::U64 => "uint64",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
            Dtype::C64 => "complex64",
            Dtype::C128 => "complex128",
        }
    }

    /// Parses a Zarr v3 / numpy name.
    pub fn parse(name: &str) -> Result<Dtype, ArrayError> {
        Dtype::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| {
                ArrayError::BadRequest(format!(
                    "unknown dtype '{name}'; expected one of {}",
                    Dtype::ALL.map(Dtype::name).join(", ")
                ))
            })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::I8 | Dtype::U8 => 1,
            Dtype::I16 | Dtype::U16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 | Dtype::C64 => 8,
            Dtype::C128 => 16,
        }
    }

    /// The `.npy` descriptor (`<f8`, `|b1`, …).
    pub fn npy_descr(self) -> &'static str {
        match self {
            Dtype::Bool => "|b1",
            Dtype::I8 => "|i1",
            Dtype::I16 => "<i2",
            Dtype::I32 => "<i4",
            Dtype::I64 => "<i8",
            Dtype::U8 => "|u1",
            Dtype::U16 => "<u2",
            Dtype::U32 => "<u4",
            Dtype::U64 => "<u8",
            Dtype::F32 => "<f4",
            Dtype::F64 => "<f8",
            Dtype::C64 => "<c8",
            Dtype::C128 => "<c16",
        }
    }

    /// Parses a `.npy` descriptor; big-endian data is refused rather than swapped.
    pub fn from_npy_descr(descr: &str) -> Result<Dtype, ArrayError> {
        // The byte-order character, then the type code (split by characters: the
        // descriptor is client text, and may start with a multi-byte one).
        let mut chars = descr.chars();
        let order = chars.next();
        let code = chars.as_str();
        if order == Some('>') {
            return Err(ArrayError::BadRequest(format!(
                "big-endian npy data ('{descr}') is not supported; send little-endian"
            )));
        }
        if !matches!(order, Some('<' | '|' | '=')) {
            return Err(ArrayError::BadRequest(format!(
                "unsupported npy dtype descriptor '{descr}'"
            )));
        }
        Dtype::ALL
            .into_iter()
            .find(|d| &d.npy_descr()[1..] == code)
            .ok_or_else(|| {
                ArrayError::BadRequest(format!("unsupported npy dtype descriptor '{descr}'"))
            })
    }

    /// Whether elements are complex (no ordering, no real reductions).
    pub fn is_complex(self) -> bool {
        matches!(self, Dtype::C64 | Dtype::C128)
    }

    /// Appends the elements of little-endian `bytes` to `out` as `f64` (complex types are
    /// refused by the callers before this is reached).
    pub fn extend_f64(self, bytes: &[u8], out: &mut Vec<f64>) {
        fn each<const N: usize>(bytes: &[u8], out: &mut Vec<f64>, f: impl Fn([u8; N]) -> f64) {
            out.extend(bytes.chunks_exact(N).map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            }));
        }
        match self {
            Dtype::Bool => out.extend(bytes.iter().map(|&b| f64::from(u8::from(b != 0)))),
            Dtype::I8 => each::<1>(bytes, out, |a| f64::from(i8::from_le_bytes(a))),
            Dtype::U8 => out.extend(bytes.iter().map(|&b| f64::from(b))),
            Dtype::I16 => each::<2>(bytes, out, |a| f64::from(i16::from_le_bytes(a))),
            Dtype::U16 => each::<2>(bytes, out, |a| f64::from(u16::from_le_bytes(a))),
            Dtype::I32 => each::<4>(bytes, out, |a| f64::from(i32::from_le_bytes(a))),
            Dtype::U32 => each::<4>(bytes, out, |a| f64::from(u32::from_le_bytes(a))),
            #[allow(clippy::cast_precision_loss)]
            Dtype::I64 => each::<8>(bytes, out, |a| i64::from_le_bytes(a) as f64),
            #[allow(clippy::cast_precision_loss)]
            Dtype::U64 => each::<8>(bytes, out, |a| u64::from_le_bytes(a) as f64),
            Dtype::F32 => each::<4>(bytes, out, |a| f64::from(f32::from_le_bytes(a))),
            Dtype::F64 => each::<8>(bytes, out, f64::from_le_bytes),
            Dtype::C64 | Dtype::C128 => {}
        }
    }
}
