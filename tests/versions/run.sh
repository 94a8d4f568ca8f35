#!/usr/bin/env bash
# make test-versions: the proto/ and io/ tiers and the integration smoke
# (tests/versions/test_python_smoke.py) on every Python >= 3.10 that pyenv has here,
# compiled and pure.
#
# Each Python gets its own environment, .venv-3.X, with corral installed
# editable (its parser compiled in place for that Python, beside the other
# Pythons' builds: the extension modules' names carry the version) and the
# test-versions extra (what these tiers import; less to install than test). It is made again when pyproject.toml or setup.py changes, and
# the parser compiled again when corral/proto/h1.py or h1.pxd does.
#
# Skipped: the Python `make test` runs (PYTHON, the same series), and
# versions older than corral supports. PYTHONS="3.10 3.13" picks some.
# Without pyenv it says so and exits 0.
set -uo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
root=${PYENV_ROOT:-}
if [ -z "$root" ]; then
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
fi
if [ ! -d "$root/versions" ]; then
    echo "make test-versions: skipped: pyenv is not installed here (no $root/versions);"
    echo "  only the Python of \`make test\` ($($PYTHON --version 2>&1)) is tested"
    exit 0
fi
tested=$($PYTHON -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# The newest patch release of each 3.X series (X >= 10), CPython only.
declare -A newest
for dir in "$root"/versions/*/; do
    version=$(basename "$dir")
    [[ $version =~ ^3\.([0-9]+)\.([0-9]+)$ ]] || continue
    (( BASH_REMATCH[1] >= 10 )) && [ -x "$dir/bin/python3" ] || continue
    series=3.${BASH_REMATCH[1]}
    current=${newest[$series]:-}
    if [ -z "$current" ] || [ "$(printf '%s\n%s\n' "$current" "$version" | sort -V | tail -1)" = "$version" ]; then
        newest[$series]=$version
    fi
done

selected=()
for series in $(printf '%s\n' "${!newest[@]}" | sort -V); do
    if [ "$series" = "$tested" ]; then
        echo "make test-versions: $series: skipped, \`make test\` runs it"
    elif [ -n "${PYTHONS:-}" ] && [[ " $PYTHONS " != *" $series "* ]]; then
        echo "make test-versions: $series: skipped, not in PYTHONS"
    else
        selected+=("$series")
    fi
done
if [ ${#selected[@]} = 0 ]; then
    echo "make test-versions: skipped: pyenv has no Python >= 3.10 besides $tested"
    exit 0
fi

TIERS=(tests/proto tests/io tests/versions)
results=()
failed=0
for series in "${selected[@]}"; do
    version=${newest[$series]}
    venv=.venv-$series
    echo "=== Python $version ($venv)"
    if [ ! -f "$venv/.installed-test" ] || [ pyproject.toml -nt "$venv/.installed-test" ] || [ setup.py -nt "$venv/.installed-test" ]; then
        rm -rf "$venv"
        log=$venv/install.log
        if ! { "$root/versions/$version/bin/python3" -m venv "$venv" \
               && "$venv/bin/pip" install -q -e '.[test-versions]' >"$log" 2>&1 \
               && "$venv/bin/python" -c "import corral, pytest"; }; then
            grep -v "is ignored: it is neither" "$log" | tail -n 40
            echo "make test-versions: $series: FAILED to install corral and its test-versions extra"
            results+=("$series install FAILED")
            failed=1
            continue
        fi
        touch "$venv/.installed-test" "$venv/.compiled"
    fi
    if [ corral/proto/h1.py -nt "$venv/.compiled" ] || [ corral/proto/h1.pxd -nt "$venv/.compiled" ]; then
        "$venv/bin/pip" install -q --no-deps -e . >"$venv/install.log" 2>&1 && touch "$venv/.compiled"
    fi
    built=$(env -u CORRAL_PURE "$venv/bin/python" -c "from corral._mode import mode; print(mode())")
    if [ "$built" != compiled ]; then
        echo "make test-versions: $series: the parser is not compiled ($built): no C compiler or Cython here?"
    fi
    modes=("$built")
    [ "$built" = pure ] || modes+=(pure)
    for mode in "${modes[@]}"; do
        if [ "$mode" = pure ]; then pure=1; else pure=0; fi
        echo "--- Python $version, $mode: ${TIERS[*]}"
        if CORRAL_PURE=$pure CORRAL_EXPECT_MODE=$mode "$venv/bin/python" -m pytest -q -p no:cacheprovider \
                "${TIERS[@]}" ${PYTEST_ARGS:-}; then
            results+=("$series $mode passed")
        else
            results+=("$series $mode FAILED")
            failed=1
        fi
    done
done

echo "=== make test-versions (${TIERS[*]}):"
printf '  %s\n' "${results[@]}"
exit $failed
