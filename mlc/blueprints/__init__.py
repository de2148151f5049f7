"""Blueprints: the projects `mlc init` starts from, one folder of package data each.

    tabular/   the bundled fraud-detection example (kept identical to the repository's
               ml.yaml, environments/ and data/generate.py; tests/test_init.py checks it)
    batch/     a model scored nightly in batch
    minimal/   an empty project
    ci/        the CI workflows mlc ships (.github/workflows/mlc.yml, ci/gitlab/), copied
               into a new project with mlc's version pinned

The catalogue (names, descriptions) is mlc/compiler/init.py's BLUEPRINTS.
"""
