"""What the single-server target (targets.Ejabberd) and the federation server (fedservers.FedEjabberd) share about
running ejabberd 23.01 (Debian): a run directory the `ejabberd` user can use, the `ejabberdctl foreground`
command under that user with its own config, spool, log dir and node name, and accounts made in-band (XEP-0077;
one `ejabberdctl register` per account would start an Erlang node each).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

from .client import Endpoint, ScenarioFailure, open_session


class EjabberdError(Exception):
    """ejabberd is missing or an account could not be made; the caller turns it into its setup error."""


def prepare(directory: Path) -> str:
    """Checks ejabberd is installed, makes `db/` and `log/` in `directory`, and returns a fresh node name."""
    if shutil.which("ejabberdctl") is None:
        raise EjabberdError("ejabberd is not installed (apt-get install ejabberd)")
    directory.chmod(0o755)
    for sub in ("db", "log"):
        (directory / sub).mkdir(exist_ok=True)
    return f"conf_{secrets.token_hex(4)}@localhost"


def hand_over(directory: Path) -> None:
    """Gives `directory` (config, certificates, spool) to the ejabberd user, which the node runs as."""
    subprocess.run(["chown", "-R", "ejabberd:ejabberd", str(directory)], check=False)


def command(directory: Path, config: Path, node: str) -> list[str]:
    """`ejabberdctl foreground` as the ejabberd user (setpriv), everything it writes inside `directory`."""
    return [
        "setpriv", "--reuid=ejabberd", "--regid=ejabberd", "--init-groups",
        "env", "HOME=/var/lib/ejabberd",
        "ejabberdctl", "--config-dir", str(directory), "--config", str(config),
        "--spool", str(directory / "db"), "--logs", str(directory / "log"), "--node", node,
        "foreground",
    ]  # fmt: skip


def log_file(directory: Path) -> Path:
    return directory / "log" / "ejabberd.log"


async def register_inband(endpoint: Endpoint, users: list[str], password: str) -> None:
    """Registers `user@endpoint.domain` for each user over XEP-0077 (mod_register must allow it)."""
    for user in users:
        try:
            session = await open_session(
                endpoint, f"{user}@{endpoint.domain}", password, register=True, initial_presence=False
            )
        except ScenarioFailure as err:
            raise EjabberdError(f"registering {user}@{endpoint.domain} in-band: {err}") from err
        await session.close()
