//! Reductions (sum, mean, min, max, std, count of a predicate) over a region, whole or
//! along one axis, computed chunk by chunk on a rayon pool whose size follows a memory
//! budget: each worker holds one decoded chunk (and its `f64` copy) at a time, so memory
//! is `workers × chunk` plus the result, whatever the array's size.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;
use serde_json::{json, Value};

use crate::dtype::Dtype;
use crate::error::{ArrayError, ArrayResult};
use crate::npy::element_count;
use crate::region::Region;
use crate::store::{for_each_index, strides, DataArray};

/// A reduction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// Sum.
    Sum,
    /// Arithmetic mean.
    Mean,
    /// Minimum (NaN propagates, as in numpy).
    Min,
    /// Maximum (NaN propagates).
    Max,
    /// Population standard deviation (numpy's default, ddof=0).
    Std,
    /// Number of elements satisfying a predicate.
    Count(Predicate),
}

/// A comparison against a constant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Predicate {
    /// `eq`, `ne`, `lt`, `le`, `gt`, `ge`.
    pub cmp: Cmp,
    /// The constant.
    pub value: f64,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// ==
    Eq,
    /// !=
    Ne,
    /// <
    Lt,
    /// <=
    Le,
    /// >
    Gt,
    /// >=
    Ge,
}

impl Predicate {
    /// Parses `gt:0.5` and the like.
    pub fn parse(text: &str) -> ArrayResult<Predicate> {
        let bad = || {
            ArrayError::BadRequest(format!(
                "predicate '{text}' must be OP:NUMBER with OP one of eq, ne, lt, le, gt, ge"
            ))
        };
        let (op, value) = text.split_once(':').ok_or_else(bad)?;
        let cmp = match op {
            "eq" => Cmp::Eq,
            "ne" => Cmp::Ne,
            "lt" => Cmp::Lt,
            "le" => Cmp::Le,
            "gt" => Cmp::Gt,
            "ge" => Cmp::Ge,
            _ => return Err(bad()),
        };
        let value = value.trim().parse().map_err(|_| bad())?;
        Ok(Predicate { cmp, value })
    }

    fn test(&self, x: f64) -> bool {
        match self.cmp {
            Cmp::Eq => x == self.value,
            Cmp::Ne => x != self.value,
            Cmp::Lt => x < self.value,
            Cmp::Le => x <= self.value,
            Cmp::Gt => x > self.value,
            Cmp::Ge => x >= self.value,
        }
    }
}

impl Op {
    /// Parses `op` (and `where` for `count`).
    pub fn parse(op: &str, predicate: Option<&str>) -> ArrayResult<Op> {
        Ok(match op {
            "sum" => Op::Sum,
            "mean" => Op::Mean,
            "min" => Op::Min,
            "max" => Op::Max,
            "std" => Op::Std,
            "count" => Op::Count(Predicate::parse(predicate.ok_or_else(|| {
                ArrayError::BadRequest("op=count needs where=OP:NUMBER, e.g. where=gt:0".into())
            })?)?),
            other => {
                return Err(ArrayError::BadRequest(format!(
                    "unknown op '{other}'; expected sum, mean, min, max, std or count"
                )))
            }
        })
    }
}

/// Running statistics of a set of values; merged with Chan's formula.
#[derive(Debug, Clone, Copy)]
struct Acc {
    n: u64,
    mean: f64,
    m2: f64,
    sum: f64,
    min: f64,
    max: f64,
    count: u64,
}

impl Acc {
    const EMPTY: Acc = Acc {
        n: 0,
        mean: 0.0,
        m2: 0.0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        count: 0,
    };

    #[inline]
    fn push(&mut self, x: f64, pred: Option<&Predicate>) {
        self.n += 1;
        let d = x - self.mean;
        #[allow(clippy::cast_precision_loss)]
        let n = self.n as f64;
        self.mean += d / n;
        self.m2 += d * (x - self.mean);
        self.sum += x;
        self.min = nan_min(self.min, x);
        self.max = nan_max(self.max, x);
        if pred.is_some_and(|p| p.test(x)) {
            self.count += 1;
        }
    }

    /// Statistics of a sequence, two-pass for an accurate variance.
    fn of<I: Iterator<Item = f64> + Clone>(values: I, pred: Option<&Predicate>) -> Acc {
        let (n, sum) = values.clone().fold((0u64, 0.0), |(n, s), x| (n + 1, s + x));
        if n == 0 {
            return Acc::EMPTY;
        }
        #[allow(clippy::cast_precision_loss)]
        let mean = sum / n as f64;
        let mut acc = Acc {
            n,
            mean,
            m2: 0.0,
            sum,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            count: 0,
        };
        for x in values {
            let d = x - mean;
            acc.m2 += d * d;
            acc.min = nan_min(acc.min, x);
            acc.max = nan_max(acc.max, x);
            if pred.is_some_and(|p| p.test(x)) {
                acc.count += 1;
            }
        }
        acc
    }

    /// Count and sum only (for `sum` and `mean`), over eight independent lanes so the
    /// additions pipeline and vectorise.
    #[allow(clippy::cast_precision_loss)]
    fn of_sum(values: &[f64]) -> Acc {
        let mut lanes = [0.0f64; 8];
        let mut blocks = values.chunks_exact(8);
        for block in &mut blocks {
            for (lane, x) in lanes.iter_mut().zip(block) {
                *lane += x;
            }
        }
        let sum: f64 = lanes.iter().sum::<f64>() + blocks.remainder().iter().sum::<f64>();
        let n = values.len() as u64;
        if n == 0 {
            return Acc::EMPTY;
        }
        Acc {
            n,
            mean: sum / n as f64,
            sum,
            ..Acc::EMPTY
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn merge(self, o: Acc) -> Acc {
        if self.n == 0 {
            return o;
        }
        if o.n == 0 {
            return self;
        }
        let n = self.n + o.n;
        let d = o.mean - self.mean;
        let (na, nb, nn) = (self.n as f64, o.n as f64, n as f64);
        Acc {
            n,
            mean: self.mean + d * nb / nn,
            m2: self.m2 + o.m2 + d * d * na * nb / nn,
            sum: self.sum + o.sum,
            min: nan_min(self.min, o.min),
            max: nan_max(self.max, o.max),
            count: self.count + o.count,
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn result(&self, op: Op) -> Value {
        let f = |x: f64| {
            if x.is_finite() {
                json!(x)
            } else {
                json!(x.to_string())
            }
        };
        match op {
            Op::Sum => f(self.sum),
            Op::Count(_) => json!(self.count),
            _ if self.n == 0 => Value::Null,
            Op::Mean => f(self.sum / self.n as f64),
            Op::Min => f(self.min),
            Op::Max => f(self.max),
            Op::Std => f((self.m2 / self.n as f64).sqrt()),
        }
    }
}

fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Chunks of an unencoded array read ahead of the workers at most.
const PREFETCH_CHUNKS: usize = 16;
/// Threads reading ahead (they wait on the disk, not on a core): each populates one chunk
/// map at a time, so this is the number of chunk reads in flight. Measured on the
/// project's virtio disk (bench/RESULTS.md, 4 GiB cold, medians of 6): 3 threads 2.70 s,
/// 8 threads 2.13 s, numpy.memmap 2.94 s.
const PREFETCH_THREADS: usize = 8;

/// Most chunks one reduction visits (2^24: 16 TiB in 1 MiB chunks); a wider region is
/// refused rather than left to run for hours.
pub const MAX_REDUCE_CHUNKS: u64 = 1 << 24;

/// How long mapping a chunk of `bytes` may take before the reduction counts its data as
/// cold (read from the disk, not the page cache) and starts reading ahead: longer than
/// at 4 GB/s, and than 0.2 ms.
fn cold_after(bytes: usize) -> std::time::Duration {
    std::time::Duration::from_nanos(u64::try_from(bytes / 4).unwrap_or(u64::MAX).max(200_000))
}

/// Bytes of one per-output-element accumulator.
const ACC_BYTES: u64 = std::mem::size_of::<Acc>() as u64;

/// Reduces `region` of `array` with `op`, over everything (`axis` none) or along `axis` (an
/// axis of the region's result, as numpy counts them). Returns the scalar or the nested
/// list of results (numpy's shape), with the number of workers used.
pub fn reduce(
    array: &DataArray,
    region: &Region,
    op: Op,
    axis: Option<usize>,
    budget: u64,
) -> ArrayResult<(Value, Vec<u64>, usize)> {
    if array.dtype().is_complex() {
        return Err(ArrayError::BadRequest(format!(
            "reductions are not defined here for {}",
            array.dtype().name()
        )));
    }
    if !region.contiguous() {
        return Err(ArrayError::BadRequest(
            "reductions take a region without steps".into(),
        ));
    }
    // Dimensions of the array that the result's axes number.
    let kept: Vec<usize> = (0..region.dims.len())
        .filter(|&d| region.dims[d].keep)
        .collect();
    let axis_dim = match axis {
        None => None,
        Some(a) => Some(*kept.get(a).ok_or_else(|| {
            ArrayError::BadRequest(format!(
                "axis {a} is out of bounds for a region of {} dimensions",
                kept.len()
            ))
        })?),
    };
    let ranges: Vec<Range<u64>> = region.dims.iter().map(|d| d.start..d.stop).collect();
    // The result's shape (kept dims minus the reduced axis) and each array dim's stride in it.
    let out_dims: Vec<usize> = kept
        .iter()
        .copied()
        .filter(|&d| Some(d) != axis_dim)
        .collect();
    let out_shape: Vec<u64> = if axis_dim.is_some() {
        out_dims.iter().map(|&d| region.dims[d].len()).collect()
    } else {
        Vec::new()
    };
    let out_len = element_count(&out_shape).unwrap_or(u64::MAX);
    let out_strides = strides(&out_shape);
    let mut dim_stride = vec![0u64; region.dims.len()];
    if axis_dim.is_some() {
        for (k, &d) in out_dims.iter().enumerate() {
            dim_stride[d] = out_strides[k];
        }
    }

    let chunk = array.chunk_shape()?;
    let chunk_elems = element_count(&chunk).unwrap_or(u64::MAX);
    let per_worker = chunk_elems.saturating_mul(array.dtype().size() as u64 + 8 + 8)
        + out_len.saturating_mul(ACC_BYTES);
    if out_len.saturating_mul(ACC_BYTES) > budget / 2 {
        return Err(ArrayError::BadRequest(format!(
            "the result of {out_len} elements does not fit in the reduction memory budget of {budget} bytes"
        )));
    }
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let workers = usize::try_from(budget / per_worker.max(1))
        .unwrap_or(cpus)
        .clamp(1, cpus);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .map_err(|e| ArrayError::Storage(format!("cannot start reduction workers: {e}")))?;
    let boxes = array.chunk_grid(&ranges)?;
    if boxes.len() > MAX_REDUCE_CHUNKS {
        return Err(ArrayError::BadRequest(format!(
            "the region covers {} chunks; a reduction takes at most {MAX_REDUCE_CHUNKS}: reduce a smaller region",
            boxes.len()
        )));
    }
    let n_boxes = usize::try_from(boxes.len())
        .map_err(|_| ArrayError::BadRequest("the region has too many chunks".into()))?;
    let pred = match op {
        Op::Count(p) => Some(p),
        _ => None,
    };
    let dtype = array.dtype();
    let out_size =
        usize::try_from(out_len).map_err(|_| ArrayError::BadRequest("result too large".into()))?;

    // Unencoded chunks are mapped, not read: their bytes stay in the page cache and the
    // sums read them there (the warm case costs no copy). Workers take chunks in order
    // (`par_bridge` over one sequential iterator); once a worker finds a chunk cold (its
    // map took longer than memory would), prefetch threads read the next ones, so a cold
    // disk stays busy while the workers sum. They never probe residency with a read: a
    // `RWF_NOWAIT` read of an uncached page starts a small readahead, and the small folios
    // it leaves keep that part of the chunk from being mapped by huge pages later (warm
    // passes measured 0.21 s instead of 0.15 s over 4 GiB).
    let mapped = array.raw_codecs()?;
    let sum_only = axis_dim.is_none() && dtype == Dtype::F64 && matches!(op, Op::Sum | Op::Mean);
    let taken = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let cursor = AtomicUsize::new(0);
    let cold = AtomicBool::new(false);
    let job = ChunkJob {
        array,
        mapped,
        cold: &cold,
        dtype,
        whole: axis_dim.is_none(),
        sum_only,
        pred: pred.as_ref(),
        ranges: &ranges,
        dim_stride: &dim_stride,
    };
    let accs: ArrayResult<Vec<Acc>> = std::thread::scope(|scope| {
        if mapped && n_boxes > 1 {
            // Several readers keep several chunk reads in flight, as the kernel's own
            // readahead does for one big file.
            for _ in 0..PREFETCH_THREADS {
                scope.spawn(|| prefetch(array, &boxes, n_boxes, &taken, &cursor, &cold, &done));
            }
        }
        let accs = pool.install(|| {
            boxes
                .iter()
                .enumerate()
                .par_bridge()
                .inspect(|(i, _)| {
                    taken.fetch_max(i + 1, Ordering::Relaxed);
                })
                .try_fold(
                    || vec![Acc::EMPTY; out_size],
                    |mut accs, (_, b)| -> ArrayResult<Vec<Acc>> {
                        fold_chunk(&job, &mut accs, &b)?;
                        Ok(accs)
                    },
                )
                .try_reduce(
                    || vec![Acc::EMPTY; out_size],
                    |a, b| Ok(a.into_iter().zip(b).map(|(x, y)| x.merge(y)).collect()),
                )
        });
        done.store(true, Ordering::Relaxed);
        accs
    });
    let accs = accs?;

    let result = if axis_dim.is_none() {
        accs.first().copied().unwrap_or(Acc::EMPTY).result(op)
    } else {
        nest(
            &accs.iter().map(|a| a.result(op)).collect::<Vec<_>>(),
            &out_shape,
        )
    };
    Ok((result, out_shape, workers))
}

/// A prefetch thread: once the data proves cold, maps the chunks just ahead of the
/// workers (at most [`PREFETCH_CHUNKS`] past the last one taken), each once.
fn prefetch(
    array: &DataArray,
    boxes: &crate::store::ChunkGrid,
    n_boxes: usize,
    taken: &AtomicUsize,
    cursor: &AtomicUsize,
    cold: &AtomicBool,
    done: &AtomicBool,
) {
    while !done.load(Ordering::Relaxed) {
        if !cold.load(Ordering::Relaxed) {
            // Warm so far: reading ahead would only map the chunks twice.
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        }
        let t = taken.load(Ordering::Relaxed);
        let next = cursor.fetch_max(t, Ordering::Relaxed).max(t);
        if next >= n_boxes {
            break;
        }
        if next >= t + PREFETCH_CHUNKS {
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        }
        // Claim `next`; another reader may have taken it meanwhile.
        if cursor
            .compare_exchange(next, next + 1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            if let Some(b) = boxes.get(next as u64) {
                array.prefetch_raw_chunk(&b);
            }
        }
    }
}

/// What every worker of one reduction shares.
struct ChunkJob<'a> {
    array: &'a DataArray,
    /// Unencoded chunks: mapped, not read.
    mapped: bool,
    /// Set once a chunk's map was slower than memory (the prefetchers start).
    cold: &'a AtomicBool,
    dtype: Dtype,
    /// Reduced to one value (no axis).
    whole: bool,
    /// float64 sum or mean of everything: the vectorised path.
    sum_only: bool,
    pred: Option<&'a Predicate>,
    ranges: &'a [Range<u64>],
    /// Each array dimension's stride in the result (0 for the reduced one).
    dim_stride: &'a [u64],
}

/// Adds the chunk box `b` into `accs`.
fn fold_chunk(job: &ChunkJob<'_>, accs: &mut [Acc], b: &[Range<u64>]) -> ArrayResult<()> {
    let (array, dtype, pred) = (job.array, job.dtype, job.pred);
    let map = if job.mapped {
        let started = std::time::Instant::now();
        let map = array.map_raw_chunk(b)?;
        // Slower than memory: the chunk came from the disk.
        let bytes = map.as_ref().map_or(0, |m| m.len());
        if started.elapsed() > cold_after(bytes) {
            job.cold.store(true, Ordering::Relaxed);
        }
        map
    } else {
        None
    };
    let read;
    let raw: &[u8] = if let Some(map) = &map {
        map
    } else {
        read = array.read_box(b)?;
        &read
    };
    if job.whole && dtype == Dtype::F64 {
        // Aligned when mapped (page boundaries); a copied chunk is read element by
        // element otherwise.
        if let Ok(values) = bytemuck::try_cast_slice::<u8, f64>(raw) {
            accs[0] = accs[0].merge(if job.sum_only {
                Acc::of_sum(values)
            } else {
                Acc::of(values.iter().copied(), pred)
            });
            return Ok(());
        }
        let values = raw.chunks_exact(8).map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            f64::from_le_bytes(a)
        });
        accs[0] = accs[0].merge(Acc::of(values, pred));
        return Ok(());
    }
    let mut values = Vec::with_capacity(raw.len() / dtype.size());
    dtype.extend_f64(raw, &mut values);
    drop(map);
    if job.whole {
        accs[0] = accs[0].merge(Acc::of(values.iter().copied(), pred));
        return Ok(());
    }
    let shape: Vec<u64> = b.iter().map(|r| r.end - r.start).collect();
    let base: u64 = b
        .iter()
        .zip(job.ranges)
        .zip(job.dim_stride)
        .map(|((r, full), s)| (r.start - full.start) * s)
        .sum();
    let mut k = 0usize;
    for_each_index(&shape, |idx| {
        let o: u64 = idx.iter().zip(job.dim_stride).map(|(i, s)| i * s).sum();
        let o = usize::try_from(base + o).unwrap_or(0);
        accs[o].push(values[k], pred);
        k += 1;
        Ok(())
    })?;
    Ok(())
}

/// A flat C-order list as nested JSON lists of `shape`.
fn nest(flat: &[Value], shape: &[u64]) -> Value {
    match shape {
        [] => flat.first().cloned().unwrap_or(Value::Null),
        [_] => Value::Array(flat.to_vec()),
        [n, rest @ ..] => {
            let step = usize::try_from(element_count(rest).unwrap_or(0)).unwrap_or(0);
            Value::Array(
                (0..usize::try_from(*n).unwrap_or(0))
                    .map(|i| nest(&flat[i * step..(i + 1) * step], rest))
                    .collect(),
            )
        }
    }
}
