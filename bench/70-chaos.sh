#!/usr/bin/env bash
# The chaos test on a hosttest cluster (internal/hosttest TestChaos): graphs
# of Python and Go jobs under a seeded random fault schedule (workers killed
# -9 and TERM, workers cut from the queue and from MinIO, af serve killed -9,
# MinIO stopped 20 s, overlapping). Prints its figures as markdown.
# AF_CHAOS=short|long picks the profile (default long), AF_CHAOS_SEED
# replays a schedule. Needs root (network namespaces), Docker and the job
# images (make images), MinIO (make deps).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false
export AF_CHAOS="${AF_CHAOS:-long}"
: "${AF_MINIO:=$PWD/bin/tools/minio}"
export AF_MINIO
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cmd=(go test -tags "${TAGS:-isal}" -race -count=1 -timeout 30m -run '^TestChaos$' -v ./internal/hosttest/)
if ! AF_TEST_OUTPUT="$dir" "${cmd[@]}" >"$dir/log" 2>&1; then
	tail -n 200 "$dir/log" >&2
	echo "chaos test failed; its log is above (replay with the seed it printed)" >&2
	exit 1
fi
echo "## Chaos (internal/hosttest, $AF_CHAOS profile)"
echo
echo "Three worker hosts of capacity 2 in network namespaces, af serve, MinIO"
echo "and an SMTP sink each on a host of its own; every graph must complete"
echo "with a clean run's counts, every task with exactly one completed run,"
echo "one email per graph, nothing left behind. Command:"
echo
echo '```'
echo "AF_CHAOS=$AF_CHAOS ${cmd[*]}"
echo '```'
echo
cat "$dir/chaos-$AF_CHAOS.md"
