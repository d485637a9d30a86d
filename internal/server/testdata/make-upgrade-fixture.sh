#!/bin/sh
# Regenerates testdata/upgrade-37f7396: a data dir made by af at commit
# 37f7396 (the last main before identities), for TestUpgradeFromOldDataDir.
# It builds that af from the repository's history (git archive, so no
# worktree is added), lets `af serve --data` write its first-start config
# (admin, submit and work tokens), posts one graph with the shared submit
# token and a free-text owner, stops the server, and copies config.yaml and
# queue.db (gzipped: bbolt preallocates 16 MiB, mostly zeros) here. Run from anywhere: sh internal/server/testdata/make-upgrade-fixture.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)
commit=37f7396
tmp=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
pid=
mkdir "$tmp/src"
git -C "$repo" archive "$commit" | tar -x -C "$tmp/src"
(cd "$tmp/src" && go build -o "$tmp/af" ./af)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
# No S3: the old server only logs that it cannot make the artifact bucket.
AWS_ACCESS_KEY_ID=none AWS_SECRET_ACCESS_KEY=none AWS_ENDPOINT_URL=http://127.0.0.1:1 AWS_EC2_METADATA_DISABLED=true \
	"$tmp/af" serve --listen "127.0.0.1:$port" --data "$tmp/data" >"$tmp/serve.log" 2>&1 &
pid=$!
i=0
until curl -fsS "$url/api/v1/ping" >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -gt 300 ]; then cat "$tmp/serve.log"; exit 1; fi
	sleep 0.1
done
tok=$("$tmp/af" serve --config "$tmp/data/config.yaml" --print-token submit)
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
deadline=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
cat >"$tmp/graph.json" <<JSON
{"graphId":"legacyGraph0000001","name":"legacy job","owner":"legacy@example.org","tasks":[
 {"taskId":"legacyMapper000001","task":{"graphId":"legacyGraph0000001","created":"$now","deadline":"$deadline","expires":"2090-01-01T00:00:00Z",
  "metadata":{"name":"mapper-0000","owner":"legacy@example.org"},
  "payload":{"kind":"mapper","image":"af/os-count","maxRunTime":600,"bucket":"telemetry",
   "inputs":[{"key":"saved_session/Firefox/release/40.0/20150101.20150102.v2.log.a.lzma","size":1234}]}}}]}
JSON
curl -fsS -X POST -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' --data-binary "@$tmp/graph.json" "$url/api/v1/graphs" >/dev/null
kill "$pid"
wait "$pid" || true
pid=
out="$here/upgrade-$commit"
mkdir -p "$out"
cp "$tmp/data/config.yaml" "$out/"
gzip -9 -n -c "$tmp/data/queue.db" >"$out/queue.db.gz"
rm -f "$out/queue.db"
echo "wrote $out"
