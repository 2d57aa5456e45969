#!/bin/sh
# scripts/setup-peers.sh [VENV] — the peer libraries that tests/test_parity.py compares vita
# with: timm and MONAI, installed from PyPI into a virtual environment (default .venv-peers)
# that sees Debian's python3-torch 1.13 (--system-site-packages) so no second torch is
# downloaded. Idempotent: a venv that already imports the pinned versions is left alone.
#
# Pins (the newest releases that import and run on torch 1.13 here): timm 1.0.31 (needs
# torchvision at import), monai 1.4.0 (1.5+ uses `X | None` in torch.jit interfaces, which
# torch 1.13's TorchScript rejects), einops (monai's attention blocks). All with --no-deps:
# their declared dependencies would pull a new torch from PyPI.
#
# torchvision must match torch 1.13: Debian's python3-torchvision 0.14.1 (PyPI has no build
# of 0.14 for this Python). If it is not installed system-wide (scripts/install-deps.sh), its
# package is fetched with apt-get download and unpacked into the venv only.
# Exit 0 when the venv imports timm and monai; otherwise non-zero with the reason.
set -eu
VENV=${1:-.venv-peers}
PY=/usr/bin/python3
TIMM=1.0.31
MONAI=1.4.0
EINOPS=0.8.2
SITK=2.5.7

check() {
  "$VENV/bin/python" -c "
import timm, monai, einops, torchvision, SimpleITK
assert timm.__version__ == '$TIMM', timm.__version__
assert monai.__version__ == '$MONAI', monai.__version__
" 2>/dev/null
}

if [ -x "$VENV/bin/python" ] && check; then
  echo "setup-peers: $VENV ready (timm $TIMM, monai $MONAI)"
  exit 0
fi
[ -x "$VENV/bin/python" ] || $PY -m venv --system-site-packages "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps \
  "timm==$TIMM" "monai==$MONAI" "einops==$EINOPS" "SimpleITK==$SITK"

if ! "$VENV/bin/python" -c "import torchvision" 2>/dev/null; then
  site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if command -v apt-get >/dev/null 2>&1 && (cd "$tmp" && apt-get download -q python3-torchvision >/dev/null 2>&1); then
    dpkg -x "$tmp"/python3-torchvision_*.deb "$tmp/x"
    cp -r "$tmp"/x/usr/lib/python3/dist-packages/torchvision "$site/"
    echo "setup-peers: Debian's python3-torchvision unpacked into $site (not installed system-wide)"
  else
    echo "setup-peers: torchvision missing and Debian's python3-torchvision could not be fetched;" \
         "install it (apt-get install python3-torchvision) and rerun" >&2
    exit 1
  fi
fi

if check; then
  echo "setup-peers: $VENV ready (timm $TIMM, monai $MONAI)"
else
  echo "setup-peers: $VENV does not import timm $TIMM / monai $MONAI:" >&2
  "$VENV/bin/python" -c "import timm, monai, torchvision" >&2 || true
  exit 1
fi
