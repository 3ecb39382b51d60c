"""The iris model as a BentoML service (bench:peers): `bentoml serve bento_service:Iris`.
MODEL_PATH is the pickle."""

import os
import pickle

import bentoml


@bentoml.service(workers=1)
class Iris:
    def __init__(self):
        with open(os.environ["MODEL_PATH"], "rb") as model_file:
            self.model = pickle.load(model_file)

    @bentoml.api
    def predict(self, petal_length: float) -> dict:
        [width] = self.model.predict([[petal_length]])
        return {"petal_width": round(float(width), 4)}
