"""Diagnostics and plan risks for machines that show them in a pull request: GitHub workflow
commands (`--format github`) and SARIF 2.1.0 (`--format sarif`)."""
