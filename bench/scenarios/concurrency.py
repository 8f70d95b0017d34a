"""`concurrency`: `users` users, each sending its next request when its last one completes (a closed loop).
`users: [1, 4, 16]` makes one point per value. `capacity: true` also searches the most users served within every
SLO."""

from __future__ import annotations

from pydantic import Field, field_validator

from . import scenarios
from .serving import Serving, ServingOptions, ServingScenario

USERS_SEARCH_SLOTS = 4  # users capacity search by default over [1, 4 x the engine's max batch]


class ConcurrencyOptions(ServingOptions):
    users: int | list[int] = Field(1, description="requests in flight; a list makes one point per value")

    @field_validator("users")
    @classmethod
    def _positive(cls, users: int | list[int]) -> int | list[int]:
        values = users if isinstance(users, list) else [users]
        if not values or any(u < 1 for u in values):
            raise ValueError(f"users must be positive integers, not {users}")
        if len(set(values)) < len(values):
            raise ValueError(f"users repeats a value: {users}")
        return users


@scenarios.register("concurrency")
class Concurrency(ServingScenario):
    Options = ConcurrencyOptions

    @classmethod
    def points(cls, options: dict) -> list[dict]:
        users = options.get("users")
        if isinstance(users, list):
            return [{**options, "users": value} for value in users]
        return [options]

    def run(self, session, workload, settings, options):
        if isinstance(options.users, list):
            raise ValueError("a list of users is one point per value: the plan expands it")
        serving = Serving(session, workload, settings, options)
        serving.warm_up()
        main = serving.closed_loop(options.users, timed=True)
        capacity = None
        if options.capacity:
            capacity = serving.search("users", lambda users: serving.closed_loop(int(users)), 1,
                                      USERS_SEARCH_SLOTS * workload.batch_size)
        return serving.result(main, capacity=capacity)
