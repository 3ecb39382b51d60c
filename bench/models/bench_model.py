"""Functions the gateway benchmark calls: one that costs nothing, one that takes a fixed time."""

import time


def add(args):
    return args["a"] + args["b"]


def work(args):
    # Sleeping stands for model compute without taking the CPU the gateway is measured on.
    time.sleep(args["ms"] / 1000)
    return args["ms"]
