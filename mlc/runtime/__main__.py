"""`python -m mlc.runtime step ...` runs a pipeline step; `... serve ...` starts the server."""

from __future__ import annotations

import importlib
import sys

USAGE = """usage: python -m mlc.runtime COMMAND ...

commands:
  step   --project project.json --pipeline P --step S [-p NAME=VALUE]   run one pipeline step
  serve  --project project.json --endpoint E [--host H] [--port N]      serve an endpoint
  gate   --gates gates.json --new REV --stable REV --duration S         measure rollout gates
  route  --endpoint E [--host H] [--port N]        route an A/B endpoint's requests to variants
  verdict --project project.json --endpoint E [-p window_seconds=N]   an A/B endpoint's verdict
  ingest --project project.json --source S     write a Kafka topic to its views' online store
  stream-score --project project.json --endpoint E   score a Kafka topic into another
  ab-guard --gates ab-guard.json [--state JSON]    one run of an A/B endpoint's guardrails
  fetch-model --model-uri URI --layout L --model-name M --dest DIR   a model for an engine
  payload-log --project project.json --endpoint E [--port N]   an engine's prediction log
"""


# command -> (module, whether it needs the serving runtime's extra libraries)
COMMANDS = {"step": (".step", False), "serve": (".serve.server", True),
            "gate": (".gate", False), "route": (".serve.router", True),
            "verdict": (".verdict.command", False), "ingest": (".ingest.command", True),
            "stream-score": (".stream_score.command", True),
            "ab-guard": (".ab_guard", False), "fetch-model": (".serve.fetch", False),
            "payload-log": (".payload_log.receiver", True)}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stderr.write(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        sys.stderr.write(f"unknown command `{command}`\n{USAGE}")
        return 2
    module_name, serving = COMMANDS[command]
    try:
        module = importlib.import_module(module_name, __package__)
    except ModuleNotFoundError as exc:
        if not serving:
            raise
        print(f"error: the serving runtime is not installed here ({exc.name})", file=sys.stderr)
        return 1
    return module.main(rest) or 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    if "mlc.runtime.step" in sys.modules:  # a step ran: skip the teardown of its libraries
        sys.modules["mlc.runtime.step"].exit_process(code)
    sys.exit(code)
