"""`python -m tests.lab up|down|status|ssh`: the local lab (`make lab`, `make lab-down`).

`up` builds or takes the cached image, boots a new VM (fresh overlay) with the persistent data
disk kept in .lab/, serves the lab git remote, runs ansible/site.yml twice (the second run must
change nothing), runs the testinfra checks in tests/hosts/, prints how to reach the agent and a
timing table, and leaves the VM running. `down` powers it off over ACPI.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.disks import make_blank_disk
from tests.lab.errors import LabError
from tests.lab.gitremote import LabGitRemote, stop_pid
from tests.lab.image import ensure_image
from tests.lab.vm import REPO_ROOT, LabVM

LAB_DIR = REPO_ROOT / ".lab"
STATE_FILE = LAB_DIR / "state.json"
DATA_DISK = LAB_DIR / "data-disk.img"
VM_DIR = LAB_DIR / "vm"
GIT_DIR = LAB_DIR / "git"
LOG_DIR = LAB_DIR / "logs"
PLAYBOOK = REPO_ROOT / "ansible" / "site.yml"
# LAB_HOST_CHECKS points `up` at another directory of testinfra checks (harness development).
HOST_CHECKS = Path(os.environ.get("LAB_HOST_CHECKS", REPO_ROOT / "tests" / "hosts"))
VENV_BIN = REPO_ROOT / ".venv" / "bin"
AGENT = "/opt/super-spine/venv/bin/spine-agent"
AGENT_CONFIG = "/etc/super-spine/agent.yaml"
RECAP = re.compile(r"^\S+\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def say(msg: str) -> None:
    print(f"lab: {msg}", flush=True)


def load_state() -> dict[str, object]:
    try:
        return dict(json.loads(STATE_FILE.read_text()))
    except (OSError, ValueError):
        return {}


def save_state(state: dict[str, object]) -> None:
    LAB_DIR.mkdir(exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(STATE_FILE)


def lab_vm(disk_size: str = "4G") -> LabVM:
    return LabVM(VM_DIR, DATA_DISK, disk_size, persist=True)


@dataclass
class Timings:
    """What `up` measured, in seconds; printed as a table and kept in state.json."""

    rows: list[tuple[str, float, str]] = field(default_factory=list)

    def add(self, name: str, seconds: float, note: str = "") -> None:
        self.rows.append((name, seconds, note))

    def table(self) -> str:
        width = max(len(name) for name, _, _ in self.rows)
        lines = [f"  {'step'.ljust(width)}  seconds  note", f"  {'-' * width}  -------  ----"]
        lines += [f"  {name.ljust(width)}  {secs:7.1f}  {note}" for name, secs, note in self.rows]
        return "\n".join(lines)


def check_inputs() -> None:
    """Fail before booting anything when the playbook or the host checks are not there."""
    missing = []
    if not PLAYBOOK.is_file():
        missing.append(str(PLAYBOOK.relative_to(REPO_ROOT)))
    if not any(HOST_CHECKS.glob("test_*.py")):
        missing.append(f"{HOST_CHECKS}/test_*.py")
    if not (VENV_BIN / "ansible-playbook").exists():
        missing.append(".venv/bin/ansible-playbook (run: bash scripts/setup.sh)")
    if missing:
        raise LabError(f"cannot provision the lab VM, missing: {', '.join(missing)}")


def stop_previous(state: dict[str, object]) -> None:
    vm = lab_vm()
    if vm.running:
        say(f"powering off the previous lab VM (pid {vm.pid}): every `up` is a new VM")
        vm.powerdown()
    git_pid = state.get("git_pid")
    if isinstance(git_pid, int):
        stop_pid(git_pid)


def run_logged(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a command with its output on the terminal and in a log file."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out: list[str] = []
    with log.open("w") as fh:
        fh.write(" ".join(cmd) + "\n")
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            fh.write(line)
            out.append(line)
        rc = proc.wait()
    sys.stdout.flush()
    return rc, "".join(out)


def run_playbook(vm: LabVM, remote: LabGitRemote, log: Path) -> tuple[int, int, float]:
    """ansible-playbook site.yml with the lab's variables; returns (rc, changed, seconds)."""
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(vm.inventory), str(PLAYBOOK),
           "-e", f"spine_git_remote={remote.url}"]
    started = time.monotonic()
    rc, out = run_logged(cmd, log, env=vm.ansible_env())
    seconds = time.monotonic() - started
    recap = RECAP.findall(out)
    changed = sum(int(r[1]) for r in recap) if recap else -1
    return rc, changed, seconds


def cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    check_inputs()
    LAB_DIR.mkdir(exist_ok=True)
    state = load_state()
    stop_previous(state)
    timings = Timings()

    image = ensure_image(progress=True)
    if image.cached:
        say(f"using the cached VM image {image.directory}")
        timings.add("image (cached)", image.setup_seconds,
                    f"cold build took {image.build_seconds:.0f}s")
    else:
        timings.add("image build (cold)", image.setup_seconds, "debootstrap + configure + zstd")

    if args.fresh_disk and DATA_DISK.exists():
        say(f"--fresh-disk: replacing {DATA_DISK} with a blank {args.disk_size} disk")
        make_blank_disk(DATA_DISK, args.disk_size, overwrite=True)
    elif not DATA_DISK.exists():
        say(f"creating a blank {args.disk_size} data disk: {DATA_DISK}")
        make_blank_disk(DATA_DISK, args.disk_size)
    else:
        say(f"reusing the data disk {DATA_DISK} (--fresh-disk for a blank one)")

    remote = LabGitRemote(GIT_DIR, persist=True).start()
    state = {"git_pid": remote.pid, "git_port": remote.port, "git_url": remote.url,
             "git_path": str(remote.path)}
    save_state(state)
    say(f"git remote for the VM: {remote.url} (host: {remote.path})")

    vm = lab_vm(args.disk_size)
    say("booting a new VM (fresh overlay) under QEMU TCG")
    vm.boot(fresh=True)
    timings.add("boot to ssh", vm.timings["boot_to_ssh"], "QEMU TCG, fresh overlay")
    state.update({"vm_pid": vm.pid, "ssh_port": vm.port, "ssh_config": str(vm.ssh_config),
                  "inventory": str(vm.inventory), "booted_at": time.time()})
    save_state(state)
    say(f"VM up on 127.0.0.1:{vm.port} after {vm.timings['boot_to_ssh']:.0f}s")

    ok = True
    say("running ansible/site.yml (fresh VM)")
    rc, changed, secs = run_playbook(vm, remote, LOG_DIR / "playbook-1.log")
    timings.add("playbook (fresh VM)", secs, f"rc={rc} changed={changed}")
    if rc != 0:
        ok = False
        say(f"the playbook failed (rc={rc}); log: {LOG_DIR / 'playbook-1.log'}")
    else:
        say("re-running ansible/site.yml: it must change nothing")
        rc, changed, secs = run_playbook(vm, remote, LOG_DIR / "playbook-2.log")
        timings.add("playbook re-run (idempotent)", secs, f"rc={rc} changed={changed}")
        if rc != 0 or changed != 0:
            ok = False
            say(f"the re-run was not idempotent (rc={rc}, changed={changed})")
        say("running the testinfra checks in tests/hosts/")
        t0 = time.monotonic()
        rc, _ = run_logged([str(VENV_BIN / "pytest"), str(HOST_CHECKS), "-q", "-p",
                            "no:cacheprovider", *vm.testinfra_args()],
                           LOG_DIR / "testinfra.log", env=vm.ansible_env())
        timings.add("testinfra", time.monotonic() - t0, f"rc={rc}")
        ok = ok and rc == 0

    timings.add("total", time.monotonic() - started)
    state["timings"] = timings.rows
    state["ok"] = ok
    save_state(state)
    print()
    print(reach_text(vm, remote))
    print("\nTimings (measured on this machine):")
    print(timings.table())
    print("\nThe VM keeps running: `make lab-down` powers it off (ACPI).")
    if not ok:
        say("FAILED: see the output above and the logs in .lab/logs/")
    return 0 if ok else 1


def reach_text(vm: LabVM, remote: LabGitRemote | None = None) -> str:
    lines = [
        "Reach the lab VM:",
        f"  ssh:          {vm.ssh_command()}        (or: python -m tests.lab ssh)",
        f"  agent status: {vm.ssh_command()} {AGENT} status --config {AGENT_CONFIG}",
        f"  put/get:      {vm.ssh_command()} {AGENT} put agents a1 '{{\"x\":1}}' --config "
        f"{AGENT_CONFIG}",
        f"  ansible:      ANSIBLE_SSH_ARGS='-F {vm.ssh_config}' .venv/bin/ansible-playbook "
        f"-i {vm.inventory} ansible/site.yml",
        f"  testinfra:    .venv/bin/pytest tests/hosts {' '.join(vm.testinfra_args())}",
        f"  serial log:   {vm.serial_log}",
    ]
    if remote is not None:
        lines.append(f"  git backup:   git --git-dir={remote.path} log --all --oneline "
                     f"(the VM pushes to {remote.url})")
    return "\n".join(lines)


def cmd_down(args: argparse.Namespace) -> int:
    state = load_state()
    vm = lab_vm()
    if vm.running:
        secs = vm.powerdown(timeout=args.timeout)
        say(f"lab VM powered off in {secs:.1f}s")
    else:
        say("no lab VM is running")
    git_pid = state.get("git_pid")
    if isinstance(git_pid, int):
        stop_pid(git_pid)
        say("lab git remote stopped")
    state.pop("git_pid", None)
    state.pop("vm_pid", None)
    if state:
        save_state(state)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = load_state()
    vm = lab_vm()
    if not vm.running:
        say("no lab VM is running (`make lab` starts one)")
        return 3
    say(f"lab VM running: pid {vm.pid}, ssh on 127.0.0.1:{vm.port}")
    print(reach_text(vm))
    result = vm.ssh(f"{AGENT} status --config {AGENT_CONFIG}", check=False, timeout=60)
    print(f"\nspine-agent status (exit {result.returncode}):")
    print((result.stdout + result.stderr).rstrip())
    rows = state.get("timings")
    if isinstance(rows, list) and rows:
        timings = Timings([(str(r[0]), float(r[1]), str(r[2])) for r in rows])
        print("\nTimings of the last `up`:")
        print(timings.table())
    return 0


def cmd_ssh(args: argparse.Namespace) -> int:
    vm = lab_vm()
    if not vm.running:
        raise LabError("no lab VM is running (`make lab` starts one)")
    os.execvp("ssh", ["ssh", "-F", str(vm.ssh_config), "-o", "BatchMode=no", "lab",
                      *args.command])
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    up = sub.add_parser("up", help="build/boot a new lab VM, provision it, check it")
    up.add_argument("--fresh-disk", action="store_true",
                    help="start from a blank data disk (DESTROYS .lab/data-disk.img)")
    up.add_argument("--disk-size", default="4G", help="size of a new data disk (default 4G)")
    down = sub.add_parser("down", help="power the lab VM off (ACPI) and stop the git remote")
    down.add_argument("--timeout", type=float, default=30)
    sub.add_parser("status", help="is the lab VM running; the agent's status")
    ssh = sub.add_parser("ssh", help="ssh into the lab VM (optionally run a command)")
    ssh.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    handler = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "ssh": cmd_ssh}[args.verb]
    try:
        return handler(args)
    except LabError as err:
        print(f"lab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lab: interrupted (the VM, if booted, keeps running: `make lab-down`)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
