"""Predicts an iris flower's petal width from its petal length."""

import pickle
from pathlib import Path

# Loaded once per worker, when the file is imported, not on every call.
with open(Path(__file__).with_name("model.pkl"), "rb") as model_file:
    model = pickle.load(model_file)


def predict(args):
    petal_length = float(args["petal_length"])
    [width] = model.predict([[petal_length]])
    return {"petal_width": round(float(width), 4)}
