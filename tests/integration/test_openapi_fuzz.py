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
CONFIG = """[checks.positive_data_acceptance]
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
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "No issues found" in result.stdout, report
    assert "10 selected / 10 total" in result.stdout, report
    assert agent.running(), agent.output()
    assert agent.stop() == 0
    agent.assert_clean_logs()
