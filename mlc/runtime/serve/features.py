"""Online feature lookup: entity keys in the request, feature values from Feast's online store.

With `onlineFeatures: true` a client sends only the entity keys (`{"customer_id": 7,
"merchant_id": 3}`); the server asks Feast for the endpoint's feature service (the same
service the model was trained on, derived on-demand features included) and builds the
rows in the model's input order. Feast's client is blocking, so lookups run in a small
thread pool beside the model thread. A key with no stored row gives missing values, which
the model fills as in training; a feature the service does not return is a server error,
not a silent fill.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .validation import RequestError


class FeatureLookupError(Exception):
    pass


class OnlineFeatures:
    def __init__(self, repo: Path, service: str, entity_keys: Sequence[str],
                 features: Sequence[str]):
        from feast import FeatureStore

        from mlc.runtime import feast_connection

        feast_connection.prepare(repo)
        self.store = FeatureStore(repo_path=str(repo))
        self.service = self.store.get_feature_service(service)
        self.entity_keys = list(entity_keys)
        self.features = list(features)

    def entity_rows(self, body) -> list[dict]:
        """The request's entity rows: {"instances": [{key: value}, ...]} or one object."""
        instances = body.get("instances", [body]) if isinstance(body, dict) else body
        if not isinstance(instances, list) or not instances:
            raise RequestError("send `instances`: a list of objects with the entity keys "
                               f"{', '.join(self.entity_keys)}")
        rows = []
        for i, inst in enumerate(instances):
            if not isinstance(inst, dict):
                raise RequestError(f"instance {i} must be an object of entity keys")
            row = {}
            for key in self.entity_keys:
                if key not in inst:
                    raise RequestError(f"instance {i}: missing entity key `{key}`")
                value = inst[key]
                if isinstance(value, bool) or not isinstance(value, int | str):
                    raise RequestError(f"instance {i}: entity key `{key}` must be an integer "
                                       "or a string")
                row[key] = value
            rows.append(row)
        return rows

    def lookup(self, entity_rows: list[dict]) -> np.ndarray:
        """Rows of feature values (NaN where the store has none), in the model's order."""
        response = self.store.get_online_features(features=self.service,
                                                  entity_rows=entity_rows).to_dict()
        missing = [f for f in self.features if f not in response]
        if missing:
            raise FeatureLookupError(f"feature service `{self.service.name}` does not return "
                                     f"{', '.join(missing)}")
        out = np.empty((len(entity_rows), len(self.features)), dtype=np.float64)
        for j, name in enumerate(self.features):
            out[:, j] = [np.nan if v is None else v for v in response[name]]
        return out
