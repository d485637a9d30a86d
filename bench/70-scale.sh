#!/usr/bin/env bash
# Scale benchmark (issue 12): a graph of one mapper per tiny gzip file
# (3,000 by default) and one reducer on af/os-count-go, on an in-process
# cluster (internal/clustertest: af serve's queue and HTTP API, real MinIO,
# real Docker, two workers of capacity 1). Measures total time, claims/s
# with every worker busy (from the queue's run records), and what the
# reducer holds while it merges 3,000 mapper results: open files (sampled
# from /proc/self/fd, the merge's own inputs counted apart) and peak RSS
# (VmHWM, reset when the reducer starts). Run twice: with the merge's
# fan-in of 256 (this branch) and with a fan-in above the mapper count,
# which is main's one k-way merge over every result. Prints one markdown
# section. AF_SCALE_MAPPERS=N for a smaller run.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false
: "${AF_MINIO:=$PWD/bin/tools/minio}"
export AF_MINIO
mappers=${AF_SCALE_MAPPERS:-3000}

run() { # FANIN: the SCALE line of one run
  local cmd="AF_SCALE_MAPPERS=$mappers AF_SCALE_FANIN=$1 go test -tags isal -count=1 -timeout 90m ./internal/worker -run '^TestScaleReducerOpenFiles\$' -v"
  local out
  out=$(eval "$cmd" 2>&1) || { echo "$out" | tail -50 >&2; exit 1; }
  echo "$cmd"
  echo "$out" | grep '^SCALE '
}
merge_cmd="go test -run '^\$' -bench BenchmarkMerge3000 -benchtime 3x -count 1 ./internal/extsort"
merge_out=$(eval "$merge_cmd" 2>&1) || { echo "$merge_out" >&2; exit 1; }
# mmetric BENCH UNIT: the value a BenchmarkMerge3000 sub-benchmark reports.
mmetric() { echo "$merge_out" | awk -v b="$1" -v u="$2" '$1 ~ "^"b"(-[0-9]+)?$" { for (i = 3; i < NF; i++) if ($(i+1) == u) v = $i } END { print (v == "") ? "NaN" : v }'; }
after=$(run 256)
before=$(run $((mappers + 1)))

# field LINE NAME: the value of NAME=... in a SCALE line.
field() { echo "$1" | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
a=$(echo "$after" | tail -1); b=$(echo "$before" | tail -1)
load=$(cut -d' ' -f1-3 /proc/loadavg)

cat <<MD
## Scale: a $mappers-mapper graph and its reducer's merge

Commands (load average when run: $load, on a machine shared with other work):

    $(echo "$after" | head -1)
    $(echo "$before" | head -1)
    $merge_cmd

One mapper per tiny gzip file (3 documents, internal/synth), one reducer,
image af/os-count-go, two in-process workers of capacity 1 against
\`internal/clustertest\` (the queue and HTTP API, real MinIO and Docker) —
not \`internal/hosttest\`'s network namespaces, whose value is partitions,
not throughput: the worker here runs the same code in the test process, so
/proc/self is the worker's. Claims/s is mapper run starts over the span from
the first to the last (every worker busy). Open files and RSS are sampled
while the reducer runs; "merge inputs" are the downloaded mapper results and
merge-pass files open at once; the process total also holds the in-process
server's and clients' sockets. VmHWM is reset when the reducer starts. The
second run gives the merge a fan-in above the mapper count: one k-way merge
over every result, as main's reducer does — but with this branch's 64 KiB
read buffer per input, where main's allocated 256 KiB per input (about
$((mappers / 4)) MiB of buffers for $mappers results), so main's RSS is higher
than the second column.

| measurement | fan-in 256 (multi-pass) | one pass over all (main) |
|---|---|---|
| total time (submit to graph resolved) | $(field "$a" total_s) s | $(field "$b" total_s) s |
| mapper runs | $(field "$a" mapper_runs) | $(field "$b" mapper_runs) |
| claims/s, every worker busy | $(field "$a" claims_per_s) | $(field "$b" claims_per_s) |
| reducer: peak merge inputs open at once | $(field "$a" reduce_merge_fds) | $(field "$b" reduce_merge_fds) |
| reducer: peak open files of the process (idle: $(field "$a" base_fds)) | $(field "$a" reduce_peak_fds) | $(field "$b" reduce_peak_fds) |
| reducer: peak RSS of the process during the reduce (VmHWM) | $(mib "$(field "$a" reduce_vmhwm_kib)") MiB | $(mib "$(field "$b" reduce_vmhwm_kib)") MiB |

The merge alone, 3,000 small sorted files in process (no containers, no
network): main's reducer (every file open, one NewNamedMerger with a
256 KiB read buffer per input) against MergeFiles with fan-in 256. Open
files and live heap (after a GC) are read once the merge has started;
peak open files are sampled over the whole merge, its passes included.
A pass holds 256 inputs' 64 KiB buffers (16 MiB) while it runs.

| measurement | fan-in 256 (multi-pass) | one pass over all (main) |
|---|---|---|
| open files once the final merge has started | $(mmetric BenchmarkMerge3000/FanIn256 open-files) | $(mmetric BenchmarkMerge3000/OnePass open-files) |
| peak open files over the merge | $(mmetric BenchmarkMerge3000/FanIn256 peak-open-files) | $(mmetric BenchmarkMerge3000/OnePass peak-open-files) |
| live heap of the final merge | $(mmetric BenchmarkMerge3000/FanIn256 heap-MiB) MiB | $(mmetric BenchmarkMerge3000/OnePass heap-MiB) MiB |
| time to merge | $(mmetric BenchmarkMerge3000/FanIn256 ns/op | awk '{ printf "%.2f", $1 / 1e9 }') s | $(mmetric BenchmarkMerge3000/OnePass ns/op | awk '{ printf "%.2f", $1 / 1e9 }') s |
MD
