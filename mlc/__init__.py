"""mlc: a declarative GitOps configuration compiler for machine learning."""

__version__ = "0.1.0"
