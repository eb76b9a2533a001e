#!/usr/bin/env bash
# One-time set-up: an optimised BLAS for MLX on Linux (Debian/Ubuntu), a virtual environment in .venv, and
# srlm-lite with its dependencies. llama-cpp-python compiles llama.cpp the first time (about 6 minutes on 2 cores);
# pip caches the built wheel, so later set-ups take seconds.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

if [ "$(uname -s)" = "Linux" ] && command -v apt-get >/dev/null 2>&1; then
  if ! ls /usr/lib/*-linux-gnu/openblas-pthread/libblas.so.3 >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: installing Debian's libopenblas0-pthread (MLX's Linux wheel bundles a ~30x slower BLAS)"
    if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libopenblas0-pthread; }; then
      echo "setup: WARNING could not install libopenblas0-pthread; training will be slow (see 'srlm-lite doctor')"
    fi
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install --quiet -e '.[test,eval,server]'
.venv/bin/srlm-lite --version
echo "setup: done. Next: .venv/bin/srlm-lite iterate"
