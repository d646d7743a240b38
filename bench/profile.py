"""Profile one plugin of the initial one-way sync under pyinstrument (bench-only tool).

    python -m bench.profile [--n 10000] [--plugin target-outlook-contacts]

Runs tap-pipeliner-contacts against a fresh sandbox into a file, then the chosen plugin alone
under pyinstrument, fed that file: the target maps it in-process, as in the project's jobs; the
mapper maps it as it does between any tap and target. Prints where its CPU time goes (``--out``
also keeps the HTML report).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.run import ALEX, BIN, ROOT, SPACE, Sandbox, sign_in


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument(
        "--plugin",
        default="target-outlook-contacts",
        choices=["contactsync-mapper", "target-outlook-contacts"],
    )
    parser.add_argument("--out", help="also write pyinstrument's HTML report here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="contactsync-profile-") as tmp:
        work = Path(tmp)
        box = Sandbox(work, "profile")
        try:
            cache = sign_in(box, work / "token-cache.json")
            box.seed_pipeliner(args.n)
            box.new_folder("Profile")
            info = box.info
            configs = {
                "tap-pipeliner-contacts": {
                    "service_url": info["pipeliner_url"],
                    "space_id": SPACE,
                    "api_username": info["pipeliner_api_username"],
                    "api_password": info["pipeliner_api_password"],
                    "ca_bundle": info["ca_path"],
                    "user_email": ALEX,
                    "sync_type": "one_way_your_contacts",
                },
                "contactsync-mapper": {
                    "direction": "pipeliner_to_outlook",
                    "sync_type": "one_way_your_contacts",
                },
                "target-outlook-contacts": {
                    "authority": info["authority"],
                    "client_id": info["identity_client_id"],
                    "token_cache_path": str(cache),
                    "ca_bundle": info["ca_path"],
                    "graph_url": info["graph_url"],
                    "mailbox": "me",
                    "folder": "Profile",
                    "ledger_url": str(work / "ledger.sqlite"),
                    "space_id": SPACE,
                    "user_email": ALEX,
                    "sync_type": "one_way_your_contacts",
                    # No client-side Graph budget (the emulator has none here): paced at Graph's
                    # 10,000 per 10 minutes, 10,000 contacts would take ten minutes of waiting.
                    "graph_requests_per_window": 0,
                },
            }
            for name, config in configs.items():
                (work / f"{name}.json").write_text(json.dumps(config))
            tap = "tap-pipeliner-contacts"
            with open(work / "tap.out", "w") as out:
                cmd = [str(BIN / tap), "--config", str(work / f"{tap}.json")]
                subprocess.run(cmd, stdout=out, stderr=subprocess.DEVNULL, check=True)
            feed = "tap.out"
            cmd = [str(BIN / "pyinstrument"), "-r", "text", "--show-all"]
            if args.out:
                cmd = [str(BIN / "pyinstrument"), "-r", "html", "-o", args.out]
            cmd += [str(BIN / args.plugin), "--config", str(work / f"{args.plugin}.json")]
            with open(work / feed) as inp:
                quiet = subprocess.DEVNULL
                subprocess.run(cmd, stdin=inp, stdout=sys.stdout, stderr=quiet, cwd=ROOT)
        finally:
            box.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
