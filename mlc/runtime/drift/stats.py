"""Drift statistics: Evidently 0.7's column tests, written with vectorised numpy and scipy.

Evidently's DataDriftPreset runs one pandas-heavy test per column (and, for its widgets,
runs them again); at a million rows that takes minutes. These functions give the same
scores (to rounding, far below 1e-9) and the same decisions in a fraction of the time:

- the same test choice as `evidently.legacy.calculations.stattests.registry.
  _get_default_stattest` when the method is `auto` (by reference size, column kind and the
  number of distinct values);
- the same cleaning (infinities and missing values dropped per column), the same binning
  (`get_binned_data`: Sturges histogram over both samples, or value counts, with the same
  zero filling) and the same comparison with the threshold (`<=`, `<` or `>=`, per test);
- the Wasserstein distance as the integral of the difference of the two quantile functions
  over sorted samples, which equals scipy's CDF formulation but needs no merged argsort.

Column kinds follow Evidently's inference from the current data (`infer_column_type`):
floats are numerical, integers are categorical up to 10 distinct values, strings, booleans
and categories are categorical (Evidently would call a string column with mostly unique
values "text"; drift checks here compare model inputs, which are never free text).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

Kind = Literal["numerical", "categorical"]
INTEGER_CARDINALITY_LIMIT = 10  # evidently.core.datasets.INTEGER_CARDINALITY_LIMIT
SMALL_REFERENCE = 1000  # up to this many reference rows, Evidently picks p-value tests
N_BINS = 30  # evidently's n_bins for psi, kl_div and jensenshannon (unused by its binning)


@dataclass(frozen=True)
class Method:
    name: str  # Evidently's stattest name, also what ml.yaml's `method` says
    display: str  # Evidently's display name
    threshold: float  # Evidently's default threshold
    drifted_when: Literal["le", "lt", "ge"]  # how the score compares with the threshold
    kinds: tuple[Kind, ...]  # column kinds Evidently allows the method for

    def drifted(self, score: float, threshold: float) -> bool:
        if self.drifted_when == "le":
            return bool(score <= threshold)
        if self.drifted_when == "lt":
            return bool(score < threshold)
        return bool(score >= threshold)


BOTH: tuple[Kind, ...] = ("numerical", "categorical")
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("ks", "K-S p_value", 0.05, "le", ("numerical",)),
    Method("wasserstein", "Wasserstein distance (normed)", 0.1, "ge", ("numerical",)),
    Method("chisquare", "chi-square p_value", 0.05, "lt", ("categorical",)),
    Method("z", "Z-test p_value", 0.05, "lt", ("categorical",)),
    Method("jensenshannon", "Jensen-Shannon distance", 0.1, "ge", BOTH),
    Method("psi", "PSI", 0.1, "ge", BOTH),
    Method("kl_div", "Kullback-Leibler divergence", 0.1, "ge", BOTH),
)}


class DriftDataError(ValueError):
    """The data cannot be compared: the check fails closed with this message."""


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: Kind
    method: str
    score: float
    threshold: float
    drifted: bool
    reference_rows: int  # after dropping missing values
    current_rows: int


@dataclass(frozen=True)
class DatasetDrift:
    columns: list[ColumnDrift]
    drifted_count: int
    share: float
    drift_share: float
    dataset_drift: bool  # share >= drift_share, as Evidently's DriftedColumnsCount decides

    def as_dict(self) -> dict:
        return asdict(self)


# --- column kinds and cleaning ---------------------------------------------------------

def infer_kind(column: pd.Series) -> Kind:
    """Evidently's `infer_column_type`, restricted to what a drift check compares."""
    dtype = column.dtype.name.lower()  # "Int64"/"Float64": pandas' nullable dtypes too
    if dtype.startswith("float"):
        return "numerical"
    if dtype.startswith(("int", "uint")):
        return "categorical" if column.nunique() <= INTEGER_CARDINALITY_LIMIT else "numerical"
    if dtype in ("bool", "boolean", "category", "string", "str"):
        return "categorical"
    if dtype == "object":
        values = column.dropna()
        if len(values) and isinstance(values.iloc[0], str) and isinstance(values.iloc[-1], str):
            return "categorical"
    raise DriftDataError(f"column `{column.name}` has type {column.dtype}, which a drift "
                         "check cannot compare (expected numbers, booleans or strings)")


def clean(column: pd.Series | np.ndarray, kind: Kind) -> np.ndarray:
    """The values Evidently compares: infinities and missing values dropped."""
    nullable = isinstance(column, pd.Series) and isinstance(
        column.dtype, pd.api.extensions.ExtensionDtype)
    if nullable and column.dtype.kind in "iuf":  # pandas' Int64/Float64: NA becomes NaN
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    elif isinstance(column, pd.Series) and column.dtype.kind in "iufb":
        values = column.to_numpy()
    elif isinstance(column, pd.Series):
        values = column.to_numpy(dtype=object, na_value=np.nan)
    else:
        values = np.asarray(column)
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        return values if finite.all() else values[finite]
    if values.dtype.kind in "iub":
        return values
    keep = ~pd.isna(values)
    if values.dtype == object:  # mixed objects may hold float infinities too
        keep &= ~np.isin(values, [np.inf, -np.inf])
    return values if keep.all() else values[keep]


def _is_numeric(values: np.ndarray) -> bool:
    return values.dtype.kind in "iufb"


# --- counts and binning ------------------------------------------------------------------

def _value_counts(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of every distinct value of either sample, in an order of our choosing (every
    statistic below sums over values, so the order only moves rounding). Small non-negative
    integers are counted directly; anything else is hashed (pandas' factorize, O(n))."""
    both = np.concatenate((reference, current))
    if (both.dtype.kind in "iub" and both.size and 0 <= both.min()
            and both.max() < max(1024, 4 * both.size)):
        ref = np.bincount(reference.astype(np.int64), minlength=int(both.max()) + 1)
        cur = np.bincount(current.astype(np.int64), minlength=len(ref))
        seen = (ref > 0) | (cur > 0)
        return ref[seen], cur[seen]
    codes, keys = pd.factorize(both if both.dtype.kind in "iufb" else both.astype(object))
    ref = np.bincount(codes[:len(reference)], minlength=len(keys))
    cur = np.bincount(codes[len(reference):], minlength=len(keys))
    return ref, cur


def _nunique(values: np.ndarray) -> int:
    return len(pd.unique(values if values.dtype.kind in "iufb" else values.astype(object)))


def _nunique_capped(reference: np.ndarray, current: np.ndarray, cap: int) -> int:
    """Distinct values of both samples together, exact up to `cap` (more: some number > cap).
    A prefix decides for continuous columns without hashing a million values."""
    prefix = _nunique(reference[:4096])
    if prefix > cap:
        return prefix
    return _nunique(np.concatenate((reference, current)))


def _fill_zeroes(percents: np.ndarray) -> np.ndarray:
    nonzero = percents[percents != 0]
    smallest = nonzero.min()
    fill = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return np.where(percents == 0, fill, percents)


def binned(reference: np.ndarray, current: np.ndarray, kind: Kind,
           fill_zeroes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's `get_binned_data`: shares per Sturges bin (numerical columns with more
    than 20 distinct reference values) or per distinct value."""
    if kind == "numerical" and _nunique(reference) > 20:
        combined = np.concatenate((reference, current)).astype(np.float64)
        edges = np.histogram_bin_edges(combined, bins="sturges")
        # Uniform bins over the same range give the same edges (numpy builds both with
        # linspace) and take numpy's O(n) path instead of sorting the samples.
        span = (edges[0], edges[-1])
        ref = np.histogram(reference, bins=len(edges) - 1, range=span)[0] / len(reference)
        cur = np.histogram(current, bins=len(edges) - 1, range=span)[0] / len(current)
    else:
        ref_counts, cur_counts = _value_counts(reference, current)
        ref, cur = ref_counts / len(reference), cur_counts / len(current)
    if fill_zeroes:
        ref, cur = _fill_zeroes(ref), _fill_zeroes(cur)
    return ref, cur


# --- the tests -------------------------------------------------------------------------------

def wasserstein_sorted(u: np.ndarray, v: np.ndarray) -> float:
    """First Wasserstein distance of two sorted samples: the integral over t in (0, 1] of
    |U^-1(t) - V^-1(t)|. The quantile functions are steps at i/n and j/m; on a common
    integer grid (lcm(n, m)) their breakpoints merge with one linear pass."""
    n, m = u.size, v.size
    if n == m:
        return float(np.mean(np.abs(u - v)))
    g = np.gcd(n, m)
    total = n // g * m
    a, b = total // n, total // m
    grid = np.concatenate((np.arange(1, n + 1, dtype=np.int64) * a,
                           np.arange(1, m, dtype=np.int64) * b))
    grid.sort(kind="stable")  # two sorted runs: a merge
    widths = np.diff(grid, prepend=0) / total
    iu = (grid + a - 1) // a - 1
    iv = (grid + b - 1) // b - 1
    return float(np.dot(widths, np.abs(u[iu] - v[iv])))


def _wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    ref = np.sort(reference.astype(np.float64, copy=False))
    cur = np.sort(current.astype(np.float64, copy=False))
    norm = max(float(np.std(ref)), 0.001)
    return wasserstein_sorted(ref, cur) / norm


def _ks(reference: np.ndarray, current: np.ndarray) -> float:
    return float(stats.ks_2samp(reference, current)[1])


def _chisquare(reference: np.ndarray, current: np.ndarray) -> float:
    ref, cur = _value_counts(reference, current)
    expected = ref * (len(current) / len(reference))
    return float(stats.chisquare(cur, expected)[1])


def _z(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-proportion z-test of `value == smallest value` (Evidently's `_z_stat_test`)."""
    ref_keys, cur_keys = pd.unique(reference), pd.unique(current)
    if len(ref_keys) == 1 and len(cur_keys) == 1 and ref_keys[0] == cur_keys[0]:
        return 1.0
    first = sorted(set(ref_keys.tolist()) | set(cur_keys.tolist()))[0]
    n1, n2 = len(reference), len(current)
    p1 = float(np.count_nonzero(reference != first)) / n1
    p2 = float(np.count_nonzero(current != first)) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - stats.norm.cdf(np.abs(z))))


def _jensenshannon(reference: np.ndarray, current: np.ndarray, kind: Kind) -> float:
    ref, cur = binned(reference, current, kind, fill_zeroes=False)
    return float(distance.jensenshannon(ref, cur, None))


def _psi(reference: np.ndarray, current: np.ndarray, kind: Kind) -> float:
    ref, cur = binned(reference, current, kind)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def _kl_div(reference: np.ndarray, current: np.ndarray, kind: Kind) -> float:
    ref, cur = binned(reference, current, kind)
    return float(stats.entropy(ref, cur))


def default_method(reference: np.ndarray, current: np.ndarray, kind: Kind) -> str:
    """Evidently's `_get_default_stattest` for numerical and categorical columns."""
    if len(reference) <= SMALL_REFERENCE:
        distinct = _nunique_capped(reference, current, 5)
        if kind == "numerical" and distinct > 5:
            return "ks"
        return "chisquare" if distinct > 2 else "z"
    if kind == "numerical":
        return "wasserstein" if _nunique_capped(reference, current, 5) > 5 else "jensenshannon"
    return "jensenshannon"


def column_drift(name: str, reference: pd.Series | np.ndarray, current: pd.Series | np.ndarray,
                 kind: Kind, method: str = "auto", threshold: float | None = None
                 ) -> ColumnDrift:
    """One column's test, score and decision; raises DriftDataError when it cannot run."""
    ref, cur = clean(reference, kind), clean(current, kind)
    for side, values in (("reference", ref), ("current", cur)):
        if len(values) == 0:
            raise DriftDataError(f"column `{name}` has no values in the {side} data (empty, "
                                 "or all missing)")
    if method == "auto":
        method = default_method(ref, cur, kind)
    if method not in METHODS:
        raise DriftDataError(f"unknown drift method `{method}` (known: {', '.join(METHODS)})")
    spec = METHODS[method]
    if "numerical" in spec.kinds and "categorical" not in spec.kinds:
        if not (_is_numeric(ref) and _is_numeric(cur)):
            raise DriftDataError(f"method `{method}` compares numbers, but column `{name}` "
                                 "holds non-numeric values")
        kind = "numerical"  # an integer column with few values, read as numbers
    if kind == "numerical" and not (_is_numeric(ref) and _is_numeric(cur)):
        raise DriftDataError(f"column `{name}` should hold numbers only")
    if method == "wasserstein":
        score = _wasserstein(ref, cur)
    elif method == "ks":
        score = _ks(ref, cur)
    elif method == "chisquare":
        score = _chisquare(ref, cur)
    elif method == "z":
        score = _z(ref, cur)
    elif method == "jensenshannon":
        score = _jensenshannon(ref, cur, kind)
    elif method == "psi":
        score = _psi(ref, cur, kind)
    else:
        score = _kl_div(ref, cur, kind)
    limit = spec.threshold if threshold is None else float(threshold)
    return ColumnDrift(column=name, kind=kind, method=method, score=score, threshold=limit,
                       drifted=spec.drifted(score, limit), reference_rows=len(ref),
                       current_rows=len(cur))


def dataset_drift(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], *,
                  method: str = "auto", threshold: float | None = None,
                  drift_share: float = 0.5, kinds: dict[str, Kind] | None = None,
                  workers: int | None = None) -> DatasetDrift:
    """Every column's drift and the dataset decision (share of drifted columns >=
    drift_share). Columns run in threads: sorting and counting release the GIL."""
    if not columns:
        raise DriftDataError("no columns to compare")
    kinds = dict(kinds or {})
    for name in columns:
        if name not in kinds:
            kinds[name] = infer_kind(current[name])

    def one(name: str) -> ColumnDrift:
        return column_drift(name, reference[name], current[name], kinds[name], method,
                            threshold)

    workers = workers or min(len(columns), os.cpu_count() or 1)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(one, columns))
    else:
        results = [one(name) for name in columns]
    drifted = sum(r.drifted for r in results)
    share = drifted / len(results)
    return DatasetDrift(columns=results, drifted_count=drifted, share=share,
                        drift_share=drift_share, dataset_drift=bool(share >= drift_share))
