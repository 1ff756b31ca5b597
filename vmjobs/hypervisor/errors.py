"""libvirt's errors, translated into the adapter's own."""

import libvirt

NO_DOMAIN = libvirt.VIR_ERR_NO_DOMAIN
OPERATION_INVALID = libvirt.VIR_ERR_OPERATION_INVALID


class HypervisorError(Exception):
    """A libvirt call failed; `code` is libvirt's error code."""
    expected = True

    def __init__(self, call, code, message):
        super().__init__(f"{call}: {message} (libvirt error {code})")
        self.call = call
        self.code = code
        self.message = message


class DomainNotFound(HypervisorError):
    pass


class ConnectionLost(HypervisorError):
    """The connection to the daemon broke (it stopped or restarted); the
    next call opens a new one."""


class translated:
    """`with translated(call):` turns a libvirtError into ours. (A class:
    a generator-based context manager costs several times more, and there
    are a few around every call.)"""
    __slots__ = ("call",)

    def __init__(self, call):
        self.call = call

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None or not issubclass(exc_type, libvirt.libvirtError):
            return False
        code = exc.get_error_code()
        cls = DomainNotFound if code == NO_DOMAIN else HypervisorError
        raise cls(self.call, code, exc.get_error_message() or str(exc)) \
            from None


def silence_error_printer():
    """libvirt writes every error to stderr, handled or not, unless a
    handler is registered (once per process, libvirt makes it global):
    the adapter translates or handles each error itself."""
    libvirt.registerErrorHandler(_no_print, None)


def _no_print(ctx, err):
    pass   # the error is raised as a libvirtError all the same


def ignoring(call, *codes):
    """call(), but a libvirtError with one of `codes` is no failure."""
    try:
        call()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in codes:
            raise

