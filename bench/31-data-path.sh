#!/usr/bin/env bash
# The worker-side data path besides decompression: framing records into the
# container (internal/records), sorting and merging mapper output
# (internal/extsort), and the Go SDK's field scanner against a full
# encoding/json decode (sdk/afjob). Each stage should outrun gunzip so it
# never bounds a mapper.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false
c1=(go test -tags isal -run '^$' -bench '^BenchmarkDecompress$/^gz-isal$' -benchtime 3x -count 3 -cpu 1 ./internal/decompress/)
c2=(go test -run '^$' -bench '^BenchmarkCopyLines$' -benchtime 20x -count 3 -cpu 1 ./internal/records/)
c3=(go test -run '^$' -bench '^Benchmark(Sort|Merge)$' -benchtime 3x -count 3 -cpu 1 ./internal/extsort/)
c4=(go test -run '^$' -bench '^Benchmark(Field|Map)$' -count 3 -cpu 1 ./sdk/afjob/)
out=""
for c in c1 c2 c3 c4; do
	declare -n cmd=$c
	o="$("${cmd[@]}" 2>&1)" || {
		echo "$o" >&2
		exit 1
	}
	out+="$o"$'\n'
done
# The best of the -count runs: the machine is shared.
rate() { echo "$out" | awk -v n="$1" '$1 == n { for (i = 1; i < NF; i++) if ($(i+1) == "MB/s" && $i > best) best = $i } END { print best + 0 }'; }
meets() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b) ? "yes" : "no" }'; }
quarter() { awk -v a="$1" 'BEGIN { printf "%.1f", a / 4 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }

gz=$(rate BenchmarkDecompress/gz-isal)
cl=$(rate BenchmarkCopyLines)
s1=$(rate "BenchmarkSort/mem=67108864")
s2=$(rate "BenchmarkSort/mem=1048576")
mg=$(rate BenchmarkMerge)
fd=$(rate BenchmarkField/Field)
fl=$(rate BenchmarkField/FieldLastKey)
js=$(rate BenchmarkField/encoding-json-map)
mp=$(rate BenchmarkMap)

echo "## Data path stages (records, extsort, afjob.Field)"
echo
echo "One core each, MB/s of input, best of three runs. The baseline is the worker's gunzip (ISA-L)"
echo "measured in the same run ($gz MB/s): a stage at or above it never bounds a mapper."
echo "Commands:"
echo
echo '```'
for c in c1 c2 c3 c4; do
	declare -n cmd=$c
	echo "${cmd[*]}"
done
echo '```'
echo
echo "| stage | MB/s | target | meets |"
echo "|---|---|---|---|"
echo "| records.CopyLines (validate + frame lines) | $cl | ≥ gunzip ($gz) | $(meets "$cl" "$gz") |"
q=$(quarter "$gz")
echo "| extsort.Sort, in memory (200k lines, 100k keys) | $s1 | ≥ gunzip/4 ($q)¹ | $(meets "$s1" "$q") |"
echo "| extsort.Sort, spilling (1 MiB memory bound) | $s2 | ≥ gunzip/4 ($q)¹ | $(meets "$s2" "$q") |"
echo "| extsort merge of 8 sorted inputs | $mg | ≥ gunzip ($gz)² | $(meets "$mg" "$gz") |"
echo "| afjob.Field(doc, \"info\", \"OS\") on a 40 KB ping (info first) | $fd | ≥ gunzip ($gz) | $(meets "$fd" "$gz") |"
echo "| afjob.Field, key at the end (scans the whole document) | $fl | ≥ gunzip ($gz); ≥ 5x encoding/json | $(meets "$fl" "$gz"), $(ratio "$fl" "$js")x json |"
echo "| afjob map path: framing, Field, combine (os-count-go's mapper) | $mp | ≥ gunzip ($gz) | $(meets "$mp" "$gz") |"
echo "| encoding/json decode into maps (baseline) | $js | — (issue 5 reference: about 21 MB/s) | — |"
echo
echo "¹ Sort reads the mapper's output, not its input: a few dozen bytes per"
echo "document without combine (os-count: \"WINNT\"<TAB>1), a handful of lines per"
echo "task with it, so a quarter of the gunzip rate keeps sorting off the critical path."
echo
echo "² The reducer merges the mappers' sorted outputs, which are that small too; the"
echo "target was set when the baseline was klauspost gunzip (about a third of ISA-L's rate)."
