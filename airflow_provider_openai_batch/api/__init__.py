"""The API (floor 1: no Airflow).

``models`` (pydantic shapes), ``statuses`` (the batch statuses, the terminal set, the event
vocabulary), ``exceptions``, ``transient`` (the one "is this error transient" rule), ``retry``
(the per-call retry policy built on it), ``transport`` (configuration, the triggerer's shared
pools, TLS, the policy applied one way for sync and async) and ``client`` (the calls).
"""
