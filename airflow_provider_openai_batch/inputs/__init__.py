"""Input files: validate, build, split and open JSONL batch inputs (floor 1: no Airflow)."""
