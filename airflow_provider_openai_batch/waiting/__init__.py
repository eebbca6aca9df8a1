"""Waiting: the poll decision, progress and what a finished wait means (floor 1: no Airflow)."""
