#!/usr/bin/env python3
"""Counts the failures of a Schemathesis run by check, from its NDJSON report.

Usage: python3 bench/schemathesis_summary.py schemathesis-report/ndjson-*.ndjson [-v]

A failure is counted once per (operation, check, title, response status), close to how
Schemathesis's own summary deduplicates them; -v lists each with an example request.
"""
import collections
import json
import sys


def main(path, verbose):
    seen = {}
    operations = set()
    cases = 0
    for line in open(path, encoding="utf-8"):
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished.get("recorder") or {}
        label = recorder.get("label")
        if label:
            operations.add(label)
        for case_id, checks in (recorder.get("checks") or {}).items():
            cases += 1
            for check in checks:
                if check.get("status") != "failure":
                    continue
                failure = (check.get("failure_info") or {}).get("failure") or {}
                message = (failure.get("message") or "").splitlines()
                interaction = (recorder.get("interactions") or {}).get(case_id) or {}
                request = interaction.get("request") or {}
                status = (interaction.get("response") or {}).get("status_code")
                key = (label, check["name"], failure.get("title"), status)
                if key not in seen:
                    seen[key] = (
                        f"{request.get('method')} {request.get('uri')} -> {status}: "
                        + " / ".join(message[:2])
                    )
    by_check = collections.Counter(k[1] for k in seen)
    print(f"operations: {len(operations)}, checked responses: {cases}, unique failures: {len(seen)}")
    for name, n in by_check.most_common():
        print(f"  {name}: {n}")
    if verbose:
        for key, example in sorted(seen.items(), key=lambda kv: (kv[0][1], str(kv[0]))):
            print(f"{key[1]} | {key[0]} | {key[2]}\n    {example}")


if __name__ == "__main__":
    main(sys.argv[1], "-v" in sys.argv[2:])
