"""The child processes posts are rendered in: an item that hangs where no signal reaches, kills its process, asks
for too much memory or raises is given up on its own, named by what happened; every other item is still done, in
order, also when called from a thread (the daemon builds in one); a stop signal to the process group leaves the
rendering to the parent."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from feedpub.site.bounded import Stopped, map_bounded


def work(item: str) -> str:
    if item == "hang":
        time.sleep(3600)
    elif item == "exit":
        os._exit(3)
    elif item == "memory":
        return str(len(bytearray(2 * 1024 ** 3)))
    elif item == "raise":
        raise ValueError("bad input")
    elif item == "signalled":   # as Ctrl-C or a service manager's stop sends to the whole process group
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
    return item.upper()


def test_each_bad_item_is_stopped_alone_and_the_others_are_done_in_order() -> None:
    items = ["a", "hang", "b", "exit", "c", "memory", "d", "raise", "signalled", *"efghij"]
    with ThreadPoolExecutor(1) as pool:
        results = pool.submit(map_bounded, work, items, workers=2, seconds=2, memory=256 * 1024 ** 2).result(60)
    shown = [str(result.reason) if isinstance(result, Stopped) else result for result in results]
    assert shown == ["A", "took over 2 s", "B", "the rendering process ended (exit code 3)", "C",
                     "MemoryError: ", "D", "ValueError: bad input", "SIGNALLED", *"EFGHIJ"]

