#!/usr/bin/env bash
# Issue 5's end-to-end benchmark: the os-count job through af (Python helper
# and Go SDK images) against a single-process boto3 script and Dask on a
# local cluster, with the Go gunzip ceiling, all on one generated data set
# (about 1 GiB of telemetry-like JSON lines, gzip) in one MinIO; then the
# fixed cost of a task with no input. Prints one markdown section.
#
# Needs: bin/tools/minio (make deps), the Docker engine with the images
# af/os-count, af/os-count-loads and af/os-count-go (make images), and Debian's python3-boto3,
# python3-dask and python3-distributed for /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false

python=${AF_BENCH_PYTHON:-/usr/bin/python3}
if ! "$python" -c 'import boto3, dask.bag, distributed' 2>/dev/null; then
	echo "50-job.sh: $python lacks boto3, dask or distributed: apt-get install python3-boto3 python3-dask python3-distributed" >&2
	exit 1
fi
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
CGO_ENABLED=1 go build -tags isal -o "$bin/jobbench" ./bench/jobbench
args=(-raw-bytes "${AF_BENCH_RAW_BYTES:-1073741824}" -files 128 -files-per-task 64 -workers 1 -capacity 2 -fixed-tasks 20 -runs "${AF_BENCH_RUNS:-2}" -python "$python" -scripts bench/jobbench)
"$bin/jobbench" "${args[@]}" -command "CGO_ENABLED=1 go build -tags isal -o jobbench ./bench/jobbench && ./jobbench ${args[*]}"
