#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job on the built-in default.
# Extra arguments go to the recipe (e.g. --out DIR, --quick, --backend vulkan).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
RECIPE=recipes/pivot.lua
[ -f "$RECIPE" ] || RECIPE=recipes/toy.lua
exec build/pivot run "$RECIPE" "$@"
