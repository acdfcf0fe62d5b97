"""The .deb end to end: build it from a clean copy of the checkout, boot systemd as PID 1 in a container made from a
debootstrapped Debian 12, install the package there, and use it as an operator would: the service comes up READY,
the CLI onboards, a restart and an upgrade keep everything, the watchdog restarts a frozen daemon, purge leaves
nothing, and lintian has nothing to say beyond debian/nunet-dms.lintian-overrides.

The container shares the host's network (this machine's dockerd has no bridge; apt inside needs the mirror), so
the test gives the packaged service free loopback ports before the package is installed: the config it writes
to /etc/nunet/dms_config.json is kept by dpkg as the operator's. Docker's own units are masked inside: docker.io
is only a dependency there, and the daemon must start without an engine.

Tests run in file order and share one container; each later one needs the earlier ones. Set
DMS_SKIP_PACKAGE_TEST=1 to skip them (they take a few minutes; CI runs them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
IMAGE = "dms-test/systemd:bookworm"
UNIT = "nunet-dms.service"
PAYOUT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
CHANNEL = "nunet-test"
PROBE_PATH = "/usr/local/lib/nunet-dms-probe.py"
PROBE_UNIT = "/etc/systemd/system/nunet-dms-probe.service"
WATCHDOG_DROPIN = "/run/systemd/system/nunet-dms.service.d/50-test-watchdog.conf"
# What systemd-analyze security may report at most; the unit scores 1.7 (README).
MAX_EXPOSURE = 2.0

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.environ.get("DMS_SKIP_PACKAGE_TEST") == "1", reason="DMS_SKIP_PACKAGE_TEST=1"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the package test needs root (apt, debootstrap, docker)"),
]


def run(cmd: list[str], timeout: float = 600, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def http_json(url: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.load(resp)


@dataclass
class Built:
    deb: Path
    lintian: subprocess.Popen[str]
    lintian_log: Path


@dataclass
class Box:
    """The systemd container, and what the tests learn about it as they go."""

    name: str
    rest_port: int
    p2p_port: int
    installed: bool = False
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}/api/v1"

    def sh(self, script: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["docker", "exec", self.name, "bash", "-c", script], timeout=timeout, check=check)

    def cp_in(self, src: Path, dest: str) -> None:
        run(["docker", "cp", str(src), f"{self.name}:{dest}"])

    def show(self, *props: str, unit: str = UNIT) -> dict[str, str]:
        out = self.sh(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_active(self, timeout: float = 60, not_pid: str | None = None) -> dict[str, str]:
        """Wait until the unit is active/running (for Type=notify: READY=1 arrived), with a MainPID != not_pid."""
        deadline = time.monotonic() + timeout
        props: dict[str, str] = {}
        while time.monotonic() < deadline:
            props = self.show("ActiveState", "SubState", "MainPID", "NRestarts", "StatusText", "Result")
            if props["ActiveState"] == "active" and props["SubState"] == "running" and props["MainPID"] != not_pid:
                return props
            time.sleep(0.5)
        raise AssertionError(f"{UNIT} not active within {timeout:g} s: {props}")

    def wait_rest(self, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                status: dict[str, Any] = http_json(f"{self.url}/onboarding/status")
                return status
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def diagnostics(self) -> str:
        return self.sh(
            f"systemctl status --no-pager {UNIT}; journalctl --no-pager -n 300 -u {UNIT}; systemctl --failed",
            check=False,
        ).stdout


_box: Box | None = None


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """Builds the .deb (build-deb.sh: clean copy of the checkout) while the systemd image is made or found."""
    out = tmp_path_factory.mktemp("deb")
    image = subprocess.Popen(
        ["bash", "maint-scripts/systemd-rootfs.sh", IMAGE], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    start = time.monotonic()
    proc = run(["bash", "maint-scripts/build-deb.sh", "--out", str(out)], cwd=ROOT, timeout=900)
    deb = Path(proc.stdout.strip().splitlines()[-1])
    print(f"built {deb.name} in {time.monotonic() - start:.0f} s")
    image_out, _ = image.communicate(timeout=600)
    assert image.returncode == 0, f"systemd-rootfs.sh failed:\n{image_out.decode(errors='replace')}"
    # lintian takes half a minute: it runs while the container tests do.
    log = out / "lintian.log"
    with log.open("w") as f:
        lintian = subprocess.Popen(
            ["lintian", "--fail-on", "error,warning", "--info", "--tag-display-limit", "0", str(deb)],
            stdout=f,
            stderr=subprocess.STDOUT,
            text=True,
        )
    yield Built(deb, lintian, log)
    if lintian.poll() is None:
        lintian.kill()
        lintian.wait()


@pytest.fixture(scope="module")
def box(built: Built) -> Iterator[Box]:
    global _box
    name = f"dms-pkg-test-{uuid.uuid4().hex[:8]}"
    b = Box(name, rest_port=free_port(), p2p_port=free_port())
    # docs/libraries.md: systemd as PID 1 under this machine's dockerd (cgroup v1, no CAP_SYS_RESOURCE, no bridge).
    run(
        [
            "docker", "run", "-d", "--name", name,
            "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
            "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup", "--tmpfs", "/run", "--tmpfs", "/run/lock",
            "--network", "host", IMAGE, "/lib/systemd/systemd",
        ]
    )  # fmt: skip
    _box = b
    try:
        # systemctl fails until PID 1 has its bus up; then --wait blocks until start-up is over.
        deadline, state = time.monotonic() + 90, ""
        while state not in ("running", "degraded") and time.monotonic() < deadline:
            time.sleep(0.5)
            state = b.sh("systemctl is-system-running --wait", timeout=90, check=False).stdout.strip()
        assert state in ("running", "degraded"), f"systemd in the container: {state!r}\n{b.diagnostics()}"
        yield b
    finally:
        _box = None
        run(["docker", "rm", "-f", name], check=False)


@pytest.fixture(autouse=True)
def journal_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if _box is not None and report is not None and report.failed:
        print(f"---- {UNIT} in {_box.name} ----\n{_box.diagnostics()}")


def require_installed(box: Box) -> None:
    if not box.installed:
        pytest.skip("the package did not install (see test_install_starts_ready_service)")


def packaged_config(deb: Path) -> dict[str, Any]:
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    data = subprocess.run(["tar", "-xO", "./etc/nunet/dms_config.json"], input=tar, capture_output=True, check=True)
    config: dict[str, Any] = json.loads(data.stdout)
    return config


def test_install_starts_ready_service(built: Built, box: Box, tmp_path: Path) -> None:
    config = packaged_config(built.deb)
    repo_config = json.loads((ROOT / "dms_config.json").read_text())
    assert config["general"]["data_dir"] == "/var/lib/nunet"
    assert (config["rest"]["addr"], config["rest"]["port"]) == ("127.0.0.1", 9999)
    assert config["p2p"]["mdns"] is False
    assert config["p2p"]["listen_address"] == repo_config["p2p"]["listen_address"]

    # Free ports on the shared loopback, in place before the first start.
    config["rest"]["port"] = box.rest_port
    config["p2p"]["listen_address"] = [f"/ip4/127.0.0.1/tcp/{box.p2p_port}"]
    (tmp_path / "dms_config.json").write_text(json.dumps(config, indent=2))
    box.sh("mkdir -p /etc/nunet /root/debs && systemctl mask docker.service docker.socket containerd.service")
    box.cp_in(tmp_path / "dms_config.json", "/etc/nunet/dms_config.json")
    box.cp_in(built.deb, f"/root/debs/{built.deb.name}")
    install = box.sh(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
        "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "
        f"/root/debs/{built.deb.name} </dev/null",
        timeout=300,
    )
    assert "nunet-dms" in install.stdout
    box.installed = True

    props = box.wait_active()
    print(f"{UNIT}: {props}")
    assert box.show("Type")["Type"] == "notify"
    status = box.wait_rest()
    assert status["onboarded"] is False
    assert status["database_path"] == "/var/lib/nunet/dms.sqlite3"

    # The daemon runs as nunet, in the docker group, with its state in /var/lib/nunet.
    pid = props["MainPID"]
    creds = box.sh(
        f"grep -E '^(Uid|Groups):' /proc/{pid}/status; id -u nunet; getent group docker | cut -d: -f3; "
        "getent passwd nunet | cut -d: -f6,7; stat -c '%U %a' /var/lib/nunet"
    ).stdout.split("\n")
    uid_line, groups_line, nunet_uid, docker_gid, home_shell, state_dir = creds[:6]
    assert uid_line.split()[1] == nunet_uid
    assert docker_gid in groups_line.split()[1:]
    assert home_shell == "/var/lib/nunet:/usr/sbin/nologin"
    assert state_dir == "nunet 750"

    verify = box.sh(f"systemd-analyze verify --man=no /lib/systemd/system/{UNIT} 2>&1", check=False)
    # Exits 0 on many errors; any output is a finding. --man=no: the minimal container has no man-db
    # (lintian checks the pages themselves).
    assert verify.stdout.strip() == "", verify.stdout
    security = box.sh(f"systemd-analyze security --no-pager {UNIT}").stdout
    score = re.search(rf"Overall exposure level for {UNIT}: ([\d.]+)", security)
    assert score, security
    print(f"systemd-analyze security {UNIT}: {score.group(1)}; not set:")
    print("\n".join(line for line in security.splitlines() if line.startswith("✗")))
    assert float(score.group(1)) <= MAX_EXPOSURE, security

    files = box.sh(
        "ls -l /usr/bin/nunet /usr/bin/nunet-dms; ls /usr/share/man/man1/nunet.1.gz /usr/share/man/man1/nunet-dms.1.gz;"
        " dpkg-query -W -f='${Conffiles}\\n' nunet-dms; dpkg-query -W -f='${Depends}\\n' nunet-dms"
    ).stdout
    assert "-> /opt/venvs/nunet-dms/bin/nunet" in files and "/etc/nunet/dms_config.json" in files, files
    assert "docker.io | docker-ce" in files, files

    # The venv: Debian's python3, no pip/setuptools, no dev or test tools, no checked bytecode.
    names = 'import importlib.metadata as m; print(" ".join(d.metadata["Name"].lower() for d in m.distributions()))'
    venv = box.sh(f"readlink -f /opt/venvs/nunet-dms/bin/python; /opt/venvs/nunet-dms/bin/python -c '{names}'").stdout
    python, dist_names = venv.splitlines()
    assert python.startswith("/usr/bin/python3.11"), python
    dists = set(dist_names.split())
    assert "nunet-dms" in dists and "web3" in dists
    unwanted = {d for d in dists if d in {"pip", "setuptools", "pytest", "ruff", "mypy"} or d.startswith("types-")}
    assert not unwanted, unwanted
    # Every module has bytecode that Python never checks against the source, so never rewrites (flags == 1).
    unchecked = (
        "import importlib.util as u, pathlib as p; "
        "pyc = [p.Path(u.cache_from_source(str(f))) for f in p.Path('/opt/venvs/nunet-dms/lib').rglob('*.py')]; "
        "print([str(c) for c in pyc if not c.is_file() or int.from_bytes(c.read_bytes()[4:8], 'little') != 1][:10])"
    )
    assert box.sh(f'/opt/venvs/nunet-dms/bin/python -c "{unchecked}"').stdout.strip() == "[]"

    # bash completion, from the installed CLI.
    completion = box.sh(
        "source /usr/share/bash-completion/completions/nunet; COMP_WORDS=(nunet onb); COMP_CWORD=1; "
        "_nunet_completion nunet; printf '%s\\n' \"${COMPREPLY[@]}\""
    ).stdout
    assert "onboard" in completion.split(), completion


def test_sandbox_lets_the_daemon_work(box: Box) -> None:
    """The unit's hardening, applied to a probe that does what the daemon does (tests/package/sandbox_probe.py)."""
    require_installed(box)
    box.cp_in(HERE / "sandbox_probe.py", PROBE_PATH)
    # The installed unit, as a oneshot running the probe: same user, groups, directories and hardening.
    box.sh(
        f"sed -e 's/^Type=notify/Type=oneshot/' -e 's|^ExecStart=.*|ExecStart=/opt/venvs/nunet-dms/bin/python "
        f"{PROBE_PATH}|' -e '/^WatchdogSec=/d' -e '/^Restart=/d' -e '/^\\[Install\\]/,$d' "
        f"/lib/systemd/system/{UNIT} > {PROBE_UNIT} && chmod 644 {PROBE_PATH} && systemctl daemon-reload"
    )
    box.sh(f"(python3 {PROBE_PATH} --fake-docker /run/docker.sock &) ; "
           "for i in $(seq 50); do [ -S /run/docker.sock ] && [ \"$(stat -c %G /run/docker.sock)\" = docker ] "
           "&& exit 0; sleep 0.1; done; exit 1")  # fmt: skip
    probe = box.sh("systemctl start nunet-dms-probe.service", timeout=120, check=False)
    report = box.sh("cat /var/lib/nunet/probe-report.json", check=False).stdout
    journal = box.sh("journalctl --no-pager -o cat -u nunet-dms-probe.service", check=False).stdout
    box.sh(
        f"rm -f {PROBE_UNIT} {PROBE_PATH} /var/lib/nunet/probe-report.json /run/docker.sock; systemctl daemon-reload"
    )
    assert report, f"the probe wrote no report ({probe.stderr.strip()}):\n{journal}"
    failed = {name: r for name, r in json.loads(report).items() if not r["ok"]}
    assert not failed, json.dumps(failed, indent=2)
    assert probe.returncode == 0, journal
    print(journal)


def test_operator_onboards_and_restart_keeps_it(box: Box) -> None:
    require_installed(box)
    machine = http_json(f"{box.url}/onboarding/provisioned")
    memory, cpu = machine["memory"] // 4, machine["cpu"] // 4  # within the allowed 10-90 %
    onboard = box.sh(f"nunet onboard -m {memory} -c {cpu} -n {CHANNEL} -a {PAYOUT}", check=False)
    assert onboard.returncode == 0, onboard.stdout + onboard.stderr
    info = box.sh("nunet info").stdout
    assert CHANNEL in info and PAYOUT in info, info
    box.facts["onboarded"] = http_json(f"{box.url}/onboarding/status")

    old = box.show("MainPID")["MainPID"]
    box.sh(f"systemctl restart {UNIT}", timeout=60)
    box.wait_active(not_pid=old)
    assert box.wait_rest()["onboarded"] is True
    info = box.sh("nunet info").stdout
    assert CHANNEL in info and PAYOUT in info, info


def test_watchdog_restarts_a_frozen_daemon(box: Box) -> None:
    require_installed(box)
    # A short watchdog for the test only (a runtime drop-in, gone with the container).
    box.sh(
        f"mkdir -p {Path(WATCHDOG_DROPIN).parent} && printf '[Service]\\nWatchdogSec=6s\\n' > {WATCHDOG_DROPIN} "
        f"&& systemctl daemon-reload && systemctl restart {UNIT}",
        timeout=60,
    )
    try:
        before = box.wait_active()
        assert box.show("WatchdogUSec")["WatchdogUSec"] == "6s"
        box.sh(f"kill -STOP {before['MainPID']}")
        # Missed pings: after 6 s systemd aborts it (TimeoutAbortSec bounds that), then restarts it (RestartSec).
        deadline = time.monotonic() + 60
        after = before
        while time.monotonic() < deadline:
            after = box.show("ActiveState", "SubState", "MainPID", "NRestarts", "Result")
            restarted = int(after["NRestarts"]) > int(before["NRestarts"])
            if restarted and after["ActiveState"] == "active" and after["MainPID"] not in ("0", before["MainPID"]):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"not restarted by the watchdog within 60 s: before {before}, now {after}")
        journal = box.sh(f"journalctl --no-pager -u {UNIT}").stdout
        assert "Watchdog timeout" in journal, journal[-3000:]
        box.wait_rest()
    finally:
        box.sh(f"rm -r {Path(WATCHDOG_DROPIN).parent} && systemctl daemon-reload", check=False)
    old = box.show("MainPID")["MainPID"]
    box.sh(f"systemctl restart {UNIT}", timeout=60)
    box.wait_active(not_pid=old)
    assert box.show("WatchdogUSec")["WatchdogUSec"] == "30s"


def test_upgrade_keeps_config_and_onboarding(built: Built, box: Box, tmp_path: Path) -> None:
    require_installed(box)
    version = run(["dpkg-deb", "-f", str(built.deb), "Version"]).stdout.strip()
    newer = f"{version}+upgradetest1"
    tree = tmp_path / "tree"
    run(["dpkg-deb", "-R", str(built.deb), str(tree)])
    control = tree / "DEBIAN" / "control"
    control.write_text(re.sub(r"(?m)^Version: .*$", f"Version: {newer}", control.read_text()))
    new_deb = tmp_path / f"nunet-dms_{newer}_amd64.deb"
    run(["dpkg-deb", "-Zgzip", "-z1", "-b", str(tree), str(new_deb)])
    shutil.rmtree(tree)
    box.cp_in(new_deb, f"/root/debs/{new_deb.name}")

    old = box.show("MainPID")["MainPID"]
    # No conffile options: the operator's edited config must be kept without a question.
    box.sh(f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/debs/{new_deb.name} </dev/null", timeout=300)
    assert box.sh("dpkg-query -W -f='${Version}' nunet-dms").stdout == newer
    box.wait_active(not_pid=old)
    config = json.loads(box.sh("cat /etc/nunet/dms_config.json").stdout)
    assert config["rest"]["port"] == box.rest_port
    status = box.wait_rest()
    assert status["onboarded"] is True
    assert status["channel"] == box.facts["onboarded"]["channel"] == CHANNEL
    assert CHANNEL in box.sh("nunet info").stdout


def test_nothing_unowned_then_purge_leaves_nothing(box: Box) -> None:
    require_installed(box)
    # Python ran as root (the CLI) and as nunet: with hash-checked bytecode it wrote nothing next to the venv.
    unowned = box.sh(
        "comm -23 <(find /opt/venvs/nunet-dms \\( -type f -o -type l \\) | sort) <(dpkg -L nunet-dms | sort)"
    ).stdout
    assert unowned == "", f"files dpkg does not know:\n{unowned}"

    box.sh("rm -rf /root/debs")  # the test's own files
    box.sh("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q nunet-dms </dev/null", timeout=120)
    left = box.sh(
        "getent passwd nunet; getent group nunet; ls -d /var/lib/nunet /etc/nunet /opt/venvs/nunet-dms 2>/dev/null; "
        "dpkg -S nunet 2>/dev/null; systemctl cat nunet-dms.service 2>/dev/null; "
        "find / -xdev \\( -iname '*nunet*' -o -nouser -o -nogroup \\) -print; "
        "find /run /tmp /var/tmp \\( -iname '*nunet*' -o -nouser -o -nogroup \\) -print",
        check=False,
    ).stdout
    assert left == "", f"left after purge:\n{left}"
    box.installed = False


def test_lintian_is_clean(built: Built) -> None:
    built.lintian.wait(timeout=600)
    output = built.lintian_log.read_text()
    findings = [line for line in output.splitlines() if re.match(r"^[EW]: ", line)]
    assert built.lintian.returncode == 0 and not findings, output
