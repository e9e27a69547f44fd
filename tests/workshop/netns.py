"""A classroom in network namespaces: one instructor host and N attendee hosts on one bridge.

Everything lives in namespaces the tests create (the bridge in a "switch" namespace of its own, each host's
veth pair created directly across its namespace and the switch's), with addresses from the benchmarking
range 198.18.0.0/15 assigned inside them only, so no traffic and no interface ever touches the machine's own
network namespace. :meth:`Classroom.close` deletes every namespace (and with them the links).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

__all__ = ["Classroom", "netns_unavailable"]

SUBNET = "198.18.0.0/24"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def netns_unavailable() -> str | None:
    """Why namespaces cannot be used here (None when they can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"slprobe{os.getpid() % 100000}"
    made = _ip("netns", "add", probe)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


@dataclass
class Classroom:
    """``instructor`` (198.18.0.1) and ``attendees`` (198.18.0.11, .12, ...) namespaces on one bridge."""

    n_attendees: int = 3
    tag: str = field(default_factory=lambda: f"{os.getpid() % 10000:04d}")
    namespaces: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"slw{self.tag}sw"

    @property
    def instructor(self) -> str:
        return f"slw{self.tag}i"

    @property
    def attendees(self) -> list[str]:
        return [f"slw{self.tag}a{i}" for i in range(1, self.n_attendees + 1)]

    instructor_ip = "198.18.0.1"

    def attendee_ip(self, i: int) -> str:
        return f"198.18.0.{11 + i}"

    def _run(self, *args: str) -> None:
        done = _ip(*args)
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")

    def _add_ns(self, name: str) -> None:
        self._run("netns", "add", name)
        self.namespaces.append(name)
        self._run("-n", name, "link", "set", "lo", "up")

    def _add_host(self, ns: str, index: int, address: str) -> None:
        self._add_ns(ns)
        port = f"p{self.tag}{index}"
        # both ends are created inside their namespaces: nothing appears in the machine's own
        self._run(
            "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns",
            self.switch,
        )  # fmt: skip
        self._run("-n", self.switch, "link", "set", port, "master", "br0", "up")
        self._run("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        self._run("-n", ns, "link", "set", "eth0", "up")

    def open(self) -> Classroom:
        try:
            self._add_ns(self.switch)
            self._run("-n", self.switch, "link", "add", "br0", "type", "bridge")
            self._run("-n", self.switch, "link", "set", "br0", "up")
            self._add_host(self.instructor, 0, self.instructor_ip)
            for i, ns in enumerate(self.attendees):
                self._add_host(ns, i + 1, self.attendee_ip(i))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            _ip("netns", "del", ns)
        self.namespaces.clear()

    def exec_argv(self, ns: str, argv: list[str]) -> list[str]:
        """``argv`` run inside namespace ``ns``."""
        return ["ip", "netns", "exec", ns, *argv]

    def __enter__(self) -> Classroom:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
