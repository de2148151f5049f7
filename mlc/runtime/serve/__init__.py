"""The serving runtime: the HTTP model server (server.py) and the batch_score step (batch.py).

Importing this package is cheap; torch, MLflow and Feast load when a model or store does.
"""
