"""Session analytics: per-session summaries, prices and cost, retrospective findings.

Pure functions over Event fields (dicts with the names of schemas/event.avsc):
`aggregate` folds events into a SessionSummary, `prices` says what a model
cost on a day, `cost` prices a summary, `retro` finds patterns worth a look.
Side effects (the worker's write batch, the CLI) live elsewhere.
"""
