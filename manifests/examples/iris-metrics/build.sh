#!/usr/bin/env bash
# Build script: runs once per build, in the model's source directory.
set -euo pipefail
pip3 install --no-cache-dir -r requirements.txt
python3 fit.py
