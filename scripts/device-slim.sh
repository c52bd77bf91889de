#!/usr/bin/env bash
# Makes the working tree small enough to travel to a lent GPU machine, and back again.
#
#   scripts/device-slim.sh on      # before the device call(s)
#   scripts/device-slim.sh off     # right after: restores the index exactly
#   scripts/device-slim.sh status
#
# Why: the device tool sends the tracked files plus the carried paths, 64 MiB at most. The two
# poetry models' weights are 2 × 26.8 MB of tracked files, and the CUDA binary (dist/, ≈ 35 MB, the
# embedded model included) would not fit beside them. No GPU script needs those files: the binary
# embeds the generator, and the judge is used on the CPU only. `on` takes the two weight files out
# of the index (the files themselves stay) and hides them with .git/info/exclude; `off` puts them
# back. While it is on, `git status` shows them as staged deletions: never commit then.
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=(models/poetry-glm/model.safetensors models/poetry-judge/model.safetensors)
EXCLUDE=$(git rev-parse --git-path info/exclude)
MARK="# scripts/device-slim.sh"

case "${1:-status}" in
  on)
    if ! git diff --cached --quiet; then
      echo "device-slim: the index has staged changes; commit or unstage them first" >&2
      exit 1
    fi
    git rm -q --cached -- "${FILES[@]}"
    mkdir -p "$(dirname "$EXCLUDE")"
    { echo "$MARK begin"; printf '/%s\n' "${FILES[@]}"; echo "$MARK end"; } >>"$EXCLUDE"
    echo "device-slim on: ${FILES[*]} untracked for the device call; run 'scripts/device-slim.sh off' after it" >&2
    ;;
  off)
    git reset -q -- "${FILES[@]}"
    if [ -f "$EXCLUDE" ]; then
      sed "\|^$MARK begin\$|,\|^$MARK end\$|d" "$EXCLUDE" >"$EXCLUDE.tmp"
      mv "$EXCLUDE.tmp" "$EXCLUDE"
    fi
    git diff --quiet -- "${FILES[@]}" || echo "device-slim: note: the weight files differ from HEAD" >&2
    echo "device-slim off: the index is as before" >&2
    ;;
  status)
    if grep -qF "$MARK" "$EXCLUDE" 2>/dev/null; then echo on; else echo off; fi
    ;;
  *)
    echo "usage: scripts/device-slim.sh on|off|status" >&2
    exit 2
    ;;
esac
