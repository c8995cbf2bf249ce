//! The STFT's compute alone, without the server or the disk: the windows of a signal
//! through `Stft::windows_into` on 1 and 2 threads, beside its parts timed apart on one
//! thread (the window multiply, the real FFT, the modulus into little-endian bytes), so
//! a change to the loop shows where it moved the time.
//!
//! `cargo bench -p wendelin-data-operation --bench stft -- [WINDOWS] [ROUNDS]` (defaults
//! 16384 windows of 4096 samples at hop 2048, Hann, magnitude — `bench/analysis.py`'s —
//! and 5 rounds; the median of the rounds is printed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::Instant;

use realfft::RealFftPlanner;
use wendelin_data_operation::spectrum::{Precision, Scale, Stft, WindowFn};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds of `rounds` calls of `f`.
fn time(rounds: usize, mut f: impl FnMut()) -> f64 {
    median(
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let windows = args.first().copied().unwrap_or(16384);
    let rounds = args.get(1).copied().unwrap_or(5).max(1);
    let s = Stft {
        window: 4096,
        hop: 2048,
        window_fn: WindowFn::Hann,
        scale: Scale::Magnitude,
    };
    let n = (windows - 1) * s.hop + s.window;
    // A deterministic int16-like signal (an LCG), as the WAV's samples.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let x: Vec<f64> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            f64::from((state >> 48) as u16 as i16)
        })
        .collect();
    let row = s.bins() * 8;
    let mut out = vec![0u8; windows * row];
    let per = |secs: f64| secs / windows as f64 * 1e9;
    let report = |what: &str, secs: f64| {
        println!(
            "{what:<34} {:>8.1} ms  {:>7.0} ns/window",
            secs * 1e3,
            per(secs)
        );
    };

    for threads in [1, 2] {
        let t = time(rounds, || {
            s.windows_into(black_box(&x), threads, Precision::Float64, &mut out)
        });
        report(&format!("windows_into, {threads} thread(s)"), t);
    }
    let mut narrow = vec![0u8; windows * s.bins() * 4];
    let t = time(rounds, || {
        s.windows_into(black_box(&x), 2, Precision::Float32, &mut narrow)
    });
    report("windows_into float32, 2 threads", t);

    // Its parts on one thread.
    let coeffs = s.window_fn.coefficients(s.window);
    let plan = RealFftPlanner::<f64>::new().plan_fft_forward(s.window);
    let mut input = plan.make_input_vec();
    let mut spectrum = plan.make_output_vec();
    let mut scratch = plan.make_scratch_vec();
    let t = time(rounds, || {
        for i in 0..windows {
            let w = &x[i * s.hop..i * s.hop + s.window];
            for ((v, a), c) in input.iter_mut().zip(w).zip(&coeffs) {
                *v = a * c;
            }
            black_box(&input);
        }
    });
    report("  window multiply", t);
    let t = time(rounds, || {
        for _ in 0..windows {
            plan.process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .unwrap();
            black_box(&spectrum);
        }
    });
    report("  real FFT (realfft)", t);
    let t = time(rounds, || {
        for o in out.chunks_exact_mut(row) {
            for (b, c) in o.chunks_exact_mut(8).zip(&spectrum) {
                b.copy_from_slice(&(c.re * c.re + c.im * c.im).sqrt().to_le_bytes());
            }
        }
        black_box(&out);
    });
    report("  modulus into bytes", t);
}
