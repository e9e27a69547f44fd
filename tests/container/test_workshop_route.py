"""Workshop mode in the container route (issue 19): ``./run-demo.sh --lan`` with podman.

The provider is published on every interface over HTTPS only, with the lab home's CA (made once in the
lab-home volume; ``lab.sh`` prints its fingerprint); plain HTTP is not served; the instructor's JupyterLab
listens on 127.0.0.1 only. An attendee's side runs on this machine: the official client, trusting the lab's CA
with ``helpers.recipient.activate_with_ca`` (fingerprint checked), reads a share at the machine's own address;
the instructor's kernel in the lab container reads it over TLS too.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.container.common import (
    LAB_SH,
    REPO,
    RUN_DEMO,
    BuiltImage,
    last_json,
    podman,
    report,
    run,
)
from tests.support import free_port

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(900)]

# In the provider container: a 100-row table shared with one attendee, an activation link for them.
PROVIDER_SETUP = r"""
import json
import pandas as pd
from deltalake import write_deltalake
from helpers.catalog import open_catalog
from helpers.home import LabHome
from helpers.provider import Provider

lab = LabHome.resolve()
location = lab.path / "data" / "demo" / "s" / "t"
write_deltalake(str(location), pd.DataFrame({"id": range(100), "v": [float(i) for i in range(100)]}))
cat = open_catalog(lab)
cat.register_table("demo.s.t", str(location))
cat.create_share("demo_share")
cat.add_table_to_share("demo_share", "demo.s.t", alias="s.t")
for who in ("ada", "instructor_check"):
    cat.create_recipient(who)
    cat.grant("demo_share", who)
link = Provider(lab).activation_link(cat.create_activation("ada"))
print(json.dumps({"link": link, "endpoint": lab.server_state()["endpoint"]}))
"""

# The attendee: trust the lab CA after checking its fingerprint, activate, read with the official client
# (both response formats).
ATTENDEE = r"""
import json, sys
import delta_sharing
from helpers import recipient

link, out, fp = sys.argv[1:4]
profile = recipient.activate_with_ca(link, out, fp)
url = f"{profile}#demo_share.s.t"
parquet = delta_sharing.load_as_pandas(url, use_delta_format=False)
delta = delta_sharing.load_as_pandas(url, use_delta_format=True)
print(json.dumps({"endpoint": json.load(open(profile))["endpoint"], "rows": [len(parquet), len(delta)],
                  "sum": float(parquet["v"].sum())}))
"""

# The instructor's own kernel (lab container): a profile from the lab home (its CA kept beside it).
INSTRUCTOR = r"""
import json
from helpers import recipient
from helpers.labs import setup
path = setup.issue_profile("instructor_check")
print(json.dumps({"endpoint": json.load(open(path))["endpoint"], "rows": len(recipient.load(path, "demo_share.s.t"))}))
"""


@pytest.fixture(scope="module")
def workshop_pod(image: BuiltImage) -> Iterator[dict[str, str]]:
    """``./run-demo.sh --lan`` (container route) on free ports; ``down --volumes`` afterwards."""
    name = f"sharelab-workshop-{os.getpid()}"
    env = {
        "SHARELAB_NAME": name,
        "SHARELAB_IMAGE": image.name,
        "SHARELAB_PORT": str(free_port()),
        "JUPYTER_PORT": str(free_port()),
        "JUPYTER_TOKEN": secrets.token_hex(16),
        "SHARELAB_NO_REBUILD": "1",
    }
    try:
        t0 = time.monotonic()
        up = run([str(RUN_DEMO), "--lan"], env=env, timeout=600)
        report(f"./run-demo.sh --lan (container route): {time.monotonic() - t0:.0f} s")
        yield {**env, "name": name, "up_output": up.stdout + up.stderr}
    finally:
        run([str(LAB_SH), "down", "podman", "--volumes"], env=env, check=False, timeout=300)


def _listeners(port: str) -> list[str]:
    """Local addresses listening on TCP ``port`` (``ss -ltnH``)."""
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    return [
        f.split()[3].rsplit(":", 1)[0]
        for f in out.splitlines()
        if f.split()[3].endswith(f":{port}")
    ]


def test_workshop_mode_serves_tls_only_and_keeps_jupyterlab_on_loopback(
    workshop_pod: dict[str, str], tmp_path: Path
) -> None:
    name, pport, jport = (
        workshop_pod["name"],
        workshop_pod["SHARELAB_PORT"],
        workshop_pod["JUPYTER_PORT"],
    )
    out = workshop_pod["up_output"]
    fp = re.search(r"fingerprint ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})", out)
    assert fp, f"lab.sh must print the lab CA's fingerprint:\n{out}"
    assert f"JupyterLab: http://127.0.0.1:{jport}/lab?token=" in out

    setup = last_json(
        podman("exec", "-i", f"{name}-provider", "python", "-", stdin=PROVIDER_SETUP).stdout
    )
    endpoint = setup["endpoint"]
    assert endpoint.startswith("https://") and f":{pport}/" in endpoint, endpoint
    host = endpoint.split("//", 1)[1].rsplit(":", 1)[0]
    assert host not in ("localhost", "provider", "127.0.0.1"), endpoint  # the address attendees use

    # An attendee: the CA checked against the fingerprint read out, then the official client over TLS.
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
    env["SHARELAB_HOME"] = str(tmp_path / "attendee-home")  # the attendee's own machine
    done = subprocess.run(
        [sys.executable, "-", setup["link"], str(tmp_path / "ada.share"), fp.group(1)],
        input=ATTENDEE, capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    read = last_json(done.stdout)
    assert read["endpoint"] == endpoint and read["rows"] == [100, 100] and read["sum"] == 4950.0

    # A wrong fingerprint is refused before anything is trusted or the link is used.
    wrong = "00:" * 31 + "00"
    bad = subprocess.run(
        [sys.executable, "-", setup["link"], str(tmp_path / "eve.share"), wrong],
        input=ATTENDEE, capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )  # fmt: skip
    assert bad.returncode != 0 and "fingerprint" in bad.stderr.lower(), bad.stderr[-1500:]

    # Plain HTTP is not served; HTTPS without the lab CA is refused.
    for addr in ("127.0.0.1", host):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://{addr}:{pport}/health", timeout=5)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://{host}:{pport}/health", timeout=5)

    # JupyterLab listens on 127.0.0.1 only (never 0.0.0.0): unreachable at the machine's address.
    assert _listeners(jport) == ["127.0.0.1"], _listeners(jport)
    assert "0.0.0.0" in _listeners(pport) or "*" in _listeners(pport), _listeners(pport)
    assert requests.get(f"http://127.0.0.1:{jport}/api", timeout=10).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{host}:{jport}/api", timeout=5)

    # The instructor's kernel reads the share over TLS as well (the lab CA beside its profile).
    mine = last_json(podman("exec", "-i", f"{name}-lab", "python", "-", stdin=INSTRUCTOR).stdout)
    assert mine == {"endpoint": endpoint, "rows": 100}
