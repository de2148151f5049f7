"""`mlc run`: the IR's pipeline graph executed on this machine (run.py, progress.py).

Imported only by the `run` command's handler in mlc/cli.py; it imports the runtime
(mlc.runtime), which the compiler never does.
"""
