"""Policies a plan enforces: the built-in ones, on in production environments.

    builtin.py  the built-in policies: resolved projects (old, new) -> violations
    user.py     the rules of a policies file: resolved projects (old, new) -> violations
    file.py     loading a policies file, with located diagnostics
    accept.py   violations -> plan risks, with `acceptedRisks:` entries applied

Pure functions over the resolved projects (as JSON-like dicts, the form the plan reads off
both trees); no I/O. docs/policies.md documents each policy and how to accept a violation.
"""

from .accept import policy_risks
from .builtin import POLICY_CODES, Violation, violations
from .user import user_violations

__all__ = ["POLICY_CODES", "Violation", "policy_risks", "user_violations", "violations"]
