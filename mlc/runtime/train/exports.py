"""The train step's exports for other serving engines: what `MLC_EXPORTS` asks for, checked
before the training, and the exports made from the saved model folder and logged to the run
(mlc/runtime/export/, docs/serving-engines-exports.md). Shared by every bundled trainer (the
torch MLP in trainer.py, the tree trainers in trainers/), without torch."""

from __future__ import annotations

from mlc import step_contract as sc
from mlc.runtime.step import StepContext, StepFailed


def requested_exports(ctx: StepContext) -> tuple[list[str], object] | None:
    """The exports `MLC_EXPORTS` asks for, with the Triton batching when it asks for
    `triton`; None when it asks for none."""
    from mlc.runtime import export

    try:
        names = export.requested(ctx.exports)
        if not names:
            return None
        return names, export.batching(ctx.exports) if export.TRITON in names else None
    except export.ExportError as exc:
        raise StepFailed(str(exc)) from exc


def check_tree_exports(framework: str, names: list[str]) -> None:
    """Before an XGBoost or LightGBM model trains: it is exported for Triton's FIL backend
    only (the compiler refuses the rest, MLC332); a scikit-learn model not at all."""
    from mlc.runtime import export

    allowed = {export.TRITON} if framework in ("xgboost", "lightgbm") else set()
    if set(names) - allowed:
        raise StepFailed(f"a {framework} model is exported "
                         + ("for Triton's FIL backend only" if allowed else "for no engine")
                         + f", not as {', '.join(names)} ({sc.EXPORTS_ENV})")


def log_exports(ctx: StepContext, run, folder, names: list[str], batching) -> None:
    """Make the exports from the saved model folder and log them to the run (`exports/`)."""
    import shutil

    from mlc.runtime import export

    out = ctx.run_dir / sc.EXPORTS_ARTIFACT_DIR
    shutil.rmtree(out, ignore_errors=True)  # a retried step starts clean
    try:
        files = export.make_exports(folder, names, out, model_name=ctx.model.name,
                                    task=ctx.model.task, triton_batching=batching)
    except export.ExportError as exc:
        raise StepFailed(str(exc)) from exc
    export.log_exports(run.client, run.run_id, out)
    print(f"exported {', '.join(names)}: {len(files)} file(s) logged under "
          f"{sc.EXPORTS_ARTIFACT_DIR}/ of MLflow run {run.run_id}")
