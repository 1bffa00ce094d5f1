"""The deployment recipes in docs/ that no test can run here (Kubernetes): Zero to JupyterHub values
validate against the chart's own values schema, their Python runs against labkit, the grading Job's
command gives each index its own shard."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from traitlets.config import Config

ROOT = Path(__file__).resolve().parent.parent
CLASSROOM = (ROOT / "docs" / "classroom.md").read_text()
DATA = ROOT / "tests" / "data"
SCHEMA = json.loads((DATA / "z2jh-values.schema.json").read_text())
DEFAULTS = {k: v for k, v in json.loads((DATA / "z2jh-values.defaults.json").read_text()).items() if k != "$comment"}
BLOCKS = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", CLASSROOM, re.S)]
HELM_VALUES = [b for b in BLOCKS if isinstance(b, dict) and set(b) <= set(SCHEMA["properties"])]
JOBS = [b for b in BLOCKS if isinstance(b, dict) and b.get("kind") == "Job"]


def with_defaults(values: dict, defaults: dict = DEFAULTS) -> dict:  # type: ignore[type-arg]
    """The values Helm validates: the chart's defaults with the recipe's merged over them."""
    merged = dict(defaults)
    for key, value in values.items():
        merged[key] = with_defaults(value, defaults[key]) if isinstance(value, dict) and isinstance(defaults.get(key), dict) else value
    return merged


def test_the_recipes_are_found() -> None:
    assert len(HELM_VALUES) >= 3 and len(JOBS) == 1


@pytest.mark.parametrize("values", HELM_VALUES, ids=[",".join(sorted(v)) + f"-{i}" for i, v in enumerate(HELM_VALUES)])
def test_zero_to_jupyterhub_values_match_the_charts_schema(values: dict) -> None:  # type: ignore[type-arg]
    jsonschema.validate(with_defaults(values), SCHEMA)


def test_a_wrong_key_fails_the_schema() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(with_defaults({"hub": {"extraEnvs": {}}}), SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(with_defaults({"singleuser": {"storage": {"capacity": 2}}}), SCHEMA)


@pytest.mark.parametrize("values", [v for v in HELM_VALUES if v.get("hub", {}).get("extraConfig")])
def test_the_hubs_extra_config_runs_against_labkit(values: dict, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[type-arg]
    monkeypatch.setenv("LABKIT_CLASS_URL", "postgresql://instructor:secret@db.example.org:5432/postgres")
    c = Config()
    for source in values["hub"]["extraConfig"].values():
        exec(compile(source, "extraConfig", "exec"), {"c": c})
    assert c.Spawner.pre_spawn_hook is not None
    services = c.JupyterHub.services.get_value([]) if hasattr(c.JupyterHub.services, "get_value") else c.JupyterHub.services
    assert bool(services) == ("reset_service" in str(values["hub"]["extraConfig"]))
    for service in services:
        assert service["name"] == "labkit-reset" and service["url"] == "http://hub:10101"
        assert service["environment"]["LABKIT_RESET_BIND"] == "0.0.0.0"


def test_the_grading_job_gives_each_index_its_own_shard() -> None:
    (job,) = JOBS
    spec = job["spec"]
    container = spec["template"]["spec"]["containers"][0]
    assert spec["completionMode"] == "Indexed" and container["command"] == ["sh", "-c"]
    env = {e["name"]: e.get("value", "seed") for e in container["env"]}
    script = "labkit() { echo \"$@\"; }\n" + container["args"][0]
    shards = set()
    for index in range(spec["completions"]):
        out = subprocess.run(["sh", "-c", script], env={**env, "JOB_COMPLETION_INDEX": str(index), "HIDDEN_SEED": "1"},
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        shards.add(re.search(r"--shard (\d+/\d+)", out)[1])  # type: ignore[index]
        assert f"part-{index}.csv" in out
    assert shards == {f"{i}/{spec['completions']}" for i in range(1, spec["completions"] + 1)}
