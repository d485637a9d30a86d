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
  # Before/after sections come from bench/compare.sh runs, not from here:
  # keep them.
  if [ -f "$out" ]; then
    awk '/^## / { keep = ($0 ~ /^## Before\/after/) } keep' "$out"
  fi
} > "$tmp"
mv "$tmp" "$out"
echo "wrote $out"
