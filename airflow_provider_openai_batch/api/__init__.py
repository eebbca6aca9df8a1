"""The API: models, errors, the HTTP client and its retry policy (floor 1: no Airflow)."""
