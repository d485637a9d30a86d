#!/usr/bin/env bash
# build.sh builds af's container images without a registry:
#
#   af/debian:bookworm  a minimal Debian root filesystem (debootstrap) with python3,
#                       numpy and pandas (Debian's packages)
#   af/python           the base for Python jobs: the af_helper module, user af (10001), /scratch
#   af/os-count         the example Python job (documents by info.OS)
#   af/os-count-go      the same job in Go, a static binary FROM scratch
#   af/os-count-loads   os-count decoding each document with json.loads, as
#                       the baselines of bench/50-job.sh do (for comparison)
#
# Usage: images/build.sh [-f|--force] [image ...]   (image: debian python os-count os-count-go os-count-loads)
# Idempotent: an image whose inputs (build context and base image) are
# unchanged since it was built is skipped unless --force is given; af/debian
# is rebuilt only when its package list (its af.include label) changed or
# with --force, since debootstrap takes minutes.
# The Debian mirror is read from this machine's apt sources, never hard-coded.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
force=0
targets=()
for a in "$@"; do
	case "$a" in
	-f | --force) force=1 ;;
	-h | --help)
		sed -n '2,14p' "${BASH_SOURCE[0]}"
		exit 0
		;;
	debian | python | os-count | os-count-go | os-count-loads) targets+=("$a") ;;
	*)
		echo "build.sh: unknown argument $a (want -f, debian, python, os-count, os-count-go or os-count-loads)" >&2
		exit 2
		;;
	esac
done
[ ${#targets[@]} -gt 0 ] || targets=(debian python os-count os-count-go os-count-loads)

say() { echo "images: $*"; }

# Temporary dirs are removed on exit, however the script ends.
tmpdirs=()
cleanup() { [ ${#tmpdirs[@]} -eq 0 ] || rm -rf "${tmpdirs[@]}"; }
trap cleanup EXIT

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# mirror prints the Debian archive URI of the machine's apt sources: the
# deb822 *.sources files first, then the one-line sources.list format.
mirror() {
	local f uri
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		uri=$(awk '
			/^[ \t]*$/ { if (u != "" && s ~ /(^| )bookworm( |$)/) { print u; exit } u=""; s=""; next }
			/^URIs:/ { u=$2 }
			/^Suites:/ { $1=""; s=$0 " " }
			END { if (u != "" && s ~ /(^| )bookworm( |$)/) print u }' "$f" | head -n1)
		if [ -n "$uri" ]; then
			echo "$uri"
			return
		fi
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; exit } }' "$f" | grep -v security | head -n1 || true)
		if [ -n "$uri" ]; then
			echo "$uri"
			return
		fi
	done
	echo "build.sh: no Debian mirror found in /etc/apt/sources.list(.d); add a 'deb' line or set AF_DEBIAN_MIRROR" >&2
	return 1
}

declare -A done_images

# debian_include is the package list of af/debian:bookworm. The image
# carries it as its af.include label, so changing the list rebuilds the base
# on every machine (and CI) that has the old one.
debian_include=python3-minimal,libpython3.11-stdlib,ca-certificates,python3-numpy,python3-pandas

build_debian() {
	[ -z "${done_images[debian]:-}" ] || return 0
	done_images[debian]=1
	local img=af/debian:bookworm have
	have=$(docker image inspect -f '{{index .Config.Labels "af.include"}}' "$img" 2>/dev/null || true)
	if [ "$have" = "$debian_include" ] && [ "$force" = 0 ]; then
		say "$img exists with the same packages, skipping (use --force to rebuild)"
		return
	fi
	if have_image "$img" && [ "$force" = 0 ]; then
		say "$img was built with other packages (${have:-unlabelled}), rebuilding"
	fi
	local m="${AF_DEBIAN_MIRROR:-}"
	[ -n "$m" ] || m="$(mirror)"
	local root
	root="$(mktemp -d /tmp/af-debian.XXXXXX)"
	tmpdirs+=("$root")
	say "debootstrap bookworm into $root from the machine's apt mirror (a few minutes)"
	debootstrap --variant=minbase --include="$debian_include" bookworm "$root" "$m" >"$root.log" 2>&1 || {
		tail -n 30 "$root.log" >&2
		echo "build.sh: debootstrap failed (log above, full log $root.log)" >&2
		return 1
	}
	say "stripping docs, caches and apt lists"
	rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
		"$root"/usr/share/locale/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
		"$root"/var/cache/debconf/*-old "$root"/var/log/*.log "$root"/tmp/* 2>/dev/null || true
	say "importing $img"
	tar -C "$root" -c . | docker import -c 'CMD ["/bin/bash"]' -c "LABEL af.include=$debian_include" - "$img" >/dev/null
	rm -f "$root.log"
	say "$img built"
}

# context_hash fingerprints a build context and the base image it builds on,
# so an image is rebuilt exactly when its inputs changed.
context_hash() { # dir base-image
	local base_id=scratch
	[ "$2" = scratch ] || base_id=$(docker image inspect -f '{{.Id}}' "$2")
	{
		echo "$base_id"
		(cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
	} | sha256sum | cut -d' ' -f1
}

build_dockerfile() { # image dir base-image
	local img="$1" dir="$2" hash have
	hash=$(context_hash "$dir" "$3")
	have=$(docker image inspect -f '{{index .Config.Labels "af.context"}}' "$img" 2>/dev/null || true)
	if [ "$have" = "$hash" ] && [ "$force" = 0 ]; then
		say "$img is up to date, skipping (use --force to rebuild)"
		return
	fi
	say "building $img"
	# The legacy builder's deprecation notice is noise: show output on failure only.
	local out
	if ! out=$(docker build -q --label "af.context=$hash" -t "$img" "$dir" 2>&1); then
		echo "$out" >&2
		echo "build.sh: docker build of $img failed" >&2
		return 1
	fi
	say "$img built"
}

build_python() {
	[ -z "${done_images[python]:-}" ] || return 0
	done_images[python]=1
	build_debian
	build_dockerfile af/python "$here/python" af/debian:bookworm
}

build_os_count() { # image job-file
	local img="$1"
	build_python
	# The example's spec is the repo root's analysis-tools.yml: one copy only.
	local ctx
	ctx="$(mktemp -d /tmp/af-os-count.XXXXXX)"
	tmpdirs+=("$ctx")
	cp "$here/os-count/Dockerfile" "$ctx/"
	cp "$here/os-count/$2" "$ctx/job.py"
	cp "$repo/analysis-tools.yml" "$ctx/analysis-tools.yml"
	build_dockerfile "$img" "$ctx" af/python
}

build_os_count_go() {
	local img=af/os-count-go
	local ctx
	ctx="$(mktemp -d /tmp/af-os-count-go.XXXXXX)"
	tmpdirs+=("$ctx")
	say "compiling the Go job (static, CGO_ENABLED=0)"
	(cd "$repo" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags='-s -w' -o "$ctx/job" ./images/os-count-go)
	cp "$here/os-count-go/Dockerfile" "$here/os-count-go/analysis-tools.yml" "$ctx/"
	build_dockerfile "$img" "$ctx" scratch
}

for t in "${targets[@]}"; do
	case "$t" in
	debian) build_debian ;;
	python) build_python ;;
	os-count) build_os_count af/os-count job.py ;;
	os-count-loads) build_os_count af/os-count-loads job_loads.py ;;
	os-count-go) build_os_count_go ;;
	esac
done
