"""``python -m sandbox``: run the image-search sandbox (TOP and Onebound protocols) until interrupted."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from sandbox.config import SandboxConfig, build_parser

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, listen, print ``sandbox listening on http://HOST:PORT (...)`` and serve."""
    parser = build_parser()
    ns = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(level=ns.log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = SandboxConfig.from_namespace(ns)
    except ValueError as exc:
        parser.error(str(exc))

    from twisted.internet import reactor
    from twisted.internet.error import CannotListenError

    from sandbox.catalog import CatalogError
    from sandbox.server import listen

    try:
        running = listen(config, host=ns.host, port=ns.port, reactor=reactor)
    except CatalogError as exc:
        print(f"python -m sandbox: error: {exc}", file=sys.stderr)
        return 2
    except CannotListenError as exc:
        print(f"python -m sandbox: error: cannot listen on {ns.host}:{ns.port}: {exc.socketError}", file=sys.stderr)
        return 2
    print(f"sandbox listening on {running.url} (TOP {running.endpoint}, Onebound {running.url}/taobao/)", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
