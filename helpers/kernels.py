"""Kernels on unix sockets: :class:`IpcKernelManager` for the kernels the lab starts itself (batch runs,
grading).

A TCP kernel's five ports are chosen by binding port 0 and releasing it; the kernel binds them seconds later
on a loaded machine, and whatever else picks a free port in between (another kernel, a test server) can take
one, so the kernel dies before replying to ``kernel_info``. A room's worth of kernels started at once makes
that likely. ``ipc`` sockets live in the user's Jupyter runtime directory (0700), so nothing can collide
with them and no other OS user can connect to them. Where unix sockets do not fit (Windows, or a runtime
directory so deep that a socket path would pass the AF_UNIX limit of 107 bytes) the kernel stays on TCP.
"""

from __future__ import annotations

import os
import uuid

from jupyter_client.localinterfaces import localhost
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.paths import jupyter_runtime_dir
from traitlets import default

__all__ = ["KERNEL_MANAGER", "IpcKernelManager", "ipc_fits"]

#: what papermill's ``kernel_manager_class`` takes
KERNEL_MANAGER = "helpers.kernels.IpcKernelManager"
#: "/kernel-<uuid>-ipc-<n>" after the runtime directory
_SOCKET_TAIL = 50


def ipc_fits(runtime_dir: str | None = None) -> bool:
    """Whether kernel sockets under ``runtime_dir`` (default: Jupyter's) stay under the AF_UNIX limit."""
    if os.name != "posix":
        return False
    return len(os.path.abspath(runtime_dir or jupyter_runtime_dir())) + _SOCKET_TAIL <= 107


class IpcKernelManager(AsyncKernelManager):
    """papermill's and nbclient's kernel manager, with the kernel on unix sockets where they fit."""

    @default("transport")
    def _default_transport(self) -> str:
        return "ipc" if ipc_fits() else "tcp"

    @default("ip")
    def _default_ip(self) -> str:
        """A socket path of this kernel's own in the runtime directory (jupyter_client's default for a
        manager made without a connection file, as papermill makes it, is ``kernel-ipc`` in the current
        directory, the same for every kernel started there)."""
        if self.transport != "ipc":
            return localhost()
        runtime = jupyter_runtime_dir()
        os.makedirs(runtime, mode=0o700, exist_ok=True)
        return os.path.join(runtime, f"kernel-{uuid.uuid4()}-ipc")
