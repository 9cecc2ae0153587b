"""``describe_config`` asks again while a just-created topic is still unknown to the broker that answers, and
raises anything else at once (no broker: an admin client that answers from a script)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from pipeline.kafka import topics as t


class _Entry:
    def __init__(self, value: str) -> None:
        self.value = value


class ScriptedAdmin:
    """Answers describe_configs with the next item of ``answers``: an exception to raise, or a config dict."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls = 0

    def describe_configs(self, resources: list[Any], request_timeout: float) -> dict[Any, Future[Any]]:
        self.calls += 1
        answer = self.answers.pop(0)
        future: Future[Any] = Future()
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result({k: _Entry(v) for k, v in answer.items()})
        return {resources[0]: future}


def unknown() -> KafkaException:
    return KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))


def test_an_unknown_topic_is_asked_again_until_the_broker_knows_it() -> None:
    admin = ScriptedAdmin([unknown(), unknown(), {"cleanup.policy": "compact"}])
    assert t.describe_config(admin, "runs") == {"cleanup.policy": "compact"}  # type: ignore[arg-type]
    assert admin.calls == 3


def test_a_topic_still_unknown_after_the_grace_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(t, "UNKNOWN_TOPIC_GRACE_S", 0.25)
    admin = ScriptedAdmin([unknown() for _ in range(50)])
    with pytest.raises(KafkaException):
        t.describe_config(admin, "runs")  # type: ignore[arg-type]
    assert 2 <= admin.calls < 10


def test_other_errors_are_raised_at_once() -> None:
    admin = ScriptedAdmin([KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)), {}])
    with pytest.raises(KafkaException):
        t.describe_config(admin, "runs")  # type: ignore[arg-type]
    assert admin.calls == 1
