#!/usr/bin/env bash
# Before/after comparison of two `wendelin` binaries on one whole-system benchmark, run
# interleaved (A1 B1 A2 B2 …) so that the machine's drift hits both alike.
# Usage: bench/ab.sh BIN_A BIN_B ROUNDS SCRIPT [ARGS…]
#   e.g. bench/ab.sh /tmp/wendelin-a target/release/wendelin 2 bench/ui.py 10000 30
# Each run's output goes to stdout under a "== A1" / "== B1" heading; compare the ratios a
# script reports within each run, and each pair's figures with each other.
set -euo pipefail
[ "$#" -ge 4 ] || { sed -n 2,7p "$0"; exit 2; }
a="$1" b="$2" rounds="$3" script="$4"
shift 4
py="$(dirname "$0")/../.venv/bin/python"
[ -x "$py" ] || py=python3
for i in $(seq 1 "$rounds"); do
    for side in A B; do
        bin="$a"
        [ "$side" = B ] && bin="$b"
        echo "== $side$i ($bin, $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"
        WENDELIN_BIN="$bin" "$py" "$script" "$@"
    done
done
