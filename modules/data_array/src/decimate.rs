//! Decimation for charts: the minimum and maximum of each of `bins` consecutive runs of
//! a series along the first axis, so a chart `bins` pixels wide draws every peak of an
//! array of any length. The array is read slab by slab (at most [`SLAB_BYTES`] at once,
//! plus three numbers per bin), never whole. Used by `GET …/decimate` and meant for
//! server-side plots too.

use crate::error::{ArrayError, ArrayResult};
use crate::region::{Dim, Region};
use crate::store::DataArray;

/// Most bins one decimation returns (a very wide chart is some thousands of pixels).
pub const MAX_BINS: usize = 100_000;

/// Bytes read from the array at once.
pub const SLAB_BYTES: usize = 4 << 20;

/// What [`decimate`] returns: for bin `b`, the elements `x[b]..x[b + 1]` (the last bin ends
/// at `stop`) have the minimum `min[b]` and the maximum `max[b]`, NaN when every element
/// of the bin is NaN. With fewer elements than bins asked, one bin per element: the
/// series at full resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Decimation {
    /// First index (along the first axis) of the series.
    pub start: u64,
    /// One past its last index.
    pub stop: u64,
    /// First index of each bin.
    pub x: Vec<u64>,
    /// Smallest value of each bin (NaN ignored).
    pub min: Vec<f64>,
    /// Largest value of each bin (NaN ignored).
    pub max: Vec<f64>,
}

impl Decimation {
    /// Little-endian float64: the `x` of every bin, then every `min`, then every `max`
    /// (3 × bins numbers).
    pub fn to_f64_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.x.len() * 24);
        #[allow(clippy::cast_precision_loss)]
        for v in self
            .x
            .iter()
            .map(|&x| x as f64)
            .chain(self.min.iter().copied())
        {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in &self.max {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }
}

/// First index (relative to the series' start) of bin `b` of `bins` over `n` elements.
fn bin_start(b: u64, bins: u64, n: u64) -> u64 {
    // ceil(b·n / bins), in 128 bits: b·n may pass 2^64.
    let v = (u128::from(b) * u128::from(n)).div_ceil(u128::from(bins.max(1)));
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Decimates the series `array[start..stop, at…]` (the first axis, at the indices `at`
/// of the other axes, all 0 when `at` is empty) into at most `bins` bins. `stop` is
/// clipped to the array's length; complex arrays are refused.
pub fn decimate(
    array: &DataArray,
    start: u64,
    stop: Option<u64>,
    bins: usize,
    at: &[u64],
) -> ArrayResult<Decimation> {
    let shape = array.shape();
    let bad = |m: String| Err(ArrayError::BadRequest(m));
    if shape.is_empty() {
        return bad("a 0-dimensional array has no series to decimate".into());
    }
    if array.dtype().is_complex() {
        return bad("complex arrays have no minimum or maximum".into());
    }
    if bins == 0 || bins > MAX_BINS {
        return bad(format!("bins must be 1..={MAX_BINS}, not {bins}"));
    }
    if !at.is_empty() && at.len() != shape.len() - 1 {
        return bad(format!(
            "'at' gives {} indices but the array has {} axes after the first",
            at.len(),
            shape.len() - 1
        ));
    }
    let stop = stop.unwrap_or(shape[0]).min(shape[0]);
    if start > stop {
        return bad(format!("start {start} is past stop {stop}"));
    }
    let mut dims = vec![Dim {
        start,
        stop,
        step: 1,
        keep: true,
    }];
    for (axis, &len) in shape.iter().enumerate().skip(1) {
        let i = at.get(axis - 1).copied().unwrap_or(0);
        if i >= len {
            return bad(format!(
                "at: index {i} is outside axis {axis} of length {len}"
            ));
        }
        dims.push(Dim {
            start: i,
            stop: i + 1,
            step: 1,
            keep: false,
        });
    }
    let n = stop - start;
    let nb = (bins as u64).min(n);
    let len = usize::try_from(nb).unwrap_or(MAX_BINS);
    let mut out = Decimation {
        start,
        stop,
        x: (0..nb).map(|b| start + bin_start(b, nb, n)).collect(),
        min: vec![f64::INFINITY; len],
        max: vec![f64::NEG_INFINITY; len],
    };
    if n == 0 {
        return Ok(out);
    }
    let dtype = array.dtype();
    let mut values = Vec::new();
    // Position (relative to start) of the next element, the current bin and its end.
    let (mut i, mut b, mut end) = (0u64, 0usize, bin_start(1, nb, n));
    array.read(&Region { dims }, SLAB_BYTES, |bytes| {
        values.clear();
        dtype.extend_f64(bytes, &mut values);
        let mut rest = values.as_slice();
        while !rest.is_empty() {
            let take = usize::try_from(end - i)
                .unwrap_or(usize::MAX)
                .min(rest.len());
            let (lo, hi) = rest[..take]
                .iter()
                .fold((out.min[b], out.max[b]), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                });
            out.min[b] = lo;
            out.max[b] = hi;
            rest = &rest[take..];
            i += take as u64;
            if i == end && b + 1 < len {
                b += 1;
                end = bin_start(b as u64 + 1, nb, n);
            }
        }
        Ok(())
    })?;
    for (lo, hi) in out.min.iter_mut().zip(out.max.iter_mut()) {
        if *lo > *hi {
            // Only NaN (f64::min/max skip NaN): no value in the bin.
            *lo = f64::NAN;
            *hi = f64::NAN;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bins_cover_the_series_in_order() {
        for n in [1u64, 2, 7, 10, 1000, 1001] {
            for bins in [1u64, 3, 7, 10, 64] {
                let nb = bins.min(n);
                let starts: Vec<u64> = (0..=nb).map(|b| bin_start(b, nb, n)).collect();
                assert_eq!(starts[0], 0);
                assert_eq!(*starts.last().unwrap(), n);
                assert!(
                    starts.windows(2).all(|w| w[0] < w[1]),
                    "{n} {bins} {starts:?}"
                );
            }
        }
        // b·n past 2^64 does not overflow.
        assert_eq!(bin_start(1, 2, u64::MAX), 1 << 63);
    }

    /// The reference: every bin's elements scanned one by one.
    fn naive(values: &[f64], start: u64, stop: u64, bins: u64) -> (Vec<u64>, Vec<f64>, Vec<f64>) {
        let n = stop - start;
        let nb = bins.min(n);
        let (mut x, mut lo, mut hi) = (Vec::new(), Vec::new(), Vec::new());
        for b in 0..nb {
            let (s, e) = (bin_start(b, nb, n), bin_start(b + 1, nb, n));
            x.push(start + s);
            let part = &values[(start + s) as usize..(start + e) as usize];
            let finite: Vec<f64> = part.iter().copied().filter(|v| !v.is_nan()).collect();
            lo.push(finite.iter().copied().fold(f64::NAN, f64::min));
            hi.push(finite.iter().copied().fold(f64::NAN, f64::max));
        }
        (x, lo, hi)
    }

    fn same(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
    }

    #[test]
    fn matches_a_naive_scan_across_chunks_and_slabs() {
        let dir = tempfile::tempdir().unwrap();
        let n = 10_007u64;
        let values: Vec<f64> = (0..n)
            .map(|i| {
                if i % 997 == 13 {
                    f64::NAN
                } else {
                    ((i * 7919) % 1013) as f64 - 500.0
                }
            })
            .collect();
        let options = crate::CreateOptions {
            dtype: crate::Dtype::F64,
            shape: vec![0],
            chunk_shape: Some(vec![333]),
            codec: crate::Codec::None,
            shard_shape: None,
            fill_value: None,
            dimension_names: None,
        };
        let mut array = DataArray::create(dir.path(), &options).unwrap();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        array.append(crate::Dtype::F64, &[n], &bytes).unwrap();
        for (start, stop, bins) in [
            (0, n, 1200),
            (0, n, 1),
            (5, 1005, 7),
            (100, 150, 1200),
            (0, n, 10_007),
            (9_000, n, 3),
        ] {
            let d = decimate(&array, start, Some(stop), bins as usize, &[]).unwrap();
            let (x, lo, hi) = naive(&values, start, stop, bins);
            assert_eq!(d.x, x, "{start}..{stop} / {bins}");
            assert!(same(&d.min, &lo), "{start}..{stop} / {bins}");
            assert!(same(&d.max, &hi), "{start}..{stop} / {bins}");
        }
        // Fewer elements than bins: the series itself.
        let d = decimate(&array, 100, Some(150), 1200, &[]).unwrap();
        assert_eq!(d.x.len(), 50);
        assert!(same(&d.min, &values[100..150]));
        // Refusals.
        assert!(decimate(&array, 0, None, 0, &[]).is_err());
        assert!(decimate(&array, 0, None, MAX_BINS + 1, &[]).is_err());
        assert!(decimate(&array, 20, Some(10), 5, &[]).is_err());
        assert!(decimate(&array, 0, None, 5, &[1]).is_err());
        let empty = decimate(&array, 5, Some(5), 10, &[]).unwrap();
        assert!(empty.x.is_empty());
    }

    #[test]
    fn a_column_of_a_matrix() {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::CreateOptions {
            dtype: crate::Dtype::I32,
            shape: vec![0, 3],
            chunk_shape: Some(vec![10, 2]),
            codec: crate::Codec::None,
            shard_shape: None,
            fill_value: None,
            dimension_names: None,
        };
        let mut array = DataArray::create(dir.path(), &options).unwrap();
        let rows: Vec<i32> = (0..100).flat_map(|i| [i, -i, i * 2]).collect();
        let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
        array.append(crate::Dtype::I32, &[100, 3], &bytes).unwrap();
        let d = decimate(&array, 0, None, 4, &[1]).unwrap();
        assert_eq!(d.x, vec![0, 25, 50, 75]);
        assert_eq!(d.min, vec![-24.0, -49.0, -74.0, -99.0]);
        assert_eq!(d.max, vec![0.0, -25.0, -50.0, -75.0]);
        assert!(decimate(&array, 0, None, 4, &[3]).is_err());
        assert!(decimate(&array, 0, None, 4, &[0, 0]).is_err());
    }
}
