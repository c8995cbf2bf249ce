//! The `.npy` format (version 1.0 written; 1.0, 2.0 and 3.0 read): a magic string, a
//! header dict `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }` padded to a
//! multiple of 64 bytes, then the raw C-order elements.

use crate::dtype::Dtype;
use crate::error::{ArrayError, ArrayResult};

const MAGIC: &[u8] = b"\x93NUMPY";

/// A parsed `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<u64>,
    /// Bytes before the data.
    pub data_offset: usize,
}

/// Encodes a version 1.0 header for C-ordered data.
pub fn header(dtype: Dtype, shape: &[u64]) -> Vec<u8> {
    let dims = match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {dims}, }}",
        dtype.npy_descr()
    );
    // magic(6) + version(2) + length(2) + dict + '\n' must be a multiple of 64.
    let unpadded = MAGIC.len() + 4 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + dict.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    // The dict is short (a few dims), far below u16::MAX.
    out.extend_from_slice(&u16::try_from(dict.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Parses the header at the start of `bytes` and checks that the data that follows has
/// exactly the size the header announces.
pub fn parse(bytes: &[u8]) -> ArrayResult<NpyHeader> {
    let bad = |m: &str| ArrayError::BadRequest(format!("malformed npy: {m}"));
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("the body does not start with the npy magic string"));
    }
    let (len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => {
            let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (usize::try_from(n).map_err(|_| bad("header too long"))?, 12)
        }
        v => return Err(bad(&format!("unsupported version {v}"))),
    };
    let dict = bytes
        .get(start..start + len)
        .ok_or_else(|| bad("truncated header"))?;
    let dict = std::str::from_utf8(dict).map_err(|_| bad("header is not text"))?;
    let descr = field(dict, "descr")
        .and_then(|v| v.strip_prefix('\''))
        .and_then(|v| v.split('\'').next())
        .ok_or_else(|| bad("no 'descr' in header"))?;
    let dtype = Dtype::from_npy_descr(descr)?;
    let fortran = field(dict, "fortran_order").ok_or_else(|| bad("no 'fortran_order'"))?;
    if fortran.starts_with("True") {
        return Err(ArrayError::BadRequest(
            "fortran-ordered npy is not supported; send C order (numpy.ascontiguousarray)".into(),
        ));
    }
    let shape_text = field(dict, "shape")
        .and_then(|v| v.strip_prefix('('))
        .and_then(|v| v.split(')').next())
        .ok_or_else(|| bad("no 'shape' in header"))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| bad(&format!("bad dimension '{s}'")))
        })
        .collect::<ArrayResult<Vec<u64>>>()?;
    let data_offset = start + len;
    let expected = element_count(&shape)
        .and_then(|n| n.checked_mul(dtype.size() as u64))
        .ok_or_else(|| bad("shape too large"))?;
    let actual = (bytes.len() - data_offset) as u64;
    if actual != expected {
        return Err(ArrayError::BadRequest(format!(
            "malformed npy: header announces {expected} data bytes ({} of shape {shape:?}) but the body holds {actual}",
            dtype.name()
        )));
    }
    Ok(NpyHeader {
        dtype,
        shape,
        data_offset,
    })
}

/// The text after `'name':` in a header dict.
fn field<'a>(dict: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("'{name}':");
    dict.find(&key).map(|i| dict[i + key.len()..].trim_start())
}

/// Product of the dimensions, `None` on overflow.
pub fn element_count(shape: &[u64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn header_round_trip() {
        for shape in [vec![], vec![3], vec![2, 5, 7]] {
            let mut bytes = header(Dtype::F64, &shape);
            assert_eq!(bytes.len() % 64, 0);
            let n = element_count(&shape).unwrap() as usize;
            bytes.extend(std::iter::repeat_n(0u8, n * 8));
            let h = parse(&bytes).unwrap();
            assert_eq!(h.shape, shape);
            assert_eq!(h.dtype, Dtype::F64);
        }
    }

    #[test]
    fn wrong_length_is_refused() {
        let mut bytes = header(Dtype::I32, &[4]);
        bytes.extend([0u8; 12]);
        let e = parse(&bytes).unwrap_err().to_string();
        assert!(e.contains("16 data bytes"), "{e}");
    }

    #[test]
    fn a_descriptor_starting_with_a_multibyte_character_is_refused() {
        // Found by the `npy` fuzz target: the byte-order split panicked inside 'Ä'.
        let dict = "{'descr': '\u{c4}16', 'fortran_order': False, 'shape': (2,), }\n";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&u16::try_from(dict.len()).unwrap().to_le_bytes());
        bytes.extend_from_slice(dict.as_bytes());
        let e = parse(&bytes).unwrap_err().to_string();
        assert!(e.contains("unsupported npy dtype descriptor"), "{e}");
        assert!(Dtype::from_npy_descr("").is_err());
        assert!(Dtype::from_npy_descr("\u{e9}").is_err());
        assert_eq!(Dtype::from_npy_descr("<f8").unwrap(), Dtype::F64);
    }
}
