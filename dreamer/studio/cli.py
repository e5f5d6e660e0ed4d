"""`dreamvideo studio FILM_OR_FRAMES [--port N] [--host H]`: the studio's command. It
prints the page's address (with its token) and serves it until Ctrl-C, which stops a
render after its current octave: every frame written is kept, and Render resumes."""
from __future__ import annotations

import argparse
import errno
import os
import secrets
import signal
import socket
import sys

from dreamer.cli.oneline import OneLineParser, report
from dreamer.errors import DreamerError

INSTALL = "pip install 'dreamer[studio]' (make venv-studio)"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = OneLineParser(prog=prog or "dreamvideo studio", description=(
        "Find a film's dream by looking: a local web page to scrub the film, try settings "
        "on its frames in seconds, see the flicker, save them as a --params file and "
        "render."))
    p.add_argument("film", metavar="FILM_OR_FRAMES",
                   help="a video (cut into frames first, with progress) or a folder of "
                        "frames 00000001.png ...")
    p.add_argument("--port", type=int, default=8765,
                   help="the port to listen on (default: %(default)s; 0: any free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default: %(default)s, this machine only; "
                        "0.0.0.0 lets other machines in, with the token)")
    p.add_argument("--width", type=int, default=400,
                   help="the preview width in pixels (default: %(default)s)")
    p.add_argument("--params", metavar="FILE",
                   help="start from these settings (a --params TOML or JSON file)")
    p.add_argument("-t", "--model_path", metavar="FOLDER",
                   help="a model folder (deploy file + caffemodel) to offer first")
    p.add_argument("-m", "--model_name", metavar="NAME",
                   help="a model from `dreamvideo models list` to offer first")
    p.add_argument("--prototxt", metavar="FILE", help="the deploy file, with -t")
    p.add_argument("--no-browser", action="store_true",
                   help="do not open the page in a web browser")
    p.add_argument("--no-first-look", action="store_true",
                   help="do not dream frame 1 as soon as the film is ready")
    return p


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return report(DreamerError(f"the studio needs Starlette and uvicorn: {INSTALL}"))
    try:
        server, sock, url = _prepare(args)
    except DreamerError as e:
        return report(e)
    print(f"studio: {url}", flush=True)
    print("studio: open that address in a web browser; Ctrl-C stops the studio (a render "
          "stops after its current octave, and resumes when you press Render again)",
          flush=True)
    if not args.no_browser and sys.stdout.isatty() and _has_display():
        import webbrowser

        webbrowser.open(url)
    stopped = []

    def note(signum, frame):  # uvicorn's own handlers stop it; this notes the signal
        stopped.append(signum)

    previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()
    print("studio: stopped" + (" (every frame rendered is kept)" if stopped else ""),
          flush=True)
    return 0


def _has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _prepare(args):
    """The film, the settings, the app and a bound socket; a one-line DreamerError for
    anything wrong, before the server starts."""
    import uvicorn

    from dreamer.studio import form as forms
    from dreamer.studio.app import create_app
    from dreamer.studio.film import Film

    if not 0 <= args.port <= 65535:
        raise DreamerError(f"--port {args.port}: give 1 to 65535 (or 0 for any free port)")
    if not 32 <= args.width <= 4096:
        raise DreamerError(f"--width {args.width}: give 32 to 4096 pixels")
    if args.model_path and not os.path.isdir(args.model_path):
        raise DreamerError(f"model folder {args.model_path} does not exist; check -t")
    film = Film.open(args.film)
    choices = forms.model_choices(args.model_path, args.model_name, args.prototxt)
    initial = _initial(args, choices)
    token = secrets.token_urlsafe(24)
    app = create_app(film, token, choices, initial, args.width,
                     first_look=not args.no_first_look)
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    config = uvicorn.Config(app, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5, lifespan="on")
    return uvicorn.Server(config), sock, f"http://{shown}:{port}/?token={token}"


def _initial(args, choices) -> dict:
    """The page's first values: the --params file's over the defaults, a seed drawn."""
    from dataclasses import replace

    from dreamer.cli import params_file
    from dreamer.config import DreamConfig
    from dreamer.studio import form as forms

    config = DreamConfig()
    if args.params:
        values = params_file.load(args.params)
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()
                  if k in forms.shown_fields()}
        config = replace(config, **values)
    if config.seed is None:
        config = replace(config, seed=secrets.randbelow(2**31))
    return forms.form_of(config, choices)


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise DreamerError(f"--host {host} is not an address of this machine") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise DreamerError(f"port {port} is in use (another studio?); give another with "
                               "--port, or --port 0 for any free one") from None
        raise DreamerError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock
