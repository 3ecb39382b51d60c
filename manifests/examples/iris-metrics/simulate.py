"""Calls iris-metrics with flowers from the iris data set, and keeps the truth for later.

Each answer's uuid is written with the flower's real petal width to a JSON Lines file: the
ground truth that, in real life, arrives days after the prediction. `--shift 2` adds 2 cm to
every petal length, a population the model was not trained on, for metrics_job.py's drift.

  python3 simulate.py --count 100 --ground-truth truth.jsonl [--shift 2]

MODELSHIP_URL (default http://127.0.0.1:8080) and MODELSHIP_API_KEY say where and as whom;
MODELSHIP_ACCESS_KEY is the model's access key (modelship keys iris-metrics).
"""

import argparse
import json
import os
import random

from sklearn import datasets

import modelship as cdsw

parser = argparse.ArgumentParser()
parser.add_argument("--count", type=int, default=100)
parser.add_argument("--shift", type=float, default=0.0)
parser.add_argument("--ground-truth", default="ground_truth.jsonl")
parser.add_argument("--seed", type=int, default=1)
options = parser.parse_args()

iris = datasets.load_iris()
flowers = list(zip(iris.data[:, 2], iris.data[:, 3]))
chance = random.Random(options.seed)
access_key = os.environ["MODELSHIP_ACCESS_KEY"]

with open(options.ground_truth, "a") as truth:
    for _ in range(options.count):
        length, width = chance.choice(flowers)
        answer = cdsw.call_model(access_key, {"petal_length": round(float(length) + options.shift, 2)})
        if not answer.get("success"):
            raise SystemExit(f"the model failed: {answer}")
        response = answer["response"]
        truth.write(json.dumps({"uuid": response["uuid"], "petal_width": float(width)}) + "\n")
print(f"{options.count} predictions made; their ground truth is in {options.ground_truth}")
