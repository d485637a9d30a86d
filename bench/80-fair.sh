#!/usr/bin/env bash
# Fair shares and priorities (issue 13). Prints one markdown section:
#  - the fairness scenario (internal/queue BenchmarkFairShareScenario):
#    alice posts 3,000 mappers, bob posts 20 mappers 40 ms later, hal posts
#    20 at priority high five minutes in; 4 worker slots, every task one
#    minute, simulated on the queue's fake clock (real bbolt) with fair
#    shares and with FIFO order, in the same command;
#  - claim+complete throughput over loopback HTTP (internal/server): fair
#    shares against FIFO over 8 owners' tasks, and today's queue (BASE, the
#    commit before fair shares) against this one with a single owner,
#    alternating sides each round so the shared machine's load falls on
#    all alike; plus the same over 8 owners in process, with the page
#    writes per commit that explain the difference.
#
# Usage: bench/80-fair.sh [ROUNDS]   (default 3; env AF_FAIR_BASE, default 37f7396)
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false
rounds=${1:-3}
base_rev=${AF_FAIR_BASE:-37f7396}
cycles=10000
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/base"
git archive "$base_rev" | tar -x -C "$work/base"
(cd "$work/base" && go test -c -o "$work/base-server.test" ./internal/server)
go test -c -o "$work/server.test" ./internal/server
go test -c -o "$work/queue.test" ./internal/queue

scenario_cmd="go test -run '^\$' -bench BenchmarkFairShareScenario -benchtime 1x ./internal/queue"
(cd internal/queue && "$work/queue.test" -test.run '^$' -test.bench BenchmarkFairShareScenario -test.benchtime 1x) >"$work/scenario" 2>&1 ||
	{ cat "$work/scenario" >&2; exit 1; }

for r in $(seq 1 "$rounds"); do
	if [ $((r % 2)) = 1 ]; then order="base head owners inproc"; else order="inproc owners head base"; fi
	for side in $order; do
		case $side in
		base) (cd "$work/base/internal/server" && "$work/base-server.test" -test.run '^$' -test.bench '^BenchmarkClaimComplete16$' -test.benchtime ${cycles}x) ;;
		head) (cd internal/server && "$work/server.test" -test.run '^$' -test.bench '^BenchmarkClaimComplete16$' -test.benchtime ${cycles}x) ;;
		owners) (cd internal/server && "$work/server.test" -test.run '^$' -test.bench '^BenchmarkClaimCompleteOwners16$' -test.benchtime ${cycles}x) ;;
		inproc) (cd internal/queue && "$work/queue.test" -test.run '^$' -test.bench '^BenchmarkClaimCompleteOwners$' -test.benchtime ${cycles}x) ;;
		esac >>"$work/out-$side" 2>&1 || { cat "$work/out-$side" >&2; exit 1; }
		echo "80-fair: round $r $side done" >&2
	done
done

# med UNIT PATTERN FILE: the median of the values before UNIT on the
# benchmark lines matching PATTERN.
med() {
	awk -v u="$1" -v pat="$2" '$0 ~ pat { for (i = 2; i <= NF; i++) if ($i == u) v[n++] = $(i-1) }
    END { if (n == 0) { print "NaN"; exit }
          for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
          print v[int(n / 2)] }' "$3"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a == a + 0) printf "%.2f", a / b; else print "NaN" }'; }
within() { awk -v r="$1" -v up="$2" 'BEGIN { if (r == "NaN") { print "not measured"; exit }
  ok = (up == "higher") ? (r >= 0.9) : (r <= 1.1); print ok ? "yes" : "**no**" }'; }
sc() { med "$1" "FairShareScenario/$2" "$work/scenario"; }

fair_cyc=$(med cycles/s 'Owners16/fair' "$work/out-owners")
fifo_cyc=$(med cycles/s 'Owners16/fifo' "$work/out-owners")
fair_cpu=$(med cpu-us/cycle 'Owners16/fair' "$work/out-owners")
fifo_cpu=$(med cpu-us/cycle 'Owners16/fifo' "$work/out-owners")
base_cyc=$(med cycles/s 'ClaimComplete16' "$work/out-base")
head_cyc=$(med cycles/s 'ClaimComplete16' "$work/out-head")
base_cpu=$(med cpu-us/cycle 'ClaimComplete16' "$work/out-base")
head_cpu=$(med cpu-us/cycle 'ClaimComplete16' "$work/out-head")
in_fair=$(med cycles/s 'Owners/fair' "$work/out-inproc")
in_fifo=$(med cycles/s 'Owners/fifo' "$work/out-inproc")
pg_fair=$(med page-writes/commit 'Owners/fair' "$work/out-inproc")
pg_fifo=$(med page-writes/commit 'Owners/fifo' "$work/out-inproc")
r_cyc=$(ratio "$fair_cyc" "$fifo_cyc")
r_cpu=$(ratio "$fair_cpu" "$fifo_cpu")
rb_cyc=$(ratio "$head_cyc" "$base_cyc")
rb_cpu=$(ratio "$head_cpu" "$base_cpu")
r_in=$(ratio "$in_fair" "$in_fifo")
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

**Claim+complete throughput** (each cycle a claimWork and a
reportCompleted over loopback HTTP, 16 workers, as in the queue section;
medians of $rounds rounds):

| measurement | fair shares | FIFO | fair / FIFO | within 10% |
|---|---|---|---|---|
| cycles/s, 8 owners' tasks, HTTP (\`BenchmarkClaimCompleteOwners16\`) | $fair_cyc | $fifo_cyc | $r_cyc | $(within "$r_cyc" higher) |
| CPU per cycle, same | $fair_cpu µs | $fifo_cpu µs | $r_cpu | $(within "$r_cpu" lower) |
| cycles/s, 8 owners, in process (\`internal/queue BenchmarkClaimCompleteOwners\`) | $in_fair | $in_fifo | $r_in | $(within "$r_in" higher) |
| bbolt page writes per commit, same | $pg_fair | $pg_fifo | — | — |

| measurement | this queue (fair shares on) | today's queue ($base_rev, FIFO) | this / today's | within 10% |
|---|---|---|---|---|
| cycles/s, one owner, HTTP (\`BenchmarkClaimComplete16\`) | $head_cyc | $base_cyc | $rb_cyc | $(within "$rb_cyc" higher) |
| CPU per cycle, same | $head_cpu µs | $base_cpu µs | $rb_cpu | $(within "$rb_cpu" lower) |

With one owner, a claim's extra work is one seek per (priority, owner) run
of the pending index and a read of the owner's running count. Over 8
owners fair shares interleave the owners' graphs, so each commit dirties
more bbolt pages (the pending index's runs and the deadline index of 8
graphs instead of one; the page-writes row), which is where the
difference, if any, comes from.
MD
