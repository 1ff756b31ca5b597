"""A job's error message is at most workers.MAX_ERROR_MESSAGE characters,
cut with a mark: it lives as long as the job (an hour, up to 10,000 ended
jobs) and may echo what the caller sent (libvirt's messages do). A short
message is kept whole (the positive control)."""

from conftest import WAIT
from workers import MAX_ERROR_MESSAGE, Job, Pool


class Failing(Job):
    def __init__(self, message):
        super().__init__()
        self.message = message

    def run(self):
        raise RuntimeError(self.message)


def error_of(message):
    with Pool(workers=1, queue_size=4) as pool:
        job = Failing(message)
        pool.submit(job)
        assert job.wait(WAIT)
        return job.info()["error"]["message"]


def test_a_long_error_message_is_cut_with_a_mark():
    message = error_of("x" * (1024 * 1024))
    assert message.startswith("x" * MAX_ERROR_MESSAGE)
    assert message.endswith(f"...[cut: {1024 * 1024} characters in all]")
    assert len(message) < MAX_ERROR_MESSAGE + 100


def test_a_short_error_message_is_kept_whole():
    assert error_of("libvirt: no such file") == "libvirt: no such file"
