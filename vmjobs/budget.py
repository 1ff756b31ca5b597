"""A number of bytes the service may hold at once for its callers, shared
by them: taken before something is kept, given back once it is let go,
refused (take() is False) past the bound rather than waited for. What one
caller can make the service hold is then bounded by design, whatever the
others do (a hostile-caller audit, round 14): the answers not yet read
(rpc.AnswerRoom), the domain XML of the jobs not yet ended (api.py)."""

import threading


class Budget:
    def __init__(self, total):
        self.total = total
        # Guards _held; notified as bytes are given back.
        self._given = threading.Condition(threading.Lock())
        self._held = 0

    def take(self, count):
        """Take `count` bytes; False, taking none, if there is not that
        much left."""
        with self._given:
            if self._held + count > self.total:
                return False
            self._held += count
            return True

    def give(self, count):
        with self._given:
            self._held -= count
            assert self._held >= 0, "given back twice"
            self._given.notify_all()

    @property
    def held(self):
        with self._given:
            return self._held

    def wait_held(self, at_most, timeout):
        """Wait until at most `at_most` bytes are held (the tests wait on
        them given back); returns whether it came to that in `timeout`."""
        with self._given:
            return self._given.wait_for(lambda: self._held <= at_most,
                                        timeout)
