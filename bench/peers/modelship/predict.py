"""Predicts an iris flower's petal width from its petal length (bench:peers)."""

import pickle
from pathlib import Path

with open(Path(__file__).with_name("model.pkl"), "rb") as model_file:
    model = pickle.load(model_file)


def predict(args):
    [width] = model.predict([[float(args["petal_length"])]])
    return {"petal_width": round(float(width), 4)}
