"""Trains the iris model at build time: a linear regression of petal width on petal length.

Run by build.sh, so model.pkl is part of the immutable build and never committed to git. It is
an experiment too: `modelship run fit.py` runs it in the build's environment and records the
mean squared error and R² it tracks (on the flowers it was fitted to) and the model.pkl it writes.
"""

import pickle
from pathlib import Path

from sklearn import datasets
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_squared_error, r2_score

import modelship as cdsw

# load_iris ships with scikit-learn: no download at build time.
iris = datasets.load_iris()
petal_length = iris.data[:, 2:3]
petal_width = iris.data[:, 3]

model = LinearRegression().fit(petal_length, petal_width)
fitted = model.predict(petal_length)
mse = mean_squared_error(petal_width, fitted)
r2 = r2_score(petal_width, fitted)
cdsw.track_metric("mse", round(float(mse), 6))
cdsw.track_metric("r2", round(float(r2), 6))
with open(Path(__file__).with_name("model.pkl"), "wb") as out:
    pickle.dump(model, out)
cdsw.track_file("model.pkl")
print(f"trained: width = {model.coef_[0]:.4f} * length + {model.intercept_:.4f}; MSE {mse:.4f}, R² {r2:.4f}")
