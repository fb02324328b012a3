"""`historyfs export` against the real API's limits: per-plan concurrency and audio without Content-Length.

The fake API refuses requests above the plan's limit (429 too_many_concurrent_requests) and can send
audio chunked, without Content-Length. An export to a folder and to S3 (moto) still ends with every
byte exact, no item failed, and the account's limit learned from the API's headers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from historyfs.fakeapi import Faults
from tests.integration.test_export_cli import Tenant, api_server, cli, expected_files, exported, tenant  # noqa: F401 - fixtures
from tests.integration.test_export_s3 import mirrored

CASES = {"plan free": Faults(plan="free"), "plan pro": Faults(plan="pro"), "chunked audio": Faults(chunked_audio=True)}


@pytest.mark.parametrize("case", CASES)
def test_export_to_a_folder_is_exact(case: str, tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    tenant.server.set_faults(CASES[case])
    try:
        r = cli("export", str(tmp_path / "dest"), "--tz", "UTC", "--json", "--jobs", "8")
    finally:
        tenant.server.set_faults(Faults())
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["uploaded"] == 24 and summary["failed"] == 0
    assert exported(tmp_path / "dest") == expected_files(tenant, tenant.items())
    if case.startswith("plan"):
        limit = CASES[case].concurrency_limit
        assert tenant.server.concurrency(tenant.lib)["peak"] <= limit  # the budget kept to the plan


@pytest.mark.s3
@pytest.mark.parametrize("case", CASES)
def test_export_to_s3_is_exact(case: str, tenant: Tenant, cli: Any, s3_client: Any, s3_bucket: str) -> None:
    tenant.server.set_faults(CASES[case])
    try:
        r = cli("export", f"s3://{s3_bucket}/mirror/2026", "--tz", "UTC", "--json")
    finally:
        tenant.server.set_faults(Faults())
    assert r.code == 0, r.err
    assert json.loads(r.out)["failed"] == 0
    assert mirrored(s3_client, s3_bucket) == expected_files(tenant, tenant.items())
