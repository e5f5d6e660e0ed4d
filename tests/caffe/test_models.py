"""Model download (resumable, checksummed) against a local HTTP server, and the search."""
from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading

import pytest

from dreamer.caffe import models
from dreamer.errors import DreamerError
from tiny_caffe import make_tiny_model


class Server:
    """Serves bytes on 127.0.0.1 with Range support; can cut a transfer short once."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.cut_after, self.requests = files, None, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                data = outer.files.get(self.path)
                outer.requests.append((self.path, self.headers.get("Range")))
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if outer.cut_after is not None:
                    body, outer.cut_after = body[:outer.cut_after], None
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    prototxt, caffemodel = make_tiny_model(tmp_path / "src")
    weights = caffemodel.read_bytes()
    server = Server({"/tiny.caffemodel": weights, "/deploy.prototxt": prototxt.read_bytes()})
    yield server, weights
    server.close()


def info(server, sha1, **kw):
    return models.ModelInfo(name="tiny", caffemodel="tiny.caffemodel", prototxt="deploy.prototxt",
                            weights_url=f"{server.url}/tiny.caffemodel", weights_sha1=sha1,
                            prototxt_url=f"{server.url}/deploy.prototxt", **kw)


def test_download_with_good_checksum_gives_a_loadable_model(served, tmp_path):
    server, weights = served
    folder = models.download(info(server, hashlib.sha1(weights).hexdigest()), tmp_path / "m",
                             quiet=True)
    assert (folder / "tiny.caffemodel").read_bytes() == weights
    from dreamer.caffe.net import load_net

    load_net(folder / "deploy.prototxt", folder / "tiny.caffemodel")
    ok, text = models.verify(info(server, hashlib.sha1(weights).hexdigest()), tmp_path / "m")
    assert ok and "OK" in text


def test_download_with_bad_checksum_is_refused_and_not_left_under_the_real_name(served,
                                                                                tmp_path):
    server, _ = served
    with pytest.raises(DreamerError, match="expected 0000.*corrupt"):
        models.download(info(server, "0" * 40), tmp_path / "m", quiet=True)
    assert not (tmp_path / "m/tiny/tiny.caffemodel").exists()
    assert (tmp_path / "m/tiny/tiny.caffemodel.bad").exists()


def test_interrupted_download_resumes_where_it_stopped(served, tmp_path):
    server, weights = served
    server.cut_after = len(weights) // 3
    model = info(server, hashlib.sha1(weights).hexdigest())
    with pytest.raises(DreamerError, match="cut off.*run the same command again"):
        models.download(model, tmp_path / "m", quiet=True)
    part = tmp_path / "m/tiny/tiny.caffemodel.part"
    assert part.stat().st_size == len(weights) // 3
    models.download(model, tmp_path / "m", quiet=True)
    assert (tmp_path / "m/tiny/tiny.caffemodel").read_bytes() == weights
    assert server.requests[-2] == ("/tiny.caffemodel", f"bytes={len(weights) // 3}-")


def test_archive_models_are_extracted(tmp_path):
    prototxt, caffemodel = make_tiny_model(tmp_path / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(caffemodel, "pack/tiny.caffemodel")
        tar.add(prototxt, "pack/deploy.protxt")
    server = Server({"/pack.tar.gz": buf.getvalue()})
    try:
        model = models.ModelInfo(
            name="packed", caffemodel="tiny.caffemodel", prototxt="deploy.protxt",
            weights_url=f"{server.url}/pack.tar.gz",
            weights_sha1=hashlib.sha1(buf.getvalue()).hexdigest(), prototxt_url=None,
            archive={"pack/tiny.caffemodel": "tiny.caffemodel",
                     "pack/deploy.protxt": "deploy.protxt"})
        folder = models.download(model, tmp_path / "m", quiet=True)
    finally:
        server.close()
    assert (folder / "tiny.caffemodel").read_bytes() == caffemodel.read_bytes()


def test_offline_download_says_what_to_fetch_and_where(tmp_path):
    model = models.ModelInfo(name="x", caffemodel="x.caffemodel", prototxt="deploy.prototxt",
                             weights_url="http://127.0.0.1:9/x.caffemodel", weights_sha1="0",
                             prototxt_url=None)
    with pytest.raises(DreamerError, match=r"cannot download http://127.0.0.1:9/x.caffemodel"
                                           r".*download it by hand into"):
        models.download(model, tmp_path, quiet=True)


def test_search_order_explicit_then_env_then_cache(tmp_path, monkeypatch):
    env, cache = tmp_path / "env", tmp_path / "cache"
    for base in (env, cache / "dreamer" / "models"):
        folder = base / "bvlc_googlenet"
        folder.mkdir(parents=True)
        (folder / "deploy.prototxt").write_text("x")
        (folder / "bvlc_googlenet.caffemodel").write_bytes(b"x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("DREAMER_MODELS", str(env))
    proto, weights = models.resolve(None, "bvlc_googlenet.caffemodel", "deploy.prototxt")
    assert weights == env / "bvlc_googlenet" / "bvlc_googlenet.caffemodel"
    monkeypatch.delenv("DREAMER_MODELS")
    _, weights = models.resolve(None, "bvlc_googlenet.caffemodel", "deploy.prototxt")
    assert weights.parent == cache / "dreamer" / "models" / "bvlc_googlenet"
    _, weights = models.resolve(str(tmp_path / "mine"), "w.caffemodel", "deploy.prototxt")
    assert weights == tmp_path / "mine" / "w.caffemodel"


def test_missing_model_names_the_download_command(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("DREAMER_MODELS", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DreamerError, match="dreamvideo models download bvlc_googlenet"):
        models.resolve(None, "bvlc_googlenet.caffemodel", "deploy.prototxt")


def test_registry_has_the_official_checksums():
    assert models.MODELS["bvlc_googlenet"].weights_sha1 == \
        "405fc5acd08a3bb12de8ee5e23a96bec22f08204"
    assert "places205-googlenet" in models.MODELS


def test_an_existing_file_with_another_checksum_is_never_touched(served, tmp_path):
    server, weights = served
    folder = tmp_path / "m" / "tiny"
    folder.mkdir(parents=True)
    (folder / "tiny.caffemodel").write_bytes(b"the user's own weights")
    with pytest.raises(DreamerError, match="left as it is"):
        models.download(info(server, hashlib.sha1(weights).hexdigest()), tmp_path / "m",
                        quiet=True)
    assert (folder / "tiny.caffemodel").read_bytes() == b"the user's own weights"
    assert sorted(p.name for p in folder.iterdir()) == ["tiny.caffemodel"]
    assert server.requests == []
