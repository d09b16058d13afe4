#!/usr/bin/env bash
# Quick start on a fresh machine: installs what is missing, then runs one of
#   ./quickstart.sh bench [PYTEST ARGS...]   the quick benchmark matrix and its report
#   ./quickstart.sh test  [PYTEST ARGS...]   the tests (what CI runs)
# Needs Python 3.10-3.12 with pip. The dataset comes from Debian's dataset-fashion-mnist
# (installed with apt-get when missing and apt-get exists), or from $FASHION_MNIST_DIR.
set -euo pipefail
cd "$(dirname "$0")"

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_data() {
    local dir=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
    [ -f "$dir/train-images-idx3-ubyte.gz" ] && return 0
    if [ -n "${FASHION_MNIST_DIR:-}" ]; then
        echo "quickstart: FASHION_MNIST_DIR=$dir holds no train-images-idx3-ubyte.gz" >&2
        exit 2
    fi
    if command -v apt-get >/dev/null; then
        echo "quickstart: installing Debian's dataset-fashion-mnist" >&2
        as_root apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist
    else
        echo "quickstart: no Fashion-MNIST found; set FASHION_MNIST_DIR to a folder with" \
             "the four IDX .gz files" >&2
        exit 2
    fi
}

ensure_tox() {
    # tox-uv: the envs are made with uv, which installs the frameworks from its cache.
    python3 -c 'import tox, tox_uv' >/dev/null 2>&1 && return 0
    echo "quickstart: installing tox and tox-uv" >&2
    python3 -m pip install -q --disable-pip-version-check 'tox>=4.21' 'tox-uv>=1.11'
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
    bench) ensure_data; ensure_tox; exec python3 -m tox -e bench -- "$@" ;;
    test)  ensure_data; ensure_tox; exec python3 -m tox -e py -- "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
