"""MLflow's request-header plugins, loaded without those mlc's runtime never uses.

Every runtime process that talks to a tracking server (the training steps through
train/tracking.py, the serving runtime's loader, the quality monitor) calls
`skip_unused_header_plugins()` before its first MLflow client.
"""

from __future__ import annotations

# Plugins MLflow loads on its first HTTP request that mlc's steps never use: feast's adds a
# header only inside feast's own token scope (its MLflow data source), and loading it imports
# all of feast (and torch), about 5 s of CPU in every pod that talks to a tracking server.
UNUSED_HEADER_PLUGINS = ("feast.",)


def skip_unused_header_plugins() -> None:
    """Load MLflow's request-header plugins without the ones listed above (once a process)."""
    import sys

    if "mlflow.tracking.request_header.registry" in sys.modules:
        return  # loaded already, with whatever plugins it found
    from mlflow.utils import plugins

    every = getattr(plugins, "get_entry_points", None)
    if every is None:  # another MLflow: it loads its plugins its own way
        return

    def wanted(group: str):
        found = every(group)
        if group != "mlflow.request_header_provider":
            return found
        return [e for e in found if not e.value.startswith(UNUSED_HEADER_PLUGINS)]

    plugins.get_entry_points = wanted
    try:
        import mlflow.tracking.request_header.registry  # noqa: F401  (reads the plugins now)
    finally:
        plugins.get_entry_points = every
