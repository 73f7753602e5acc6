"""wmnet sweep: expansion, validation, the local pool and Ray, resume after kill -9, the table, plots."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from test_checkpoint import assert_same_files  # the project's bitwise comparison of run folders

from wmnet.cli import cli
from wmnet.config import load_config
from wmnet.errors import WmnetError
from wmnet.sweep.results import epoch_columns, flatten
from wmnet.sweep.runner import run_sweep
from wmnet.sweep.spec import parse_sweep

TINY = {"populations.E.size": 80, "populations.I.size": 20, "duration": 30, "device": "cpu", "engine": "sparse"}
WMNET = [sys.executable, "-c", "from wmnet.cli import main; main()"]


def write_sweep(path: Path, **parts: Any) -> Path:
    path.write_text(yaml.safe_dump(parts, sort_keys=False))
    return path


def single_run(tmp: Path, name: str, overrides: list[str], base: Path | None = None) -> Path:
    """What `wmnet run BASE --set ... --out DIR --no-plot --quiet` writes (in this process)."""
    out = tmp / "single" / name
    args = [
        "run",
        *([str(base)] if base else []),
        *(a for o in overrides for a in ("--set", o)),
        "--out",
        str(out),
        "--no-plot",
        "--quiet",
    ]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out


def point_dirs(out: Path) -> list[Path]:
    return sorted((out / "points").iterdir())


# --- expansion and validation (no run) ---------------------------------------------------------


def test_grid_zip_random_and_seeds_expand_in_order() -> None:
    spec = parse_sweep(
        {
            "set": {"duration": 20},
            "grid": {"stp.U": [0.1, 0.2], "projections.E->E.J_p": [0.3, 0.4]},
            "zip": {"background.E.mean": [1.0, 1.5], "background.E.std": [0.5, 1.0]},
            "random": {
                "n": 3,
                "uniform": {"stp.tau_rec": [100, 300]},
                "log_uniform": {"plasticity.alpha": [1e-3, 1e-1]},
            },
            "seed": 7,
            "seeds": [0, 5],
        }
    )
    points = spec.points()
    assert len(points) == 2 * 2 * 2 * 3 * 2
    assert [p.index for p in points] == list(range(len(points)))
    # The last part varies fastest: seeds, then random, zip, grid (in key order).
    assert [p.seed for p in points[:4]] == [0, 5, 0, 5]
    assert points[0].params["stp.U"] == 0.1 and points[-1].params["stp.U"] == 0.2
    assert points[0].params["projections.E->E.J_p"] == 0.3 and points[12].params["projections.E->E.J_p"] == 0.4
    zipped = {(p.params["background.E.mean"], p.params["background.E.std"]) for p in points}
    assert zipped == {(1.0, 0.5), (1.5, 1.0)}  # varied together, never crossed
    draws = [(p.params["stp.tau_rec"], p.params["plasticity.alpha"]) for p in points[:6:2]]
    assert len(set(draws)) == 3
    assert all(100 <= u <= 300 and 1e-3 <= a <= 1e-1 for u, a in draws)
    # From the sweep's seed: the same draws again, other draws with another seed.
    assert [
        p.params
        for p in parse_sweep(
            {
                "random": {
                    "n": 3,
                    "uniform": {"stp.tau_rec": [100, 300]},
                    "log_uniform": {"plasticity.alpha": [1e-3, 1e-1]},
                },
                "seed": 7,
            }
        ).points()
    ] == [{"stp.tau_rec": u, "plasticity.alpha": a} for u, a in draws]
    other = parse_sweep({"random": {"n": 3, "uniform": {"stp.tau_rec": [100, 300]}}, "seed": 8}).points()
    assert [p.params["stp.tau_rec"] for p in other] != [u for u, _ in draws]
    # Overrides as --set writes them: set, then swept values, then the seed.
    assert points[1].overrides(spec.fixed) == [
        "duration=20",
        "stp.U=0.1",
        "projections.E->E.J_p=0.3",
        "background.E.mean=1.0",
        "background.E.std=0.5",
        f"stp.tau_rec={draws[0][0]}",
        f"plasticity.alpha={draws[0][1]}",
        "seed=5",
    ]
    assert points[1].name.startswith("p0001_stp.U=0.1,projections.E-_E.J_p=0.3,background.E.mean=1,")
    assert points[1].name.endswith(",seed=5")


def test_log_uniform_draws_are_uniform_in_log() -> None:
    pts = parse_sweep({"random": {"n": 400, "log_uniform": {"stp.U": [1e-4, 1.0]}}, "seed": 3}).points()
    logs = np.log10([p.params["stp.U"] for p in pts])
    assert logs.min() >= -4 and logs.max() <= 0
    # Each decade holds about a quarter of the draws (a linear-uniform draw would put ~90% in the last).
    counts = np.histogram(logs, bins=[-4, -3, -2, -1, 0])[0]
    assert counts.min() > 60 and counts.max() < 140


def test_no_grid_gives_one_point_per_seed_and_plain_names() -> None:
    pts = parse_sweep({"seeds": [3, 4]}).points()
    assert [(p.params, p.seed, p.name) for p in pts] == [({}, 3, "p0000_seed=3"), ({}, 4, "p0001_seed=4")]
    assert [p.name for p in parse_sweep({}).points()] == ["p0000"]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"grid": {"stp.U": [0.1]}, "gird": {}}, "gird: unknown key"),
        ({"zip": {"stp.U": [0.1, 0.2], "stp.tau_rec": [100]}}, "zip: the lists must have one length"),
        ({"grid": {"stp.U": []}}, "grid.stp.U: expected a non-empty list"),
        ({"grid": {"stp.U": [0.1]}, "zip": {"stp.U": [0.2]}}, "stp.U is swept twice"),
        ({"random": {"n": 2, "log_uniform": {"stp.U": [0, 1]}}}, "log-uniform range needs low > 0"),
        ({"random": {"n": 2}}, "no uniform or log_uniform ranges"),
        ({"seeds": [1, 1]}, "a seed is listed twice"),
        ({"grid": {"seed": [1, 2]}}, "sweep seeds with `seeds"),
    ],
)
def test_bad_sweep_files_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(WmnetError, match=re.escape(message)):
        parse_sweep(data, "s.yaml")


def test_every_point_is_validated_before_anything_is_written(tmp_path: Path) -> None:
    """A bad value in one point (and an unknown key) stops the sweep naming key and point; no folder."""
    out = tmp_path / "sweep"
    bad_value = write_sweep(tmp_path / "v.yaml", set=TINY, grid={"stp.U": [0.1, 0.2, -3.0]}, seeds=[0, 1])
    with pytest.raises(WmnetError) as e:
        run_sweep(bad_value, out, progress=False)
    msg = str(e.value)
    assert "point p0004_stp.U=-3,seed=0" in msg and "stp.U" in msg and "\n" not in msg
    assert not out.exists()
    unknown = write_sweep(tmp_path / "k.yaml", set=TINY, grid={"stp.Ux": [0.1]})
    res = subprocess.run(
        [*WMNET, "sweep", str(unknown), "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2 and res.stderr.startswith("error: ") and "stp.Ux: unknown key" in res.stderr
    assert "point p0000_stp.Ux=0.1" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_flatten_and_epoch_columns(tmp_path: Path) -> None:
    assert flatten({"a": {"b": 1, "c": {"d": 2.5}}, "e": "text", "f": None}, "summary") == {
        "summary.a.b": 1,
        "summary.a.c.d": 2.5,
        "summary.f": pytest.approx(float("nan"), nan_ok=True),
    }
    (tmp_path / "epoch_rates.tsv").write_text(
        "onset\ttrial_type\trate_hz_E\trate_hz_P1\n0\trest\t1.5\t0\n0.1\tcue\t2\t30.25\n"
    )
    assert epoch_columns(tmp_path) == {
        "epoch.0.rest.rate_hz.E": 1.5,
        "epoch.0.rest.rate_hz.P1": 0.0,
        "epoch.1.cue.rate_hz.E": 2.0,
        "epoch.1.cue.rate_hz.P1": 30.25,
    }


# --- running --------------------------------------------------------------------------------------

PROTOCOL = {
    "stimulus": {"kind": "background"},
    "groups": {"prototypes": {"count": 2, "fraction": 0.1}},
    "protocol": {
        "initial_rest": 10,
        "epochs": [
            {
                "block": "train",
                "groups": ["P1", "P2"],
                "epochs": [
                    {
                        "name": "cue",
                        "duration": 10,
                        "stimulus": {"kind": "selective", "group": "$group", "contrast_E": 1.5},
                    },
                    {"name": "delay", "duration": 10},
                ],
            }
        ],
    },
}


def test_failing_point_is_recorded_while_the_others_finish_and_the_table_matches_the_folders(tmp_path: Path) -> None:
    """A protocol sweep from a base file: one point blows up (NaN), the others complete; every
    column of the table against run.json, epoch_rates.tsv and the swept values; rerunning skips
    the complete points and reruns only the failed one; status and plots."""
    base = tmp_path / "base.yaml"
    base.write_text(
        yaml.safe_dump({"populations": {"E": {"size": 80}, "I": {"size": 20}}, "device": "cpu", **PROTOCOL})
    )
    sweep = write_sweep(
        tmp_path / "s.yaml",
        base="base.yaml",
        grid={"background.E.mean": [1.45, 1.0e39], "stp.U": [0.1, 0.3]},
        seeds=[0, 1],
    )
    out = tmp_path / "sweep"
    df = run_sweep(sweep, out, workers=2, progress=False)
    assert len(df) == 8 and set(df["status"]) == {"complete", "failed"}
    failed = df[df["status"] == "failed"]
    assert (failed["background.E.mean"] == 1.0e39).all() and len(failed) == 4
    assert failed["error"].str.contains("numerical blow-up").all()
    assert not failed["error"].str.contains("\n").any()
    assert pd.read_parquet(out / "results.parquet").equals(df)
    assert list(df.columns[:5]) == ["point", "background.E.mean", "stp.U", "seed", "status"]
    for _, row in df.iterrows():
        folder = out / "points" / row["point"]
        info = json.loads((folder / "run.json").read_text())
        cfg = load_config(folder / "config.yaml")
        assert (cfg.background.E.mean, cfg.stp.U, cfg.seed) == (row["background.E.mean"], row["stp.U"], row["seed"])
        assert row["wall_simulate_s"] == info["wall_seconds"]["simulate"]
        assert row["wall_s"] > row["wall_simulate_s"] > 0 and row["numba_compiled"] == 0  # the warm-up compiled
        for key, value in flatten(info["summary"], "summary").items():
            assert row[key] == value or (math.isnan(value) and math.isnan(row[key])), key
        if row["status"] == "complete":
            with open(folder / "epoch_rates.tsv") as fh:
                lines = [line.rstrip("\n").split("\t") for line in fh]
            head, rows = lines[0], lines[1:]
            assert len(rows) == 5  # rest, then cue/delay for P1 and P2
            for i, r in enumerate(rows):
                for g in ("E", "I", "P1", "P2", "nonselective"):
                    col = f"epoch.{i}.{r[head.index('trial_type')]}.rate_hz.{g}"
                    assert row[col] == float(r[head.index(f"rate_hz_{g}")]), col
    # One complete point is bitwise what `wmnet run base.yaml --set ...` writes.
    p = df[df["status"] == "complete"].iloc[0]
    ref = single_run(
        tmp_path,
        "ref",
        [f"background.E.mean={p['background.E.mean']}", f"stp.U={p['stp.U']}", f"seed={p['seed']}"],
        base,
    )
    assert_same_files(ref, out / "points" / p["point"])
    assert (ref / "config.yaml").read_text() == (out / "points" / p["point"] / "config.yaml").read_text()
    # Rerun: only the failed points run again (and fail again); the complete ones are untouched.
    stamps = {d.name: (d / "run.json").stat().st_mtime_ns for d in point_dirs(out)}
    res = subprocess.run(
        [*WMNET, "sweep", str(sweep), "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 1, res.stderr
    assert "8 points: 4 complete, 4 failed" in res.stdout
    again = {d.name: (d / "run.json").stat().st_mtime_ns for d in point_dirs(out)}
    assert {n for n in stamps if stamps[n] != again[n]} == set(failed["point"])
    status = CliRunner().invoke(cli, ["sweep", "status", str(out)])
    assert status.exit_code == 0 and "4 complete, 4 failed" in status.output
    assert status.output.count("failed p") == 4 and "numerical blow-up" in status.output
    # Plots: a line over stp.U (seeds as error bars, a line per background mean), a heatmap over both.
    line = CliRunner().invoke(
        cli,
        ["sweep", "plot", str(out), "--x", "stp.U", "--metric", "summary.populations.E.rate_hz"],
        catch_exceptions=False,
    )
    heat = CliRunner().invoke(
        cli,
        ["sweep", "plot", str(out), "--x", "stp.U", "--y", "seed", "--metric", "epoch.1.cue.rate_hz.P1"],
        catch_exceptions=False,
    )
    for plotted in (line, heat):
        assert plotted.exit_code == 0, plotted.output
        png = Path(plotted.output.split("figure: ")[1].strip())
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    bad = CliRunner().invoke(cli, ["sweep", "plot", str(out), "--x", "stp.Ux", "--metric", "seed"])
    assert bad.exit_code != 0 and "--x stp.Ux: no such column" in str(bad.exception)


def test_a_point_too_big_for_memory_fails_with_its_reason_while_the_other_completes(tmp_path: Path) -> None:
    """Out of memory: the point's estimated footprint is refused before it allocates (one line
    with both numbers), as `wmnet run` does; the other point completes."""
    sweep = write_sweep(
        tmp_path / "s.yaml",
        set={k: v for k, v in TINY.items() if k != "populations.E.size"},
        grid={"populations.E.size": [80, 10_000_000]},
    )
    df = run_sweep(sweep, tmp_path / "sweep", workers=1, progress=False)
    by_size = df.set_index("populations.E.size")
    assert by_size.loc[80, "status"] == "complete"
    assert by_size.loc[10_000_000, "status"] == "failed"
    assert re.search(r"needs about [\d,.]+ GiB", by_size.loc[10_000_000, "error"])


def test_a_changed_sweep_is_refused_unless_extend_adds_points(tmp_path: Path) -> None:
    """Also the Python API: wmnet.sweep(file, out=...) returns the table as a DataFrame."""
    import wmnet

    out = tmp_path / "sweep"
    sweep = write_sweep(tmp_path / "s.yaml", set={**TINY, "duration": 10}, zip={"stp.U": [0.1], "stp.tau_rec": [300]})
    df = wmnet.sweep(sweep, out=out, workers=1, progress=False)
    assert isinstance(df, pd.DataFrame) and list(df["stp.tau_rec"]) == [300] and list(df["status"]) == ["complete"]
    first = point_dirs(out)
    write_sweep(sweep, set={**TINY, "duration": 10}, zip={"stp.U": [0.1, 0.2], "stp.tau_rec": [300, 400]})
    with pytest.raises(WmnetError, match="holds a different sweep \\(1 added points.*--extend to add points"):
        run_sweep(sweep, out, workers=1, progress=False)
    df = run_sweep(sweep, out, workers=1, progress=False, extend=True, plots=True)
    assert (out / "points" / df["point"].iloc[1] / "figures" / "raster.png").is_file()  # drawn by --plots
    assert list(df["point"]) == ["p0000_stp.U=0.1,stp.tau_rec=300", "p0001_stp.U=0.2,stp.tau_rec=400"]
    assert (df["status"] == "complete").all()
    assert point_dirs(out)[0] == first[0]
    # A point is an ordinary run folder: `wmnet extend` continues it, and the sweep keeps it so.
    ext = CliRunner().invoke(
        cli, ["extend", str(first[0]), "--by", "10", "--no-plot", "--quiet"], catch_exceptions=False
    )
    assert ext.exit_code == 0, ext.output
    df = run_sweep(sweep, out, workers=1, progress=False)
    assert list(df["simulated_ms"]) == [20.0, 10.0] and (df["status"] == "complete").all()
    write_sweep(sweep, set={**TINY, "duration": 20}, zip={"stp.U": [0.1, 0.2], "stp.tau_rec": [300, 400]})
    with pytest.raises(WmnetError, match="2 changed points.*--extend only adds points"):
        run_sweep(sweep, out, workers=1, progress=False, extend=True)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_kill_9_of_a_worker_and_of_the_sweep_then_rerun_completes_bitwise(tmp_path: Path) -> None:
    """A real `wmnet sweep` process: one of its workers is killed with SIGKILL mid-point (the sweep
    goes on: the point is run again), then the sweep itself. The rerun skips the complete points,
    resumes the interrupted ones from their checkpoints, and every point's files are bitwise those
    of a single `wmnet run` with the same config."""
    fixed = {**TINY, "duration": 600, "record.checkpoint_every": 50}
    sweep = write_sweep(tmp_path / "s.yaml", set=fixed, grid={"stp.U": [0.1, 0.2]}, seeds=[0, 1])
    out = tmp_path / "sweep"
    proc = subprocess.Popen(
        [*WMNET, "sweep", str(sweep), "--out", str(out), "--workers", "2", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:

        def wait_for(cond: Any, what: str, limit: float = 150) -> None:
            deadline = time.monotonic() + limit
            while not cond():
                assert proc.poll() is None, f"the sweep ended before {what}: {proc.communicate()}"
                assert time.monotonic() < deadline, f"no {what} within {limit} s"
                time.sleep(0.05)

        def checkpointed() -> list[Path]:
            return [d for d in point_dirs(out) if (d / "checkpoint.pt").is_file()] if (out / "points").is_dir() else []

        def spawned() -> list[int]:
            return [
                c for c in _children(proc.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="ignore")
            ]

        wait_for(lambda: checkpointed() and len(spawned()) >= 2, "checkpoint")
        workers = spawned()
        os.kill(workers[0], signal.SIGKILL)

        # The sweep carries on: a point completes after the kill, and a new one has a checkpoint.
        def status(d: Path) -> str | None:
            try:
                return json.loads((d / "run.json").read_text()).get("status")
            except (OSError, ValueError):
                return None

        wait_for(
            lambda: (
                any(status(d) == "complete" for d in point_dirs(out))
                and any(status(d) == "running" for d in checkpointed())
            ),
            "complete and checkpointed running points",
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    for c in workers:  # the workers die with the sweep (PR_SET_PDEATHSIG), not after their point
        deadline = time.monotonic() + 2
        while Path(f"/proc/{c}").exists() and "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="ignore"):
            assert time.monotonic() < deadline, "a worker outlived the sweep"
            time.sleep(0.05)
    before = {d.name: json.loads((d / "run.json").read_text()) for d in point_dirs(out) if (d / "run.json").is_file()}
    complete = {n for n, i in before.items() if i["status"] == "complete"}
    interrupted = {
        n for n, i in before.items() if i["status"] == "running" and (out / "points" / n / "checkpoint.pt").is_file()
    }
    assert complete and interrupted
    during = pd.read_parquet(out / "results.parquet")  # readable after a kill -9
    assert set(during["status"]) <= {"complete", "running", "pending", "interrupted"}
    res = subprocess.run(
        [*WMNET, "sweep", str(sweep), "--out", str(out), "--workers", "2", "--quiet"],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert res.returncode == 0, res.stderr
    df = pd.read_parquet(out / "results.parquet")
    assert (df["status"] == "complete").all() and len(df) == 4
    state = json.loads((out / "state.json").read_text())
    for n in complete:  # skipped: not run again
        assert json.loads((out / "points" / n / "run.json").read_text())["started"] == before[n]["started"]
    for n in interrupted:
        assert state[n]["mode"] == "resumed"
        assert "resumed_at_ms" in json.loads((out / "points" / n / "run.json").read_text())
    for _, row in df.iterrows():
        ref = single_run(
            tmp_path,
            row["point"],
            [f"{k}={v}" for k, v in fixed.items()] + [f"stp.U={row['stp.U']}", f"seed={row['seed']}"],
        )
        assert_same_files(ref, out / "points" / row["point"])


def test_ray_executor_end_to_end_on_a_local_instance(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    sweep = write_sweep(tmp_path / "s.yaml", set=TINY, grid={"stp.U": [0.1, 0.2]})
    out = tmp_path / "sweep"
    res = subprocess.run(
        [*WMNET, "sweep", str(sweep), "--out", str(out), "--executor", "ray", "--workers", "2", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    df = pd.read_parquet(out / "results.parquet")
    assert list(df["status"]) == ["complete", "complete"]
    assert df["summary.spikes"].gt(0).all()
    ref = single_run(tmp_path, "ref", [f"{k}={v}" for k, v in TINY.items()] + ["stp.U=0.2"])
    assert_same_files(ref, out / "points" / df["point"].iloc[1])
