#!/usr/bin/env bash
# One entry point for people and CI: sets up a virtual environment from this
# repository's own files, then runs the requested job in it.
#
#   bash dev.sh demo            # set up, then train/prune/fine-tune/report on the embedded digits data
#   bash dev.sh test [ARGS]     # set up with test extras, then run the default test suite
#   bash dev.sh bench NAME ...  # set up with benchmark extras, then run benchmarks/NAME.py
#   bash dev.sh setup [EXTRAS]  # only set up (EXTRAS: e.g. "dev,timm")
#
# PRUNEKIT_VENV chooses the environment folder (default: .venv).
# PRUNEKIT_TORCH_INDEX, if set, is passed to pip as --extra-index-url for torch
# (e.g. https://download.pytorch.org/whl/cpu for a CPU-only torch).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
VENV="${PRUNEKIT_VENV:-.venv}"
PY="$VENV/bin/python"

setup() {
    local extras="$1"
    local bench_only="${2:-}"
    if [ ! -x "$PY" ]; then
        python3 -m venv "$VENV"
    fi
    local stamp_file="$VENV/.prunekit-setup-stamp"
    local stamp
    stamp="$(cat pyproject.toml constraints.txt | "$PY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')-$extras-$bench_only"
    if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
        return 0
    fi
    local pip=("$PY" -m pip install --quiet --disable-pip-version-check -c constraints.txt)
    if [ -n "${PRUNEKIT_TORCH_INDEX:-}" ]; then
        pip+=(--extra-index-url "$PRUNEKIT_TORCH_INDEX")
    fi
    # torch first, pinned: nothing installed after it can pull a different build.
    "${pip[@]}" "torch==2.13.0"
    if [ -n "$extras" ]; then
        "${pip[@]}" -e ".[$extras]"
    else
        "${pip[@]}" -e .  # pip rejects an empty extras list ".[]"
    fi
    if [ -n "$bench_only" ]; then
        # Benchmark-only baseline; its declared deps would re-resolve torch.
        "${pip[@]}" --no-deps "torch-pruning==1.6.1"
    fi
    echo "$stamp" > "$stamp_file"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
    demo)
        setup ""
        exec "$VENV/bin/prunekit" demo "$@"
        ;;
    test)
        setup "dev,timm"
        exec "$PY" -m pytest -n 2 -q "$@"
        ;;
    bench)
        setup "dev,timm" bench
        name="${1:?usage: bash dev.sh bench NAME [ARGS] (see benchmarks/README.md)}"
        shift
        exec "$PY" "benchmarks/$name.py" "$@"
        ;;
    setup)
        setup "${1:-dev,timm}" "${2:-}"
        ;;
    *)
        echo "usage: bash dev.sh {demo|test|bench NAME|setup [EXTRAS]} [ARGS]" >&2
        exit 2
        ;;
esac
