"""Submitting (floor 1: no Airflow): create a batch exactly once per task instance (``submission``,
re-attach bounded by time) and resubmit after ``token_limit_exceeded`` (``resubmit``)."""
