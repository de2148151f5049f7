"""The training runtime: validate the data, build the point-in-time training set, train
(builtin torch MLP or a custom command), track in MLflow, evaluate against the gates and the
production model, register by alias. Each module is one step's entry point (see
mlc/runtime/step.py); data.py, checkpoints.py and tracking.py serve them.
"""
