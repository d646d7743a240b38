"""meltano.yml is generated from each plugin's `--about`; it must not drift from them, and must
stay so when a user works on it with `meltano select` and `meltano config set`."""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GENERATOR = [sys.executable, str(ROOT / "scripts" / "gen_meltano_yml.py")]
OURS = (
    "tap-pipeliner-contacts",
    "tap-outlook-contacts",
    "target-outlook-contacts",
    "target-pipeliner-contacts",
    "contactsync-mapper",
)
installed = pytest.mark.skipif(
    not (ROOT / ".meltano" / "mappers" / "contactsync-mapper").exists(),
    reason="Meltano plugins are not installed: run `make plugins` (make test does)",
)


def _plugins() -> dict[str, dict]:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    return {p["name"]: p for kind in project["plugins"].values() for p in kind}


def _about(name: str) -> dict:
    done = subprocess.run(
        [str(BIN / name), "--about", "--format=json"], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_meltano_yml_and_the_readme_tables_are_what_the_generator_writes() -> None:
    done = subprocess.run([*GENERATOR, "--check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (
        f"meltano.yml or a README is out of date ({done.stderr.strip()}): run "
        ".venv/bin/python scripts/gen_meltano_yml.py"
    )


@pytest.mark.parametrize("name", OURS)
def test_each_definition_declares_every_setting_and_capability_of_its_about(name: str) -> None:
    info, plugin = _about(name), _plugins()[name]
    assert plugin["capabilities"] == info["capabilities"]
    assert [s["name"] for s in plugin["settings"]] == list(info["settings"]["properties"])
    for setting in plugin["settings"]:
        prop = info["settings"]["properties"][setting["name"]]
        assert setting["kind"] != "password"  # deprecated: Meltano rewrites the file for it
        assert bool(setting.get("sensitive")) == bool(prop.get("secret")), setting["name"]
        if "boolean" in prop.get("type", []):
            assert setting["kind"] == "boolean", setting["name"]
    markdown = subprocess.run(
        [str(BIN / name), "--about", "--format=markdown"], capture_output=True, text=True
    ).stdout
    # Rendered as Markdown, not as an indented code block: the heading and the description
    # start their lines.
    assert markdown.startswith(f"# `{name}`\n")
    assert not re.search(r"^ {4,}\S", markdown.split("## Settings")[0], re.MULTILINE)


def test_sdk_settings_and_capabilities_are_declared() -> None:
    plugins = _plugins()
    tap, target = plugins["tap-outlook-contacts"], plugins["target-pipeliner-contacts"]
    names = {s["name"] for s in tap["settings"]}
    assert {"stream_maps", "stream_map_config", "flattening_enabled", "batch_config"} <= names
    assert {"load_method", "add_record_metadata", "validate_records", "batch_size_rows"} <= {
        s["name"] for s in target["settings"]
    }
    assert {"activate-version", "schema-flattening", "structured-logging"} <= set(
        tap["capabilities"]
    )
    assert "structured-logging" in plugins["contactsync-mapper"]["capabilities"]


def test_secrets_are_sensitive_strings_and_kept_out_of_prod_config() -> None:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    plugins = [p for kind in project["plugins"].values() for p in kind]
    secrets = {s["name"] for p in plugins for s in p.get("settings", []) if s.get("sensitive")}
    assert {"api_password", "client_secret", "ledger_url"} <= secrets
    assert all(
        s["kind"] == "string"
        for p in plugins
        for s in p.get("settings", [])
        if s["name"] in secrets
    )
    prod = next(e for e in project["environments"] if e["name"] == "prod")
    for kind in prod["config"]["plugins"].values():
        for plugin in kind:
            for name, value in plugin["config"].items():
                if name in secrets:
                    assert str(value).startswith("$"), f"{plugin['name']}.{name} is not from env"


@pytest.mark.parametrize("tap", ["tap-pipeliner-contacts", "tap-outlook-contacts"])
def test_each_tap_ships_the_catalog_its_discover_prints(tap: str) -> None:
    """`meltano run` takes the shipped catalog instead of starting the tap to discover it
    (issue #15), so the file must be exactly what the tap would have said."""
    plugin = _plugins()[tap]
    assert plugin["catalog"] == f"catalogs/{tap}.json"
    done = subprocess.run(
        [str(BIN / tap), "--discover"], capture_output=True, text=True, check=True
    )
    shipped = json.loads((ROOT / plugin["catalog"]).read_text())
    assert shipped == json.loads(done.stdout), "run .venv/bin/python scripts/gen_meltano_yml.py"


def test_the_jobs_run_the_two_way_legs_in_order() -> None:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    jobs = {j["name"]: j["tasks"] for j in project["jobs"]}
    assert set(jobs) == {"two-way-your-contacts", "one-way-your-contacts", "one-way-all-contacts"}
    first, second = jobs["two-way-your-contacts"]
    assert first.startswith("tap-pipeliner-contacts ") and second.startswith(
        "tap-outlook-contacts "
    )


def _copy_project(tmp: Path) -> Path:
    """The project's meltano.yml in a directory of its own, with the installed plugins."""
    shutil.copy(ROOT / "meltano.yml", tmp / "meltano.yml")
    (tmp / "catalogs").symlink_to(ROOT / "catalogs")
    (tmp / ".meltano").mkdir()
    for kind in ("extractors", "loaders", "mappers"):
        (tmp / ".meltano" / kind).symlink_to(ROOT / ".meltano" / kind)
    return tmp


def _meltano(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_AUTO_INSTALL": "false",
        "MELTANO_PROJECT_ROOT": str(cwd),
    }
    env.pop("MELTANO_SYS_DIR_ROOT", None)
    return subprocess.run(
        [str(BIN / "meltano"), *args],
        cwd=cwd,
        env=env,
        input=stdin or "",
        capture_output=True,
        text=True,
        timeout=300,
    )


@installed
def test_select_and_config_set_only_add_lines_and_the_settings_take_effect(
    tmp_path: Path,
) -> None:
    project = _copy_project(tmp_path)
    before = (project / "meltano.yml").read_text()
    steps = [
        ("select", "tap-pipeliner-contacts", "--exclude", "contacts", "comments"),
        ("config", "set", "tap-outlook-contacts", "flattening_enabled", "true"),
        ("config", "set", "target-outlook-contacts", "max_delete_ratio", "0.3"),
        ("config", "set", "target-outlook-contacts", "batch_size_rows", "7"),
    ]
    for step in steps:
        done = _meltano(project, *step)
        assert done.returncode == 0, done.stderr[-2000:]
    after = (project / "meltano.yml").read_text()
    removed = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="")
        if line.startswith("-") and not line.startswith("---")
    ]
    assert removed == [], "Meltano rewrote generated lines"  # only additions
    assert "'!contacts.comments'" in after and "flattening_enabled: true" in after
    # The drift check still passes on the user's project (their additions are theirs).
    done = subprocess.run(
        [*GENERATOR, "--check", str(project / "meltano.yml")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    # The values reach the plugins with the right types: the tap's config validates (a boolean,
    # not 'true'), and the target takes 0.3 given as text.
    done = _meltano(project, "invoke", "tap-outlook-contacts", "--discover")
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"streams"' in done.stdout
    done = _meltano(project, "invoke", "target-outlook-contacts")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(
        (project / ".contactsync" / "reports" / "target-outlook-contacts.json").read_text()
    )
    assert report["error"] is None


@installed
@pytest.mark.parametrize("name", OURS)
def test_the_plugin_virtualenvs_hold_the_exact_versions_of_constraints_txt(name: str) -> None:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            package, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", package).lower()] = version.strip()
    kind = _plugins()[name]
    folder = {"tap": "extractors", "tar": "loaders", "con": "mappers"}[name[:3]]
    python = ROOT / ".meltano" / folder / name / "venv" / "bin" / "python"
    listing = subprocess.run(
        [str(BIN / "uv"), "pip", "list", "--format=json", f"--python={python}"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed_versions = {
        re.sub(r"[-_.]+", "-", p["name"]).lower(): p["version"] for p in json.loads(listing.stdout)
    }
    assert "-c constraints.txt" in kind["pip_url"]
    drift = {p: (v, pins[p]) for p, v in installed_versions.items() if p in pins and pins[p] != v}
    assert drift == {}, f"{name}: installed vs constraints.txt {drift}"
    assert installed_versions["singer-sdk"] == pins["singer-sdk"]
