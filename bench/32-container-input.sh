#!/usr/bin/env bash
# How fast records reach a job container: attached stdin (through the Docker
# daemon) against a FIFO in the bind-mounted scratch dir (no daemon in the
# path). The consumer is `cat > /dev/null` in af/debian:bookworm, so the
# numbers are the transport's ceiling, not a job's speed. Needs the images
# (make images).
set -euo pipefail
cd "$(dirname "$0")/.."
img=af/debian:bookworm
size_mb=${AF_BENCH_INPUT_MB:-1024}
docker image inspect "$img" >/dev/null 2>&1 || {
	echo "bench/32-container-input.sh: image $img missing; run make images" >&2
	exit 1
}
work="$(mktemp -d /tmp/af-bench-input.XXXXXX)"
trap 'rm -rf "$work"' EXIT
chmod 0777 "$work"
# Incompressible-looking but cheap input: repeated random block.
head -c $((4 << 20)) /dev/urandom >"$work/block"
feed() { for _ in $(seq 1 $((size_mb / 4))); do cat "$work/block"; done; }

secs() { date +%s.%N; }
run_flags=(--rm --network none --read-only --user 10001:10001 --cap-drop ALL --security-opt no-new-privileges)

# Container start and stop with no input: the fixed cost both paths pay.
t0=$(secs)
docker run "${run_flags[@]}" "$img" true
t1=$(secs)
fixed=$(echo "$t1 - $t0" | bc -l)

t0=$(secs)
feed | docker run -i "${run_flags[@]}" "$img" sh -c 'cat > /dev/null'
t1=$(secs)
stdin_s=$(echo "$t1 - $t0" | bc -l)

mkfifo "$work/input"
chmod 0666 "$work/input"
t0=$(secs)
docker run "${run_flags[@]}" -v "$work:/scratch" "$img" sh -c 'cat /scratch/input > /dev/null' &
pid=$!
feed >"$work/input"
wait "$pid"
t1=$(secs)
fifo_s=$(echo "$t1 - $t0" | bc -l)

mbps() { echo "scale=1; $size_mb * 1.048576 / ($1 - $fixed)" | bc -l; }
stdin_r=$(mbps "$stdin_s")
fifo_r=$(mbps "$fifo_s")
ratio=$(echo "scale=2; $fifo_r / $stdin_r" | bc -l)

echo "## Records into the container: stdin vs FIFO"
echo
echo "${size_mb} MiB piped into \`cat > /dev/null\` in a job-like container (no network,"
echo "read-only root, user 10001, no capabilities). MB/s after subtracting the"
echo "container's fixed start/stop cost ($(printf '%.2f' "$fixed") s, measured in the same run)."
echo "Commands (see bench/32-container-input.sh):"
echo
echo '```'
echo "feed | docker run -i ${run_flags[*]} $img sh -c 'cat > /dev/null'"
echo "docker run ${run_flags[*]} -v SCRATCH:/scratch $img sh -c 'cat /scratch/input > /dev/null' & feed > SCRATCH/input"
echo '```'
echo
echo "| path | seconds | MB/s | target | meets |"
echo "|---|---|---|---|---|"
echo "| stdin attached through the Docker daemon | $(printf '%.2f' "$stdin_s") | $stdin_r | baseline | — |"
echo "| FIFO in the bind-mounted scratch dir | $(printf '%.2f' "$fifo_s") | $fifo_r | ≥ stdin | $(echo "$fifo_r >= $stdin_r" | bc -l | sed 's/1/yes/;s/0/no/') (${ratio}x) |"
