#!/bin/sh
# scripts/install-deps.sh — installs exactly the Debian packages vita needs, only the missing
# ones (idempotent), and says what it installed. Not root or not Debian: prints what to
# install by hand and exits 0 if everything is already there, 1 otherwise.
#   build:  gcc make pkg-config libopenblas-dev libopenblas-openmp-dev libhdf5-dev libcjson-dev libyaml-dev
#           libnifti2-dev libnifti-dev zlib1g-dev (NIfTI / MetaImage for vita import and predict)
#   tests:  python3 python3-numpy python3-torch (the numeric oracle, Debian's CPU build),
#           python3-sklearn python3-scipy python3-skimage (metric oracles), python3-h5py
#           (reading logs and datasets as users do), python3-yaml (emitted configs),
#           python3-nibabel (independent NIfTI reader), python3-venv python3-pip (.venv-peers:
#           timm / MONAI / SimpleITK for parity, scripts/setup-peers.sh)
#   tools:  python3-matplotlib (tools/plot.py)
PKGS="gcc make pkg-config libopenblas-dev libopenblas-openmp-dev libhdf5-dev libcjson-dev libyaml-dev python3 python3-numpy python3-torch python3-sklearn python3-scipy python3-skimage python3-h5py python3-yaml libnifti2-dev libnifti-dev zlib1g-dev python3-matplotlib python3-nibabel python3-venv python3-pip"

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "install-deps: not a Debian system; install by hand: a C11 compiler with OpenMP, OpenBLAS, HDF5 (>= 1.10), cJSON, libyaml, Python 3 with numpy and torch (CPU). Point the Makefile at them with OPENBLAS_DIR= HDF5_DIR=."
  exit 0
fi
missing=""
for p in $PKGS; do
  s=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
  case "$s" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
if [ -z "$missing" ]; then
  echo "install-deps: all Debian packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=sudo; else
    echo "install-deps: missing Debian packages:$missing"
    echo "install-deps: not root; run: sudo apt-get install -y --no-install-recommends$missing"
    exit 1
  fi
fi
echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || { echo "install-deps: apt-get update failed (network? proxy?)"; exit 1; }
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null || {
  echo "install-deps: apt-get install failed for:$missing"; exit 1; }
echo "install-deps: installed:$missing"
