#!/usr/bin/env bash
# Container input paths: how fast records get from the worker into a job
# container over an attached stdin (through the Docker daemon) versus a FIFO
# in the bind-mounted scratch dir, and the fixed cost of one container run.
# Prints one markdown section for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false

count=3
runs=20
bytes=${AF_BENCH_INPUT_BYTES:-1073741824}
cmd1="AF_BENCH_INPUT_BYTES=$bytes go test -run '^\$' -bench '^BenchmarkContainerInput\$' -benchtime 1x -count $count ./internal/runner"
cmd2="go test -run '^\$' -bench '^BenchmarkContainerRun\$' -benchtime ${runs}x -count 1 ./internal/runner"
out1=$(eval "$cmd1" 2>&1) || { echo "$out1" >&2; exit 1; }
out2=$(eval "$cmd2" 2>&1) || { echo "$out2" >&2; exit 1; }

# median of a sub-benchmark's metric (the value before unit $2) over the counts
median() {
  echo "$out1" | awk -v name="BenchmarkContainerInput/$1" -v unit="$2" '
    $1 ~ "^"name"(-[0-9]+)?$" { for (i = 2; i < NF; i++) if ($(i+1) == unit) print $i }' |
    sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a"; else print a[int((NR + 1) / 2)] }'
}
gen=$(median generator MB/s)
stdin=$(median stdin MB/s)
fifo=$(median fifo MB/s)
p50=$(echo "$out2" | awk '/^BenchmarkContainerRun/ { for (i = 2; i < NF; i++) if ($(i+1) == "p50-ms") print $i }')
p90=$(echo "$out2" | awk '/^BenchmarkContainerRun/ { for (i = 2; i < NF; i++) if ($(i+1) == "p90-ms") print $i }')
# streaming rate once the container runs: the run's time minus the fixed
# cost measured above
stream() { awk -v ns="$(median "$1" ns/op)" -v p50="$p50" -v b="$bytes" 'BEGIN { t = ns / 1e9 - p50 / 1e3; if (t > 0) printf "%.1f", b / t / 1e6; else print "n/a" }'; }
stdin_s=$(stream stdin)
fifo_s=$(stream fifo)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
faster=$(awk -v s="$stdin" -v f="$fifo" 'BEGIN { print (f >= s) ? "fifo" : "stdin" }')
below() { awk -v a="$1" -v b="$2" 'BEGIN { print (a != "" && a + 0 < b + 0) ? "yes" : "no" }'; }

echo "## Container input path (internal/runner)"
echo
echo "$(awk -v b="$bytes" 'BEGIN { printf "%.2f GiB", b / 1073741824 }') of generated telemetry-like \`<id>\\t<json>\` lines streamed into a \`FROM scratch\` container (static Go program that reads and counts its input; 1 CPU, no network, read-only root), median of $count runs per path. The generator alone into \`io.Discard\` is the ceiling of the harness."
echo
echo '```'
echo "$cmd1"
echo "$cmd2"
echo '```'
echo
echo "| measure | end to end (create→remove) | streaming (minus the p50 fixed cost) | ratio to fifo | target | meets |"
echo "|---|---|---|---|---|---|"
echo "| generator ceiling (no container) | $gen MB/s | — | $(ratio "$gen" "$fifo") | — | — |"
echo "| stdin, attached through the Docker daemon | $stdin MB/s | $stdin_s MB/s | $(ratio "$stdin" "$fifo") | the faster path is the worker's default | $( [ "$faster" = stdin ] && echo "yes (faster)" || echo "no (slower)") |"
echo "| FIFO in the bind-mounted scratch dir | $fifo MB/s | $fifo_s MB/s | 1.00 | the faster path is the worker's default | $( [ "$faster" = fifo ] && echo "yes (faster)" || echo "no (slower)") |"
echo "| container run with no input, p50 of $runs | $p50 ms | — | — | under the 1 s fixed cost of a task (its container share) | $(below "$p50" 1000) |"
echo "| same, p90 | $p90 ms | — | — | — | — |"
echo
echo "Recommended input path: **$faster** ($(ratio "$(awk -v s="$stdin" -v f="$fifo" 'BEGIN{print (s>f)?s:f}')" "$(awk -v s="$stdin" -v f="$fifo" 'BEGIN{print (s>f)?f:s}')")x the other)."
