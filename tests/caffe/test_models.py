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


def model_info(**kw) -> models.ModelInfo:
    """A registry entry; what only `models list` shows is left empty."""
    return models.ModelInfo(**{"about": "", "sha1_source": "", "size_mb": 1, "licence": "",
                               "layers": (), **kw})


def info(server, sha1, **kw):
    return model_info(name="tiny", caffemodel="tiny.caffemodel", prototxt="deploy.prototxt",
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
    (tmp_path / "m/tiny").mkdir(parents=True)  # the deploy file is there: the cut is the weights'
    (tmp_path / "m/tiny/deploy.prototxt").write_bytes(server.files["/deploy.prototxt"])
    with pytest.raises(DreamerError, match="cut off.*run the same command again"):
        models.download(model, tmp_path / "m", quiet=True)
    part = tmp_path / "m/tiny/tiny.caffemodel.part"
    assert part.stat().st_size == len(weights) // 3
    models.download(model, tmp_path / "m", quiet=True)
    assert (tmp_path / "m/tiny/tiny.caffemodel").read_bytes() == weights
    assert server.requests[-1] == ("/tiny.caffemodel", f"bytes={len(weights) // 3}-")


def test_archive_models_are_extracted(tmp_path):
    prototxt, caffemodel = make_tiny_model(tmp_path / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(caffemodel, "pack/tiny.caffemodel")
        tar.add(prototxt, "pack/deploy.protxt")
    server = Server({"/pack.tar.gz": buf.getvalue()})
    try:
        model = model_info(
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
    model = model_info(name="x", caffemodel="x.caffemodel", prototxt="deploy.prototxt",
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
    (tmp_path / "mine").mkdir()
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


# --- any deploy file (issue 23) -------------------------------------------------------------

def folder_with(tmp_path, *names):
    folder = tmp_path / "zoo model"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text("x")
    return folder


@pytest.mark.parametrize("names, found", [
    (["deploy.prototxt", "ResNet-50-deploy.prototxt"], "deploy.prototxt"),  # it wins
    (["ResNet-50-deploy.prototxt"], "ResNet-50-deploy.prototxt"),
    (["deploy_places205.protxt"], "deploy_places205.protxt"),
    (["deploy_vgg16_places365.prototxt", "solver.prototxt", "train_val.prototxt"],
     "deploy_vgg16_places365.prototxt"),  # a solver and a training net are not deploy files
])
def test_a_model_folder_s_deploy_file_is_found_whatever_its_name(tmp_path, names, found):
    folder = folder_with(tmp_path, *names, "w.caffemodel")
    prototxt, weights = models.resolve(str(folder), "w.caffemodel")
    assert prototxt == folder / found and weights == folder / "w.caffemodel"


def test_several_deploy_files_are_one_line_listing_them(tmp_path):
    folder = folder_with(tmp_path, "a_deploy.prototxt", "b_deploy.protxt")
    with pytest.raises(DreamerError, match=r"several deploy files \(a_deploy.prototxt, "
                                           r"b_deploy.protxt\); pick one with --prototxt"):
        models.resolve(str(folder), "w.caffemodel")
    with pytest.raises(DreamerError, match=r"no deploy file in .*--prototxt FILE"):
        models.resolve(str(folder_with(tmp_path / "x")), "w.caffemodel")


def test_prototxt_names_a_file_in_the_folder_or_anywhere(tmp_path):
    folder = folder_with(tmp_path, "a.prototxt", "b.prototxt")
    assert models.resolve(str(folder), "w.caffemodel", "b.prototxt")[0] == folder / "b.prototxt"
    elsewhere = tmp_path / "mine.prototxt"
    elsewhere.write_text("x")
    assert models.resolve(str(folder), "w.caffemodel", str(elsewhere))[0] == elsewhere


def test_the_folder_s_one_caffemodel_is_used_while_m_is_left_at_its_default(tmp_path):
    folder = folder_with(tmp_path, "ResNet-50-deploy.prototxt", "ResNet-50-model.caffemodel")
    assert models.resolve(str(folder), "bvlc_googlenet.caffemodel")[1] == \
        folder / "ResNet-50-model.caffemodel"
    (folder / "other.caffemodel").write_text("x")
    with pytest.raises(DreamerError, match=r"several caffemodels .*pick one with -m"):
        models.resolve(str(folder), "bvlc_googlenet.caffemodel")
    assert models.resolve(str(folder), "other.caffemodel")[1] == folder / "other.caffemodel"


def test_a_registry_name_finds_the_model_and_its_own_deploy_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DREAMER_MODELS", str(tmp_path))
    folder = tmp_path / "resnet50"
    folder.mkdir()
    for name in ("ResNet-50-deploy.prototxt", "ResNet-50-model.caffemodel"):
        (folder / name).write_text("x")
    assert models.resolve(None, "resnet50") == (folder / "ResNet-50-deploy.prototxt",
                                                folder / "ResNet-50-model.caffemodel")


def test_stage_2_runs_a_zoo_style_folder_with_no_deploy_prototxt(tiny_model, tmp_path):
    """The tiny net under zoo-style names: found and dreamed with -t alone."""
    import shutil

    from conftest import write_frames
    from dreamer.cli.dream import main as dream_main

    folder = tmp_path / "my model"
    folder.mkdir()
    shutil.copy(tiny_model / "deploy.prototxt", folder / "Tiny-deploy.prototxt")
    shutil.copy(tiny_model / "tiny.caffemodel", folder / "Tiny-model.caffemodel")
    write_frames(tmp_path / "frames", 1)
    assert dream_main(["-i", str(tmp_path / "frames"), "-o", str(tmp_path / "out"),
                       "-t", str(folder), "-itr", "1", "-oct", "1", "-v", "0"]) == 0
    assert (tmp_path / "out" / "00000001.png").is_file()


# --- the registry ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(models.MODELS))
def test_every_registry_model_says_where_it_comes_from_and_how_it_is_checked(name):
    m = models.MODELS[name]
    assert m.about and m.licence and m.layers and m.size_mb > 0
    assert m.weights_url.startswith("http") or m.page.startswith("http")
    if m.weights_sha1 is None:
        assert m.sha1_source.startswith("none published")
    else:
        assert len(m.weights_sha1) == 40 and int(m.weights_sha1, 16) >= 0 and m.sha1_source
    assert m.prototxt_url or m.archive
    assert not m.prototxt_url or m.prototxt_url.startswith("https://")


def test_the_registry_covers_what_deepdream_users_used():
    assert {"bvlc_googlenet", "places205-googlenet", "googlenet_places365",
            "bvlc_reference_caffenet", "bvlc_alexnet", "vgg16", "vgg19", "vgg16_places365",
            "resnet50", "resnet101", "resnet152", "resnet152_places365", "nin_imagenet",
            "squeezenet_v1.0", "squeezenet_v1.1", "finetune_flickr_style"} <= set(models.MODELS)


@pytest.mark.parametrize("net, deploy", [
    ("bvlc_reference_caffenet", "deploy.prototxt"), ("vgg16_places365",
                                                     "deploy_vgg16_places365.prototxt"),
    ("resnet50", "ResNet-50-deploy.prototxt"), ("nin_imagenet", "deploy.prototxt")])
def test_the_pinned_deploy_files_are_the_zoo_goldens_own(net, deploy):
    """The registry's sha256 of a deploy file is that of the file Caffe's goldens used."""
    from conftest import SHARED

    golden = SHARED / "golden" / "zoo" / net / deploy
    if not golden.is_file():
        pytest.skip(f"{golden} is absent (../shared is the developers' reference material)")
    registry = {"bvlc_reference_caffenet": "bvlc_reference_caffenet",
                "vgg16_places365": "vgg16_places365", "resnet50": "resnet50",
                "nin_imagenet": "nin_imagenet"}[net]
    assert hashlib.sha256(golden.read_bytes()).hexdigest() == \
        models.MODELS[registry].prototxt_sha256


def test_a_model_with_no_published_checksum_records_one_at_its_first_download(served, tmp_path):
    server, weights = served
    model = info(server, None)
    folder = models.download(model, tmp_path / "m", quiet=True)
    record = folder / "tiny.caffemodel.sha1"
    assert record.read_text().split()[0] == hashlib.sha1(weights).hexdigest()
    ok, text = models.verify(model, tmp_path / "m")
    assert ok and "as recorded at its first download" in text
    (folder / "tiny.caffemodel").write_bytes(weights[:-1] + b"!")
    ok, text = models.verify(model, tmp_path / "m")
    assert not ok and "recorded at its first download; it changed since" in text


def test_a_model_offered_only_on_a_web_page_says_where_to_put_it(served, tmp_path):
    server, weights = served
    model = info(server, hashlib.sha1(weights).hexdigest(), page="https://example.org/page")
    model = models.ModelInfo(**{**vars(model), "weights_url": ""})
    with pytest.raises(DreamerError, match=r"offered only on a web page: download "
                                           r"tiny.caffemodel from https://example.org/page "
                                           r"into .*dreamvideo models verify tiny"):
        models.download(model, tmp_path / "m", quiet=True)
    folder = tmp_path / "m" / "tiny"
    assert (folder / "deploy.prototxt").is_file()  # the deploy file came meanwhile
    (folder / "tiny.caffemodel").write_bytes(weights)  # the user's download by hand
    assert models.download(model, tmp_path / "m", quiet=True) == folder


def test_a_deploy_file_that_is_not_the_pinned_one_is_refused(served, tmp_path):
    server, weights = served
    model = info(server, hashlib.sha1(weights).hexdigest(), prototxt_sha256="0" * 64)
    with pytest.raises(DreamerError, match=r"deploy.prototxt has sha256 .* not the published"):
        models.download(model, tmp_path / "m", quiet=True)
    assert not (tmp_path / "m/tiny/deploy.prototxt").exists()


def test_t_folder_with_a_registry_name_takes_that_model_s_file_names(tmp_path):
    folder = folder_with(tmp_path, "ResNet-50-deploy.prototxt", "other-deploy.prototxt",
                         "ResNet-50-model.caffemodel", "x.caffemodel")
    assert models.resolve(str(folder), "resnet50") == (folder / "ResNet-50-deploy.prototxt",
                                                       folder / "ResNet-50-model.caffemodel")
