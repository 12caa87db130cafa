"""Task records (edgekd/tasks.py): every task the schema accepts has exactly one record, and every part a record
names imports and is callable, so no stage can meet a task it has no code for."""

from __future__ import annotations

import typing

import pytest

from edgekd import tasks
from edgekd.config.schema import Task
from edgekd.errors import EdgekdError

PARTS = ("export", "verify", "bench", "qat_check", "qat")


def test_every_schema_task_has_one_record() -> None:
    schema_tasks = set(typing.get_args(Task))
    assert set(tasks.BY_TASK) == schema_tasks
    served = [t for record in tasks.RECORDS for t in record.tasks]
    assert len(served) == len(set(served))


@pytest.mark.parametrize("record", tasks.RECORDS, ids=lambda r: r.family)
@pytest.mark.parametrize("part", PARTS)
def test_every_part_resolves_to_a_function(record: tasks.TaskRecord, part: str) -> None:
    assert callable(record.part(part))


def test_unknown_task_is_a_clear_error() -> None:
    with pytest.raises(EdgekdError) as info:
        tasks.for_task("object-detection")
    assert info.value.key == "model.task" and "causal-lm" in info.value.render()
