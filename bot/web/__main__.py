"""`python -m bot.web --port 8080`: run the web server (started by `fusiondesk run`)."""

from __future__ import annotations

import argparse
import dataclasses

from bot.settings import Settings
from bot.web.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    settings = Settings.from_env()
    settings = dataclasses.replace(
        settings, host=args.host or settings.host, web_port=args.port or settings.web_port
    )
    app = create_app(settings)
    app.run(host=settings.host, port=settings.web_port, access_log=False)


if __name__ == "__main__":
    main()
