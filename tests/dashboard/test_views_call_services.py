"""The dashboard is an edge: its views and forms change nothing themselves.

Every write goes through a service (which audits it), so no dashboard module may save,
delete or create a model row, nor write an audit event itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from audit import events

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"
WRITES = {"save", "delete", "bulk_create", "bulk_update", "get_or_create", "update_or_create"}
# Writing audit events (audit.chain.append, the audit.events functions) is for services only.
AUDIT_WRITERS = {"chain": {"append"},
                 "events": {name for name in dir(events) if name.islower() and name[0] != "_"}}
MODULES = sorted(p for p in DASHBOARD.rglob("*.py") if "migrations" not in p.parts)


def _writes(source: str) -> list[str]:
    """Return the calls in the source that write a row or an audit event directly."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name, owner = node.func.attr, node.func.value
        creates = name == "create" and isinstance(owner, ast.Attribute) and owner.attr == "objects"
        audits = isinstance(owner, ast.Name) and name in AUDIT_WRITERS.get(owner.id, ())
        if name in WRITES or creates or audits:
            found.append(f"line {node.lineno}: .{name}()")
    return found


def test_the_check_finds_a_direct_write():
    source = ("Partner.objects.create(name='x')\nuser.save()\nchain.append(actor='a')\n"
              "events.admin_change(action='x')\nrows.append(1)\nevents.filter(id=1)")
    assert _writes(source) == ["line 1: .create()", "line 2: .save()", "line 3: .append()",
                               "line 4: .admin_change()"]


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(DASHBOARD)))
def test_dashboard_module_writes_only_through_services(module: Path):
    assert _writes(module.read_text()) == []
