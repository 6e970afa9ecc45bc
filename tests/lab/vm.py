"""Boot the lab image under QEMU (TCG) as a stand-in for a Compute Engine VM with a persistent disk.

Every boot with fresh=True runs on a new qcow2 overlay over the cached base image: a "new VM".
The data disk is a raw image attached like a GCE persistent disk (virtio-scsi, vendor Google,
product PersistentDisk, serial/device_id super-spine-disk), so the guest sees
/dev/disk/by-id/google-super-spine-disk. QEMU runs with -no-reboot: a guest reboot ends the
QEMU process and reboot() starts it again on the same overlay (which also picks up a grown disk).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import time
import weakref
from pathlib import Path
from types import TracebackType

import yaml

from tests.lab import recipe
from tests.lab.disks import check_port, free_port, make_blank_disk, port_in_use
from tests.lab.errors import LabError
from tests.lab.image import LabImage, ensure_image
from tests.lab.process import child_setup

DISK_NAME = "super-spine-disk"
HOST_ALIAS = "lab"
INVENTORY_HOST = recipe.HOSTNAME
MEMORY_MB = 1024
CPUS = 2
# TCG boots in ~25 s on an idle 2-core machine but took ~180 s at load average 7: be generous.
BOOT_TIMEOUT = float(os.environ.get("LAB_BOOT_TIMEOUT", "480"))
# Rarely, a TCG guest hangs before its root is mounted: no byte on the serial console, no
# write to its overlay, for good (a CI run saw 480 s of nothing while every other boot took
# ~22 s). A boot that shows no sign of life for this long is reset and tried again, as a
# stuck GCE VM would be; the hung attempt's serial log is kept as serial.stalled-<n>.log.
STALL_TIMEOUT = float(os.environ.get("LAB_STALL_TIMEOUT", "150"))
BOOT_ATTEMPTS = 3
REPO_ROOT = Path(__file__).resolve().parents[2]

_live: weakref.WeakSet[LabVM] = weakref.WeakSet()


class LabSSHError(LabError):
    """A command on the VM failed; keeps the CompletedProcess for inspection."""

    def __init__(self, message: str, details: str, result: subprocess.CompletedProcess[str]):
        super().__init__(message, details)
        self.result = result


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path.name}: not written)"
    return "\n".join(text.replace("\r", "").splitlines()[-lines:])


class LabVM:
    """One lab VM: a workdir with its overlay, logs, ssh_config and inventory.

    Two LabVMs with different workdirs (and different data disks) can run at once.
    persist=True lets QEMU outlive this Python process (the CLI's `up`); otherwise QEMU is
    killed when the process exits, whatever happens.
    """

    def __init__(self, workdir: Path, data_disk: Path, data_disk_size: str = "2G", *,
                 ssh_port: int | None = None, persist: bool = False,
                 boot_timeout: float = BOOT_TIMEOUT, stall_timeout: float = STALL_TIMEOUT,
                 metadata_url: str | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        # A metadata server (tests.lab.metadata) whose startup-script the guest runs at boot,
        # as GCE's guest agent does; None: no startup script. Read at each boot.
        self.metadata_url = metadata_url
        self.data_disk = Path(data_disk).absolute()
        self.data_disk_size = data_disk_size
        self.requested_port = ssh_port
        self.persist = persist
        self.boot_timeout = boot_timeout
        self.stall_timeout = stall_timeout
        if not self.data_disk.parent.is_dir():
            raise LabError(f"data disk directory does not exist: {self.data_disk.parent}")
        if self.data_disk.exists() and not self.data_disk.is_file():
            raise LabError(f"data disk is not a regular file: {self.data_disk}")
        if ssh_port is not None and not 0 < ssh_port < 65536:
            raise LabError(f"ssh port {ssh_port} is not a valid TCP port")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.image: LabImage | None = None
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.timings: dict[str, float] = {}
        self._load_state()
        _live.add(self)

    # ---- files -------------------------------------------------------------------------
    @property
    def overlay(self) -> Path:
        return self.workdir / "overlay.qcow2"

    @property
    def serial_log(self) -> Path:
        return self.workdir / "serial.log"

    @property
    def qemu_log(self) -> Path:
        return self.workdir / "qemu.log"

    @property
    def state_file(self) -> Path:
        return self.workdir / "vm.json"

    @property
    def ssh_config(self) -> Path:
        """ssh_config for this VM: `ssh -F <it> lab` (valid once booted)."""
        return self.workdir / "ssh_config"

    @property
    def inventory(self) -> Path:
        """Ansible YAML inventory for this VM (host super-spine-lab in group super_spine)."""
        return self.workdir / "inventory.yml"

    @property
    def monitor(self) -> Path:
        """The HMP monitor socket (kept short: unix socket paths are limited to 107 bytes)."""
        path = self.workdir / "monitor.sock"
        if len(str(path)) < 100:
            return path
        return Path("/tmp") / f"ssk-lab-{abs(hash(str(self.workdir))) % 10**10}.sock"

    # ---- state (lets a later process, e.g. `python -m tests.lab down`, find the VM) -----
    def _load_state(self) -> None:
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return
        pid = int(state.get("pid", 0))
        if pid and self._pid_is_ours(pid):
            self.pid = pid
            self.port = int(state["port"])

    def _save_state(self) -> None:
        self.state_file.write_text(json.dumps({
            "pid": self.pid, "port": self.port, "monitor": str(self.monitor),
            "data_disk": str(self.data_disk), "overlay": str(self.overlay),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, indent=2) + "\n")

    def _pid_is_ours(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return bool(cmdline) and b"qemu-system" in cmdline[0] and \
            str(self.overlay).encode() in b" ".join(cmdline)

    @property
    def running(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid is not None and self._pid_is_ours(self.pid)

    # ---- boot ----------------------------------------------------------------------------
    def boot(self, fresh: bool = True) -> LabVM:
        """Start the VM and wait for ssh. fresh=True: a new overlay (a new VM); False: same VM."""
        if self.running:
            raise LabError(f"lab VM in {self.workdir} is already running (pid {self.pid})")
        check_port(self.requested_port, "ssh")
        self.image = ensure_image()
        self.timings["image_setup"] = self.image.setup_seconds
        if fresh or not self.overlay.exists():
            self.overlay.unlink(missing_ok=True)
            self._run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(self.image.base),
                       "-F", "raw", str(self.overlay)])
        if not self.data_disk.exists():
            make_blank_disk(self.data_disk, self.data_disk_size)
        started = time.monotonic()
        self.timings["boot_retries"] = 0
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            try:
                self._launch_and_wait()
                break
            except _Stalled as stall:
                self.kill()
                kept = self.workdir / f"serial.stalled-{attempt}.log"
                with contextlib.suppress(OSError):
                    self.serial_log.replace(kept)
                if attempt == BOOT_ATTEMPTS:
                    raise LabError(f"lab VM hung at boot {BOOT_ATTEMPTS} times in a row "
                                   f"(no console output or disk write for {stall.seconds:.0f}s; "
                                   f"serial log: {kept})", f"--- serial log tail ---\n"
                                   f"{_tail(kept)}") from None
                self.timings["boot_retries"] = attempt
        self.timings["boot_to_ssh"] = time.monotonic() - started
        return self

    def _launch_and_wait(self) -> None:
        """Start QEMU and wait for ssh, on another free port if QEMU lost the race for one."""
        for attempt in range(4):
            # keep the port across reboots (ssh_config and testinfra args stay valid) if free
            reuse = attempt == 0 and self.port is not None and not port_in_use(self.port)
            self.port = self.requested_port or (self.port if reuse else free_port())
            try:
                self._launch()
                self._wait_for_ssh()
                return
            except _PortTaken:
                if self.requested_port is not None or attempt == 3:
                    raise LabError(f"ssh port {self.port} on 127.0.0.1 is already in use") from None

    def _launch(self) -> None:
        assert self.image is not None
        if self.serial_log.exists():
            self.serial_log.replace(self.workdir / "serial.prev.log")
        self.monitor.unlink(missing_ok=True)
        self._write_access_files()
        cmd = self.qemu_command()
        with self.qemu_log.open("wb") as log:
            log.write((shlex.join(cmd) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.workdir, start_new_session=True,
                preexec_fn=child_setup(self.persist),
            )
        self.pid = self.proc.pid
        self._save_state()

    def qemu_command(self) -> list[str]:
        """The QEMU command line (LAB.md's flags: TCG, q35, LABEL root, GCE-like data disk)."""
        assert self.image is not None and self.port is not None
        return [
            "qemu-system-x86_64", "-name", "super-spine-lab,debug-threads=on",
            "-accel", "tcg,thread=multi", "-cpu", "max", "-machine", "q35",
            "-m", str(MEMORY_MB), "-smp", str(CPUS),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
            "-append", self.kernel_cmdline(),
            "-drive", f"file={self.overlay},if=virtio,format=qcow2,discard=unmap",
            "-drive", f"file={self.data_disk},if=none,id=pd,format=raw,discard=unmap",
            "-device", "virtio-scsi-pci,id=scsi0",
            "-device", "scsi-hd,bus=scsi0.0,drive=pd,vendor=Google,product=PersistentDisk,"
                       f"serial={DISK_NAME},device_id={DISK_NAME}",
            "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.port}-:22",
            "-device", "virtio-net-pci,netdev=n0",
            "-device", "virtio-rng-pci",
            "-serial", f"file:{self.serial_log}",
            "-monitor", f"unix:{self.monitor},server=on,wait=off",
        ]

    def kernel_cmdline(self) -> str:
        """The recipe's command line, plus the metadata server the startup runner reads."""
        if not self.metadata_url:
            return recipe.KERNEL_CMDLINE
        if any(c.isspace() for c in self.metadata_url):
            raise LabError(f"metadata URL contains whitespace: {self.metadata_url!r}")
        return f"{recipe.KERNEL_CMDLINE} {recipe.METADATA_CMDLINE_KEY}={self.metadata_url}"

    def _write_access_files(self) -> None:
        assert self.image is not None and self.port is not None
        key = self.image.key
        self.ssh_config.write_text(
            f"Host {HOST_ALIAS} {INVENTORY_HOST} 127.0.0.1\n"
            f"  HostName 127.0.0.1\n  Port {self.port}\n  User root\n"
            f"  IdentityFile {key}\n  IdentitiesOnly yes\n"
            "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
            "  BatchMode yes\n  ConnectTimeout 10\n"
            "  ServerAliveInterval 5\n  ServerAliveCountMax 3\n"
            "  ControlMaster auto\n  ControlPersist 60s\n  ControlPath /tmp/ssk-lab-%C\n"
        )
        inventory = {"all": {"children": {"super_spine": {"hosts": {INVENTORY_HOST: {
            "ansible_host": "127.0.0.1",
            "ansible_port": self.port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(key),
            "ansible_python_interpreter": "/usr/bin/python3",
        }}}}}}
        self.inventory.write_text(
            "# Written by tests/lab for one lab VM; use with ANSIBLE_SSH_ARGS='-F "
            f"{self.ssh_config}'\n" + yaml.safe_dump(inventory, sort_keys=False))

    def _wait_for_ssh(self) -> None:
        """Wait for ssh; raise _Stalled if the guest shows no sign of life for stall_timeout."""
        now = time.monotonic()
        deadline = now + self.boot_timeout
        last_mark, last_change = self._sign_of_life(), now
        while (now := time.monotonic()) < deadline:
            if not self.running:
                log_text = _tail(self.qemu_log, 10)
                if "Could not set up host forwarding rule" in log_text:
                    raise _PortTaken()
                raise LabError(f"QEMU exited during boot (see {self.qemu_log})",
                               f"--- qemu.log ---\n{log_text}\n--- serial log tail ---\n"
                               f"{_tail(self.serial_log)}")
            banner = self._banner()
            if banner and self._ssh_ready():
                self._save_state()
                return
            mark = self._sign_of_life()
            if banner or mark != last_mark:
                last_mark, last_change = mark, now
            elif now - last_change > self.stall_timeout:
                raise _Stalled(now - last_change)
            time.sleep(1)
        self.kill()
        raise LabError(f"lab VM did not answer ssh within {self.boot_timeout:.0f}s "
                       f"(serial log: {self.serial_log})",
                       f"--- serial log tail ---\n{_tail(self.serial_log)}")

    def _ssh_ready(self) -> bool:
        try:
            return self.ssh("true", check=False, timeout=30).returncode == 0
        except LabError:  # a timeout while sshd (or the guest) is still busy booting
            self._close_ssh_master()
            return False

    def _sign_of_life(self) -> tuple[int, int]:
        """When the guest last wrote to its console or its root disk (a quiet boot prints
        nothing until the login prompt, but mounting the root writes to the overlay)."""
        marks = []
        for path in (self.serial_log, self.overlay):
            try:
                marks.append(path.stat().st_mtime_ns)
            except OSError:
                marks.append(0)
        return marks[0], marks[1]

    def _banner(self) -> bool:
        """slirp accepts connections before the guest listens: wait for sshd's banner."""
        try:
            with socket.create_connection(("127.0.0.1", self.port or 0), timeout=2) as sock:
                sock.settimeout(3)
                return sock.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    # ---- using it ------------------------------------------------------------------------
    def ssh(self, cmd: str, check: bool = True, timeout: float | None = 300,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a shell command on the VM as root; check=True raises LabSSHError on failure."""
        argv = ["ssh", "-F", str(self.ssh_config), HOST_ALIAS, cmd]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                    input=input, stdin=None if input is not None else
                                    subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"ssh command timed out after {timeout}s: {cmd}") from exc
        if check and result.returncode != 0:
            raise LabSSHError(
                f"command on the lab VM failed (exit {result.returncode}): {cmd}",
                f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}", result)
        return result

    def ssh_command(self) -> str:
        """What a human types to log in."""
        return f"ssh -F {self.ssh_config} {HOST_ALIAS}"

    def ansible_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for ansible-playbook against this VM (LAB.md: -F via ANSIBLE_SSH_ARGS)."""
        env = dict(os.environ if base is None else base)
        venv_bin = REPO_ROOT / ".venv" / "bin"
        env["PATH"] = f"{venv_bin}:{env.get('PATH', '/usr/bin:/bin')}"
        env["ANSIBLE_SSH_ARGS"] = f"-F {self.ssh_config}"
        env["ANSIBLE_HOST_KEY_CHECKING"] = "False"
        env.setdefault("ANSIBLE_PIPELINING", "True")
        env.setdefault("ANSIBLE_RETRY_FILES_ENABLED", "False")
        env.setdefault("ANSIBLE_NOCOLOR", "1")
        cfg = REPO_ROOT / "ansible" / "ansible.cfg"
        if cfg.exists():
            env.setdefault("ANSIBLE_CONFIG", str(cfg))
        return env

    def testinfra_args(self) -> list[str]:
        """pytest arguments that point testinfra at this VM."""
        return [f"--hosts=ssh://root@127.0.0.1:{self.port}", f"--ssh-config={self.ssh_config}"]

    # ---- stopping --------------------------------------------------------------------------
    def monitor_command(self, command: str, timeout: float = 5.0) -> str:
        """Send one HMP command (e.g. system_powerdown, info block) and return its output."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.monitor))
            out = b""
            with contextlib.suppress(TimeoutError):
                while b"(qemu)" not in out:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    out += chunk
            sock.sendall(command.encode() + b"\n")
            out = b""
            sock.settimeout(1.0)
            with contextlib.suppress(TimeoutError, OSError):
                while out.count(b"(qemu)") < 1:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    out += chunk
        return out.decode(errors="replace")

    def _close_ssh_master(self) -> None:
        if self.ssh_config.exists():
            subprocess.run(["ssh", "-F", str(self.ssh_config), "-O", "exit", HOST_ALIAS],
                           capture_output=True, timeout=10, check=False)

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                return True
            time.sleep(0.2)
        return not self.running

    def powerdown(self, timeout: float = 30) -> float:
        """ACPI power-off (as `gcloud compute instances stop`); kill after timeout. Returns secs."""
        started = time.monotonic()
        self._close_ssh_master()
        if self.running:
            with contextlib.suppress(OSError):
                self.monitor_command("system_powerdown")
            if not self._wait_exit(timeout):
                self.kill()
        self._reap()
        self.timings["powerdown"] = time.monotonic() - started
        return self.timings["powerdown"]

    def kill(self) -> None:
        """Pull the plug (a preemption without grace): SIGKILL QEMU."""
        self._close_ssh_master()
        pid = self.proc.pid if self.proc is not None else self.pid
        if pid is not None and self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_exit(10)
        self._reap()

    def _reap(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self.proc = None
        self.pid = None
        self.monitor.unlink(missing_ok=True)

    def reboot(self, timeout: float = 60) -> LabVM:
        """In-guest `systemctl reboot`, then the same VM boots again and answers ssh.

        QEMU runs with -no-reboot, so the guest's reset ends QEMU and we start it again on the
        same overlay: the guest shuts down cleanly, and a grown data disk shows its new size.
        """
        if not self.running:
            raise LabError("lab VM is not running: boot() it first")
        self.ssh("nohup sh -c 'sleep 1; systemctl reboot' >/dev/null 2>&1 &", check=False,
                 timeout=30)
        self._close_ssh_master()
        if not self._wait_exit(timeout):
            raise LabError(f"lab VM did not shut down within {timeout:.0f}s for reboot",
                           f"--- serial log tail ---\n{_tail(self.serial_log)}")
        self._reap()
        return self.boot(fresh=False)

    def __enter__(self) -> LabVM:
        if not self.running:
            self.boot()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.powerdown()

    def _run(self, cmd: list[str]) -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise LabError(f"{cmd[0]} failed: {proc.stderr.strip().splitlines()[-1:]}")


class _PortTaken(Exception):
    """QEMU lost the race for a port we picked; pick another."""


class _Stalled(Exception):
    """The guest showed no sign of life for `seconds`: reset it and boot again."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no sign of life for {seconds:.0f}s")
        self.seconds = seconds


@atexit.register
def _kill_leftovers() -> None:
    """Never leave a test's QEMU behind, even if a test forgot to power down."""
    for vm in list(_live):
        if not vm.persist and vm.proc is not None and vm.running:
            vm.kill()


__all__ = ["LabSSHError", "LabVM", "port_in_use"]
