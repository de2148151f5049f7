"""Where a scoring run's predictions go, and how they appear there all at once.

    output template   `{date}` / `{hour}`: the run's date and hour in the endpoint's time zone
    a folder (`.../dt=2026-01-02/`)
                      part files are written under a staging prefix beside it
                      (`.../_staging-dt=2026-01-02-<run>/`), then the old partition's files
                      (a rerun of the day) and its `_SUCCESS` are removed, the parts moved in,
                      and `_SUCCESS` written last: a reader that waits for `_SUCCESS` never
                      sees half a run, or a mixture of two
    a file            written beside itself and renamed over the old one

Local paths are relative to the data root; URIs (s3://, gs://, ...) go through pyarrow.fs.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from pathlib import Path

import pandas as pd

SUCCESS_FILE = "_SUCCESS"


def run_time(timezone: str, date: str = "", now: dt.datetime | None = None) -> dt.datetime:
    """The moment a run scores as of: the `date` parameter (a day or an ISO time), or now."""
    zone = zoneinfo.ZoneInfo(timezone)
    if date:
        moment = dt.datetime.fromisoformat(date)
        return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment.astimezone(zone)
    return (now or dt.datetime.now(dt.UTC)).astimezone(zone)


def fill(template: str, moment: dt.datetime) -> str:
    return template.format(date=moment.strftime("%Y-%m-%d"), hour=moment.strftime("%H"))


def _filesystem(target: str, data_root: Path):
    from pyarrow import fs

    if "://" in target:
        return fs.FileSystem.from_uri(target)
    local = Path(target) if Path(target).is_absolute() else data_root / target
    path = str(local.resolve()) + ("/" if target.endswith("/") else "")
    return fs.LocalFileSystem(), path


def _write(filesystem, path: str, frame: pd.DataFrame, fmt: str) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if fmt == "csv":
        with filesystem.open_output_stream(path) as stream:
            pacsv.write_csv(table, stream)
    else:
        pq.write_table(table, path, filesystem=filesystem)


def publish(target: str, frame: pd.DataFrame, *, fmt: str, folder: bool, data_root: Path,
            run_id: str, marker: dict) -> str:
    """Write `frame` to `target` (already filled in); returns where the data went."""
    from pyarrow import fs

    filesystem, path = _filesystem(target, data_root)
    if not folder:
        parent, name = path.rsplit("/", 1)
        filesystem.create_dir(parent, recursive=True)
        tmp = f"{parent}/.{name}.{run_id}.tmp"
        _write(filesystem, tmp, frame, fmt)
        filesystem.move(tmp, path)
        return target
    final = path.rstrip("/")
    parent, name = final.rsplit("/", 1)
    staging = f"{parent}/_staging-{name}-{run_id}"
    part = f"part-00000.{fmt}"
    filesystem.create_dir(staging, recursive=True)
    _write(filesystem, f"{staging}/{part}", frame, fmt)
    filesystem.create_dir(final, recursive=True)
    # the marker goes first: from here on no reader takes the partition for complete
    selector = fs.FileSelector(final, recursive=True, allow_not_found=True)
    old = [i.path for i in filesystem.get_file_info(selector)
           if i.type == fs.FileType.File]
    for stale in sorted(old, key=lambda p: not p.endswith(f"/{SUCCESS_FILE}")):
        filesystem.delete_file(stale)
    filesystem.move(f"{staging}/{part}", f"{final}/{part}")
    with filesystem.open_output_stream(f"{final}/{SUCCESS_FILE}") as stream:
        stream.write((json.dumps({**marker, "files": [part]}, sort_keys=True) + "\n").encode())
    filesystem.delete_dir(staging)
    return target
