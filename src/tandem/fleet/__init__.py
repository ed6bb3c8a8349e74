"""``tandem fleet``: ``DRUM_FASTAPI_CANARY_PERCENT`` walked across many deployments.

Each deployment picks its stack at start-up from a hash of its ``MLOPS_DEPLOYMENT_ID`` and the
percentage, so "25 %" means about a quarter of the fleet on FastAPI. The fleet command raises the
percentage through ``tandem rollout``'s steps with its hold times, evidence rule and triggers
(the same :func:`~tandem.rollout.decide.decide`, store and decision log), judging the fleet by
``server_type`` in Prometheus; at each step it writes the percentage to every deployment and
restarts only those that change side, and on a trigger it walks the percentage back (the
rollback plan's reduction table) or, on an immediate trigger, sets 0 % and verifies every
deployment on Flask (the fleet-wide Level 1).

- :mod:`tandem.fleet.inventory`: ``fleet.yaml``;
- :mod:`tandem.fleet.plan`: sides and steps (the server's own hash);
- :mod:`tandem.fleet.places`: env files and ConfigMaps, restart commands and rollout restarts;
- :mod:`tandem.fleet.walker`: moving deployments, batches, verification, putting back;
- :mod:`tandem.fleet.filesd`: Prometheus file-based service discovery;
- :mod:`tandem.fleet.controller`: the evaluation loop;
- :mod:`tandem.fleet.cli`: the command line.
"""
