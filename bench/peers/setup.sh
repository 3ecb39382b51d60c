#!/usr/bin/env bash
# Sets up the peers of bench:peers, each in a venv of its own under $PEERS_DIR (default
# ~/.cache/modelship-bench/peers), installed from PyPI at the versions pinned here, and writes
# the pickled iris model they all serve (the same file for every server, modelship included).
# Run again, it only installs what is missing. Prints each venv's versions as `name: pkg==v ...`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PEERS_DIR="${PEERS_DIR:-$HOME/.cache/modelship-bench/peers}"
mkdir -p "$PEERS_DIR"

# One scikit-learn for all: the pickle is read by the version that wrote it.
SKLEARN="scikit-learn==1.9.1"
declare -A PACKAGES=(
  [fastapi]="fastapi==0.165.0 uvicorn[standard]==0.54.0 $SKLEARN"
  [bentoml]="bentoml==1.4.40 $SKLEARN"
  [mlflow]="mlflow==3.17.2 $SKLEARN"
)

for name in fastapi bentoml mlflow; do
  venv="$PEERS_DIR/$name"
  stamp="$venv/.installed"
  # The stamp holds what was installed: a changed pin installs the venv again.
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${PACKAGES[$name]}" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check ${PACKAGES[$name]}
    printf '%s' "${PACKAGES[$name]}" >"$stamp"
  fi
done

# The model: iris petal width from petal length, fitted once, pickled once.
if [ ! -f "$PEERS_DIR/model.pkl" ]; then
  "$PEERS_DIR/fastapi/bin/python" "$here/fit_iris.py" "$PEERS_DIR/model.pkl"
fi
# MLflow serves a model directory of its own flavour, made from that same pickle.
if [ ! -f "$PEERS_DIR/mlflow-model/MLmodel" ]; then
  rm -rf "$PEERS_DIR/mlflow-model"
  MLFLOW_TRACKING_URI="file://$PEERS_DIR/mlruns" "$PEERS_DIR/mlflow/bin/python" \
    "$here/save_mlflow_model.py" "$PEERS_DIR/model.pkl" "$PEERS_DIR/mlflow-model"
fi

for name in fastapi bentoml mlflow; do
  printf '%s: %s\n' "$name" "$("$PEERS_DIR/$name/bin/pip" freeze --disable-pip-version-check 2>/dev/null \
    | grep -iE '^(fastapi|uvicorn|uvloop|httptools|bentoml|mlflow|scikit-learn|numpy|pydantic)==' | tr '\n' ' ')"
done
