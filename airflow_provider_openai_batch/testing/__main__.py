"""``python -m airflow_provider_openai_batch.testing``: serve the fake until SIGINT/SIGTERM.

The base URL is the first line of stdout (flushed at once) so a parent process or a shell
script can start the server with ``--port 0`` and read where it listens.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from airflow_provider_openai_batch.testing.server import FakeOpenAIServer
from airflow_provider_openai_batch.testing.webhooks import TEST_WEBHOOK_SECRET


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_openai_batch.testing",
        description="Serve a fake OpenAI Files + Batches API (control routes under /_fake/).",
    )
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--api-key", default=None, help="only accept this Bearer key (default: any non-empty)")
    parser.add_argument("--validating-seconds", type=float, default=0.2)
    parser.add_argument("--in-progress-seconds", type=float, default=0.5)
    parser.add_argument("--finalizing-seconds", type=float, default=0.1)
    parser.add_argument("--cancelling-seconds", type=float, default=0.2)
    parser.add_argument("--expire-after-fraction", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--completion-window",
        action="append",
        dest="completion_windows",
        help="an accepted completion_window (repeatable; default 24h)",
    )
    parser.add_argument("--data-dir", default=None, help="where stored files go (default: system temp dir)")
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        help="a model the batches may use (repeatable; replaces the default list of real OpenAI models)",
    )
    parser.add_argument(
        "--accept-any-model",
        action="store_true",
        help="accept any model name (e.g. deployment names of an OpenAI-compatible service)",
    )
    parser.add_argument("--webhook-url", default=None, help="POST signed batch.* webhooks here on terminal transitions")
    parser.add_argument("--webhook-secret", default=TEST_WEBHOOK_SECRET, help="whsec_... signing secret (a test one)")
    parser.add_argument("--webhook-delay", type=float, default=0.0, help="seconds before each webhook delivery")
    parser.add_argument("--webhook-duplicates", type=int, default=0, help="extra deliveries of each webhook")
    parser.add_argument("--webhook-bad-signature", action="store_true", help="sign webhooks with a wrong secret")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    server = FakeOpenAIServer(
        args.port,
        host=args.host,
        api_key=args.api_key,
        validating_seconds=args.validating_seconds,
        in_progress_seconds=args.in_progress_seconds,
        finalizing_seconds=args.finalizing_seconds,
        cancelling_seconds=args.cancelling_seconds,
        expire_after_fraction=args.expire_after_fraction,
        seed=args.seed,
        allowed_completion_windows=tuple(args.completion_windows or ("24h",)),
        data_dir=args.data_dir,
        models=args.models,
        accept_any_model=args.accept_any_model,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        webhook_delay=args.webhook_delay,
        webhook_duplicates=args.webhook_duplicates,
        webhook_bad_signature=args.webhook_bad_signature,
    )
    with server:
        print(server.url, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
