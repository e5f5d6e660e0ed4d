"""The studio's web app (Starlette): the page, its API, and the guards.

- Every request needs the token the command printed (`?token=` or the X-Studio-Token
  header), else 403; it is compared in constant time.
- Files are served from the film's folders and the studio's own only: a path with `..`,
  an absolute path or one through a symbolic link is refused (film.safe_path).
- An upload (a guide image) is refused past MAX_UPLOAD bytes, before it is read in full,
  and unless it decodes as an image; it is kept re-encoded as PNG.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import threading
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dreamer.errors import DreamerError
from dreamer.image import read_image
from dreamer.studio import form as forms
from dreamer.studio.film import Film, Refused, safe_path
from dreamer.studio.jobs import Studio
from dreamer.video.frames import encode_image

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD = 20 * 2**20
MAX_JSON = 4 * 2**20


class TokenGuard:
    """403 for any request without the token (ASGI middleware, before any route)."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        given = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-studio-token":
                given = value.decode("latin-1")
        if not given:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (query.get("token") or [""])[0]
        if not secrets.compare_digest(given.encode("latin-1", "replace"), self.token):
            response = Response("403: this studio needs its token: open the address "
                                "`dreamvideo studio` printed (it ends in ?token=...)\n",
                                status_code=403, media_type="text/plain")
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def error(e: Exception, status: int = 400) -> JSONResponse:
    body = {"error": str(e)}
    if isinstance(e, forms.FormError):
        body["errors"] = e.errors
    return JSONResponse(body, status_code=403 if isinstance(e, Refused) else status)


def create_app(film: Film, token: str, choices: list, initial: dict,
               preview_width: int = 400, first_look: bool = True) -> Starlette:
    """The app for one film. `initial`: the page's first values (the settings form)."""
    studio = Studio(film, choices, preview_width)

    def config_of(body: dict):
        return forms.to_config(body.get("form") or {}, film, choices)

    async def body_of(request: Request) -> dict:
        raw = await _read_limited(request, MAX_JSON)
        if raw is None:
            raise DreamerError("the request is too large")
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise DreamerError("the request is not JSON") from None
        if not isinstance(data, dict):
            raise DreamerError("the request is not a JSON object")
        return data

    def endpoint(fn):
        async def wrapped(request: Request):
            try:
                return await fn(request)
            except DreamerError as e:
                return error(e)
        wrapped.__name__ = fn.__name__
        return wrapped

    async def index(request: Request):
        page = (STATIC / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(page.replace("{{TOKEN}}", token),
                            headers={"Cache-Control": "no-store",
                                     "Referrer-Policy": "no-referrer"})

    @endpoint
    async def init(request: Request):
        return JSONResponse({"film": film.state(), "schema": forms.schema(),
                             "models": [{"key": c.key, "label": c.label} for c in choices],
                             "form": initial, "width": preview_width,
                             "history": studio.history})

    @endpoint
    async def state(request: Request):
        render = studio.render_job.public() if studio.render_job else None
        return JSONResponse({"film": film.state(), "jobs": studio.state(), "render": render,
                             "history": len(studio.history)})

    @endpoint
    async def history(request: Request):
        return JSONResponse(studio.history)

    @endpoint
    async def check(request: Request):
        body = await body_of(request)
        config = config_of(body)
        return JSONResponse({"ok": True, "curves": forms.curves(config, film.count)})

    @endpoint
    async def layers(request: Request):
        config = config_of(await body_of(request))
        return JSONResponse(await run_in_threadpool(studio.layers, config))

    def frame_of(body: dict, key: str = "frame") -> int:
        try:
            return int(body.get(key))
        except (TypeError, ValueError):
            raise DreamerError(f"{key} must be a frame number") from None

    def width_of(body: dict) -> int:
        try:
            width = int(body.get("width") or preview_width)
        except (TypeError, ValueError):
            raise DreamerError("the preview width must be a whole number") from None
        if not 32 <= width <= 4096:
            raise DreamerError("the preview width must be 32 to 4096 px")
        return width

    def ready() -> None:
        if film.extraction.state != "ready":
            raise DreamerError("the film is not cut into frames yet")

    @endpoint
    async def preview(request: Request):
        body = await body_of(request)
        ready()
        job = studio.preview(body.get("form") or {}, config_of(body), frame_of(body),
                             width_of(body))
        return JSONResponse(job.public())

    @endpoint
    async def stretch(request: Request):
        body = await body_of(request)
        ready()
        try:
            n = int(body.get("n") or 12)
        except (TypeError, ValueError):
            raise DreamerError("the stretch's length must be a whole number") from None
        job = studio.stretch(config_of(body), frame_of(body), n, width_of(body))
        return JSONResponse(job.public())

    @endpoint
    async def sheet(request: Request):
        body = await body_of(request)
        ready()
        return JSONResponse(studio.sheet(config_of(body), frame_of(body)).public())

    @endpoint
    async def render(request: Request):
        body = await body_of(request)
        ready()
        job = studio.render(config_of(body), frame_of(body, "first"), frame_of(body, "last"),
                            bool(body.get("overwrite")))
        return JSONResponse(job.public())

    @endpoint
    async def cancel(request: Request):
        return JSONResponse(studio.cancel(request.path_params["job"]).public())

    @endpoint
    async def save(request: Request):
        body = await body_of(request)
        ready()
        config = config_of(body)
        k, width = frame_of(body), width_of(body)
        seed = body.get("form", {}).get("seed")
        if config.seed is None:
            raise DreamerError(f"no seed yet: dream a frame first, or give one ({seed!r})")
        path = film.toml_path
        text = forms.toml_text(config, film, k, width)
        if path.exists() and not path.read_text(encoding="utf-8", errors="replace") \
                .startswith(f"# {film.name}: settings chosen in dreamvideo studio"):
            path = path.with_name(f"{path.stem}-studio.toml")
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        forms.check_saved(path, config)
        return JSONResponse({"path": str(path), "text": text,
                             "commands": forms.commands(film, path, k, width)})

    @endpoint
    async def upload(request: Request):
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > MAX_UPLOAD):
            return JSONResponse({"error": f"the image is larger than {MAX_UPLOAD // 2**20} MB;"
                                 " choose a smaller one"}, status_code=413)
        data = await _read_limited(request, MAX_UPLOAD)
        if data is None:
            return JSONResponse({"error": f"the image is larger than {MAX_UPLOAD // 2**20} MB;"
                                 " choose a smaller one"}, status_code=413)
        return await run_in_threadpool(_keep_upload, film, data)

    @endpoint
    async def octave(request: Request):
        job = studio.jobs.get(request.path_params["job"])
        i = request.path_params["i"]
        if job is None or not 0 <= i < len(job.octaves):
            return JSONResponse({"error": "no such octave"}, status_code=404)
        return Response(job.octaves[i]["jpeg"], media_type="image/jpeg",
                        headers={"Cache-Control": "max-age=3600"})

    @endpoint
    async def thumb(request: Request):
        ready()
        k = request.path_params["k"]
        try:
            width = int(request.query_params.get("w", "160"))
        except ValueError:
            width = 160
        path = await run_in_threadpool(film.thumbnail, k, width)
        return FileResponse(path, media_type="image/jpeg",
                            headers={"Cache-Control": "max-age=3600"})

    @endpoint
    async def files(request: Request):
        root = film.roots.get(request.path_params["root"])
        if root is None:
            return JSONResponse({"error": "no such folder"}, status_code=404)
        try:
            path = safe_path(root, request.path_params["path"])
        except Refused as e:
            return error(e)
        if not path.is_file():
            return JSONResponse({"error": "no such file"}, status_code=404)
        return FileResponse(path, headers={"Cache-Control": "no-cache"})

    async def result(request: Request):
        if not film.result_path.is_file():
            return JSONResponse({"error": "nothing rendered yet"}, status_code=404)
        return FileResponse(film.result_path, media_type="video/mp4")

    def startup() -> None:
        film.extract()
        if first_look and film.extraction.state == "ready" and choices:
            try:
                config = forms.to_config(initial, film, choices)
                studio.preview(initial, config, 1, preview_width).title = (
                    "first look at frame 1 (loads the model, tunes its kernels)")
            except DreamerError:
                pass  # the page shows what is wrong with the settings

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        threading.Thread(target=startup, name="studio stage 1", daemon=True).start()
        yield
        stopped = await run_in_threadpool(studio.shutdown)
        for line in stopped:
            print(f"studio: {line}", flush=True)

    routes = [
        Route("/", index),
        Route("/api/init", init),
        Route("/api/state", state),
        Route("/api/history", history),
        Route("/api/check", check, methods=["POST"]),
        Route("/api/layers", layers, methods=["POST"]),
        Route("/api/preview", preview, methods=["POST"]),
        Route("/api/stretch", stretch, methods=["POST"]),
        Route("/api/sheet", sheet, methods=["POST"]),
        Route("/api/render", render, methods=["POST"]),
        Route("/api/save", save, methods=["POST"]),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/cancel/{job}", cancel, methods=["POST"]),
        Route("/api/job/{job}/octave/{i:int}", octave),
        Route("/api/thumb/{k:int}", thumb),
        Route("/files/{root}/{path:path}", files),
        Route("/media/result.mp4", result),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.studio = studio
    guarded = TokenGuard(app, token)
    guarded.studio = studio
    return guarded


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` bytes (the rest is never read)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _keep_upload(film: Film, data: bytes) -> JSONResponse:
    """An uploaded guide image, checked to be one, kept as PNG in the studio's uploads."""
    if not data:
        return JSONResponse({"error": "the upload is empty"}, status_code=400)
    folder = film.studio_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".upload-{secrets.token_hex(8)}"
    try:
        probe.write_bytes(data)
        pixels = read_image(probe)
    except DreamerError:
        return JSONResponse({"error": "that file is not an image the studio can read (PNG, "
                             "JPEG, WebP, ...)"}, status_code=415)
    finally:
        probe.unlink(missing_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16] + ".png"
    (folder / name).write_bytes(encode_image(pixels, "png"))
    h, w = pixels.shape[:2]
    return JSONResponse({"value": f"studio/uploads/{name}", "width": w, "height": h,
                         "url": f"files/studio/uploads/{name}"})

