"""Three views of one plan: text for terminals, markdown for a pull request, JSON for tools.

Every view shows the risks before the changes: they are what a reviewer must not miss.
Colour only in text, only on a terminal (the CLI decides), never in markdown or JSON.
"""

from __future__ import annotations

import difflib
import html
import json
import re
from typing import Any

from . import comment, cost_view, sources_view
from .diff import ADD, CHANGE, MISSING, REMOVE, REORDER, FieldChange
from .model import DELETE, HIGH, Action, Plan, Risk

MARKER = "<!-- mlc-plan -->"  # CI finds its earlier comment by this line and updates it
MARKDOWN_LIMIT = 60_000  # GitHub rejects comments over 65,536 characters
_SHORT = 80  # changed values longer than this (as one line of JSON) get a line each
_LONG = 100  # added or removed mappings and lists are cut to this many characters
_SIGN = {"add": "+", "change": "~", "delete": "-"}
_FIELD_SIGN = {ADD: "+", REMOVE: "-", CHANGE: "~", REORDER: "~"}
_COLOR = {"+": "\033[32m", "~": "\033[33m", "-": "\033[31m", HIGH: "\033[1;31m",
          "medium": "\033[1;33m", "bold": "\033[1m"}
_RESET = "\033[0m"


def render(plan: Plan, fmt: str, *, color: bool = False) -> str:
    if fmt == "json":
        return render_json(plan)
    if fmt == "markdown":
        return render_markdown(plan)
    return render_text(plan, color=color)


def render_json(plan: Plan) -> str:
    return json.dumps(plan.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------
# Text


def render_text(plan: Plan, *, color: bool = False) -> str:
    def paint(text: str, style: str) -> str:
        return f"{_COLOR[style]}{text}{_RESET}" if color else text

    lines: list[str] = []
    for env in plan.environments:
        lines.append(paint(f"Environment {env.env}", "bold") + f" (compared with {env.location})")
        if env.risks:
            lines.append("")
            lines.append("  Risks:")
            for risk in env.risks:
                lines.append("    " + paint(f"! {risk.severity}", risk.severity)
                             + f" [{risk.code}] {risk.message}{_blocking(risk)}")
        for note in env.notes:
            lines.append(f"  note: {note}")
        lines += cost_view.text_lines(env.cost)
        lines += sources_view.text_lines(env.sources)
        if env.actions:
            lines.append("")
        for action in env.actions:
            sign = _SIGN[action.op]
            lines.append("  " + paint(f"{sign} {action.key.title}", sign)
                         + _where(action))
            for change in action.changes:
                for i, line in enumerate(_field_lines(change)):
                    mark = _FIELD_SIGN[change.op] if i == 0 else " "
                    lines.append("      " + (paint(mark, mark) if i == 0 else mark) + " " + line)
        lines.append("")
        lines.append(paint(env.summary(), "bold"))
        lines.append("")
    return "\n".join(lines)


def _where(action: Action) -> str:
    parts = [] if action.key.type == "file" else [action.file]
    if action.note:
        parts.append(action.note)
    return f"  ({'; '.join(parts)})" if parts else ""


def _blocking(risk: Risk) -> str:
    if risk.accepted:
        return f" (accepted: {risk.accepted})"
    if not risk.blocks_apply:
        return ""
    return f" (apply refuses without {risk.override})" if risk.override else " (apply refuses)"


def _field_lines(change: FieldChange) -> list[str]:
    """`path: old -> new`, with long values and text over several lines."""
    path = change.path_text
    if change.op == REORDER:
        return [f"{path}: order {_one_line(change.old)} -> {_one_line(change.new)}"]
    if change.op == CHANGE and _is_text(change.old) and _is_text(change.new):
        return [f"{path}:", *_text_diff(change.old, change.new)]
    value = change.new if change.op == ADD else change.old
    if change.op in (ADD, REMOVE):
        return _labelled(path, value)
    old, new = _one_line(change.old), _one_line(change.new)
    if len(old) + len(new) <= 2 * _SHORT:
        return [f"{path}: {old} -> {new}"]
    return [f"{path}:", *("  was: " + line for line in _multi_line(change.old)),
            *("  now: " + line for line in _multi_line(change.new))]


def _labelled(path: str, value: Any) -> list[str]:
    if _is_text(value):
        return [f"{path}:", *("  " + line for line in _multi_line(value))]
    return [f"{path}: {_brief(value)}"]


def _brief(value: Any) -> str:
    """One line; a long mapping or list is cut (the JSON format has every value in full):
    what was added or removed inside it shows up as objects of its own anyway."""
    text = _one_line(value)
    if len(text) <= _LONG or not isinstance(value, (dict, list)):
        return text
    return text[:_LONG - 1] + "…"


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and "\n" in value.rstrip("\n")


def _one_line(value: Any) -> str:
    if value is MISSING:
        return "(none)"
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _multi_line(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.rstrip("\n").split("\n")
    return json.dumps(value, sort_keys=True, ensure_ascii=False, indent=2).split("\n")


def _text_diff(old: str, new: str) -> list[str]:
    out = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=2):
        if line.startswith(("---", "+++")):
            continue
        out.append("  " + line)
    return out


# ---------------------------------------------------------------------------------------
# Markdown


def render_markdown(plan: Plan, *, limit: int = MARKDOWN_LIMIT) -> str:
    """The plan as a pull-request comment, under `limit` characters. When the field-level
    changes do not all fit, those of the largest objects are left out first, each object
    still listed with a count of its changes, and the comment says how many were cut."""
    actions = {(e.env, i): (a, e.actions) for e in plan.environments
               for i, a in enumerate(e.actions) if a.changes}
    # what leaving an object's fields out saves: its field lines, less the count line
    saved = {k: len("\n".join(_action_lines(a, all_, True)))
             - len("\n".join(_action_lines(a, all_, False))) for k, (a, all_) in actions.items()}
    detailed = set(actions)
    text = _markdown(plan, detailed)
    order = sorted(saved, key=lambda k: (-saved[k], k))  # the largest first
    excess = len(text) - limit
    while excess > 0 and detailed:
        # leave out as many as the estimate says, then measure the real text again
        for key in order:
            if excess <= 0:
                break
            if key in detailed:
                detailed.discard(key)
                excess -= saved[key]
        cut = len(actions) - len(detailed)
        text = _markdown(plan, detailed, note=f"Field-level changes are left out for {cut} "
                         f"object{'s' if cut != 1 else ''}, the largest: the plan is too long "
                         "for a comment. Run `mlc plan` to see them.")
        excess = len(text) - limit
    if len(text) > limit:
        cut = text[:limit - 200]
        text = cut[:cut.rfind("\n")] + "\n\n_…plan cut short: run `mlc plan` for all of it._\n"
    return text


def _action_lines(action: Action, actions: list[Action], fields: bool) -> list[str]:
    lines = [f"{_SIGN[action.op]} {action.key.title}{_where(action)}"]
    if not action.changes:
        return lines
    if not fields:
        n = len(action.changes)
        return [*lines, f"      … {n} field change{'s' if n != 1 else ''} left out"]
    folded = comment.fold(action, actions)
    for change in folded.changes:
        lines.extend(_diff_lines(change))
    for key, file in folded.mirrors:
        lines.append(f"      data[{json.dumps(key)}]: the same change as {file}")
    if folded.provenance:
        n = folded.provenance
        lines.append(f"      ({n} source line number{'s' if n != 1 else ''} in the provenance "
                     "moved: not shown)")
    return lines


def _markdown(plan: Plan, detailed: set[tuple[str, int]], *, note: str | None = None) -> str:
    out = [MARKER, "### mlc plan", ""]
    if plan.base.get("type") == "git":
        out += [f"Compared with `{_code(plan.base.get('ref', ''))}` "
                f"(`{_code(str(plan.base.get('commit', ''))[:12])}`).", ""]
    out += cost_view.markdown_summary([(_escape(e.env), e.cost) for e in plan.environments])
    out += ["| Environment | Add | Change | Delete | Risks |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for env in plan.environments:
        risks = f"⚠️ {len(env.risks)}" if env.risks else "0"
        out.append(f"| {_escape(env.env)} | {env.count('add')} | {env.count('change')} | "
                   f"{env.count(DELETE)} | {risks} |")
    out.append("")
    if note:
        out += [f"_{note}_", ""]
    for env in plan.environments:
        flag = f" ⚠️ {len(env.risks)} risk{'s' if len(env.risks) != 1 else ''}" \
            if env.risks else ""
        opened = " open" if env.risks else ""
        out.append(f"<details{opened}><summary><b>{html.escape(env.env)}</b>: "
                   f"{html.escape(env.summary())}{flag}</summary>")
        out.append("")
        if env.risks:
            out.append("**Risks**")
            out.append("")
            for risk in env.risks:
                icon = "🛑" if risk.severity == HIGH else "⚠️"
                out.append(f"- {icon} **{risk.severity}** `{risk.code}`: "
                           f"{_escape(risk.message)}{_escape(_blocking(risk))}")
            out.append("")
        for n in env.notes:
            out += [f"_Note: {_escape(n)}_", ""]
        out += cost_view.markdown_lines(env.cost)
        out += sources_view.markdown_lines(env.sources)
        if env.actions:
            body = []
            for i, action in enumerate(env.actions):
                body += _action_lines(action, env.actions, (env.env, i) in detailed)
            out += _fenced(body, "diff")
        else:
            out += [f"No changes: `{_code(env.location)}` is up to date.", ""]
        out.append("</details>")
        out.append("")
    return "\n".join(out)


def _diff_lines(change: FieldChange) -> list[str]:
    """Field changes as `-`/`+` lines, so that GitHub colours them."""
    path = change.path_text
    if change.op == REORDER:
        return [f"-     {path}: order {_one_line(change.old)}",
                f"+     {path}: order {_one_line(change.new)}"]
    if change.op == CHANGE and _is_text(change.old) and _is_text(change.new):
        lines = [f"      {path}:"]
        for line in _text_diff(change.old, change.new):
            body = line[2:]
            if body.startswith(("+", "-")):
                lines.append(f"{body[0]}       {body[1:]}")
            else:
                lines.append(f"        {body}")
        return lines
    items = comment.list_items(change)
    if items is not None:  # a list that grew or shrank: the items that went and came
        removed, added = items
        where = comment.item_path(change.path)
        return [*(f"-     {where}: {_one_line(v)}" for v in removed),
                *(f"+     {where}: {_one_line(v)}" for v in added)]
    out = []
    if change.op in (REMOVE, CHANGE):
        out += _signed("-", path, change.old)
    if change.op in (ADD, CHANGE):
        out += _signed("+", path, change.new)
    return out


def _signed(sign: str, path: str, value: Any) -> list[str]:
    if _is_text(value):
        return [f"{sign}     {path}:", *(f"{sign}       {line}" for line in _multi_line(value))]
    return [f"{sign}     {path}: {_brief(value)}"]


def _fenced(lines: list[str], lang: str) -> list[str]:
    body = "\n".join(lines)
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + lang, body, fence, ""]


def _escape(text: str) -> str:
    """Markdown-escape prose, leaving `code spans` as they are."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick: escape everything
        parts = [text.replace("`", "'")]
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"([\\*_\[\]<>&|@#!~])", r"\\\1", parts[i])
    return "`".join(parts)


def _code(text: str) -> str:
    return text.replace("`", "'")
