#!/usr/bin/env bash
set -euo pipefail
pip3 install --quiet -r requirements.txt
