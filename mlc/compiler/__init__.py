"""The compiler: passes from ml.yaml to an output tree (see ARCHITECTURE.md)."""
