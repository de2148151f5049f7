"""`mlc plan`: what `mlc apply` would change, object by object, field by field, with risks.

    objects.py  split a tree into objects (apiVersion/kind/namespace/name) and other files
    diff.py     field-level diff of two values
    trees.py    the old tree: on disk (OUT/<env>) or committed at a git ref
    risks.py    risky changes, from the object diff and from the two resolved projects
    build.py    the plan of each environment
    model.py    what a plan is, and its stable JSON form
    formats.py  text, markdown and JSON views
    saved.py    saved plans and their input hashes (stale-plan detection)
    command.py  the `mlc plan` command
"""
