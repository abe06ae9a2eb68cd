#!/usr/bin/env python3
"""Checks of our own on the Dockerfiles and the compose file, for conformance/check-docker.sh (no Docker engine
needed). hadolint checks how a Dockerfile is written; these check what this project requires of its images:

    static_checks.py dockerfiles FILE...
        the final stage of each file runs as a user other than root (a USER that is not root or 0), has a
        HEALTHCHECK (not NONE), and every FROM names a build argument (ARG ..._IMAGE with a tagged default) or an
        earlier stage, so base images are pinned in one place and can be changed with --build-arg; every COPY
        source (outside --from) exists in the build context (the repository root).

    static_checks.py compose CONFIG.yml [--herald BIN]
        CONFIG.yml is `docker-compose --profile ... config` output: every build names an existing Dockerfile and,
        with a target, a stage of it. With --herald, each service built from ./Dockerfile's `runtime` target is
        checked with `herald check-config` under that image's ENV plus the service's environment, so a misspelt
        or unknown HERALD_* key fails here rather than at `docker compose up`.

Exit 1 with one line per problem.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of a Dockerfile, continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, rest = whole.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs (name -> default) and the stages of a Dockerfile."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in instructions(path.read_text()):
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]  # --platform=...
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(name, words[0]))
        elif not stages:
            if keyword == "ARG":
                key, _, default = rest.partition("=")
                global_args[key.strip()] = default.strip()
        else:
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages


def check_dockerfile(path: Path) -> list[str]:
    problems: list[str] = []
    global_args, stages = parse(path)
    if not stages:
        return [f"{path}: no FROM"]
    names: set[str] = set()
    for stage in stages:
        base = stage.base
        variable = re.fullmatch(r"\$\{?(\w+)\}?", base)
        if variable:
            default = global_args.get(variable.group(1), "")
            if not default or ":" not in default or default.endswith(":latest"):
                problems.append(f"{path}: FROM {base}: ARG {variable.group(1)} needs a tagged default image")
        elif base not in names:
            problems.append(f"{path}: FROM {base}: name the base image with an ARG (ARG X_IMAGE=image:tag)")
        if stage.name:
            names.add(stage.name)
        for keyword, rest in stage.instructions:
            if keyword in ("COPY", "ADD") and "--from=" not in rest:
                words = [w for w in shlex.split(rest) if not w.startswith("--")]
                for source in words[:-1]:
                    if not any(ROOT.glob(source)):
                        problems.append(f"{path}: {keyword} {source}: not in the build context")
    final = stages[-1]
    users = [rest for keyword, rest in final.instructions if keyword == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"{path}: the final stage runs as root (add USER with a non-root user)")
    health = [rest for keyword, rest in final.instructions if keyword == "HEALTHCHECK"]
    if not health or health[-1].upper() == "NONE":
        problems.append(f"{path}: the final stage has no HEALTHCHECK")
    return problems


def image_env(path: Path, target: str) -> dict[str, str]:
    """The ENV of stage `target`, ARG defaults substituted (${NAME} and $NAME)."""
    _, stages = parse(path)
    stage = next(s for s in stages if s.name == target)
    args: dict[str, str] = {}
    env: dict[str, str] = {}

    def substitute(value: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: {**args, **env}.get(m.group(1) or m.group(2), ""), value)

    for keyword, rest in stage.instructions:
        if keyword == "ARG":
            key, _, default = rest.partition("=")
            args[key.strip()] = default.strip()
        elif keyword == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = substitute(value)
    return env


def check_compose(config_path: Path, herald: str | None) -> list[str]:
    import yaml  # python3-yaml: a dependency of Debian's docker-compose

    config = yaml.safe_load(config_path.read_text())
    problems: list[str] = []
    for name, service in (config.get("services") or {}).items():
        build = service.get("build")
        if not build:
            continue
        if isinstance(build, str):
            build = {"context": build}
        dockerfile = Path(build.get("context", ".")) / build.get("dockerfile", "Dockerfile")
        if not dockerfile.is_file():
            problems.append(f"service {name}: {dockerfile} does not exist")
            continue
        target = build.get("target")
        _, stages = parse(dockerfile)
        if target and target not in {s.name for s in stages}:
            problems.append(f"service {name}: {dockerfile} has no stage {target}")
            continue
        if herald and dockerfile.resolve() == (ROOT / "Dockerfile").resolve() and target == "runtime":
            problems += herald_check_config(name, herald, {**image_env(dockerfile, target), **environment(service)})
    return problems


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def herald_check_config(name: str, herald: str, env: dict[str, str]) -> list[str]:
    with tempfile.TemporaryDirectory() as scratch:
        # The data directory and relative paths are the container's; only the configuration is checked.
        env = {**env, "HERALD_SERVER__DATA_DIR": scratch, "PATH": os.environ.get("PATH", "")}
        result = subprocess.run(
            [herald, "check-config"], cwd=scratch, env=env, capture_output=True, text=True, check=False
        )
    if result.returncode == 0:
        print(f"  service {name}: herald check-config: {result.stdout.strip()}")
        return []
    return [f"service {name}: herald check-config: {(result.stdout + result.stderr).strip()}"]


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "dockerfiles":
        problems = [p for path in argv[1:] for p in check_dockerfile(Path(path))]
    elif len(argv) in (2, 4) and argv[0] == "compose" and (len(argv) == 2 or argv[2] == "--herald"):
        problems = check_compose(Path(argv[1]), argv[3] if len(argv) == 4 else None)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for problem in problems:
        print(f"  FAIL {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
