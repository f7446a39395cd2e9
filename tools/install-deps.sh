#!/usr/bin/env bash
# Install what vpd needs from Debian's packages, and nothing that is already there.
# Idempotent: a second run only checks (about a second). Needs root or sudo.
set -euo pipefail
C_PKGS="build-essential cmake pkg-config libopenmpi-dev openmpi-bin libopenblas-dev liblapack-dev
        libscalapack-openmpi-dev libhdf5-openmpi-dev hdf5-tools libyaml-dev libcjson-dev"
# chromium: the report test (tests/cmake/report.cmake) opens the HTML report headless;
# graphviz: vpd attrib draws its graph with dot -Tsvg (without it, a plain built-in SVG)
PY_PKGS="python3-torch python3-h5py python3-numpy python3-yaml python3-matplotlib
         python3-pip fortunes fortunes-min bible-kjv bible-kjv-text python3.11-doc chromium graphviz"
missing=""
for p in $C_PKGS $PY_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "install-deps: all packages present"
  exit 0
fi
echo "install-deps: installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-deps: done"
