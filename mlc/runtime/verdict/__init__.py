"""The A/B verdict: the prediction log joined with labels, a metric per variant, a test."""
