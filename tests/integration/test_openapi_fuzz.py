"""Schemathesis against a live agent, all checks: the OpenAPI document must be complete and true
(parameters, bodies, every status code, content types, Allow on 405, 401 without the token)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .conftest import VENV_BIN, AgentFactory, clean_env
from .tcp import tcp_config

EXAMPLES_PER_OPERATION = 200
FUZZ_TIMEOUT = 1500.0  # generous: the machine is shared; a run takes about a minute alone
# A schema-valid conditional write may lose its precondition: 412 is a right answer to it.
# Three answers the document cannot express are accepted in their documented form only: see
# schemathesis_hooks.py.
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
# Every warning but validation_mismatch, a heuristic ("this operation mostly answered 4xx"):
# most generated PUTs meet a critical record (the default class) with a `ttl`, the documented
# 400, and schemathesis judges that per phase, whatever its filter_failure hook dropped. What
# it stands in for is checked case by case anyway: positive_data_acceptance fails the run on
# any schema-valid request refused, except the documented answers of the hook.
WARNINGS = ", ".join(
    f'"{name}"'
    for name in (
        "missing_auth",
        "missing_test_data",
        "base_url_mismatch",
        "missing_deserializer",
        "unused_openapi_auth",
        "unsupported_regex",
        "method_not_allowed",
        "unmatched_filter",
        "unresolvable_reference",
        "rate_limited",
    )
)
CONFIG = f"""hooks = "{HOOKS}"
warnings = [{WARNINGS}]

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]
"""


def test_schemathesis_all_checks_pass(agents: AgentFactory, workdir: Path) -> None:
    api, port, token = tcp_config(workdir)
    agent = agents.new(api=api, max_value_size="64KB").start()
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    result = subprocess.run(
        [
            str(VENV_BIN / "schemathesis"),
            "--config-file",
            str(config),
            "run",
            f"http://127.0.0.1:{port}/v1/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--workers",
            "2",
            "--no-color",
        ],
        cwd=workdir,  # its .hypothesis cache stays out of the repository
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=FUZZ_TIMEOUT,
        check=False,
    )
    # The failures section without its reproducing curl lines (each can be 70 kB), so every
    # failure shows in the assertion, not only the first.
    start = result.stdout.find("FAILURES")
    failures = result.stdout[start:] if start >= 0 else ""
    shown = [line[:300] for line in failures.splitlines() if "curl " not in line]
    report = "\n".join(shown)[:20000] + result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "No issues found" in result.stdout, report
    assert "13 selected / 13 total" in result.stdout, report
    assert agent.running(), agent.output()
    assert agent.stop() == 0
    agent.assert_clean_logs()
