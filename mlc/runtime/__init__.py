"""The runtimes: what the generated manifests run, and what `mlc run` runs on one machine.

`python -m mlc.runtime step --project project.json --pipeline P --step S` runs one step of
the IR's pipeline graph (see step.py); `python -m mlc.runtime serve ...` starts the server.
Imported only by the runtime images and by `mlc run`, never by the compiler. Importing this
package is cheap: torch, MLflow, Feast and Evidently are imported by the step that needs them.
"""
