"""Predicts an iris flower's petal width from its petal length, and tracks what it saw.

CDSW's predict_with_metrics.py with one line changed: `import modelship as cdsw`. Each answer
is {"prediction": ..., "uuid": ..., "model_deployment_crn": ...}; the uuid is what ground truth
is joined by later (metrics_job.py).
"""

import pickle
from pathlib import Path

import modelship as cdsw

with open(Path(__file__).with_name("model.pkl"), "rb") as model_file:
    model = pickle.load(model_file)


@cdsw.model_metrics
def predict(args):
    # The input, for drift: its petal_length is compared across windows.
    cdsw.track_metric("input", args)
    petal_length = float(args["petal_length"])
    [width] = model.predict([[petal_length]])
    result = round(float(width), 4)
    cdsw.track_metric("predict_result", result)
    return result
