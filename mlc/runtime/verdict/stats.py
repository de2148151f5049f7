"""A metric per variant, its confidence interval, and a test of each variant against the
baseline. Which test goes with which metric (docs/shadow-and-ab.md):

    accuracy   two-proportion z-test (pooled), Wilson intervals per variant, a Wald interval
               for the difference
    roc_auc    DeLong's test for two independent samples: each AUC's variance from its
               structural components (DeLong, DeLong & Clarke-Pearson 1988), a normal interval
    log_loss   Welch's t-test on the per-row log losses; t intervals
    mae        Welch's t-test on the per-row absolute errors; t intervals
    rmse       Welch's t-test on the per-row squared errors (RMSE is monotone in their mean);
               intervals by the delta method on sqrt(MSE)

All p-values are two-sided. With more than two variants each is compared with the baseline
at alpha / (variants - 1) (Bonferroni), so that the chance of a false winner stays alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

EPS = 1e-15  # log loss clips probabilities away from 0 and 1, as the trainer's evaluation does


class MetricError(Exception):
    """The labels or predictions cannot give this metric (e.g. AUC on non-binary labels)."""


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float
    samples: int


@dataclass(frozen=True)
class Comparison:
    difference: float  # variant's metric minus the baseline's
    ci_low: float  # of the difference, at 1 - alpha per comparison
    ci_high: float
    statistic: float  # z or t
    p_value: float


def _binary(y: np.ndarray, metric: str) -> None:
    if not np.isin(y, (0, 1)).all():
        raise MetricError(f"{metric} needs labels 0 and 1; these hold "
                          f"{sorted(set(np.unique(y).tolist()))[:5]}")


def _probabilities(p: np.ndarray, metric: str) -> None:
    if ((p < 0) | (p > 1)).any():
        raise MetricError(f"{metric} needs predicted probabilities in [0, 1]; the log holds "
                          f"values from {p.min():g} to {p.max():g} (a multi-class model logs "
                          "the class: use accuracy)")


def correct(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """1 where the logged prediction is the label's class: P(positive) >= 0.5 for 0/1 labels
    and probabilities, else the logged class index."""
    if np.isin(y, (0, 1)).all() and ((p >= 0) & (p <= 1)).all():
        return ((p >= 0.5).astype(float) == y).astype(float)
    return (np.rint(p) == y).astype(float)


def row_losses(metric: str, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-row values whose mean the metric is (or, for rmse, whose mean's root it is)."""
    if metric == "log_loss":
        _binary(y, metric)
        _probabilities(p, metric)
        q = np.clip(p, EPS, 1 - EPS)
        return -(y * np.log(q) + (1 - y) * np.log(1 - q))
    if metric == "mae":
        return np.abs(y - p)
    if metric == "rmse":
        return (y - p) ** 2
    raise ValueError(metric)


def estimate(metric: str, y: np.ndarray, p: np.ndarray, alpha: float) -> Estimate:
    n = len(y)
    if metric == "accuracy":
        k = int(correct(y, p).sum())
        ci = stats.binomtest(k, n).proportion_ci(1 - alpha, method="wilson")
        return Estimate(k / n, ci.low, ci.high, n)
    if metric == "roc_auc":
        auc, var = delong(y, p)
        half = stats.norm.ppf(1 - alpha / 2) * math.sqrt(var)
        return Estimate(auc, max(0.0, auc - half), min(1.0, auc + half), n)
    losses = row_losses(metric, y, p)
    mean = float(losses.mean())
    half = stats.t.ppf(1 - alpha / 2, n - 1) * losses.std(ddof=1) / math.sqrt(n) if n > 1 \
        else math.inf
    if metric == "rmse":
        return Estimate(math.sqrt(mean), math.sqrt(max(0.0, mean - half)),
                        math.sqrt(mean + half), n)
    return Estimate(mean, max(0.0, mean - half), mean + half, n)


def compare(metric: str, y: np.ndarray, p: np.ndarray, y0: np.ndarray, p0: np.ndarray,
            alpha: float) -> Comparison:
    """The variant (y, p) against the baseline (y0, p0), at level `alpha`."""
    z = stats.norm.ppf(1 - alpha / 2)
    if metric == "accuracy":
        c, c0 = correct(y, p), correct(y0, p0)
        n, n0 = len(c), len(c0)
        a, a0 = c.mean(), c0.mean()
        pooled = (c.sum() + c0.sum()) / (n + n0)
        se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / n0))
        statistic = (a - a0) / se_pooled if se_pooled > 0 else 0.0
        se = math.sqrt(a * (1 - a) / n + a0 * (1 - a0) / n0)
        return Comparison(a - a0, a - a0 - z * se, a - a0 + z * se, statistic,
                          float(2 * stats.norm.sf(abs(statistic))))
    if metric == "roc_auc":
        auc, var = delong(y, p)
        auc0, var0 = delong(y0, p0)
        se = math.sqrt(var + var0)
        statistic = (auc - auc0) / se if se > 0 else 0.0
        return Comparison(auc - auc0, auc - auc0 - z * se, auc - auc0 + z * se, statistic,
                          float(2 * stats.norm.sf(abs(statistic))))
    losses, losses0 = row_losses(metric, y, p), row_losses(metric, y0, p0)
    test = stats.ttest_ind(losses, losses0, equal_var=False)
    ci = test.confidence_interval(1 - alpha)
    m, m0 = float(losses.mean()), float(losses0.mean())
    if not math.isfinite(float(test.pvalue)):  # both samples constant: nothing to tell apart
        return Comparison(m - m0 if metric != "rmse" else math.sqrt(m) - math.sqrt(m0),
                          0.0, 0.0, 0.0, 1.0)
    if metric != "rmse":
        return Comparison(m - m0, float(ci.low), float(ci.high), float(test.statistic),
                          float(test.pvalue))
    # delta method: d sqrt(x) = dx / (2 sqrt(x))
    r, r0 = math.sqrt(m), math.sqrt(m0)
    var = (losses.var(ddof=1) / len(losses) / (4 * m) if m > 0 else 0.0) + \
        (losses0.var(ddof=1) / len(losses0) / (4 * m0) if m0 > 0 else 0.0)
    half = z * math.sqrt(var)
    return Comparison(r - r0, r - r0 - half, r - r0 + half, float(test.statistic),
                      float(test.pvalue))


def delong(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """AUC and its DeLong variance, from midranks (ties count one half)."""
    _binary(y, "roc_auc")
    positives, negatives = p[y == 1], p[y == 0]
    m, n = len(positives), len(negatives)
    if m < 2 or n < 2:
        raise MetricError(f"roc_auc needs at least two rows of each class; there are {m} "
                          f"positive and {n} negative")
    ranks = stats.rankdata(np.concatenate([positives, negatives]))
    within_pos = stats.rankdata(positives)
    within_neg = stats.rankdata(negatives)
    # v10[i]: the share of negatives that positive i outranks; v01[j]: the share of
    # positives that outrank negative j
    v10 = (ranks[:m] - within_pos) / n
    v01 = 1 - (ranks[m:] - within_neg) / m
    auc = float(v10.mean())
    return auc, float(v10.var(ddof=1) / m + v01.var(ddof=1) / n)
