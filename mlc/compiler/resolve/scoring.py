"""A batch endpoint's scoring run: where its output goes, in which format, when and how long.

The output is a template: `{date}` and `{hour}` are the run's scheduled date and hour in the
endpoint's time zone, filled in by the runtime (serve/publish.py), so that each night's
scores land in their own partition instead of over yesterday's. Everything that could make
that fail at run time is checked here: unknown placeholders, a format that contradicts the
file name, a time zone that does not exist.
"""

from __future__ import annotations

import re
import string
import zoneinfo

from ...schema.types import duration_seconds
from .. import ir
from .context import Context

BAD_OUTPUT = "MLC241"
FORMAT_MISMATCH = "MLC242"
UNKNOWN_TIMEZONE = "MLC243"
OUTPUT_NOT_KEPT = "MLC244"

PLACEHOLDERS = ("date", "hour")
_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
_IANA = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$")


def _placeholders(template: str) -> list[str] | None:
    """What stands between braces (with any `:spec`), or None when braces do not pair up."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return None
    return [name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "")
            for _, name, spec, conv in parsed if name is not None]


def resolve_batch(ctx: Context, endpoint: str, batch, sources: dict[str, ir.Source],
                  default_timezone: str) -> ir.BatchScoring:
    path = ("serving", endpoint, "batch")
    ctx.check_ref(batch.input, sources, "source", (*path, "input"), "sources")
    output = batch.output
    names = _placeholders(output)
    if names is None or any(n not in PLACEHOLDERS for n in names):
        bad = "unbalanced braces" if names is None else ", ".join(
            f"`{{{n}}}`" for n in names if n not in PLACEHOLDERS)
        ctx.error(BAD_OUTPUT, f"batch output `{output}` of endpoint `{endpoint}` has "
                  f"{bad}", (*path, "output"),
                  help="use only `{date}` and `{hour}`, e.g. `s3://bucket/scores/dt={date}/`")
    folder = output.endswith("/")
    suffix = re.search(r"\.[A-Za-z]+$", output)
    by_name = _EXTENSIONS.get(suffix.group(0).lower()) if suffix and not folder else None
    fmt = batch.format or by_name or "parquet"
    if by_name and batch.format and by_name != batch.format:
        ctx.error(FORMAT_MISMATCH, f"batch output `{output}` of endpoint `{endpoint}` is "
                  f"named as {by_name} but `format` is {batch.format}", (*path, "format"),
                  help=f"name the file `.{batch.format}`, or end the output with `/` to "
                  "write a folder")
    elif not folder and by_name is None:
        ctx.error(FORMAT_MISMATCH, f"batch output `{output}` of endpoint `{endpoint}` is "
                  "neither a folder nor a .parquet or .csv file", (*path, "output"),
                  help="end it with `/` for a folder of part files and a `_SUCCESS` marker, "
                  f"or name the file, e.g. `{output.rstrip('/')}.{fmt}`")
    if "://" not in output and ctx.development:
        # steps resolve relative paths under the run's volume, which goes with the run;
        # outside development the same path is an error (MLC370, cluster_safety.py)
        ctx.warning(OUTPUT_NOT_KEPT, f"batch output `{output}` of endpoint `{endpoint}` is a "
                    "local path: in a cluster it is written to the run's own volume and "
                    "deleted with it", (*path, "output"),
                    help="use an object-store URI, e.g. `s3://bucket/scores/dt={date}/` (a "
                    "local path suits `mlc run score` only)")
    tz = batch.timezone or default_timezone
    if not _IANA.match(tz) or not _known_zone(tz):
        ctx.error(UNKNOWN_TIMEZONE, f"`{tz}` is not an IANA time zone", (*path, "timezone"),
                  help="use a name like `UTC`, `Europe/Berlin` or `America/New_York`")
    return ir.BatchScoring(schedule=batch.schedule, input_source=batch.input, output=output,
                           output_folder=folder, format=fmt, timezone=tz,
                           timeout_seconds=int(duration_seconds(batch.timeout)))


def _known_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True
