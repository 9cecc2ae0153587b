"""One name per service: the run owner is ``run-owner`` everywhere; its old word still works, with a warning."""

from __future__ import annotations

from typer.testing import CliRunner

from pipeline.cli import SERVICES, app
from pipeline.config import Settings
from pipeline.ops.groups import SERVICE_TOPICS, current_name, group_of
from pipeline.run_owner.owner import RunOwner


def test_the_run_owner_has_one_name() -> None:
    assert "run-owner" in SERVICES and "run-owner" in SERVICE_TOPICS and RunOwner.name == "run-owner"
    assert group_of(Settings(topic_prefix="x."), "run-owner") == "x.pipeline-run-owner"


def test_the_old_word_is_accepted_with_a_deprecation_line() -> None:
    assert current_name("executor") == ("run-owner", "'executor' is deprecated: the service is now called 'run-owner'")
    assert current_name("matcher") == ("matcher", None)
    result = CliRunner().invoke(app, ["run", "executor"])
    assert result.exit_code == 2
    assert "deprecated" in result.output and "run-owner needs --app" in result.output
