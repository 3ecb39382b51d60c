"""Trains the iris model at build time: a linear regression of petal width on petal length.

Run by build.sh, so model.pkl is part of the immutable build and never committed to git.
"""

import pickle
from pathlib import Path

from sklearn import datasets
from sklearn.linear_model import LinearRegression

# load_iris ships with scikit-learn: no download at build time.
iris = datasets.load_iris()
petal_length = iris.data[:, 2:3]
petal_width = iris.data[:, 3]

model = LinearRegression().fit(petal_length, petal_width)
with open(Path(__file__).with_name("model.pkl"), "wb") as out:
    pickle.dump(model, out)
print(f"trained: width = {model.coef_[0]:.4f} * length + {model.intercept_:.4f}")
