#!/usr/bin/env bash
# Installs the Debian packages af's tests, images, demo and benchmarks use,
# when they are missing. Usage: scripts/host-deps.sh [test|bench]
#   test:  iproute2 and iptables (internal/hosttest: hosts as network
#          namespaces), debootstrap (the Python base image), chromium (monitor page
#          tests), the compression tools the tests compare against, curl, and
#          the job benchmark's baselines (python3-boto3, -dask, -distributed),
#          whose own test runs them on a few MiB, and docker-registry (a real
#          registry on loopback for the tests of pulling job images by digest)
#   bench: test's, plus bc
set -euo pipefail
what=${1:-test}
pkgs=(iproute2 iptables debootstrap libisal-dev chromium xz-utils zstd bzip2 gzip ca-certificates curl python3 python3-boto3 python3-dask python3-distributed docker-registry)
case "$what" in
test) ;;
bench) pkgs+=(bc) ;;
*)
	echo "host-deps: unknown set $what (want test or bench)" >&2
	exit 2
	;;
esac
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "host-deps: missing Debian packages: ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
	exit 1
fi
echo "host-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
