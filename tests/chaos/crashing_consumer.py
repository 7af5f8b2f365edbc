"""``python -m tests.chaos.crashing_consumer N consume ...``: the real ``callstream`` CLI, except that the
Nth batch the consumer delivers ends the process (exit 137, as SIGKILL would) after the store has it
and before its offsets are committed: the crash the chaos suite recovers from."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from callstream import cli
from consumers.pipeline import Pipeline

log = logging.getLogger("tests.chaos.crashing_consumer")


def crash_after_deliveries(limit: int) -> None:
    """Wrap ``Pipeline.deliver`` so that the ``limit``-th successful delivery ends the process."""
    deliver = Pipeline.deliver
    delivered = 0

    async def deliver_then_crash(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        nonlocal delivered
        result = await deliver(self, *args, **kwargs)
        delivered += 1
        if delivered >= limit:
            log.warning("delivery %d: exiting after the insert, before the commit", delivered)
            logging.shutdown()
            os._exit(137)
        return result

    Pipeline.deliver = deliver_then_crash  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    crash_after_deliveries(int(argv[0]))
    return cli.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
