//! Spectra: numpy's `abs(rfft(x))` of a whole 1-D signal, and short-time spectra of
//! overlapping windows (`stft`), on realfft.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

/// Window applied to each frame of a short-time transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WindowFn {
    /// No window (all ones).
    Rectangular,
    /// numpy.hanning(n): 0.5 − 0.5 cos(2πk/(n−1)).
    #[default]
    Hann,
    /// numpy.hamming(n): 0.54 − 0.46 cos(2πk/(n−1)).
    Hamming,
}

impl WindowFn {
    /// The `n` coefficients (numpy's symmetric definitions).
    pub fn coefficients(self, n: usize) -> Vec<f64> {
        if n == 1 {
            return vec![1.0];
        }
        let d = (n - 1) as f64;
        (0..n)
            .map(|k| {
                let c = (2.0 * std::f64::consts::PI * k as f64 / d).cos();
                match self {
                    WindowFn::Rectangular => 1.0,
                    WindowFn::Hann => 0.5 - 0.5 * c,
                    WindowFn::Hamming => 0.54 - 0.46 * c,
                }
            })
            .collect()
    }
}

/// Magnitude (|X|) or power (|X|²).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// |X|.
    #[default]
    Magnitude,
    /// |X|².
    Power,
}

/// The element type an STFT's rows are stored in: float64 (numpy's), or float32 (half the
/// bytes to write and read; each value computed in float64, then rounded once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// 8 bytes per value.
    #[default]
    Float64,
    /// 4 bytes per value.
    Float32,
}

impl Precision {
    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            Precision::Float64 => 8,
            Precision::Float32 => 4,
        }
    }

    /// The Data Array dtype.
    pub fn dtype(self) -> &'static str {
        match self {
            Precision::Float64 => "float64",
            Precision::Float32 => "float32",
        }
    }
}

/// A planned real FFT of one length, reused across windows.
pub struct Rfft {
    plan: Arc<dyn RealToComplex<f64>>,
    input: Vec<f64>,
    output: Vec<realfft::num_complex::Complex<f64>>,
    scratch: Vec<realfft::num_complex::Complex<f64>>,
}

impl Rfft {
    /// A transform of `n` samples (n ≥ 1).
    pub fn new(n: usize) -> Rfft {
        let plan = RealFftPlanner::<f64>::new().plan_fft_forward(n);
        Rfft {
            input: plan.make_input_vec(),
            output: plan.make_output_vec(),
            scratch: plan.make_scratch_vec(),
            plan,
        }
    }

    /// Bins of the output: n/2 + 1.
    pub fn bins(&self) -> usize {
        self.output.len()
    }

    /// Transforms `x · window` (or `x`) in place of the plan's buffers; false if the
    /// lengths did not match (they do by construction: the plan made both vectors).
    fn transform(&mut self, x: &[f64], window: Option<&[f64]>) -> bool {
        match window {
            Some(w) => {
                for ((i, v), c) in self.input.iter_mut().zip(x).zip(w) {
                    *i = v * c;
                }
            }
            None => self.input.copy_from_slice(x),
        }
        self.plan
            .process_with_scratch(&mut self.input, &mut self.output, &mut self.scratch)
            .is_ok()
    }

    /// |rfft(x · window)| (or its square) into `out` (appended, `bins()` values).
    pub fn run(&mut self, x: &[f64], window: Option<&[f64]>, scale: Scale, out: &mut Vec<f64>) {
        if !self.transform(x, window) {
            out.extend(std::iter::repeat_n(f64::NAN, self.output.len()));
            return;
        }
        out.extend(self.output.iter().map(|c| scale.of(c.re, c.im)));
    }

    /// Like [`Rfft::run`], into `out` as little-endian bytes of `precision`
    /// (`bins() * precision.size()` bytes).
    fn run_le(
        &mut self,
        x: &[f64],
        window: &[f64],
        scale: Scale,
        precision: Precision,
        out: &mut [u8],
    ) {
        let ok = self.transform(x, Some(window));
        let values = self
            .output
            .iter()
            .map(|c| if ok { scale.of(c.re, c.im) } else { f64::NAN });
        match precision {
            Precision::Float64 => {
                for (o, v) in out.chunks_exact_mut(8).zip(values) {
                    o.copy_from_slice(&v.to_le_bytes());
                }
            }
            Precision::Float32 => {
                for (o, v) in out.chunks_exact_mut(4).zip(values) {
                    o.copy_from_slice(&(v as f32).to_le_bytes());
                }
            }
        }
    }
}

impl Scale {
    /// |re + i·im| (or its square). The modulus is sqrt(re² + im²), not hypot: the
    /// spectra of real samples never come near f64's overflow, it agrees with numpy's
    /// `abs` (hypot) within an ulp or two, and it costs a tenth of glibc's hypot.
    #[inline]
    fn of(self, re: f64, im: f64) -> f64 {
        let p = re * re + im * im;
        match self {
            Scale::Magnitude => p.sqrt(),
            Scale::Power => p,
        }
    }
}

/// numpy.abs(numpy.fft.rfft(x)).
pub fn rfft_magnitude(x: &[f64]) -> Vec<f64> {
    if x.is_empty() {
        return Vec::new();
    }
    let mut f = Rfft::new(x.len());
    let mut out = Vec::with_capacity(f.bins());
    f.run(x, None, Scale::Magnitude, &mut out);
    out
}

/// Short-time spectra parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stft {
    /// Samples per window.
    pub window: usize,
    /// Samples between window starts.
    pub hop: usize,
    /// Window function.
    #[serde(default)]
    pub window_fn: WindowFn,
    /// Magnitude or power.
    #[serde(default)]
    pub scale: Scale,
}

impl Stft {
    /// Checks the parameters.
    pub fn check(&self) -> Result<(), String> {
        if self.window == 0 || self.hop == 0 || self.window > 1 << 24 {
            return Err("stft needs 0 < window ≤ 16777216 and hop > 0".into());
        }
        Ok(())
    }

    /// Bins per window.
    pub fn bins(&self) -> usize {
        self.window / 2 + 1
    }

    /// Windows wholly inside `n` samples.
    pub fn count(&self, n: usize) -> usize {
        if n < self.window {
            0
        } else {
            (n - self.window) / self.hop + 1
        }
    }

    /// The spectra of the windows starting at `first * hop`, `(first+1) * hop`, … that lie
    /// wholly inside `x`, where `x` holds the signal from sample `first * hop`. Returns
    /// the rows (windows × bins, C order) and how many windows.
    pub fn windows(&self, x: &[f64]) -> (Vec<f64>, usize) {
        let n = self.count(x.len());
        let bytes = self.windows_le(x, 1);
        let rows = bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect();
        (rows, n)
    }

    /// The rows of [`Stft::windows`] as little-endian f64 bytes, ready to append, computed
    /// on up to `threads` threads (each a contiguous run of windows with its own plan, so
    /// the bytes do not depend on the number of threads).
    pub fn windows_le(&self, x: &[f64], threads: usize) -> Vec<u8> {
        let mut out = vec![0u8; self.count(x.len()) * self.bins() * 8];
        self.windows_into(x, threads, Precision::Float64, &mut out);
        out
    }

    /// [`Stft::windows_le`] in `precision` into `out`, which holds exactly those bytes.
    pub fn windows_into(&self, x: &[f64], threads: usize, precision: Precision, out: &mut [u8]) {
        let n = self.count(x.len());
        let row = self.bins() * precision.size();
        if n == 0 || out.len() != n * row {
            return;
        }
        let coeffs = self.window_fn.coefficients(self.window);
        let work = |first: usize, rows: &mut [u8]| {
            let mut f = Rfft::new(self.window);
            for (i, o) in rows.chunks_exact_mut(row).enumerate() {
                let s = (first + i) * self.hop;
                f.run_le(&x[s..s + self.window], &coeffs, self.scale, precision, o);
            }
        };
        let work = &work;
        // Below a few windows a thread costs more than it saves.
        let threads = threads.clamp(1, 8).min(n.div_ceil(16));
        if threads == 1 {
            work(0, out);
            return;
        }
        let per = n.div_ceil(threads);
        std::thread::scope(|scope| {
            let mut parts = out.chunks_mut(per * row).enumerate();
            let first = parts.next();
            for (t, part) in parts.by_ref() {
                scope.spawn(move || work(t * per, part));
            }
            if let Some((_, part)) = first {
                work(0, part);
            }
        });
    }
}

/// Threads for the transforms of one run: the machine's cores (at most 4).
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
        .min(4)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn naive(x: &[f64]) -> Vec<f64> {
        let n = x.len();
        (0..=n / 2)
            .map(|k| {
                let (mut re, mut im) = (0.0, 0.0);
                for (t, v) in x.iter().enumerate() {
                    let a = -2.0 * std::f64::consts::PI * (k * t) as f64 / n as f64;
                    re += v * a.cos();
                    im += v * a.sin();
                }
                (re * re + im * im).sqrt()
            })
            .collect()
    }

    #[test]
    fn rfft_matches_the_definition_for_odd_and_even_lengths() {
        for n in [1, 2, 7, 16, 101] {
            let x: Vec<f64> = (0..n).map(|i| ((i * 7919) % 13) as f64 - 6.0).collect();
            let got = rfft_magnitude(&x);
            let want = naive(&x);
            assert_eq!(got.len(), n / 2 + 1);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-9 * w.abs().max(1.0), "{n}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn stft_windows_follow_the_hop() {
        let s = Stft {
            window: 8,
            hop: 4,
            window_fn: WindowFn::Hann,
            scale: Scale::Power,
        };
        let x: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let (rows, n) = s.windows(&x);
        assert_eq!(n, 4);
        assert_eq!(rows.len(), 4 * 5);
        let w = WindowFn::Hann.coefficients(8);
        let third: Vec<f64> = x[8..16].iter().zip(&w).map(|(a, b)| a * b).collect();
        for (g, m) in rows[10..15].iter().zip(naive(&third)) {
            assert!((g - m * m).abs() < 1e-9 * (m * m).max(1.0));
        }
        assert!((WindowFn::Hamming.coefficients(3)[1] - 1.0).abs() < 1e-15);
    }

    /// Magnitude spectra of 64-sample windows every 16 samples, and `n` int16-like samples.
    fn stft_64_16(window_fn: WindowFn, n: usize) -> (Stft, Vec<f64>) {
        let s = Stft {
            window: 64,
            hop: 16,
            window_fn,
            scale: Scale::Magnitude,
        };
        let x = (0..n)
            .map(|i| ((i * 7919) % 65536) as f64 - 32768.0)
            .collect();
        (s, x)
    }

    #[test]
    fn stft_bytes_do_not_depend_on_the_threads() {
        let (s, x) = stft_64_16(WindowFn::Hann, 5000);
        let one = s.windows_le(&x, 1);
        assert_eq!(one.len(), s.count(x.len()) * s.bins() * 8);
        for t in [2, 3, 4] {
            assert!(s.windows_le(&x, t) == one, "{t} threads");
        }
        let (rows, n) = s.windows(&x);
        assert_eq!(n, (5000 - 64) / 16 + 1);
        let w = WindowFn::Hann.coefficients(64);
        let last: Vec<f64> = x[(n - 1) * 16..(n - 1) * 16 + 64]
            .iter()
            .zip(&w)
            .map(|(a, b)| a * b)
            .collect();
        for (g, m) in rows[(n - 1) * 33..].iter().zip(naive(&last)) {
            assert!((g - m).abs() <= 1e-9 * m.max(1.0), "{g} vs {m}");
        }
    }

    #[test]
    fn float32_rows_are_the_float64_values_rounded_once() {
        let (s, x) = stft_64_16(WindowFn::Hamming, 3000);
        let wide = s.windows_le(&x, 1);
        for t in [1, 2] {
            let mut narrow = vec![0u8; s.count(x.len()) * s.bins() * 4];
            s.windows_into(&x, t, Precision::Float32, &mut narrow);
            assert_eq!(narrow.len() * 2, wide.len());
            for (n, w) in narrow.chunks_exact(4).zip(wide.chunks_exact(8)) {
                let w = f64::from_le_bytes(w.try_into().unwrap());
                assert_eq!(f32::from_le_bytes(n.try_into().unwrap()), w as f32);
            }
        }
        assert_eq!(Precision::Float32.dtype(), "float32");
        assert_eq!(
            serde_json::from_value::<Precision>(serde_json::json!("float32")).unwrap(),
            Precision::Float32
        );
        assert!(serde_json::from_value::<Precision>(serde_json::json!("int8")).is_err());
    }
}
