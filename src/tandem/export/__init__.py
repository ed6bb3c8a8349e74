"""``tandem export``: hand the rollout's rules to the engines that already run on Kubernetes.

Every exported object is built from the same sources the rollout controller uses:

- thresholds, windows and step weights from :class:`tandem.rollout.spec.RolloutSpec` (defaults,
  or the ``rollout.yaml`` given with ``--config``), read by :mod:`tandem.export.checks`;
- every PromQL expression from :mod:`tandem.rollout.promql`, the module whose text the
  controller's Prometheus source runs, so an alert, an Argo Rollouts analysis, a Flagger metric
  template and a rollback decision all judge the same series the same way.

Kinds: ``kubernetes`` (:mod:`.kubernetes`), ``prometheus-rules`` (:mod:`.rules`),
``argo-rollouts`` (:mod:`.argo`), ``flagger`` (:mod:`.flagger`) and ``grafana``
(:mod:`.grafana`); :mod:`.cli` is the command. No cluster is contacted: the objects are written
to stdout or files for a platform engineer to apply.
"""
