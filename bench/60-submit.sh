#!/usr/bin/env bash
# Issue 6: `af submit` over an index of 150,000 input files (a graph of
# 3,000 mappers) from process start to graph posted, and the monitor page's
# data endpoint (GET /api/v1/graphs/{id}) for that graph. Real components:
# MinIO (S3, STS), a real `af serve` process, the real `af` binary. The
# index is filled from a synthetic listing before `af serve` starts (see
# bench/submitbench). Takes about a minute; stops af serve and MinIO and
# removes its temporary directory on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/af" ./af
go build -o "$tmp/submitbench" ./bench/submitbench
args=(-files 150000 -max-files-per-task 50 -runs 5 -stage-runs 3 -gets 20 -filter filters/all.json)
out="$("$tmp/submitbench" -af "$tmp/af" "${args[@]}" 2>"$tmp/log")" || {
	cat "$tmp/log" >&2
	exit 1
}

echo "## Submit over 150,000 files and the monitor's data endpoint (issue 6)"
echo
echo "An index of 150,000 files in the storage layout (15,000 partitions, sizes"
echo "64 KiB–6 MiB) in \`af serve\`'s data dir; MinIO for STS; a fresh \`af\` process"
echo "per submit. \`filters/all.json\` selects every file; \`--max-files-per-task 50\`"
echo "makes 3,000 mappers. Every request goes over loopback to \`af serve\` (queue.db"
echo "and index.db on local disk). Commands:"
echo
echo '```'
echo "go build -o af ./af && go build -o submitbench ./bench/submitbench"
echo "./submitbench -af ./af ${args[*]}"
echo '```'
echo
echo "$out"
