"""`python -m mlc.runtime step ...` runs a pipeline step; `... serve ...` starts the server."""

from __future__ import annotations

import sys

USAGE = """usage: python -m mlc.runtime COMMAND ...

commands:
  step   --project project.json --pipeline P --step S [-p NAME=VALUE]   run one pipeline step
  serve  --project project.json --endpoint E [--host H] [--port N]      serve an endpoint
  gate   --gates gates.json --new REV --stable REV --duration S         measure rollout gates
  route  --endpoint E [--host H] [--port N]        route an A/B endpoint's requests to variants
"""


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stderr.write(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "step":
        from .step import main as step_main

        return step_main(rest)
    if command == "serve":
        try:
            from .serve.server import main as serve_main
        except ModuleNotFoundError as exc:
            print(f"error: the serving runtime is not installed here ({exc.name})",
                  file=sys.stderr)
            return 1
        return serve_main(rest) or 0
    if command == "gate":
        from .gate import main as gate_main

        return gate_main(rest)
    if command == "route":
        try:
            from .serve.router import main as route_main
        except ModuleNotFoundError as exc:
            print(f"error: the serving runtime is not installed here ({exc.name})",
                  file=sys.stderr)
            return 1
        return route_main(rest) or 0
    sys.stderr.write(f"unknown command `{command}`\n{USAGE}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
