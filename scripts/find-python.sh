#!/usr/bin/env bash
# Print the path of a Python >= 3.12 interpreter (PyMC 6 needs it), or fail with a hint.
# Machines of this project ship 3.11 as `python3` and 3.12 under pyenv, whose `python3.12` shim
# fails while the global version is 3.11; so look at real binaries, not only the PATH.
set -u
candidates=()
for name in python3.13 python3.12 python3; do
  p=$(command -v "$name" 2>/dev/null) && candidates+=("$p")
done
for root in "${PYENV_ROOT:-$HOME/.pyenv}" /root/.pyenv /usr/local /usr; do
  for p in "$root"/versions/3.1[2-9]*/bin/python3 "$root"/bin/python3.1[2-9]; do
    [ -x "$p" ] && candidates+=("$p")
  done
done
for p in "${candidates[@]}"; do
  if "$p" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
    echo "$p"
    exit 0
  fi
done
echo "error: no Python >= 3.12 found (tried: ${candidates[*]:-none}); install python3.12" >&2
exit 1
