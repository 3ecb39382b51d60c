"""State the worker shares with the model's code in the same process.

The worker runs as ``python -m modelship.worker``, i.e. as ``__main__``; state kept in
``modelship.worker`` would be a second, empty copy when the model imports it. It lives here.
"""

#: The worker's request reader, once it serves (see worker._RequestReader).
reader = None

#: The prediction the worker is answering now (a modelship._metrics.Prediction), None between
#: calls. A plain module attribute, not a contextvar: threads the model starts see it too, and
#: the worker answers one call at a time.
current = None
