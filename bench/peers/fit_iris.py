"""Fits the iris model every server in bench:peers serves, as the iris example does: a linear
regression of petal width on petal length. Writes the pickle to the path given."""

import pickle
import sys

from sklearn import datasets
from sklearn.linear_model import LinearRegression

iris = datasets.load_iris()
model = LinearRegression().fit(iris.data[:, 2:3], iris.data[:, 3])
with open(sys.argv[1], "wb") as out:
    pickle.dump(model, out)
