#!/usr/bin/env bash
# Compares the paths a change can slow against a base revision, both
# measured in the same run, alternating base and head each round so that
# the shared machine's load falls on both alike. Prints one markdown
# section (for BENCHMARKS.md) with the medians and head/base ratios.
#
# Usage: bench/compare.sh BASE_REV [ROUNDS]   (default 3 rounds)
#
# Paths: records into a container over the FIFO (internal/runner
# BenchmarkContainerInput/fifo, 512 MiB) and a container run with no input
# (BenchmarkContainerRun p50); claim+complete cycles over loopback HTTP
# (internal/server BenchmarkClaimComplete16, 20,000 cycles; cycles/s and CPU
# per cycle); and the os-count job end to end through af (bench/jobbench,
# Python and Go images, 512 MiB raw) with its fixed cost per task. Needs
# what `make bench` needs (bin/tools/minio, the images).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false
base_rev=${1:?usage: bench/compare.sh BASE_REV [ROUNDS]}
rounds=${2:-3}
base_sha=$(git rev-parse --short "$base_rev")
head_sha=$(git rev-parse --short HEAD)
# Raw outputs stay in out/compare for a second look; the base tree goes.
work=$PWD/out/compare
rm -rf "$work" && mkdir -p "$work"
trap 'git worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work/base" "$work"/bin-*' EXIT
git worktree add -q --detach "$work/base" "$base_rev"
export AF_MINIO=${AF_MINIO:-$PWD/bin/tools/minio}

build() { # build TREE OUT
	(cd "$1" &&
		go test -c -o "$2/runner.test" ./internal/runner &&
		go test -c -o "$2/server.test" ./internal/server &&
		go build -o "$2/af" ./af &&
		CGO_ENABLED=1 go build -tags isal -o "$2/jobbench" ./bench/jobbench)
}
mkdir -p "$work/bin-base" "$work/bin-head"
build "$work/base" "$work/bin-base"
build "$PWD" "$work/bin-head"

# value UNIT LINE-PATTERN FILE: every value printed before UNIT on the
# benchmark lines matching the pattern.
value() { awk -v u="$1" -v pat="$2" '$0 ~ pat { for (i = 2; i <= NF; i++) if ($i == u) print $(i-1) }' "$3"; }
# jobrow MATCH COLUMN FILE: a column of the job table's row whose first cell contains MATCH.
jobrow() { awk -F'|' -v m="$1" -v c="$2" 'index($2, m) { gsub(/ /, "", $c); print $c; exit }' "$3"; }

run_side() { # run_side SIDE TREE ROUND
	local side=$1 tree=$2 r=$3 b="$work/bin-$1" out="$work/$1-$3"
	(cd "$tree/internal/runner" && AF_BENCH_INPUT_BYTES=536870912 "$b/runner.test" -test.run '^$' -test.bench '^BenchmarkContainerInput$/fifo' -test.benchtime 1x) >"$out.input" 2>&1
	(cd "$tree/internal/runner" && "$b/runner.test" -test.run '^$' -test.bench '^BenchmarkContainerRun$' -test.benchtime 10x) >"$out.run" 2>&1
	(cd "$tree/internal/server" && "$b/server.test" -test.run '^$' -test.bench '^BenchmarkClaimComplete16$' -test.benchtime 20000x) >"$out.claim" 2>&1
	(cd "$tree" && "$b/jobbench" -raw-bytes 536870912 -files 64 -files-per-task 32 -workers 1 -capacity 2 -fixed-tasks 10 -runs 1 -only af-python,af-go,fixed -python /usr/bin/python3 -scripts bench/jobbench) >"$out.job" 2>"$out.job.err"
	echo "compare: round $r $side done" >&2
}
for r in $(seq 1 "$rounds"); do
	if [ $((r % 2)) = 1 ]; then order="base head"; else order="head base"; fi
	for side in $order; do
		if [ "$side" = base ]; then run_side base "$work/base" "$r"; else run_side head "$PWD" "$r"; fi
	done
done

# af serve's memory on graph bodies: head's test, base's and head's af.
(cd internal/server && AF_SERVE_BIN="$work/bin-base/af" "$work/bin-head/server.test" -test.run '^TestGraphBodyMemory$' -test.v) >"$work/base.memory" 2>&1 || true
(cd internal/server && AF_SERVE_BIN="$work/bin-head/af" "$work/bin-head/server.test" -test.run '^TestGraphBodyMemory$' -test.v) >"$work/head.memory" 2>&1 || true
memrow() { # memrow CASE-PREFIX: "HTTP s, growth MiB" for base and head
	local b h
	b=$(grep -F "$1" "$work/base.memory" | sed -E 's/.*: HTTP ([0-9]+), .* grew by ([0-9.]+) MiB.*/HTTP \1, +\2 MiB/' | head -1)
	h=$(grep -F "$1" "$work/head.memory" | sed -E 's/.*: HTTP ([0-9]+), .* grew by ([0-9.]+) MiB.*/HTTP \1, +\2 MiB/' | head -1)
	echo "| $1 | ${b:-not measured} | ${h:-not measured} |"
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "NaN"; else print a[int((NR + 1) / 2)] }'; }
collect() { # collect SIDE KIND: one number per round
	local side=$1 kind=$2 f
	for r in $(seq 1 "$rounds"); do
		f="$work/$side-$r"
		case "$kind" in
		fifo) value MB/s 'BenchmarkContainerInput/fifo' "$f.input" ;;
		runp50) value p50-ms 'BenchmarkContainerRun' "$f.run" ;;
		cycles) value cycles/s 'BenchmarkClaimComplete16-' "$f.claim" ;;
		cpu) value cpu-us/cycle 'BenchmarkClaimComplete16-' "$f.claim" ;;
		pymbs) jobrow 'Python helper (af/os-count' 3 "$f.job" ;;
		pycpu) jobrow 'Python helper (af/os-count' 7 "$f.job" ;;
		gombs) jobrow 'Go SDK (af/os-count-go)' 3 "$f.job" ;;
		gocpu) jobrow 'Go SDK (af/os-count-go)' 7 "$f.job" ;;
		fixpy) grep -o 'Python helper p50 [0-9.]*[a-zµ]*' "$f.job" | awk '{ print $4 }' ;;
		fixgo) grep -o 'Go SDK p50 [0-9.]*[a-zµ]*' "$f.job" | awk '{ print $4 }' ;;
		esac
	done
}
ms() { sed -E 's/ms$//; s/^([0-9.]+)s$/\1*1000/' | bc -l 2>/dev/null | awk '{ printf "%.0f\n", $1 }'; }
row() { # row LABEL KIND UNIT BETTER [conv]
	local b h
	if [ "${5:-}" = ms ]; then
		b=$(collect base "$2" | ms | median); h=$(collect head "$2" | ms | median)
	else
		b=$(collect base "$2" | median); h=$(collect head "$2" | median)
	fi
	local ratio verdict
	ratio=$(awk -v b="$b" -v h="$h" 'BEGIN { if (b > 0 && h == h + 0) printf "%.3f", h / b; else print "NaN" }')
	verdict=$(awk -v r="$ratio" -v better="$4" 'BEGIN { if (r == "NaN") { print "not measured"; exit }
		slower = (better == "higher") ? (r < 0.95) : (r > 1.05); print slower ? "**more than 5% worse**" : "within 5% or better" }')
	echo "| $1 | $b $3 | $h $3 | $ratio | $4 is better | $verdict |"
}
load=$(cut -d' ' -f1-3 /proc/loadavg)
cat <<MD
## Before/after: $head_sha against $base_sha

\`bash bench/compare.sh $base_rev $rounds\`: both revisions built from their
own trees and run in one session, alternating which goes first each round,
$rounds rounds; medians. Load average at the end: $load.

| path | base $base_sha | head $head_sha | head/base | | verdict |
|---|---|---|---|---|---|
MD
row "records into a container, FIFO (512 MiB)" fifo MB/s higher
row "container run with no input, p50" runp50 ms lower
row "claim+complete, 16 workers, loopback HTTP" cycles cycles/s higher
row "CPU per claim+complete cycle" cpu µs lower
row "os-count job, Python image, end to end" pymbs MB/s higher
row "CPU of that job (worker + containers)" pycpu s lower
row "os-count job, Go image, end to end" gombs MB/s higher
row "CPU of that job (worker + containers)" gocpu s lower
row "fixed cost of a task with no input, Python, p50" fixpy ms lower ms
row "fixed cost of a task with no input, Go, p50" fixgo ms lower ms
cat <<MD

af serve's peak RSS (VmHWM) growth while it takes one graph body, a fresh
process per case (\`internal/server\` \`TestGraphBodyMemory\` from head, run
with \`AF_SERVE_BIN\` set to each revision's \`af\`):

| body | base $base_sha | head $head_sha |
|---|---|---|
MD
wc=$(grep -o 'within-cap graph ([^)]*)' "$work/head.memory" | head -1)
memrow "${wc:-within-cap graph}"
memrow "200 MiB graph with Content-Length"
memrow "200 MiB graph, chunked"
memrow "200 MiB graph of one string, chunked"
