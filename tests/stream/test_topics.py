"""Topic ids and names are validated with errors that say which field is wrong."""

from __future__ import annotations

import pytest

from labctl.interfaces.errors import ConfigError
from labctl.stream.topics import Topics, check_id


def test_topic_tree() -> None:
    t = Topics("delft", "alice")
    assert t.state == "labctl/v1/delft/alice/$state"
    assert t.meta == "labctl/v1/delft/alice/$meta"
    assert t.run("r-1", "primary") == "labctl/v1/delft/alice/run/r-1/primary"
    assert t.tele("laser-1", "power_mw") == "labctl/v1/delft/alice/tele/laser-1/power_mw"
    assert t.link("alice-bob", "qber") == "labctl/v1/delft/alice/link/alice-bob/qber"
    assert t.cmd_reply("pause") == "labctl/v1/delft/alice/cmd/pause/reply"
    assert t.parse(t.run("r-1", "qkd")) == ("run", "r-1", "qkd")


@pytest.mark.parametrize("bad", ["", "Alice", "a_b", "a/b", "a+", "#", "-a", "a-", "x" * 65, "é"])
def test_bad_ids_are_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_id(bad, "node")
    assert info.value.field == "node"
    with pytest.raises(ConfigError):
        Topics("lab", bad)


def test_bad_names_are_refused() -> None:
    t = Topics("lab", "node")
    with pytest.raises(ConfigError, match="quantity"):
        t.tele("laser", "Power")
    with pytest.raises(ConfigError, match="run_id"):
        t.run("Run 1", "primary")
    with pytest.raises(ValueError, match="not under"):
        t.parse("labctl/v1/other/node/$state")
