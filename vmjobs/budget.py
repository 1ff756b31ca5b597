"""A number of bytes the service may hold at once for its callers, shared
by them: taken before something is kept, given back once it is let go,
refused past the bound (take() is False) or waited for (take_waiting()).
What one caller can make the service hold is then bounded by design,
whatever the others do (a hostile-caller audit, round 14): the answers
not yet read (rpc.AnswerRoom), the domain XML of the jobs not ended
(api.py), the large requests handled at once (server.py)."""

import threading


class Budget:
    def __init__(self, total):
        self.total = total
        # Guards _held and _waiting; notified as bytes are given back and
        # as a caller begins to wait.
        self._given = threading.Condition(threading.Lock())
        self._held = 0
        self._waiting = 0   # callers in take_waiting(); guarded the same

    def take(self, count):
        """Take `count` bytes; False, taking none, if there is not that
        much left."""
        if not count:
            return True   # most answers and requests take none: no lock
        with self._given:
            return self._take(count)

    def take_waiting(self, count, timeout):
        """Take `count` bytes, waiting up to `timeout` seconds for them to
        be given back; False, taking none, if they were not."""
        if not count:
            return True
        with self._given:
            self._waiting += 1
            self._given.notify_all()
            try:
                return self._given.wait_for(
                    lambda: self._take(count), timeout)
            finally:
                self._waiting -= 1

    def _take(self, count):
        if self._held + count > self.total:
            return False
        self._held += count
        return True

    def give(self, count):
        if not count:
            return
        with self._given:
            self._held -= count
            assert self._held >= 0, "given back twice"
            self._given.notify_all()

    @property
    def held(self):
        with self._given:
            return self._held

    def wait_waiting(self, count, timeout):
        """Wait until `count` callers wait in take_waiting() (the tests);
        returns whether it came to that in `timeout`."""
        with self._given:
            return self._given.wait_for(lambda: self._waiting >= count,
                                        timeout)

    def wait_held(self, at_most, timeout):
        """Wait until at most `at_most` bytes are held (the tests wait on
        them given back); returns whether it came to that in `timeout`."""
        with self._given:
            return self._given.wait_for(lambda: self._held <= at_most,
                                        timeout)
