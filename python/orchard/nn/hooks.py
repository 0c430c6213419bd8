"""RemovableHandle: what Module.register_*_hook returns, to take the hook off again."""
import itertools
import weakref

_next_id = itertools.count()


class RemovableHandle:
    """Removes its hook from each of the dicts it was registered in (by id); usable in a `with`."""

    def __init__(self, *hook_dicts):
        self.id = next(_next_id)
        self._dicts = [weakref.ref(d) for d in hook_dicts]

    def remove(self):
        for ref in self._dicts:
            hooks = ref()
            if hooks is not None:
                hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
