def add(args):
    """Adds two numbers: {"a": 3, "b": 5} -> 8."""
    return args["a"] + args["b"]
