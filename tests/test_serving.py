"""signer_nodes.serving.freeze_startup_heap, in a fresh interpreter (freezing is for the
life of a process: pytest's own heap is left alone)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent(
    """
    import gc, json, weakref
    from signer_nodes.serving import freeze_startup_heap

    class Node:
        def __init__(self):
            self.me = self  # a cycle: only the cyclic collector could ever free it

    kept = [Node() for _ in range(20000)]   # built at startup, alive for good
    garbage = [Node() for _ in range(500)]  # built at startup, dropped before serving
    dropped = weakref.ref(garbage[0])
    del garbage
    frozen = freeze_startup_heap()
    freed_first = dropped() is None  # collected before the freeze, not kept frozen
    tracked = len(gc.get_objects())
    # what requests leave behind is still collected
    for _ in range(300):
        Node()
    collected = gc.collect()
    print(json.dumps({"frozen": frozen, "tracked": tracked, "collected": collected,
                      "freeze_count": gc.get_freeze_count(), "kept": len(kept),
                      "freed_first": freed_first}))
    """
)


def test_the_startup_heap_is_frozen_and_later_garbage_still_collected() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True, timeout=60
    )
    result = json.loads(out.stdout)
    assert result["kept"] == 20000
    # startup garbage is collected first, not frozen for good
    assert result["freed_first"]
    # every survivor of startup is frozen (the 20000 kept nodes and their dicts at least)
    assert result["frozen"] == result["freeze_count"] >= 20000
    # later collections visit only objects made after the freeze, not the startup heap
    assert result["tracked"] < 1000
    # the cycles made later are still found and freed
    assert result["collected"] >= 300
