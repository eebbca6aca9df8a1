"""For trigger_scale.py: the three triggers it runs, each with the hook call its polls go through.

* ``ours``: ``OpenAIBatchTrigger(batch_id, conn_id, poll_interval, end_time)``, polling through
  ``OpenAIBatchHook.apoll_batch`` (the shared paged poller);
* ``baseline``: ``airflow.providers.openai.triggers.openai.OpenAIBatchTrigger(conn_id, batch_id,
  poll_interval, end_time=...)``, polling through ``OpenAIHook.get_batch`` (a blocking call);
* ``floor``: the control in ``_floor_trigger.py`` (our schedule, a sleep instead of a request), in
  a process with our trigger module imported, so the collector walks an Airflow-sized heap.

The benchmark wraps ``hook.<method>`` to time each poll and swaps ``module.asyncio`` for its
schedule spy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType

from _trigger_scale_fleet import CONN_ID  # type: ignore[import-not-found]

IMPLS = ("ours", "baseline", "floor")


@dataclass(frozen=True)
class Impl:
    hook: type
    method: str
    """The hook's poll method, wrapped to time each poll."""
    is_async: bool
    make: Callable[[str, float], object]
    """(batch_id, end_time) -> a trigger."""
    warm_up: Callable[[], Awaitable[None]]
    """One poll before the measurement, so imports and the first connection are not measured."""
    module: ModuleType
    """The trigger's module, whose ``asyncio`` the schedule spy replaces."""


def load_impl(impl: str, interval: float, latency: float, floor_objects: int, first_id: str) -> Impl:
    if impl == "ours":
        import airflow_provider_openai_batch.triggers.batch as ours
        from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook

        async def warm_up_ours() -> None:
            await OpenAIBatchHook(CONN_ID).apoll_batch(first_id)

        return Impl(
            hook=OpenAIBatchHook,
            method="apoll_batch",
            is_async=True,
            make=lambda batch_id, end_time: ours.OpenAIBatchTrigger(batch_id, CONN_ID, interval, end_time),
            warm_up=warm_up_ours,
            module=ours,
        )
    if impl == "floor":
        import _floor_trigger as floor  # type: ignore[import-not-found]

        import airflow_provider_openai_batch.triggers.batch  # noqa: F401 - the same Airflow-sized heap as ours

        floor.FloorHook.latency = latency

        async def warm_up_floor() -> None:
            await floor.FloorHook().aget_batch(first_id)

        return Impl(
            hook=floor.FloorHook,
            method="aget_batch",
            is_async=True,
            make=lambda batch_id, end_time: floor.FloorTrigger(batch_id, interval, floor_objects),
            warm_up=warm_up_floor,
            module=floor,
        )
    import airflow.providers.openai.triggers.openai as official
    from airflow.providers.openai.hooks.openai import OpenAIHook

    async def warm_up_official() -> None:
        OpenAIHook(conn_id=CONN_ID).get_batch(first_id)

    return Impl(
        hook=OpenAIHook,
        method="get_batch",
        is_async=False,
        make=lambda batch_id, end_time: official.OpenAIBatchTrigger(CONN_ID, batch_id, interval, end_time=end_time),
        warm_up=warm_up_official,
        module=official,
    )
