//! HTTP byte ranges: `Range: bytes=…` (one range) and `Content-Range: bytes a-b/total`
//! of resumable uploads, parsed once for every data plane.

/// Why a `Range` header cannot be served as one range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeError {
    /// Not `bytes=a-b`, `bytes=a-` or `bytes=-n`.
    Malformed,
    /// Several ranges (`bytes=0-1,5-6`): only one is served.
    Several,
    /// A well-formed range outside the resource.
    Unsatisfiable,
}

/// The first and last byte (inclusive) that `Range: value` asks of `size` bytes.
pub fn parse_range(value: &str, size: u64) -> Result<(u64, u64), RangeError> {
    let spec = value
        .trim()
        .strip_prefix("bytes=")
        .ok_or(RangeError::Malformed)?;
    if spec.contains(',') {
        return Err(RangeError::Several);
    }
    let (a, b) = spec.split_once('-').ok_or(RangeError::Malformed)?;
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| s.parse::<u64>().map_err(|_| RangeError::Malformed);
    let (first, last) = match (a.is_empty(), b.is_empty()) {
        (true, false) => {
            let n = num(b)?;
            if n == 0 || size == 0 {
                return Err(RangeError::Unsatisfiable);
            }
            (size.saturating_sub(n), size - 1)
        }
        (false, true) => (num(a)?, size.saturating_sub(1)),
        (false, false) => (num(a)?, num(b)?.min(size.saturating_sub(1))),
        (true, true) => return Err(RangeError::Malformed),
    };
    if first >= size || first > last {
        return Err(RangeError::Unsatisfiable);
    }
    Ok((first, last))
}

/// A parsed `Content-Range: bytes a-b/total` (`total` `*` when unknown): `Some((a, b,
/// total))`, or `None` for `bytes */*` (a client asking how far an upload got).
pub fn parse_content_range(v: &str) -> Result<Option<(u64, u64, Option<u64>)>, String> {
    let bad = || format!("malformed Content-Range '{v}': use bytes a-b/total");
    let spec = v.trim().strip_prefix("bytes ").ok_or_else(bad)?;
    let (range, total) = spec.split_once('/').ok_or_else(bad)?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse::<u64>().map_err(|_| bad())?),
    };
    if range.trim() == "*" {
        return Ok(None);
    }
    let (a, b) = range.split_once('-').ok_or_else(bad)?;
    let a = a.trim().parse::<u64>().map_err(|_| bad())?;
    let b = b.trim().parse::<u64>().map_err(|_| bad())?;
    if b < a {
        return Err(bad());
    }
    Ok(Some((a, b, total)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Ok((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Ok((90, 99)));
        assert_eq!(parse_range("bytes=-500", 100), Ok((0, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Ok((50, 99)));
        assert_eq!(
            parse_range("bytes=100-", 100),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(parse_range("bytes=-0", 100), Err(RangeError::Unsatisfiable));
        assert_eq!(parse_range("bytes=0-", 0), Err(RangeError::Unsatisfiable));
        assert_eq!(
            parse_range("bytes=5-2", 100),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(parse_range("bytes=0-1,3-4", 100), Err(RangeError::Several));
        for bad in ["0-9", "bytes=", "bytes=-", "bytes=a-b", "items=0-1"] {
            assert_eq!(parse_range(bad, 100), Err(RangeError::Malformed), "{bad}");
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes */*").unwrap(), None);
        assert_eq!(
            parse_content_range("bytes 0-9/*").unwrap(),
            Some((0, 9, None))
        );
        assert_eq!(
            parse_content_range("bytes 10-19/20").unwrap(),
            Some((10, 19, Some(20)))
        );
        for bad in ["bytes 9-0/*", "0-9/*", "bytes 0-9", "bytes a-9/*"] {
            assert!(parse_content_range(bad).is_err(), "{bad}");
        }
    }
}
