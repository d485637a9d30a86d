#!/usr/bin/env bash
# Stops what `make demo` left running (the PIDs in .demo/pids).
set -uo pipefail
cd "$(dirname "$0")/.."
pids=.demo/pids
if [ ! -f "$pids" ]; then
	echo "demo-down: nothing to stop (no $pids)"
	exit 0
fi
# Workers first, so they hand their tasks back while the queue still runs.
tac "$pids" | while read -r pid name; do
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null && echo "stopping $name (pid $pid)"
	fi
done
for i in $(seq 1 100); do
	alive=0
	while read -r pid _; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$pids"
	[ $alive = 0 ] && break
	sleep 0.1
done
while read -r pid name; do
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null && echo "killed $name (pid $pid)"
done <"$pids"
rm -f "$pids"
echo "demo stopped (state kept in .demo/)"
