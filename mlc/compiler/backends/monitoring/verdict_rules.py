"""The alerts of an A/B endpoint's verdict: a decision reached, a run failing, runs missing.

A verdict run pushes mlc_ab_verdict_* gauges (mlc/metrics.py) to the Pushgateway at its end.
ABVerdictReached tells the owners that a test has a winner to promote (`mlc promote <env>
--from-verdict`); ABVerdictFailing fires on a run that could not read the log or the labels
(`up` 0); ABVerdictNotRunning when no run has reported for two of the schedule's longest
gaps (or never has), which also covers a CronWorkflow that stopped starting runs.

A run short of labels succeeds, pushes its run time and `up` 1 and records the decision
`waiting`: none of those alerts fires on it. ABVerdictWaitingTooLong does, once every run
for a whole window has been waiting: by then the labels of the window's first predictions
should have arrived, so either they do not (a broken labels feed, a key that matches
nothing) or the traffic is too thin for `minSamples` in one window.
"""

from __future__ import annotations

from mlc import metrics

from ...ir import Endpoint, ResolvedProject
from . import promql, schedules
from .alerts import Alert, Scenario, Series
from .gotemplate import Label
from .rules import RuleSet, _by, _failed_run, _overdue, _step, per_endpoint


def verdict_rule_sets(project: ResolvedProject) -> list[RuleSet]:
    return per_endpoint(project, "verdict", lambda e: e.rollout.verdict is not None,
                        verdict_alerts)


def verdict_alerts(project: ResolvedProject, endpoint: Endpoint) -> list[Alert]:
    verdict = endpoint.rollout.verdict
    assert verdict is not None
    labels = {**promql.scope(project), "endpoint": endpoint.name}
    by = _by(labels)
    interval = schedules.max_interval_seconds(verdict.schedule)
    step = _step(interval)
    decision = promql.series(metrics.VERDICT_STATE)
    winner = promql.series(metrics.VERDICT_WINNER)
    variants = [v.name for v in endpoint.rollout.variants]

    def at(*series: Series) -> Scenario:
        return Scenario(series, 10 * step, interval_seconds=step)

    def decided(name: str, won: str | None) -> tuple[Series, ...]:
        return (Series(decision, {**labels, "decision": "winner"},
                       f"{1 if name == 'winner' else 0}+0x20"),
                *(Series(winner, {**labels, "variant": v}, f"{int(v == won)}+0x20")
                  for v in variants))

    reached = {**labels, "variant": variants[-1]}
    out = [
        Alert(
            name="ABVerdictReached", severity="warning",
            # the winner's name comes from the winner gauge, so that the alert says it
            expr=(f"max by ({by}, variant) ({promql.selector(winner, labels)}) == 1\n"
                  f"and on ({by})\n"
                  f"max by ({by}) ({promql.selector(decision, labels, {'decision': 'winner'})})"
                  " == 1"),
            summary=(f"The A/B test of endpoint {endpoint.name} has a winner: ",
                     Label("variant"), "."),
            description=(f"The verdict on {verdict.metric} (pipeline {verdict.pipeline}) found "
                         "variant ", Label("variant"), f" significantly better at alpha "
                         f"{promql.number(verdict.alpha)}. End the test with `mlc promote "
                         f"{project.env} --from-verdict` and the run's verdict.json "
                         f"({verdict.output_uri}).",),
            unhealthy=((at(*decided("winner", variants[-1])), reached),),
            healthy=(at(*decided("no-difference", None)),)),
        _failed_run(
            "ABVerdictFailing", metrics.VERDICT_UP, labels, step,
            summary=(f"The A/B verdict of endpoint {endpoint.name} failed.",),
            description=(f"The last run of pipeline {verdict.pipeline} could not compute the "
                         f"verdict (prediction log or labels source `{verdict.labels_source}` "
                         "unreadable, or a column missing); see the logs of its last "
                         "workflow.",)),
    ]
    out.append(waiting_too_long(project, endpoint, labels, step))
    if interval is not None:
        out.append(_overdue(
            "ABVerdictNotRunning", metrics.VERDICT_LAST_RUN, labels, interval, step,
            summary=(f"The A/B verdict of endpoint {endpoint.name} has stopped running.",),
            description=(f"Pipeline {verdict.pipeline} has not reported a run for more than "
                         f"{promql.duration(2 * interval)} (schedule `{verdict.schedule}`). "
                         "Check its CronWorkflow and the Pushgateway.",)))
    return out


def waiting_too_long(project: ResolvedProject, endpoint: Endpoint, labels: dict[str, str],
                     step: int) -> Alert:
    verdict = endpoint.rollout.verdict
    assert verdict is not None
    window = verdict.window_seconds
    decision = promql.series(metrics.VERDICT_STATE)
    # sampled at the rule file's pace (sparser samples would go stale between evaluations),
    # for two windows
    samples = -(-2 * window // step)

    def waiting(values: str) -> Scenario:
        return Scenario((Series(decision, {**labels, "decision": "waiting"}, values),),
                        samples * step, interval_seconds=step)

    return Alert(
        name="ABVerdictWaitingTooLong", severity="warning", for_seconds=window,
        expr=(f"max by ({_by(labels)}) "
              f"({promql.selector(decision, labels, {'decision': 'waiting'})}) == 1"),
        summary=(f"The A/B verdict of endpoint {endpoint.name} has waited for labels for "
                 f"more than {promql.duration(window)}.",),
        description=(f"Every run of pipeline {verdict.pipeline} for a whole window found fewer "
                     f"than {verdict.min_samples} labelled predictions for some variant. Check "
                     f"that labels arrive in source `{verdict.labels_source}` and match the "
                     f"log on `{verdict.key}` (the counts are in the run's verdict.json), or "
                     "lower `minSamples`.",),
        unhealthy=((waiting(f"1+0x{samples}"), labels),),
        # waiting for half a window, then decided
        healthy=(waiting(f"1+0x{samples // 4} 0+0x{samples - samples // 4}"),))
