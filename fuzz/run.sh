#!/usr/bin/env bash
# Builds every fuzz target once (cargo fuzz, libFuzzer, no sanitizer: the code is safe
# Rust but for one audited unsafe fn) and runs each for SECONDS (default 60), one after
# the other (or only the TARGETs named after SECONDS); fails when any target crashes
# (a timeout of 10 s on one input counts), and says which (the input is kept in
# fuzz/artifacts/<target>/). With FUZZ_RUNS=N a target also stops after N executions.
# Each target starts from the seeds in fuzz/corpus/<target>/ (committed, small); what it
# finds goes to fuzz/target/corpus/<target>/ (not committed) and is reused next time.
# Logs: fuzz/target/logs/<target>.log; a summary line per target on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
cargo +nightly fuzz build -s none
bin="fuzz/target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"
mkdir -p fuzz/target/logs fuzz/target/corpus
# Inputs much longer than what each parser meets in practice find nothing new.
max_len() {
    case "$1" in
        http_range | zarr_key | region) echo 512 ;;
        query | form | npy) echo 8192 ;;
        *) echo 65536 ;;
    esac
}
failed=()
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
for t in "${targets[@]}"; do
    mkdir -p "fuzz/target/corpus/$t" "fuzz/artifacts/$t"
    args=(-max_total_time="$secs" -rss_limit_mb=2048 -max_len="$(max_len "$t")" -timeout=10
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/")
    [ -n "${FUZZ_RUNS:-}" ] && args+=(-runs="$FUZZ_RUNS")
    start=$(date +%s)
    if "$bin/$t" "${args[@]}" "fuzz/target/corpus/$t" "fuzz/corpus/$t" >"fuzz/target/logs/$t.log" 2>&1; then
        status=ok
    else
        status=CRASH
        failed+=("$t")
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "fuzz/target/logs/$t.log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "fuzz/target/logs/$t.log" | tail -1)
    echo "fuzz $t: $status, ${runs:-?} executions in $(($(date +%s) - start)) s (${speed:-?}/s)"
done
if [ "${#failed[@]}" -gt 0 ]; then
    for t in "${failed[@]}"; do
        echo "--- $t (fuzz/target/logs/$t.log):"
        grep -E -A30 'ERROR: libFuzzer|panicked at|deadly signal|SUMMARY' "fuzz/target/logs/$t.log" | head -60
    done
    echo "fuzzing found crashes in: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
