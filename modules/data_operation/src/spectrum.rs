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

    /// |rfft(x · window)| (or its square) into `out` (appended, `bins()` values).
    pub fn run(&mut self, x: &[f64], window: Option<&[f64]>, scale: Scale, out: &mut Vec<f64>) {
        match window {
            Some(w) => {
                for ((i, v), c) in self.input.iter_mut().zip(x).zip(w) {
                    *i = v * c;
                }
            }
            None => self.input.copy_from_slice(x),
        }
        // Lengths match by construction: the plan made both vectors.
        if self
            .plan
            .process_with_scratch(&mut self.input, &mut self.output, &mut self.scratch)
            .is_err()
        {
            out.extend(std::iter::repeat_n(f64::NAN, self.output.len()));
            return;
        }
        out.extend(self.output.iter().map(|c| match scale {
            Scale::Magnitude => c.norm(),
            Scale::Power => c.norm_sqr(),
        }));
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

    /// The spectra of the windows starting at `first * hop`, `(first+1) * hop`, … that lie
    /// wholly inside `x`, where `x` holds the signal from sample `first * hop`. Returns
    /// the rows (windows × bins, C order) and how many windows.
    pub fn windows(&self, x: &[f64]) -> (Vec<f64>, usize) {
        if x.len() < self.window {
            return (Vec::new(), 0);
        }
        let n = (x.len() - self.window) / self.hop + 1;
        let coeffs = self.window_fn.coefficients(self.window);
        let mut f = Rfft::new(self.window);
        let mut out = Vec::with_capacity(n * self.bins());
        for w in 0..n {
            let s = w * self.hop;
            f.run(&x[s..s + self.window], Some(&coeffs), self.scale, &mut out);
        }
        (out, n)
    }
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
}
