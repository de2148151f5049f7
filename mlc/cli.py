"""The `mlc` command line: flags only; each handler imports what it needs, when it needs it.

Exit codes: 0 ok, 1 the user's project has errors, 2 usage, 3 internal error (a bug in mlc).
`mlc validate` stays fast: nothing on its path imports hera, kubernetes, torch, MLflow,
Evidently or Feast (a test guards this).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from .compiler.diagnostics import CompileFailed, Diagnostics

    diags = Diagnostics()
    try:
        code = args.handler(args, diags)
    except CompileFailed:
        code = EXIT_INVALID
    except KeyboardInterrupt:
        return 130
    except Exception:  # a bug in mlc, never the user's mistake: say so, and how to report it
        print("internal error: mlc failed unexpectedly; please report this with the output "
              "of `MLC_DEBUG=1 mlc ...`", file=sys.stderr)
        if os.environ.get("MLC_DEBUG"):
            traceback.print_exc()
        else:
            print(f"  {traceback.format_exc().strip().splitlines()[-1]}", file=sys.stderr)
        return EXIT_INTERNAL
    _report(args, diags)
    if diags.has_errors():
        return EXIT_INVALID
    return code


def _report(args: argparse.Namespace, diags) -> None:
    from .compiler.diagnostics import render_json, render_text, summary_line

    if getattr(args, "format", "text") == "json" and args.command == "validate":
        return  # validate prints diagnostics inside its JSON result
    if not len(diags):
        return
    color = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    if getattr(args, "format", "text") == "json":
        sys.stderr.write(render_json(diags.sorted()))
    else:
        sys.stderr.write(render_text(diags.sorted(), root=_root(args), color=color))
        sys.stderr.write(summary_line(diags) + "\n")


def _root(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "directory", ".") or ".")


# ---------------------------------------------------------------------------------------
# handlers


def _validate(args, diags) -> int:
    from .compiler.pipeline import check_environment, select_environments

    envs = select_environments(_root(args), args.env, diags)
    for env in envs:
        check_environment(_root(args), env, diags)
    if args.format == "json":
        from .compiler.diagnostics import render_json

        result = json.loads(render_json(diags.sorted()))
        result["valid"] = not diags.has_errors()
        result["environments"] = envs
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    elif not diags.has_errors():
        print(f"valid: {', '.join(envs)}")
    return EXIT_OK


def _compile(args, diags) -> int:
    from .compiler.pipeline import compile_project
    from .compiler.write import write_environment

    root = _root(args)
    out_dir = Path(args.out) if args.out else root / "deploy"
    compiled = compile_project(root, args.env, diags)
    for result in compiled:
        written = write_environment(out_dir, result.env, result.files, force=args.force,
                                    diags=diags)
        if written is None:
            return EXIT_INVALID
        print(f"{result.env}: {len(result.files)} files in {out_dir / result.env} "
              f"({len(written.written)} written, {len(written.removed)} removed, "
              f"{len(written.unchanged)} unchanged)")
    return EXIT_OK


def _explain(args, diags) -> int:
    from .compiler.explain import explain

    text = explain(_root(args), args.environment, args.path, diags, fmt=args.format)
    if text is None:
        return EXIT_INVALID
    sys.stdout.write(text)
    return EXIT_OK


def _schema(args, diags) -> int:
    from .schema.jsonschema import schema_text

    sys.stdout.write(schema_text())
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# flags


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlc", description="Compile ml.yaml into Argo, Kubernetes, Feast and Prometheus "
        "configuration, per environment.")
    parser.add_argument("--version", action="version", version=f"mlc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Callable, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        p.add_argument("-C", dest="directory", metavar="DIR", default=".",
                       help="the project folder (holding ml.yaml); default: here")
        return p

    p = command("validate", _validate, "Check ml.yaml and its environments; exit 1 if invalid.")
    p.add_argument("--env", action="append", metavar="ENV",
                   help="only this environment (repeatable); default: all")
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = command("compile", _compile, "Compile every environment into OUT/<env>/.")
    p.add_argument("--env", action="append", metavar="ENV",
                   help="only this environment (repeatable); default: all")
    p.add_argument("--out", metavar="DIR", help="output folder; default: DIR/deploy")
    p.add_argument("--force", action="store_true",
                   help="overwrite generated files that were edited by hand")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="how to print diagnostics")

    p = command("explain", _explain, "Show a value of one environment, and where it was set.")
    p.add_argument("environment", metavar="ENV")
    p.add_argument("path", metavar="PATH", nargs="?", default="",
                   help="dotted path, e.g. serving.fraud-api.autoscaling (default: everything)")
    p.add_argument("--format", choices=("text", "json"), default="text")

    command("schema", _schema, "Print the JSON Schema of ml.yaml.")
    return parser


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
