"""The audit trail: who applied which commit, with which plan, and which risks they accepted.

    who.py      the actor (MLC_ACTOR, the CI's user, git's user) and the git commit applied
    history.py  the history file of an environment: one JSON record per apply, chained by hash
    command.py  `mlc history [ENV]`: the records, newest first, as text or JSON

`mlc apply` writes the record into `OUT/<env>/.mlc-history.jsonl` inside the same staged tree
that it swaps in (write.py), so the tree and its record are replaced together or not at all.
`mlc compile` never writes a record (its output stays byte-identical); it carries the file
over like any file mlc did not generate. docs/governance.md describes the record.
"""

from .history import HISTORY_NAME, HistoryUnreadable, appended, check_history, read_records
from .who import collect_context

__all__ = ["HISTORY_NAME", "HistoryUnreadable", "appended", "check_history", "collect_context",
           "read_records"]
