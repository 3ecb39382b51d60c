"""Functions the benchmarks call: one that costs nothing, one that takes a fixed time, and one
that tracks metrics as a model decorated with model_metrics does."""

import time

import modelship


def add(args):
    return args["a"] + args["b"]


def work(args):
    # Sleeping stands for model compute without taking the CPU the gateway is measured on.
    time.sleep(args["ms"] / 1000)
    return args["ms"]


@modelship.model_metrics
def tracked_add(args):
    # What a model with metrics does on every call: track its input and its result.
    modelship.track_metric("input", args)
    result = args["a"] + args["b"]
    modelship.track_metric("result", result)
    return result
