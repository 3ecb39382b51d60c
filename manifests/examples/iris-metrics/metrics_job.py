"""A recurring job: joins ground truth to predictions, tracks accuracy and drift aggregates.

1. Each line of the ground truth file (simulate.py writes one) is tracked as a delayed metric
   of its prediction, by uuid: track_delayed_metrics({"actual_petal_width": ...}, uuid).
2. The predictions of the window are read back (read_metrics); those with ground truth give
   the accuracy — the share predicted within 0.25 cm — and the mean absolute error, tracked as
   one aggregate over the window (track_aggregate_metrics).
3. Drift: the population stability index of the tracked input's petal_length between the
   baseline window (the first half of the predictions, or those before --split-ms) and the
   last window, tracked as an aggregate too. `modelship metrics iris-metrics --drift
   petal_length` computes the same figure from the store.

  python3 metrics_job.py --ground-truth truth.jsonl [--since-ms MS] [--split-ms MS]

It prints one JSON line with what it tracked. Only the standard library and modelship.
"""

import argparse
import json
import math
import time

import modelship as cdsw

MODEL_CRN = "crn:modelship:iris-metrics"
TOLERANCE_CM = 0.25

parser = argparse.ArgumentParser()
parser.add_argument("--ground-truth", default="ground_truth.jsonl")
parser.add_argument("--since-ms", type=int, default=0)
parser.add_argument("--split-ms", type=int, default=None)
options = parser.parse_args()

# 1. Ground truth, joined by uuid.
truth = {}
with open(options.ground_truth) as lines:
    for line in lines:
        entry = json.loads(line)
        truth[entry["uuid"]] = entry["petal_width"]
unknown = 0
for uuid, width in truth.items():
    try:
        cdsw.track_delayed_metrics({"actual_petal_width": width}, uuid)
    except cdsw.MetricsError as error:
        # A prediction older than the store's retention is rolled up, its uuid gone.
        if error.code != "metrics.unknown_prediction":
            raise
        unknown += 1

# 2. Accuracy over the window.
end_ms = int(time.time() * 1000) + 1
rows = cdsw.read_metrics(
    model_crn=MODEL_CRN, start_timestamp_ms=options.since_ms, end_timestamp_ms=end_ms
)["metrics"]
predictions = [row for row in rows if row["type"] == "prediction"]
judged = [row["metrics"] for row in predictions if "actual_petal_width" in row["metrics"]]
if not judged:
    raise SystemExit("no prediction in the window has ground truth yet")
errors = [abs(m["predict_result"] - m["actual_petal_width"]) for m in judged]
accuracy = sum(error <= TOLERANCE_CM for error in errors) / len(errors)
start_ms = min(row["startTimeStampMs"] for row in predictions)
cdsw.track_aggregate_metrics(
    {"accuracy": accuracy, "mean_absolute_error": sum(errors) / len(errors), "judged": len(judged)},
    start_ms,
    end_ms,
    model_crn=MODEL_CRN,
)


# 3. Drift of petal_length: the baseline's deciles cut both windows into bins.
def psi(baseline, current, bins=10):
    ordered = sorted(baseline)
    edges = []
    for index in range(1, bins):
        position = index / bins * (len(ordered) - 1)
        low, high = math.floor(position), math.ceil(position)
        value = ordered[low] + (position - low) * (ordered[high] - ordered[low])
        if not edges or value > edges[-1]:
            edges.append(value)

    def shares(values):
        counts = [0] * (len(edges) + 1)
        for value in values:
            counts[sum(value > edge for edge in edges)] += 1
        return [max(count / len(values), 1e-4) for count in counts]

    before, after = shares(baseline), shares(current)
    return sum((c - b) * math.log(c / b) for b, c in zip(before, after))


points = sorted(
    (row["startTimeStampMs"], float(row["metrics"]["input"]["petal_length"])) for row in predictions
)
split_ms = options.split_ms
if split_ms is None:
    split_ms = points[0][0] + (points[-1][0] - points[0][0]) / 2
baseline = [value for at, value in points if at < split_ms]
current = [value for at, value in points if at >= split_ms]
if not baseline or not current:
    raise SystemExit(
        f"the drift needs predictions on both sides of {split_ms}: {len(baseline)} before, {len(current)} after"
    )
drift = psi(baseline, current)
cdsw.track_aggregate_metrics(
    {"psi_petal_length": drift, "baseline_predictions": len(baseline)},
    int(split_ms),
    end_ms,
    model_crn=MODEL_CRN,
)
print(
    json.dumps(
        {"accuracy": accuracy, "judged": len(judged), "psi_petal_length": drift, "unknown": unknown}
    )
)
