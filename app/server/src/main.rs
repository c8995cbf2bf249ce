//! The `wendelin` binary.

// mimalloc instead of glibc's malloc: a bulk load makes millions of short-lived
// allocations, and glibc spent a fifth of it merging its free lists
// (`malloc_consolidate`); see bench/RESULTS.md (2026-11-26, fourth session).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wendelin_server::cli::main()
}
