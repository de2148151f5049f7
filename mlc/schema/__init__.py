"""The ml.yaml language: one pydantic module per top-level key, `Project` at the root.

The model modules (like mlc/compiler/ir.py) have no `from __future__ import annotations`:
annotations evaluated where a class is defined spare pydantic evaluating each one's string at
import (half of what field collection costs `mlc validate`; docs/benchmarks.md). A class that
names one defined further down quotes that one annotation.
"""

from .project import API_VERSION, Project

__all__ = ["API_VERSION", "Project"]
