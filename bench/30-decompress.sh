#!/usr/bin/env bash
# Decompression throughput per input format (internal/decompress), in MB/s of
# uncompressed output on one core, with the "gunzip ceiling" of issue 5: the
# standard library's gzip against klauspost/compress's.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false
cmd=(go test -run '^$' -bench '^BenchmarkDecompress$' -benchtime 3x -count 3 -cpu 1 ./internal/decompress/)
out="$("${cmd[@]}" 2>&1)" || {
	echo "$out" >&2
	exit 1
}
# name -> MB/s, the best of the -count runs (the machine is shared, so the
# best run is the least disturbed one).
declare -A mbs
while read -r name rate; do
	mbs[${name#BenchmarkDecompress/}]=$rate
done < <(echo "$out" | awk '/^BenchmarkDecompress\// { for (i = 1; i < NF; i++) if ($(i+1) == "MB/s" && $i > best[$1]) best[$1] = $i }
	END { for (n in best) print n, best[n] }')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
meets() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b) ? "yes" : "no" }'; }

gzk=${mbs[gz-klauspost]:-0}
gzs=${mbs[gz-stdlib]:-0}
bzs=${mbs[bz2-stdlib]:-0}
bzd=${mbs[bz2-dsnet]:-0}

echo "## Decompression (internal/decompress)"
echo
echo "One core, about 16 MB of generated telemetry-like lines per format, compressed"
echo "by the system tools (gzip, xz, xz --format=lzma, zstd, bzip2). MB/s of"
echo "uncompressed output, best of three runs. Command:"
echo
echo '```'
echo "${cmd[*]}"
echo '```'
echo
echo "| decoder | MB/s | target | meets |"
echo "|---|---|---|---|"
echo "| plain (copy) | ${mbs[plain]:-?} | — | — |"
echo "| gzip, klauspost/compress (used) | $gzk | ≥ stdlib gzip ($gzs); issue 5 reference 220-260 a core | $(meets "$gzk" "$gzs") ($(ratio "$gzk" "$gzs")x stdlib) |"
echo "| gzip, standard library | $gzs | baseline | — |"
echo "| zstd, klauspost/compress (1 goroutine, low memory) | ${mbs[zst]:-?} | ≥ gzip ($gzk) | $(meets "${mbs[zst]:-0}" "$gzk") |"
echo "| xz, ulikunitz/xz | ${mbs[xz]:-?} | — (pure-Go LZMA2; informational) | — |"
echo "| lzma (LZMA-alone), ulikunitz/xz/lzma | ${mbs[lzma]:-?} | — (informational) | — |"
echo "| bzip2, standard library (used) | $bzs | ≥ dsnet/compress ($bzd) | $(meets "$bzs" "$bzd") ($(ratio "$bzs" "$bzd")x dsnet) |"
echo "| bzip2, dsnet/compress | $bzd | baseline | — |"
echo
echo "The gunzip ceiling of the end-to-end benchmark is the klauspost gzip row: an af"
echo "mapper cannot read gzip input faster than this per core."
