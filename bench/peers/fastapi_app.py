"""The hand-written baseline of bench:peers: the iris model behind FastAPI, as a user would write
it in ten minutes. Served by `uvicorn fastapi_app:app`; MODEL_PATH is the pickle."""

import os
import pickle

from fastapi import FastAPI
from pydantic import BaseModel, Field

with open(os.environ["MODEL_PATH"], "rb") as model_file:
    model = pickle.load(model_file)

app = FastAPI()


class Flower(BaseModel):
    petal_length: float = Field(gt=0)


@app.post("/predict")
def predict(flower: Flower):
    [width] = model.predict([[flower.petal_length]])
    return {"petal_width": round(float(width), 4)}


@app.post("/predict-async")
async def predict_async(flower: Flower):
    """The same, on the event loop: no thread of the pool per call."""
    [width] = model.predict([[flower.petal_length]])
    return {"petal_width": round(float(width), 4)}
