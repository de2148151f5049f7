"""The `mlc` command line: flags only; each handler imports what it needs, when it needs it.

Exit codes: 0 ok, 1 the user's project has errors, 2 usage, 3 internal error (a bug in mlc).
`mlc validate` stays fast: nothing on its path imports hera, kubernetes, torch, MLflow,
Evidently or Feast (a test guards this).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
# Formats for a pull request: every diagnostic and plan risk at its file and line, on stdout.
ANNOTATED = ("github", "sarif")


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

    if getattr(args, "format", "text") in ANNOTATED:
        _annotated(args, diags)
        return
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


def _annotated(args: argparse.Namespace, diags) -> None:
    """`--format github|sarif`: the diagnostics, and a plan's risks, as one output."""
    from .compiler.report import findings, github, sarif

    found = findings.from_diagnostics(diags.sorted(), _root(args))
    plan = json.loads(args.plan_json) if getattr(args, "plan_json", "") else None
    summary = []
    if plan is not None:
        found += findings.from_plan(plan, _root(args), "ml.yaml")
        summary = [f"{e['name']}: {e['summary_text']}" for e in plan["environments"]]
    elif args.command == "validate" and not diags.has_errors():
        summary = [f"valid: {', '.join(args.environments or [])}"]
    if args.format == "sarif":
        sys.stdout.write(sarif.render(found))
    else:
        sys.stdout.write(github.render(found, summary))


def _root(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "directory", ".") or ".")


# ---------------------------------------------------------------------------------------
# handlers


def _validate(args, diags) -> int:
    from .compiler.pipeline import check_environment, select_environments

    envs = select_environments(_root(args), args.env, diags)
    args.environments = envs
    for env in envs:
        check_environment(_root(args), env, diags)
    if args.format in ANNOTATED:
        return EXIT_OK  # _report prints them
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
    from .compiler.write import write_environments

    root = _root(args)
    out_dir = _out_dir(args, diags)
    if out_dir is None:
        return EXIT_INVALID
    compiled = compile_project(root, args.env, diags)
    # every environment or none: a refusal in one leaves the others untouched too
    results = write_environments(out_dir, {c.env: c.files for c in compiled}, force=args.force,
                                 diags=diags)
    if results is None:
        return EXIT_INVALID
    for c, written in zip(compiled, results, strict=True):
        print(f"{c.env}: {len(c.files)} files in {out_dir / c.env} "
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
    from .schema.jsonschema import overlay_schema_text, schema_text

    sys.stdout.write(overlay_schema_text() if args.overlay else schema_text())
    return EXIT_OK


def _completion(args, diags) -> int:
    from .completion import script

    sys.stdout.write(script(args.shell, _parser()))
    return EXIT_OK


def _out_dir(args, diags, *, writing: bool = True) -> Path | None:
    """The output folder, None (with a diagnostic) when using it would be unsafe."""
    from .compiler.out_dir import check_out_dir

    out_dir = Path(args.out) if args.out else _root(args) / "deploy"
    return out_dir if check_out_dir(_root(args), out_dir, diags, writing=writing) else None


def _plan(args, diags) -> int:
    from .compiler.plan.command import run_plan

    out_dir = _out_dir(args, diags, writing=False)
    if out_dir is None:
        return EXIT_INVALID
    annotated = args.format in ANNOTATED
    buffer = io.StringIO() if annotated else None  # the JSON plan, read back for its risks
    code = run_plan(_root(args), args.env, out_dir, fmt="json" if annotated else args.format,
                    base_ref=args.base_ref, save=Path(args.save) if args.save else None,
                    detailed=args.detailed_exitcode,
                    color=sys.stdout.isatty() and not os.environ.get("NO_COLOR"), diags=diags,
                    stdout=buffer)
    if buffer is not None:
        args.plan_json = buffer.getvalue()
    return code


def _apply(args, diags) -> int:
    from .compiler.apply import apply_saved, run_apply

    if args.plan and (args.env or args.out):
        print("error: a saved plan fixes its environments and output folder; drop --env and "
              "--out", file=sys.stderr)
        return EXIT_USAGE
    if args.plan:
        return apply_saved(_root(args), Path(args.plan), force=args.force,
                           allow_delete=args.allow_delete, diags=diags)
    out_dir = _out_dir(args, diags)
    if out_dir is None:
        return EXIT_INVALID
    return run_apply(_root(args), args.env, out_dir, force=args.force,
                     allow_delete=args.allow_delete,
                     color=sys.stdout.isatty() and not os.environ.get("NO_COLOR"), diags=diags)


def _init(args, diags) -> int:
    from .compiler.init import init, list_text

    if args.list:
        sys.stdout.write(list_text())
        return EXIT_OK
    folder = _root(args) / args.folder
    written = init(args.blueprint, folder, args.ci, diags)
    if written is None:
        return EXIT_INVALID
    print(f"{args.blueprint or 'minimal'}: {len(written)} files in {folder}. Next: "
          f"`mlc validate -C {folder}`, then `mlc plan -C {folder}`.")
    return EXIT_OK


def _vendor(args, diags) -> int:
    from .compiler.extends import vendor_chain

    done = vendor_chain(_root(args), diags)
    if diags.has_errors():
        return EXIT_INVALID
    for ref in done:
        print(f"vendored {ref}")
    if not done:
        print("nothing to vendor: ml.yaml extends no platform file by git commit")
    return EXIT_OK


def _appset(args, diags) -> int:
    from .compiler.appset import application_set_text

    data = application_set_text(Path(args.folder), name=args.name, namespace=args.namespace,
                                argocd_project=args.project, diags=diags)
    if data is None:
        return EXIT_INVALID
    if args.out:
        import tempfile

        out = Path(args.out)
        # never half a file where Argo CD or git may read it; a fresh temporary name, so
        # that no link planted beside it is written through, and none is left on failure
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".mlc-tmp", dir=out.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600 is for the temporary only
            os.replace(tmp, out)
        except BaseException:
            os.unlink(tmp)
            raise
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(data.decode("utf-8"))
    return EXIT_OK


def _history(args, diags) -> int:
    from .compiler.audit.command import history

    out_dir = _out_dir(args, diags, writing=False)
    if out_dir is None:
        return EXIT_INVALID
    text = history(out_dir, args.env_name, fmt=args.format, diags=diags)
    if text is None:
        return EXIT_INVALID
    sys.stdout.write(text)
    return EXIT_OK


def _promote(args, diags) -> int:
    if args.from_verdict:
        if args.target is not None:
            print("error: mlc promote ENV --from-verdict FILE takes one environment",
                  file=sys.stderr)
            return EXIT_USAGE
        from .compiler.promote_verdict import promote_verdict

        return promote_verdict(_root(args), args.source, Path(args.from_verdict), diags,
                               dry_run=args.dry_run)
    if args.target is None:
        print("error: mlc promote needs FROM and TO (or ENV --from-verdict FILE)",
              file=sys.stderr)
        return EXIT_USAGE
    from .compiler.promote import promote

    return promote(_root(args), args.source, args.target, diags, dry_run=args.dry_run)


def _pin(args, diags) -> int:
    from .compiler.pin import pin
    from .registry import alias_versions

    return pin(_root(args), args.env_name, diags, alias_versions,
               tracking_uri=args.tracking_uri, dry_run=args.dry_run)


def _run(args, diags) -> int:
    # exits with the failed step's code: 10 bad data, 11 gates failed, 20 drift, 1 otherwise
    from .local import run as local  # the runtime (torch, MLflow, Feast) loads only here
    from .runtime.step import StepFailed, parse_params

    try:
        params = parse_params(args.param)
    except StepFailed as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    if args.what and not args.name:
        print(f"error: mlc run {args.what} needs a name", file=sys.stderr)
        return EXIT_USAGE
    if args.what == "serve":
        return local.serve(_root(args), args.env, args.name, diags, host=args.host,
                           port=args.port)
    if args.what == "drift":
        return local.drift(_root(args), args.env, args.name, diags)
    if args.what == "quality":
        return local.quality(_root(args), args.env, args.name, diags)
    if args.what == "score":
        return local.score(_root(args), args.env, args.name, params, diags)
    if args.what == "ingest":
        return local.ingest(_root(args), args.env, args.name, diags)
    return local.run(_root(args), args.env, params, diags, models=args.model)


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
    p.add_argument("--format", choices=("text", "json", "github", "sarif"), default="text",
                   help="github: workflow-command annotations at file:line; sarif: SARIF "
                   "2.1.0, for code scanning")

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

    p = command("schema", _schema, "Print the JSON Schema of ml.yaml (ml.schema.json), or of "
                "its environments' overlays.")
    p.add_argument("--overlay", action="store_true",
                   help="the schema of environments/*.yaml (ml.overlay.schema.json)")

    p = command("plan", _plan, "Show what apply would change in OUT/<env> (or in the tree "
                "committed at --base-ref): objects and fields, and risky changes.")
    p.add_argument("--env", action="append", metavar="ENV",
                   help="only this environment (repeatable); default: all")
    p.add_argument("--out", metavar="DIR", help="output folder; default: DIR/deploy")
    p.add_argument("--format", choices=("text", "markdown", "json", "github", "sarif"),
                   default="text", help="github: diagnostics and risks as workflow-command "
                   "annotations; sarif: the same as SARIF 2.1.0")
    p.add_argument("--base-ref", metavar="REF",
                   help="compare with the output folder as committed at this git ref")
    p.add_argument("--detailed-exitcode", action="store_true",
                   help="exit 0 when nothing would change, 2 when something would, 1 on errors")
    p.add_argument("--save", metavar="PLAN",
                   help="save the plan and the hashes of its inputs, for `mlc apply PLAN`")

    p = command("apply", _apply, "Write every environment's tree atomically, or a saved plan; "
                "refuses stale plans, hand edits (--force) and risky deletions (--allow-delete).")
    p.add_argument("plan", nargs="?", metavar="PLAN", help="a plan saved by `mlc plan --save`")
    p.add_argument("--env", action="append", metavar="ENV",
                   help="only this environment (repeatable); default: all")
    p.add_argument("--out", metavar="DIR", help="output folder; default: DIR/deploy")
    p.add_argument("--force", action="store_true",
                   help="overwrite generated files that were edited by hand")
    p.add_argument("--allow-delete", action="store_true",
                   help="apply deletions of state and of feature views that are still read")

    p = command("init", _init, "Start a project in DIR (new or empty) from a blueprint: "
                "ml.yaml, overlays, the schema, editor settings and a CI workflow.")
    p.add_argument("blueprint", nargs="?", metavar="BLUEPRINT",
                   help="which blueprint (default: minimal); see --list")
    p.add_argument("folder", nargs="?", default=".", metavar="DIR",
                   help="where to write it (default: here); must be empty or new")
    p.add_argument("--list", action="store_true", help="list the blueprints")
    p.add_argument("--ci", choices=("github", "gitlab", "none"), default="github",
                   help="which CI workflow to add (default: github)")

    command("vendor", _vendor, "Fetch the platform files that ml.yaml extends by git commit "
            "into .mlc/vendor/ (the one command that fetches).")

    p = sub.add_parser("appset", help="An Argo CD ApplicationSet over every project in DIR "
                       "(one per sub-folder with an ml.yaml), syncing each environment's "
                       "Application.")
    p.set_defaults(handler=_appset)
    p.add_argument("folder", metavar="DIR", help="the folder that holds the projects")
    p.add_argument("--out", metavar="FILE", help="write it here (default: standard output)")
    p.add_argument("--name", default="mlc-projects", help="the ApplicationSet's name")
    p.add_argument("--namespace", default="argocd",
                   help="where Argo CD runs (default: argocd)")
    p.add_argument("--project", default="default",
                   help="the Argo CD project of the bootstrap Applications (default: default)")

    p = command("history", _history, "List the applies recorded in OUT/<env>: who applied "
                "which commit, the plan's hash and the accepted risks, newest first.")
    p.add_argument("env_name", nargs="?", metavar="ENV", help="only this environment")
    p.add_argument("--out", metavar="DIR", help="output folder; default: DIR/deploy")
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = command("promote", _promote, "Copy the version pins that FROM runs (image references, "
                "served model alias or version) into environments/TO.yaml.")
    p.add_argument("source", metavar="FROM")
    p.add_argument("target", metavar="TO", nargs="?")
    p.add_argument("--from-verdict", metavar="FILE",
                   help="instead: end the A/B test of environment FROM with the winner of "
                   "this verdict.json (serve its version, strategy rolling)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the change to environments/TO.yaml instead of writing it")

    p = command("pin", _pin, "Replace the registry aliases that ENV serves by the versions "
                "they point at now, in environments/ENV.yaml.")
    p.add_argument("env_name", metavar="ENV")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="the MLflow registry to read (default: the environment's "
                   "platform.mlflow.trackingUri)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the change to environments/ENV.yaml instead of writing it")

    p = command("run", _run, "Run the pipelines on this machine: materialise features, train, "
                "evaluate, register; or `run serve ENDPOINT` / `run drift CHECK` / "
                "`run quality MONITOR` / `run score ENDPOINT` / `run ingest SOURCE`.")
    p.add_argument("what", nargs="?", choices=("serve", "drift", "quality", "score", "ingest"),
                   metavar="serve|drift|quality|score|ingest",
                   help="serve an endpoint, run a drift check or a quality monitor, score "
                   "a batch endpoint, or ingest a Kafka source into the online store "
                   "(default: the training pipelines)")
    p.add_argument("name", nargs="?", metavar="NAME",
                   help="the endpoint, drift check, quality monitor or Kafka source")
    p.add_argument("--env", default="dev", metavar="ENV", help="environment (default: dev)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="set a pipeline parameter, e.g. -p promote=true, or -p "
                   "date=2026-01-02 for `run score` (repeatable)")
    p.add_argument("--model", action="append", metavar="MODEL",
                   help="only this model's training pipeline (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="serve: address to listen on")
    p.add_argument("--port", type=int, help="serve: port (default: the endpoint's)")

    p = command("completion", _completion, "Print a shell completion script: "
                "`source <(mlc completion bash)`, `mlc completion fish | source`, or zsh's "
                "`source <(mlc completion zsh)`.")
    p.add_argument("shell", choices=("bash", "zsh", "fish"))
    return parser


def entry() -> None:
    code = main()
    if "mlc.local.run" in sys.modules:  # `mlc run`: skip the teardown of the runtimes' libraries
        from .runtime.step import exit_process

        exit_process(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
