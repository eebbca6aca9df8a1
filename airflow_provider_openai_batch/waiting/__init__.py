"""Waiting (floor 1: no Airflow).

``waiter`` is the one poll decision (deadline, outage budget, progress) that the trigger, the
operator's worker loop and the sensor's poke wrap; ``outcome`` is the typed end of a wait and
its trigger-event form; ``polling`` holds the words a wait says; ``poller`` and ``pages`` serve
many waiting triggers of one connection from shared list pages.
"""
