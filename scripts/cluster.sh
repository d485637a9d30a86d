#!/usr/bin/env bash
# af on several hosts on this machine, for trying by hand:
#   scripts/cluster.sh up     (make cluster)       start it, load sample data
#   scripts/cluster.sh down   (make cluster-down)  stop it, remove everything
#
# A private bridge afh<N>br with 10.231.N.0/24 (N=250 unless AF_CLUSTER_NET
# says otherwise; this machine is 10.231.N.1 on it) and one network
# namespace per host: af serve, MinIO, an SMTP sink, and three workers on
# this machine's Docker engine (internal/hosttest; demo/cluster holds it
# up). Needs root. State lives in .cluster/ (removed by the next up).
set -euo pipefail
cd "$(dirname "$0")/.."
state=${AF_CLUSTER_DIR:-.cluster}
net=${AF_CLUSTER_NET:-250}
bin=bin

die() { echo "cluster: $*" >&2; exit 1; }

alive() { [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; }

down() {
	if alive; then
		pid=$(cat "$state/pid")
		echo "stopping the cluster (pid $pid)"
		kill -TERM "$pid"
		for _ in $(seq 1 600); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "cluster: still running after 60s: kill -9 $pid, then sweeping" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$state/pid"
	# Whatever a dead cluster left (namespaces, bridge, rules, processes).
	[ -x "$bin/demo-cluster" ] && "$bin/demo-cluster" --sweep
	echo "cluster stopped (files kept in $state/)"
}

up() {
	[ "$(id -u)" = 0 ] || die "needs root (network namespaces, a bridge, iptables)"
	command -v ip >/dev/null && command -v iptables >/dev/null || die "ip and iptables are missing: run bash scripts/host-deps.sh test"
	if alive; then
		echo "the cluster runs already (pid $(cat "$state/pid")); make cluster-down stops it"
		info
		return
	fi
	go build -o "$bin/demo-cluster" ./demo/cluster
	go build -o "$bin/demo-smtpsink" ./demo/smtpsink
	go build -o "$bin/demo-gendata" ./demo/gendata
	"$bin/demo-cluster" --sweep
	rm -rf "$state"
	mkdir -p "$state"
	setsid "$bin/demo-cluster" --dir "$state" --net "$net" >"$state/cluster.log" 2>&1 </dev/null &
	echo $! >"$state/pid"
	for _ in $(seq 1 1200); do
		[ -f "$state/ready" ] && break
		alive || { cat "$state/cluster.log" >&2; die "the cluster did not start (log above, $state/cluster.log)"; }
		sleep 0.1
	done
	[ -f "$state/ready" ] || { down; die "the cluster was not up within 120s (see $state/cluster.log)"; }
	# shellcheck disable=SC1091
	source "$state/env"
	echo "loading sample telemetry into s3://telemetry and building af serve's index"
	"$bin/demo-gendata" --bucket telemetry --docs 50 --expect filters/Filter.json --expect-out "$state/expected.txt" >"$state/gendata.log" 2>&1 ||
		{ cat "$state/gendata.log" >&2; die "loading the sample data failed"; }
	"$bin/af" index build --bucket telemetry >"$state/index.log" 2>&1 ||
		{ cat "$state/index.log" >&2; die "af index build failed"; }
	info
}

info() {
	queue=$(sed -n 's/^queue=//p' "$state/ready")
	s3=$(sed -n 's/^s3=//p' "$state/ready")
	config=$(sed -n 's/^config=//p' "$state/ready")
	n=$(sed -n 's/^net=//p' "$state/ready")
	qip=${queue#http://}
	qip=${qip%%:*}
	token=$("$bin/af" serve --config "$config" --print-token submit)
	cat <<INFO

af runs on $(($(wc -l <"$state/hosts") - 1)) hosts (network namespaces on bridge afh${n}br, 10.231.$n.0/24):
$(cat "$state/hosts")

queue URL:     $queue   (monitor: $queue/graphs)
submit token:  $token
               (again: $bin/af serve --config $config --print-token submit)
S3 (MinIO):    $s3
use af:        source $state/env   (queue URL, submit token, MinIO keys)
try:           $bin/af submit filters/Filter.json af/os-count --owner you@example.com --wait
               (expected result: $state/expected.txt; emails: $state/logs/smtp.log)
faults:        partition worker w1 from the queue:  ip netns exec afh$n-w1 iptables -I OUTPUT -d $qip -j DROP
               (heal: the same with -D instead of -I)
               kill a worker: kill -9 PID (pids above)
stop:          make cluster-down
INFO
}

case "${1:-up}" in
up) up ;;
down) down ;;
info) info ;;
*) die "usage: scripts/cluster.sh up|down|info" ;;
esac
