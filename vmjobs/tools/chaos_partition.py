"""A network partition between the chaos run's hosts, by nftables.

Both hosts are on one machine: everything they say to each other goes over
loopback TCP to a port of one of their sandboxes' blocks (libvirtd's TCP
port, the incoming migrations' ports, the service's port: sandbox.py,
LIBVIRTD_TCP_CONF), the other end being an ephemeral port (below the
blocks). Dropping every packet to or from a block's ports cuts every
connection to that host, established or new, as a dead link does: nothing
is refused, packets vanish and TCP retransmits until the cut heals.

Each block has a table of its own, `inet vmjobs_chaos_<first port>`, that
matches only that block's ports, so nothing else on the machine is
touched: a set `cut` of the block's range while it is cut, and a rule
refusing any user but root a connection to the block (the run's libvirtds
take TCP without authentication). A cut is put in the set with a kernel
timeout, `backstop` seconds: should the run die before it heals (kill
-9), the kernel ends the cut by itself. A table is removed at the run's
end, and a run clears at its start the tables of blocks no sandbox holds
any more (a run that died: the block's lock file is free), never one a
running sandbox holds."""

import fcntl
import os
import re
import subprocess

from .sandbox import PORT_LOCKS

TABLE_PREFIX = "vmjobs_chaos_"
_TABLE = re.compile(r"^table inet (" + TABLE_PREFIX + r"(\d+))$", re.M)


class PartitionError(RuntimeError):
    pass


def nft(script):
    """Run an nft script (nft -f -); PartitionError with its words."""
    try:
        done = subprocess.run(["nft", "-f", "-"], input=script, text=True,
                              capture_output=True)
    except FileNotFoundError:
        raise PartitionError("nft is not installed (apt-get install "
                             "nftables)") from None
    if done.returncode != 0:
        raise PartitionError(f"nft: {done.stderr.strip()}")


def table_name(ports):
    return f"{TABLE_PREFIX}{ports[0]}"


def guard(ports):
    """The block's table, its set empty (nothing cut): made anew."""
    first, last = ports
    name = table_name(ports)
    nft(f"""table inet {name}
delete table inet {name}
table inet {name} {{
  set cut {{ type inet_service; flags interval, timeout; }}
  chain output {{
    type filter hook output priority filter; policy accept;
    tcp dport @cut drop
    tcp sport @cut drop
    tcp dport {first}-{last} meta skuid != 0 reject with tcp reset
  }}
}}
""")


def cut(ports, backstop):
    """Drop every packet to or from the block's ports until heal(), or
    `backstop` seconds at most (the kernel's timeout)."""
    first, last = ports
    nft(f"add element inet {table_name(ports)} cut "
        f"{{ {first}-{last} timeout {int(backstop) + 1}s }}\n")


def heal(ports):
    nft(f"flush set inet {table_name(ports)} cut\n")


def remove(ports):
    """The block's table gone (no error if it is not there)."""
    name = table_name(ports)
    nft(f"table inet {name}\ndelete table inet {name}\n")


def is_cut(ports):
    done = subprocess.run(["nft", "list", "set", "inet", table_name(ports),
                           "cut"], capture_output=True, text=True)
    return done.returncode == 0 and f"{ports[0]}-{ports[1]}" in done.stdout


def clear_leftovers():
    """Remove the tables of blocks no sandbox holds (their run died before
    removing them); the names of those removed."""
    try:
        listing = subprocess.run(["nft", "list", "tables"],
                                 capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    removed = []
    for name, first in _TABLE.findall(listing):
        lock = os.path.join(PORT_LOCKS, f"{first}.lock")
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            fd = None
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue   # a running sandbox holds it: its run's table
        else:
            # Removed while the lock is held: no sandbox takes the block
            # meanwhile.
            nft(f"delete table inet {name}\n")
            removed.append(name)
        finally:
            if fd is not None:
                os.close(fd)
    return removed
