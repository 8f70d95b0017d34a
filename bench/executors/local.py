"""The default executor: each point in a fresh spawned child on this machine, one after another."""

from __future__ import annotations

from ..config import ACCESS_CONTEXT
from ..errors import ConfigError
from ..records.build import new_id, now
from ..isolation.isolate import run_isolated
from . import Executor, Finished, executors, this_machine


@executors.register("local")
class Local(Executor):
    def check(self, plan, suite_file):
        """Node kinds name cluster nodes: running them here would label this machine's records with a
        kind it was never declared to be, so a suite with `targets` is refused rather than half-run."""
        if plan.suite.targets:
            raise ConfigError(suite_file, "targets", "the local executor runs on this machine only, which has no "
                              "node kind", "run it with --executor ray on a cluster, or remove `targets`")

    def resume_dirs(self, suite, out):
        from ..hardware.machine import describe_machine

        return [self.destination(suite, describe_machine()["machine_id"], out)]

    def machines(self, points):
        return {None: this_machine()}

    def run(self, points, cache_dir, log_dir, announce):
        machine = this_machine()
        for point in points:
            announce(point)
            started = now()
            log_name = f"{point.point_id}-{new_id()[:6]}.log"  # one file per run: repeats keep their own logs
            # the child gets how to reach the model (model.access), which the record never shows
            outcome = run_isolated(point.model_dump(mode="json", context=ACCESS_CONTEXT), str(cache_dir),
                                   str(log_dir / log_name), point.settings.timeout_s,
                                   start_method=self.options.get("start_method", "forkserver"))
            yield Finished(point=point, outcome=outcome, machine=machine, started=started,
                           wall_s=outcome["child_wall_s"], log_name=log_name)
