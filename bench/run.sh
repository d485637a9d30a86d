#!/usr/bin/env bash
# Runs every benchmark section (bench/*.sh, in name order) and writes
# BENCHMARKS.md. Each section prints its own markdown, including the command
# that produced its numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
out=BENCHMARKS.md
tmp=$(mktemp)
{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` on $(date -u +%Y-%m-%d) on $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(go version | cut -d' ' -f3)."
  echo
  for s in bench/[0-9]*.sh; do
    bash "$s"
    echo
  done
} > "$tmp"
# Sections no script printed (bench/compare.sh's Before/after runs, and
# figures a test measured, such as the faults survived in place) are kept
# from the old file, so a run of make bench replaces only what it measured.
if [ -f "$out" ]; then
  awk 'NR == FNR { if (/^## /) made[$0] = 1; next }
       /^## / { keep = !($0 in made) }
       keep' "$tmp" "$out" >> "$tmp.kept"
  cat "$tmp.kept" >> "$tmp"
  rm -f "$tmp.kept"
fi
mv "$tmp" "$out"
echo "wrote $out"
