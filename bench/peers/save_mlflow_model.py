"""Saves the pickled iris model as an MLflow model directory (the sklearn flavour), which
`mlflow models serve` serves. Arguments: the pickle, the directory to write."""

import pickle
import sys

import mlflow.sklearn

with open(sys.argv[1], "rb") as model_file:
    model = pickle.load(model_file)
mlflow.sklearn.save_model(model, sys.argv[2], serialization_format="pickle")
