#!/usr/bin/env bash
# Fair shares and priorities (issue 13). Prints one markdown section:
#  - the fairness scenario (internal/queue BenchmarkFairShareScenario):
#    alice posts 3,000 mappers, bob posts 20 mappers 40 ms later, hal posts
#    20 at priority high five minutes in; 4 worker slots, every task one
#    minute, simulated on the queue's fake clock (real bbolt) with fair
#    shares and with FIFO order, in the same command;
#  - claim+complete throughput, over loopback HTTP (internal/server) and in
#    process (internal/queue), with one owner and with 8 owners' tasks: fair
#    shares, FIFO, and today's queue (BASE, the commit before fair shares,
#    running the same benchmark code), base and head alternating each round
#    so the shared machine's load falls on both alike; in process also the
#    bbolt page writes per commit, which explain the differences.
#
# Usage: bench/80-fair.sh [ROUNDS]   (default 3; env AF_FAIR_BASE, default 37f7396, the commit before fair shares). Raw outputs stay in out/fair.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false
rounds=${1:-3}
base_rev=${AF_FAIR_BASE:-37f7396}
cycles=10000
# Raw outputs stay in out/fair for a second look.
work=$PWD/out/fair
rm -rf "$work" && mkdir -p "$work/base"
trap 'rm -rf "$work/base" "$work"/*.test' EXIT
git archive "$base_rev" | tar -x -C "$work/base"
# The same benchmark bodies run on the base revision's queue and server:
# they use only what the queue had before fair shares.
cp internal/server/claimbench_test.go "$work/base/internal/server/"
cp internal/queue/owners_bench_test.go "$work/base/internal/queue/"
cat >"$work/base/internal/server/owners_base_test.go" <<'GO'
package server

import "testing"

func BenchmarkClaimCompleteOwners16(b *testing.B) {
	b.Run("today", func(b *testing.B) { claimCompleteBench(b, newBenchEnv(b), 8) })
}
GO
cat >"$work/base/internal/queue/owners_base_test.go" <<'GO'
package queue

import (
	"path/filepath"
	"testing"
)

func BenchmarkClaimCompleteOwners(b *testing.B) {
	b.Run("today", func(b *testing.B) {
		q, err := Open(filepath.Join(b.TempDir(), "queue.db"), Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer q.Close()
		benchOwners(b, q, 8)
	})
}
GO
(cd "$work/base" && go test -c -o "$work/base-server.test" ./internal/server && go test -c -o "$work/base-queue.test" ./internal/queue)
go test -c -o "$work/head-server.test" ./internal/server
go test -c -o "$work/head-queue.test" ./internal/queue

scenario_cmd="go test -run '^\$' -bench BenchmarkFairShareScenario -benchtime 1x ./internal/queue"
(cd internal/queue && "$work/head-queue.test" -test.run '^$' -test.bench BenchmarkFairShareScenario -test.benchtime 1x) >"$work/scenario" 2>&1 ||
	{ cat "$work/scenario" >&2; exit 1; }

claim_bench='^(BenchmarkClaimComplete16|BenchmarkClaimCompleteOwners16)$'
queue_bench='^(BenchmarkClaimCompleteOneOwner|BenchmarkClaimCompleteOwners)$'
run_side() { # run_side base|head
	local side=$1 tree=$PWD
	[ "$side" = base ] && tree=$work/base
	(cd "$tree/internal/server" && "$work/$side-server.test" -test.run '^$' -test.bench "$claim_bench" -test.benchtime ${cycles}x) >>"$work/$side-server" 2>&1 ||
		{ cat "$work/$side-server" >&2; exit 1; }
	(cd "$tree/internal/queue" && "$work/$side-queue.test" -test.run '^$' -test.bench "$queue_bench" -test.benchtime ${cycles}x) >>"$work/$side-queue" 2>&1 ||
		{ cat "$work/$side-queue" >&2; exit 1; }
}
for r in $(seq 1 "$rounds"); do
	if [ $((r % 2)) = 1 ]; then order="base head"; else order="head base"; fi
	for side in $order; do
		run_side "$side"
		echo "80-fair: round $r $side done" >&2
	done
done

# med UNIT PATTERN FILE: the median of the values before UNIT on the
# benchmark lines matching PATTERN.
med() {
	awk -v u="$1" -v pat="$2" '$1 ~ pat { for (i = 2; i <= NF; i++) if ($i == u) v[n++] = $(i-1) }
    END { if (n == 0) { print "NaN"; exit }
          for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
          print v[int(n / 2)] }' "$3"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a == a + 0) printf "%.2f", a / b; else print "NaN" }'; }
sc() { med "$1" "FairShareScenario/$2" "$work/scenario"; }

H=$work/head-server B=$work/base-server HQ=$work/head-queue BQ=$work/base-queue
o_fair=$(med cycles/s 'Owners16/fair' "$H"); o_fifo=$(med cycles/s 'Owners16/fifo' "$H"); o_base=$(med cycles/s 'Owners16/today' "$B")
oc_fair=$(med cpu-us/cycle 'Owners16/fair' "$H"); oc_fifo=$(med cpu-us/cycle 'Owners16/fifo' "$H"); oc_base=$(med cpu-us/cycle 'Owners16/today' "$B")
s_head=$(med cycles/s 'ClaimComplete16-' "$H"); s_base=$(med cycles/s 'ClaimComplete16-' "$B")
sc_head=$(med cpu-us/cycle 'ClaimComplete16-' "$H"); sc_base=$(med cpu-us/cycle 'ClaimComplete16-' "$B")
i_fair=$(med cycles/s 'Owners/fair' "$HQ"); i_fifo=$(med cycles/s 'Owners/fifo' "$HQ"); i_base=$(med cycles/s 'Owners/today' "$BQ")
p_fair=$(med page-writes/commit 'Owners/fair' "$HQ"); p_fifo=$(med page-writes/commit 'Owners/fifo' "$HQ"); p_base=$(med page-writes/commit 'Owners/today' "$BQ")
i1_head=$(med cycles/s 'OneOwner' "$HQ"); i1_base=$(med cycles/s 'OneOwner' "$BQ")
p1_head=$(med page-writes/commit 'OneOwner' "$HQ"); p1_base=$(med page-writes/commit 'OneOwner' "$BQ")
load=$(cut -d' ' -f1-3 /proc/loadavg)

cat <<MD
## Fair shares and priorities (issue 13)

Commands (load average when run: $load, on a machine shared with other work):

    $scenario_cmd
    bash bench/80-fair.sh $rounds   # the throughput rows: $rounds rounds of ${cycles} cycles per side, alternating

**Fairness scenario** (\`BenchmarkFairShareScenario\`, \`TestFairShareScenario\`
asserts it): alice posts a 3,000-mapper backfill (and its reducer); 40 ms
later bob posts 20 mappers and a reducer; five minutes in hal posts 20
mappers and a reducer at priority high. 4 worker slots, every task takes
one minute; the workers are simulated on the queue's fake clock against a
real bbolt file, so these figures do not depend on the machine. Times are
from each graph's posting.

| | fair shares (default) | FIFO (\`fair_share: false\`) |
|---|---|---|
| bob: wait for his first task | $(sc b-wait-min fair) min | $(sc b-wait-min fifo) min |
| bob: his graph done after | $(sc b-done-min fair) min | $(sc b-done-min fifo) min |
| alice's mappers done when bob's graph ended (of 3,000) | $(sc a-done-at-b fair) | $(sc a-done-at-b fifo) |
| hal (high): wait for his first task | $(sc h-wait-min fair) min | $(sc h-wait-min fifo) min |
| hal (high): his graph done after | $(sc h-done-min fair) min | $(sc h-done-min fifo) min |
| bob's mappers done when hal's graph ended (of 20) | $(sc b-done-at-h fair) | $(sc b-done-at-h fifo) |

With fair shares bob waits for the first slot to free (alice's first four
tasks hold all four) and then gets half of the slots, since he has fewer
running than alice until he has two of the four; hal's high-priority graph
takes every slot that frees, ahead of both. In FIFO order bob waits for all
of alice's 3,000 mappers to start.

**Claim+complete throughput.** Each cycle is a claimWork and a
reportCompleted, 16 workers, one task per claim, over b.N pending tasks;
"today's" is the queue before fair shares ($base_rev, oldest first) running
the same benchmark code (\`internal/server/claimbench_test.go\`,
\`internal/queue/owners_bench_test.go\`, copied into its tree by the
script). Medians of $rounds rounds of ${cycles} cycles, base and head
alternating. Over HTTP the cycle is measured as in the queue section above;
in process it is the queue core alone, where bbolt's page writes per commit
dominate.

| measurement | fair shares | FIFO (\`fair_share: false\`) | today's ($base_rev) | fair / FIFO | fair / today's |
|---|---|---|---|---|---|
| cycles/s, 8 owners' tasks, loopback HTTP | $o_fair | $o_fifo | $o_base | $(ratio "$o_fair" "$o_fifo") | $(ratio "$o_fair" "$o_base") |
| CPU per cycle, same (µs) | $oc_fair | $oc_fifo | $oc_base | $(ratio "$oc_fair" "$oc_fifo") | $(ratio "$oc_fair" "$oc_base") |
| cycles/s, one owner, loopback HTTP | $s_head | — | $s_base | — | $(ratio "$s_head" "$s_base") |
| CPU per cycle, same (µs) | $sc_head | — | $sc_base | — | $(ratio "$sc_head" "$sc_base") |
| cycles/s, 8 owners, in process | $i_fair | $i_fifo | $i_base | $(ratio "$i_fair" "$i_fifo") | $(ratio "$i_fair" "$i_base") |
| bbolt page writes per commit, same | $p_fair | $p_fifo | $p_base | — | — |
| cycles/s, one owner, in process | $i1_head | — | $i1_base | — | $(ratio "$i1_head" "$i1_base") |
| bbolt page writes per commit, same | $p1_head | — | $p1_base | — | — |

A claim's own extra work is one seek per (priority, owner) run of the
pending index and a read of the owner's running count; what costs is
locality. Tasks of one graph are neighbours in the pending index, and,
claimed in id order, in the tasks bucket; FIFO claims one graph's tasks in
a row while fair shares take one from each owner in turn, so a commit
dirties a few more bbolt pages. A completion no longer deletes the task's
deadline entry at once (Tick drops it once the deadline passes): that
delete dirtied a page of the deadline index, keyed by deadline and task
id, per completion, wherever the id fell, in both orders.
MD
