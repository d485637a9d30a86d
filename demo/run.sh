#!/usr/bin/env bash
# The af demo: the whole system on this machine, end to end.
#
#   MinIO (S3 + STS) -> sample telemetry in telemetry-server's layout
#   af serve (queue, index, artifacts, monitor page) + an SMTP sink
#   two workers on the local Docker engine
#   af submit filters/Filter.json with the Python job and the Go job, --wait
#
# `make demo` runs it after building the binaries and images; the services
# stay up afterwards so the monitor pages can be opened; `make demo-down`
# stops them. State lives in .demo/ (removed by the next run).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
state="$repo/.demo"
bin="$repo/bin"

MINIO_PORT=${AF_DEMO_MINIO_PORT:-9100}
AF_PORT=${AF_DEMO_PORT:-8080}
SMTP_PORT=${AF_DEMO_SMTP_PORT:-2525}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

if [ -f "$state/pids" ]; then
	bash demo/down.sh >/dev/null 2>&1 || true
fi
for port in "$MINIO_PORT" "$AF_PORT" "$SMTP_PORT"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		die "port $port is in use; stop what uses it or set AF_DEMO_MINIO_PORT / AF_DEMO_PORT / AF_DEMO_SMTP_PORT"
	fi
done
rm -rf "$state"
mkdir -p "$state/logs"
: >"$state/pids"

start() { # name, then the command; logs to .demo/logs/<name>.log
	local name=$1
	shift
	"$@" >"$state/logs/$name.log" 2>&1 &
	echo "$! $name" >>"$state/pids"
}

wait_for() { # what, url
	local i
	for i in $(seq 1 300); do
		if curl -fsS -o /dev/null "$2" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	die "$1 did not come up at $2 (see $state/logs)"
}

say "starting MinIO on 127.0.0.1:$MINIO_PORT"
export MINIO_ROOT_USER=afdemo MINIO_ROOT_PASSWORD=afdemo-secret-key MINIO_BROWSER=off
start minio "$bin/tools/minio" server --quiet --address "127.0.0.1:$MINIO_PORT" --console-address "127.0.0.1:$((MINIO_PORT + 1))" "$state/minio"
wait_for MinIO "http://127.0.0.1:$MINIO_PORT/minio/health/ready"
# af and the data generator use the standard AWS environment.
export AWS_ENDPOINT_URL="http://127.0.0.1:$MINIO_PORT" AWS_ACCESS_KEY_ID=afdemo AWS_SECRET_ACCESS_KEY=afdemo-secret-key AWS_REGION=us-east-1
unset AWS_PROFILE

say "generating sample telemetry (3 reasons x 4 channels x 2 versions x 4 days; gz, xz and lzma)"
go build -o "$bin/demo-gendata" ./demo/gendata
go build -o "$bin/demo-smtpsink" ./demo/smtpsink
"$bin/demo-gendata" --bucket telemetry --expect filters/Filter.json --expect-out "$state/expected.txt"

say "making the worker pool's key pair"
"$bin/af" keygen --dir "$state/keys"

say "starting the SMTP sink on 127.0.0.1:$SMTP_PORT and af serve on 127.0.0.1:$AF_PORT"
start smtp "$bin/demo-smtpsink" --listen "127.0.0.1:$SMTP_PORT"
# af serve emails the owners (from its outbox); the workers need no SMTP.
start serve "$bin/af" serve --data "$state/af-data" --listen "127.0.0.1:$AF_PORT" --pool-key "$state/keys/af.pub" --smtp "127.0.0.1:$SMTP_PORT"
wait_for "af serve" "http://127.0.0.1:$AF_PORT/api/v1/ping"
# The tokens are in config.yaml (mode 0600) only, never in af serve's log.
token() { "$bin/af" serve --data "$state/af-data" --print-token "$1"; }
ADMIN_TOKEN=$(token admin)
WORK_TOKEN=$(token work)
[ -n "$ADMIN_TOKEN" ] && [ -n "$WORK_TOKEN" ] || die "no tokens in $state/af-data/config.yaml"
export AF_QUEUE_URL="http://127.0.0.1:$AF_PORT"
# The analyst is an identity of their own (the config's shared tokens stay
# for the operator and the workers): their graphs are theirs, their email
# goes to their address, and their token signs them in to the monitor.
say "af users add analyst@example.com --role submit"
SUBMIT_TOKEN=$(AF_TOKEN="$ADMIN_TOKEN" "$bin/af" users add analyst@example.com --role submit)
[ -n "$SUBMIT_TOKEN" ] || die "af users add printed no token"
export AF_TOKEN="$SUBMIT_TOKEN"

say "building the file index through af serve"
"$bin/af" index build --bucket telemetry

say "starting two workers"
for w in 1 2; do
	start "worker$w" "$bin/worker" --token "$WORK_TOKEN" --key "$state/keys/af.key" --worker-id "demo-worker-$w" \
		--s3-endpoint "$AWS_ENDPOINT_URL" --worker-group demo --scratch "$state/scratch-$w"
done

status=0
for image in af/os-count af/os-count-go; do
	say "af submit filters/Filter.json $image --wait   (as analyst@example.com)"
	if "$bin/af" submit filters/Filter.json "$image" --max-files-per-task 4 --wait | tee "$state/result-${image#af/}.txt"; then
		# With --wait, standard output is the result alone (progress and
		# links go to stderr); compare it with what the generator says
		# the job must answer.
		if cmp -s "$state/result-${image#af/}.txt" "$state/expected.txt"; then
			echo "result matches the expected counts ($state/expected.txt)"
		else
			echo "RESULT DIFFERS from $state/expected.txt" >&2
			status=1
		fi
	else
		status=1
	fi
done

say "the owner's emails (as the SMTP sink received them)"
for i in $(seq 1 100); do
	[ "$(grep -c '^----- email' "$state/logs/smtp.log" 2>/dev/null || true)" -ge 2 ] && break
	sleep 0.1
done
cat "$state/logs/smtp.log"

# The submit token and S3 keys go to a file only its owner can read, not
# to the terminal (whose scrollback and captured output outlive the demo).
(
	umask 077
	cat >"$state/env" <<EOF
export AF_QUEUE_URL=$AF_QUEUE_URL AF_TOKEN=$SUBMIT_TOKEN
export AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID=afdemo AWS_SECRET_ACCESS_KEY=$MINIO_ROOT_PASSWORD AWS_REGION=us-east-1
EOF
)
say "services are running"
cat <<EOF
monitor:   http://127.0.0.1:$AF_PORT/graphs  (sign in with the analyst's token: AF_TOKEN in $state/env; the emailed links open without it)
S3:        $AWS_ENDPOINT_URL (user afdemo)
logs:      $state/logs/
use af:    source $state/env   (queue URL, submit token, S3 keys; mode 0600)
stop:      make demo-down
EOF
exit $status
