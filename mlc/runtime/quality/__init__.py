"""The model-quality monitor: live metrics from late labels, against the training evaluation."""
