"""The user's environment variables of trainers and endpoints: literals and secret references.

`env: {WANDB_PROJECT: fraud, HF_TOKEN: {secret: hf-token}}` becomes a plain variable and a
`valueFrom.secretKeyRef` to the Secret that `secrets.hf-token` names. Names that the step and
serving contracts set themselves are refused by the schema (EnvVarName): the contract would
silently win over them.
"""

from __future__ import annotations

from ...schema.secrets import SecretEnv
from .. import ir
from ..diagnostics import FieldPath
from .context import Context


def resolve_env(ctx: Context, env: dict[str, str | SecretEnv], secrets: dict[str, ir.SecretRef],
                path: FieldPath) -> tuple[dict[str, str], dict[str, ir.SecretRef]]:
    """(plain variables, variables read from secrets), each sorted by name."""
    plain: dict[str, str] = {}
    refs: dict[str, ir.SecretRef] = {}
    for name in sorted(env):
        value = env[name]
        where = (*path, name)
        if isinstance(value, SecretEnv):
            if ctx.check_ref(value.secret, secrets, "secret", (*where, "secret"), "secrets"):
                refs[name] = secrets[value.secret]
        else:
            plain[name] = value
    return plain, refs
