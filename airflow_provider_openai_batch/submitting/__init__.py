"""Submitting: create a batch exactly once per task instance (floor 1: no Airflow)."""
