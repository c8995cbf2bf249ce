//! Shared by the Forward targets: a connection that delivers the fuzzer's bytes in
//! pieces of varying sizes, as TCP may.

use std::io::Read;
use std::time::Duration;

use wendelin_ingestion::forward::TimedRead;

/// Bytes read back in pieces whose sizes come from `sizes` (cycled).
pub struct Pieces<'a> {
    pub data: &'a [u8],
    pub sizes: &'a [u8],
    pub n: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = match self.sizes {
            [] => buf.len(),
            s => usize::from(s[self.n % s.len()]).max(1) * 37,
        };
        self.n += 1;
        let k = size.min(buf.len()).min(self.data.len());
        buf[..k].copy_from_slice(&self.data[..k]);
        self.data = &self.data[k..];
        Ok(k)
    }
}

impl TimedRead for Pieces<'_> {
    fn set_timeout(&mut self, _: Duration) -> std::io::Result<()> {
        Ok(())
    }
}

/// Splits the input: the first byte says how many piece sizes follow (at most 7).
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.split_first() {
        Some((&n, rest)) => rest.split_at(usize::from(n & 7).min(rest.len())),
        None => (&[], &[]),
    }
}
