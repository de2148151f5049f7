"""The user's environment variables of trainers and endpoints: literals and secret references.

`env: {WANDB_PROJECT: fraud, HF_TOKEN: {secret: hf-token}}` becomes a plain variable and a
`valueFrom.secretKeyRef` to the Secret that `secrets.hf-token` names. Names that the step and
serving contracts set themselves are refused: the contract would silently win over them.
"""

from __future__ import annotations

from ...schema.secrets import SecretEnv
from .. import ir
from ..diagnostics import FieldPath
from .context import Context

RESERVED_ENV = "MLC221"
# Set by mlc for every step or server (docs/training-contract.md), or by the JobSet for torchrun.
_RESERVED_NAMES = frozenset({"HOME", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN",
                             "JOBSET_NAME", "MASTER_ADDR", "MASTER_PORT"})
_RESERVED_PREFIXES = ("MLC_", "PET_")


def resolve_env(ctx: Context, env: dict[str, str | SecretEnv], secrets: dict[str, ir.SecretRef],
                path: FieldPath) -> tuple[dict[str, str], dict[str, ir.SecretRef]]:
    """(plain variables, variables read from secrets), each sorted by name."""
    plain: dict[str, str] = {}
    refs: dict[str, ir.SecretRef] = {}
    for name in sorted(env):
        value = env[name]
        where = (*path, name)
        if name in _RESERVED_NAMES or name.startswith(_RESERVED_PREFIXES):
            ctx.error(RESERVED_ENV, f"`{name}` is set by mlc itself and cannot be set in `env`",
                      where, help="rename the variable; names starting with `MLC_` or `PET_`, "
                      "and HOME, MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN, JOBSET_NAME, "
                      "MASTER_ADDR and MASTER_PORT are mlc's")
            continue
        if isinstance(value, SecretEnv):
            if ctx.check_ref(value.secret, secrets, "secret", (*where, "secret"), "secrets"):
                refs[name] = secrets[value.secret]
        else:
            plain[name] = value
    return plain, refs
