"""Trains the iris model: a linear regression of petal width on petal length.

Run by build.sh at build time, so model.pkl is part of the immutable build. It is also an
experiment: `modelship run fit.py` runs it in the build's environment and records the metrics
it tracks (mean squared error and R² on a held-out quarter) and the model.pkl it writes.
"""

import pickle
from pathlib import Path

from sklearn import datasets
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

import modelship as cdsw

iris = datasets.load_iris()
petal_length = iris.data[:, 2:3]
petal_width = iris.data[:, 3]
train_x, test_x, train_y, test_y = train_test_split(
    petal_length, petal_width, test_size=0.25, random_state=0
)

model = LinearRegression().fit(train_x, train_y)
predicted = model.predict(test_x)
mse = mean_squared_error(test_y, predicted)
r2 = r2_score(test_y, predicted)
cdsw.track_metric("mse", round(float(mse), 6))
cdsw.track_metric("r2", round(float(r2), 6))

with open(Path(__file__).with_name("model.pkl"), "wb") as out:
    pickle.dump(model, out)
cdsw.track_file("model.pkl")
print(f"trained: width = {model.coef_[0]:.4f} * length + {model.intercept_:.4f}; MSE {mse:.4f}, R² {r2:.4f}")
