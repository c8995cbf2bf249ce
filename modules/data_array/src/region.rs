//! Regions in numpy's slice syntax: `0:1000,5`, `::2`, `-10:`, one item per dimension,
//! missing trailing dimensions meaning "all".

use crate::error::{ArrayError, ArrayResult};

/// One dimension of a region, resolved against a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dim {
    /// First index.
    pub start: u64,
    /// One past the last index considered.
    pub stop: u64,
    /// Step (≥ 1).
    pub step: u64,
    /// False when the dimension was given as a single index (numpy drops it).
    pub keep: bool,
}

impl Dim {
    /// Number of selected indices.
    pub fn len(&self) -> u64 {
        if self.stop <= self.start {
            0
        } else {
            (self.stop - self.start).div_ceil(self.step)
        }
    }

    /// Whether nothing is selected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last index actually selected plus one (tight bound for reading).
    pub fn end(&self) -> u64 {
        match self.len() {
            0 => self.start,
            n => self.start + (n - 1) * self.step + 1,
        }
    }
}

/// A region resolved against a shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// One entry per array dimension.
    pub dims: Vec<Dim>,
}

impl Region {
    /// The whole array.
    pub fn all(shape: &[u64]) -> Region {
        Region {
            dims: shape
                .iter()
                .map(|&n| Dim {
                    start: 0,
                    stop: n,
                    step: 1,
                    keep: true,
                })
                .collect(),
        }
    }

    /// Parses `text` (empty means the whole array) against `shape`.
    pub fn parse(text: &str, shape: &[u64]) -> ArrayResult<Region> {
        let text = text.trim();
        let items: Vec<&str> = if text.is_empty() {
            Vec::new()
        } else {
            text.split(',').map(str::trim).collect()
        };
        if items.len() > shape.len() {
            return Err(ArrayError::BadRequest(format!(
                "region '{text}' has {} dimensions but the array has {}",
                items.len(),
                shape.len()
            )));
        }
        let mut dims = Vec::with_capacity(shape.len());
        for (axis, &n) in shape.iter().enumerate() {
            let dim = match items.get(axis) {
                None => Dim {
                    start: 0,
                    stop: n,
                    step: 1,
                    keep: true,
                },
                Some(item) => parse_item(item, n, axis)?,
            };
            dims.push(dim);
        }
        Ok(Region { dims })
    }

    /// Shape of the selection, dropped dimensions removed (what numpy returns).
    pub fn out_shape(&self) -> Vec<u64> {
        self.dims.iter().filter(|d| d.keep).map(Dim::len).collect()
    }

    /// Shape of the selection with every dimension kept.
    pub fn full_shape(&self) -> Vec<u64> {
        self.dims.iter().map(Dim::len).collect()
    }

    /// Whether every step is 1.
    pub fn contiguous(&self) -> bool {
        self.dims.iter().all(|d| d.step == 1)
    }
}

fn parse_item(item: &str, n: u64, axis: usize) -> ArrayResult<Dim> {
    let bad = |m: String| ArrayError::BadRequest(format!("region axis {axis}: {m}"));
    let num = |s: &str| -> ArrayResult<Option<i64>> {
        let s = s.trim();
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse::<i64>()
                .map(Some)
                .map_err(|_| bad(format!("'{s}' is not an integer")))
        }
    };
    let len = i64::try_from(n).map_err(|_| bad("dimension too large".into()))?;
    // numpy's clamping of slice bounds, for positive steps.
    let clamp = |v: i64| -> u64 {
        let v = if v < 0 { v + len } else { v };
        u64::try_from(v.clamp(0, len)).unwrap_or(0)
    };
    let parts: Vec<&str> = item.split(':').collect();
    match parts.as_slice() {
        [single] => {
            let i = num(single)?.ok_or_else(|| bad("empty index".into()))?;
            let j = if i < 0 { i + len } else { i };
            if j < 0 || j >= len {
                return Err(bad(format!("index {i} is out of bounds for size {n}")));
            }
            let start = u64::try_from(j).unwrap_or(0);
            Ok(Dim {
                start,
                stop: start + 1,
                step: 1,
                keep: false,
            })
        }
        [a, b] | [a, b, _] => {
            let step = match parts.get(2) {
                Some(s) => num(s)?.unwrap_or(1),
                None => 1,
            };
            if step <= 0 {
                return Err(bad(format!(
                    "step {step} is not supported; steps must be positive"
                )));
            }
            let start = num(a)?.map_or(0, clamp);
            let stop = num(b)?.map_or(n, clamp);
            Ok(Dim {
                start,
                stop: stop.max(start),
                step: u64::try_from(step).unwrap_or(1),
                keep: true,
            })
        }
        _ => Err(bad(format!("'{item}' is not an index or a slice"))),
    }
}

/// Checks that `region` lies inside `shape` for a write (no clamping: a write outside the
/// array is an error, not a silent truncation).
pub fn parse_write(text: &str, shape: &[u64]) -> ArrayResult<Region> {
    let region = Region::parse(text, shape)?;
    for (axis, item) in text.split(',').enumerate() {
        if let Some(stop) = item.split(':').nth(1).map(str::trim) {
            if let Ok(stop) = stop.parse::<u64>() {
                if stop > shape[axis] {
                    return Err(ArrayError::BadRequest(format!(
                        "region axis {axis}: stop {stop} is out of bounds for size {}",
                        shape[axis]
                    )));
                }
            }
        }
    }
    if !region.contiguous() {
        return Err(ArrayError::BadRequest(
            "writes take a region without steps".into(),
        ));
    }
    Ok(region)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn numpy_like_slices() {
        let r = Region::parse("0:1000,5", &[100, 10]).unwrap();
        assert_eq!(r.out_shape(), vec![100]);
        let r = Region::parse("-10:,::3", &[100, 10]).unwrap();
        assert_eq!(r.dims[0].start, 90);
        assert_eq!(r.out_shape(), vec![10, 4]);
        assert!(Region::parse("7,", &[5]).is_err());
        assert!(Region::parse("5", &[5]).is_err());
        assert!(Region::parse("::-1", &[5]).is_err());
        assert!(parse_write("0:6", &[5]).is_err());
    }
}
