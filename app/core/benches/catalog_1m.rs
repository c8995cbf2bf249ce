//! The catalog at scale: loads N documents (default 1,000,000) into a fresh SQLite portal
//! with the bulk path, lets the full-text index catch up, then measures structured
//! queries, full-text queries and exact counts through `Portal::search`, the path the
//! JSON API and the UI use (security filter included).
//!
//! `cargo bench -p wendelin-core --bench catalog_1m -- [N] [--load-only]` (on an empty
//! PostgreSQL database with `CATALOG_BENCH_URL=postgres://…`); with
//! `CATALOG_BENCH_KEEP=1` the database and index are kept, and
//! `-- --reuse DIR` measures the queries again on such a kept directory (a settled system:
//! right after the load, tantivy is still merging segments on one of the two cores).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The allocator of the `wendelin` binary, so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use serde_json::json;
use wendelin_core::catalog::{Count, Search};
use wendelin_core::{
    Module, NewDocument, Portal, PortalType, PropertyDef, PropertyType, Registry, User,
};

fn registry() -> Registry {
    let module = Module::new("plant")
        .folder("sensor_module", "Sensors", &["Sensor"])
        .portal_type(
            PortalType::new("Sensor", "sensor_module")
                .property(PropertyDef::new("size", PropertyType::Int).indexed())
                .property(PropertyDef::new("site", PropertyType::String).indexed())
                .property(PropertyDef::new("notes", PropertyType::Text).full_text())
                .workflow("validation_workflow"),
        );
    Registry::build(vec![wendelin_core::base::module(), module]).unwrap()
}

/// xorshift64*: reproducible data without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: u64 = 5_000;

fn word(i: u64) -> String {
    format!("w{i:04}")
}

fn carol() -> User {
    User::authenticated("carol", ["Author".to_owned()], vec![])
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Runs `f` for rounds 0..`rounds` twice: a first pass, whose p99 is reported apart (it
/// includes the first touch of the index pages these queries read, right after the load),
/// then the measured pass. At most 20 s per pass.
fn measure(label: &str, rounds: usize, mut f: impl FnMut(usize) -> i64) {
    let pass = |f: &mut dyn FnMut(usize) -> i64| {
        let mut times = Vec::with_capacity(rounds);
        let mut total = 0;
        let budget = Instant::now();
        for i in 0..rounds {
            let t = Instant::now();
            total = f(i);
            times.push(t.elapsed());
            if budget.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
        times.sort();
        (times, total)
    };
    let (first, _) = pass(&mut f);
    let (times, total) = pass(&mut f);
    println!(
        "| {label} | {} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {total} |",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3,
        percentile(&first, 0.99).as_secs_f64() * 1e3,
    );
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let alice = User::authenticated("alice", ["Author".to_owned()], vec![]);
    let bob = User::authenticated("bob", ["Author".to_owned()], vec![]);
    let manager = User::authenticated("boss", ["Manager".to_owned()], vec![]);
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--reuse") {
        let dir = std::path::PathBuf::from(&args[i + 1]);
        let url = dir.join("bench.sqlite").display().to_string();
        let portal = Portal::open(registry(), &url, 4).unwrap();
        portal.start_fulltext(&dir.join("index")).unwrap();
        portal
            .fulltext()
            .unwrap()
            .flush(Duration::from_secs(3600))
            .unwrap();
        println!("queries on the kept catalog in {}", dir.display());
        queries(&portal, &manager, &alice, &bob);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // CATALOG_BENCH_URL: another database (an empty PostgreSQL one) instead of SQLite.
    let url = std::env::var("CATALOG_BENCH_URL")
        .unwrap_or_else(|_| dir.path().join("bench.sqlite").display().to_string());
    let portal = Portal::open(registry(), &url, 4).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

    // Load: 90% of the documents owned by alice, 10% by bob.
    // CATALOG_BENCH_BATCH: documents per `create_many` call (one transaction each).
    let batch: usize = std::env::var("CATALOG_BENCH_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(10_000);
    // Only the portal's work is timed, not the making of the documents' JSON here.
    let mut sql_time = Duration::ZERO;
    let mut loaded = 0;
    while loaded < n {
        let size = batch.min(n - loaded);
        let owner = if (loaded / batch) % 10 == 9 {
            &bob
        } else {
            &alice
        };
        let news: Vec<NewDocument> = (0..size)
            .map(|_| {
                let i = rng.below(1_000_000);
                NewDocument::from_json(json!({
                    "portal_type": "Sensor",
                    "title": format!("sensor {} {} {i}", word(rng.below(WORDS)), word(rng.below(WORDS))),
                    "size": rng.below(1000),
                    "site": format!("hall{}", rng.below(100)),
                    "notes": format!("{} {} {}", word(rng.below(WORDS)), word(rng.below(WORDS)), word(rng.below(WORDS))),
                }))
                .unwrap()
            })
            .collect();
        let started = Instant::now();
        portal.create_many(owner, "sensor_module", news).unwrap();
        sql_time += started.elapsed();
        loaded += size;
        if std::env::var_os("CATALOG_BENCH_PROGRESS").is_some() {
            println!(
                "{loaded} documents: last batch {:.0} docs/s",
                size as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    // carol owns 500 more (not timed): a user who sees few documents of a big catalog.
    let carols: Vec<NewDocument> = (0..500)
        .map(|i| {
            NewDocument::from_json(json!({
                "portal_type": "Sensor",
                "title": format!("sensor {} carol {i}", word(rng.below(WORDS))),
                "size": rng.below(1000),
                "site": format!("hall{}", rng.below(100)),
            }))
            .unwrap()
        })
        .collect();
    portal
        .create_many(&carol(), "sensor_module", carols)
        .unwrap();
    if std::env::args().any(|a| a == "--load-only") {
        // For profiling the load alone.
        println!(
            "bulk load: {:.1} s = {:.0} docs/s",
            sql_time.as_secs_f64(),
            n as f64 / sql_time.as_secs_f64()
        );
        return;
    }
    let t = Instant::now();
    portal.start_fulltext(&dir.path().join("index")).unwrap();
    portal
        .fulltext()
        .unwrap()
        .flush(Duration::from_secs(3600))
        .unwrap();
    let ft_time = t.elapsed();
    let db_bytes = std::fs::metadata(dir.path().join("bench.sqlite"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!("documents: {n}");
    if std::env::var_os("CATALOG_BENCH_KEEP").is_some() {
        // Keep the database for EXPLAIN QUERY PLAN and the like.
        println!("database kept in {}", dir.path().display());
        std::mem::forget(dir);
    }
    println!(
        "bulk load (SQL: documents, catalog columns, workflow states, roles, security sets, outbox): {:.1} s = {:.0} docs/s",
        sql_time.as_secs_f64(),
        n as f64 / sql_time.as_secs_f64()
    );
    println!(
        "full-text index catch-up after the load: {:.1} s = {:.0} docs/s; end to end {:.0} docs/s",
        ft_time.as_secs_f64(),
        n as f64 / ft_time.as_secs_f64(),
        n as f64 / (sql_time + ft_time).as_secs_f64()
    );
    println!("database file: {:.0} MiB", db_bytes as f64 / 1048576.0);
    queries(&portal, &manager, &alice, &bob);
}

/// Measures every query line on the loaded catalog.
fn queries(portal: &Portal, manager: &User, alice: &User, bob: &User) {
    println!();
    println!(
        "| query (Portal::search) | rounds | p50 | p99 | max | first pass p99 | total matches (last) |"
    );
    println!("|---|---|---|---|---|---|---|");

    let search = |user: &User, query: String, sort_on: &str, limit: i64, count: Count| {
        portal
            .search_counted(
                user,
                &Search {
                    query,
                    sort_on: sort_on.into(),
                    limit,
                    offset: 0,
                },
                count,
            )
            .unwrap()
    };
    // The page alone (no count): "total" is then the page's size.
    let page = |user: &User, query: String, sort_on: &str, limit: i64| {
        search(user, query, sort_on, limit, Count::None)
            .documents
            .len() as i64
    };
    // The page with the exact count, as the UI asks for it.
    let run = |user: &User, query: String, sort_on: &str, limit: i64| {
        search(user, query, sort_on, limit, Count::Exact).total
    };
    let rounds = 200;
    let mut q = Rng(42);
    let sites: Vec<u64> = (0..rounds).map(|_| q.below(100)).collect();
    let words: Vec<u64> = (0..rounds).map(|_| q.below(WORDS)).collect();
    for (name, user) in [
        ("manager", &manager),
        ("alice (90%)", &alice),
        ("bob (10%)", &bob),
    ] {
        measure(
            &format!(
                "structured page, {name}: site + size range, sort modification_date desc, limit 50"
            ),
            rounds,
            |i| {
                page(
                    user,
                    format!("site:hall{} AND size:>=500", sites[i]),
                    "modification_date desc",
                    50,
                )
            },
        );
        measure(
            &format!("exact count (+ page), {name}: site + size range"),
            rounds,
            |i| {
                run(
                    user,
                    format!("site:hall{} AND size:>=500", sites[i]),
                    "modification_date desc",
                    50,
                )
            },
        );
    }
    for (name, user) in [
        ("manager", &manager),
        ("alice (90%)", &alice),
        ("bob (10%)", &bob),
    ] {
        measure(
            &format!(
                "structured page, {name}: state + size range, sort modification_date desc, limit 50"
            ),
            rounds,
            |_| {
                page(
                    user,
                    "validation_state:draft AND size:>=500".into(),
                    "modification_date desc",
                    50,
                )
            },
        );
        measure(
            &format!("exact count (+ page), {name}: state + size range"),
            rounds,
            |_| {
                run(
                    user,
                    "validation_state:draft AND size:>=500".into(),
                    "modification_date desc",
                    50,
                )
            },
        );
    }
    let carol = carol();
    measure(
        "structured page, carol (500 of 1M): site + size range, sort modification_date desc, limit 50",
        rounds,
        |i| {
            page(
                &carol,
                format!("site:hall{} AND size:>=500", sites[i]),
                "modification_date desc",
                50,
            )
        },
    );
    measure(
        "exact count (+ page), carol (500 of 1M): portal_type, sort title",
        rounds,
        |_| run(&carol, "portal_type:Sensor".into(), "title", 50),
    );
    for (name, user) in [("manager", &manager), ("bob (10%)", &bob)] {
        measure(
            &format!("structured page, {name}: portal_type, sort title, limit 50"),
            rounds,
            |_| page(user, "portal_type:Sensor".into(), "title", 50),
        );
    }
    for (name, user) in [
        ("manager", &manager),
        ("alice (90%)", &alice),
        ("bob (10%)", &bob),
    ] {
        measure(
            &format!("full-text, {name}: one word, relevance, limit 50"),
            rounds,
            |i| run(user, word(words[i]), "", 50),
        );
    }
    measure(
        "full-text + structured, manager: word AND size range",
        rounds,
        |i| run(manager, format!("{} AND size:<100", word(words[i])), "", 50),
    );
    for (name, user) in [
        ("manager", &manager),
        ("alice (90%)", &alice),
        ("bob (10%)", &bob),
    ] {
        measure(
            &format!("exact count of every visible document, {name}"),
            50,
            |_| run(user, String::new(), "", 1),
        );
    }
}
