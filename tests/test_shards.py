"""Sharded evaluation for schedulers (issue 39 item 3): `run --shard I/N --cache-dir C` does only its slice into the
shared cache and writes no table; `--assemble-only` refuses, naming the shard, while a slice is missing; once every
shard finished, the assembled table is the one-process table byte for byte (timings aside)."""

import pandas as pd
import pytest

from benchmarks.cli import main
from benchmarks.reporting.writers import MEASURED_COLUMNS
from benchmarks.run.shards import Shard, owners, parse_shard

SUITE = """
name = "shards"
models = ["reconstruction:vae-tiny", "dit-tiny"]
prompts = "world"
per_kind = 1
prompt_limit = 3
batch = 1
evaluators = ["world_colour_shape", "color", "compute"]
[sampling]
frames = 9
steps = [1, 1, 1]
"""


def test_assignment_is_balanced_deterministic_and_covers_every_item():
    keys = [f"{i:032x}"[::-1] for i in range(11)]
    for count in (1, 2, 3, 11, 20):
        owner = owners(keys, count)
        assert owner == owners(list(keys), count)   # the same on every machine: a function of the keys alone
        sizes = [owner.count(i) for i in range(count)]
        assert sum(sizes) == 11 and max(sizes) - min(sizes) <= 1
    assert owners(keys, 2) != [0] * 11
    assert parse_shard("1/4") == Shard(1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(Exception, match="I/N"):
            parse_shard(bad)


def test_shards_then_assembly_give_the_one_process_table(tmp_path, capsys):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    run = ["run", "--suite", str(suite)]
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main([*run, "--out", str(tmp_path / "one"), "--no-cache"]) == 0
    reference = (tmp_path / "one" / "per_video.csv").read_bytes()

    assert main([*run, "--out", str(tmp_path / "asm"), "--shard", "0/2"]) == 2   # no shared cache: refused
    assert "--shard 0/2 needs --cache-dir" in capsys.readouterr().err
    capsys.readouterr()
    assert main([*run, "--out", str(tmp_path / "asm"), "--shard", "0/2", *cache]) == 0
    said = capsys.readouterr().out
    assert "shard 0/2: 3 of 6 work items" in said and "no table written" in said
    assert not (tmp_path / "asm").exists()   # a shard writes only into the cache

    # shard 1 never ran: the assembly refuses in one line naming it, and writes nothing
    assert main([*run, "--out", str(tmp_path / "asm"), "--assemble-only", *cache]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "3 of 6 work items are not in the cache" in err, err
    assert "shard 1/2 (never started): 3 items" in err and "shard 0/2" not in err, err
    assert not (tmp_path / "asm" / "per_video.csv").exists()

    assert main([*run, "--out", str(tmp_path / "asm"), "--shard", "1/2", *cache]) == 0
    capsys.readouterr()
    assert main([*run, "--out", str(tmp_path / "asm"), "--assemble-only", *cache]) == 0
    assert "0 generated" in capsys.readouterr().out
    assert (tmp_path / "asm" / "per_video.csv").read_bytes() == reference
    one, asm = (pd.read_csv(tmp_path / d / "summary.csv") for d in ("one", "asm"))
    timing = [c for c in MEASURED_COLUMNS if c in one.columns]
    assert len(one) == 2 and one["model"].tolist() == asm["model"].tolist()
    pd.testing.assert_frame_equal(one.drop(columns=timing), asm.drop(columns=timing))
