"""The ml.yaml language: one pydantic module per top-level key, `Project` at the root."""

from .project import API_VERSION, Project

__all__ = ["API_VERSION", "Project"]
