"""Crafted model files: refused with one line (InputError, exit 2) before anything big is allocated,
whatever their configuration claims; fuzzed metadata and configs never crash."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, SAMPLES, run_cli
from otmap_cli.errors import InputError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _small_map():
    from otmap_cli.nets.monotone_numpy import NumpyCMGN
    from otmap_cli.transport.colormap import ColourMap

    return ColourMap(NumpyCMGN(dim=3, width=8, layers=2))


def flow_prior(config):
    from otmap_cli.restoration.prior import FlowPrior

    return FlowPrior.from_config(config)


def _small_prior():
    return flow_prior({"channels": [8, 16], "blocks": 1, "emb_dim": 8})


def _rewrite(path, tensors, kind, meta_text):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path),
              metadata={"otmap_kind": kind, "otmap_meta": meta_text})
    return path


def _map_file(tmp_path, config, name="crafted.safetensors"):
    import torch

    tensors = {name: torch.from_numpy(value) for name, value in _small_map().net.state_dict().items()}
    return _rewrite(tmp_path / name, tensors, "colour-map", json.dumps({"config": config}))


def _prior_file(tmp_path, meta_text, tensors=None, name="prior.safetensors"):
    tensors = _small_prior().state_dict() if tensors is None else tensors
    return _rewrite(tmp_path / name, tensors, "flow-prior", meta_text)


_PEAK_RSS = """
import resource, sys
from otmap_cli.errors import InputError
from otmap_cli.transport.colormap import ColourMap
from otmap_cli.restoration.prior import load_prior
from otmap_cli.generate.models import load_generator
import torch
torch.empty(1, device="meta") * 2  # PyTorch's own one-time import of its meta kernels, not the file's doing
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
loader = {"map": ColourMap.load, "prior": load_prior, "generator": load_generator}[sys.argv[1]]
try:
    loader(sys.argv[2])
    print("LOADED")
except InputError as exc:
    print("REFUSED", exc)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)  # MiB more at peak
"""


def _load_in_fresh_process(kind, path):
    proc = subprocess.run([sys.executable, "-c", _PEAK_RSS, kind, str(path)], capture_output=True, cwd=ROOT,
                          timeout=300)
    lines = proc.stdout.decode().splitlines()
    assert proc.returncode == 0 and len(lines) == 2, proc.stderr.decode()[-2000:]
    return lines[0], int(lines[1])


@pytest.mark.parametrize("config", [
    {"model": "cmgn", "dim": 3, "width": 8, "layers": 750_000_000},  # the 4.4 KB file that reached 3.4 GB
    {"model": "cmgn", "dim": 3, "width": 200_000, "layers": 200_000},
    {"model": "mmgn", "dim": 3, "modules": 4096, "width": 65536},
])
def test_huge_map_configs_are_refused_in_bounded_memory(tmp_path, config):
    verdict, extra_mib = _load_in_fresh_process("map", _map_file(tmp_path, config))
    assert verdict.startswith("REFUSED") and "\n" not in verdict
    assert extra_mib < 64, f"{extra_mib} MiB allocated before refusing"


def test_huge_prior_config_is_refused_in_bounded_memory(tmp_path):
    meta = json.dumps({"config": {"channels": [4096] * 8, "blocks": 16, "emb_dim": 8192}})
    verdict, extra_mib = _load_in_fresh_process("prior", _prior_file(tmp_path, meta))
    assert verdict.startswith("REFUSED") and "does not match" in verdict
    assert extra_mib < 64, f"{extra_mib} MiB allocated before refusing"


def test_huge_generator_config_is_refused_in_bounded_memory(tmp_path):
    from otmap_cli.generate.models import GaussianGenerator

    meta = json.dumps({"config": {"model": "cmgn", "width": 65536, "layers": 1024}})
    path = _rewrite(tmp_path / "gen.safetensors", GaussianGenerator().state_dict(), "mnist-generator", meta)
    verdict, extra_mib = _load_in_fresh_process("generator", path)
    assert verdict.startswith("REFUSED")
    assert extra_mib < 64, f"{extra_mib} MiB allocated before refusing"


@pytest.mark.parametrize("meta, words", [
    (json.dumps({"step": 3}), "no model configuration"),  # was KeyError: 'config'
    (json.dumps({"config": {"channels": [8, 16], "blocks": 1, "emb_dim": 8, "extra": 1}}), "unknown setting"),
    (json.dumps({"config": {"channels": [8, 16], "blocks": True, "emb_dim": 8}}), "blocks must be an integer"),
    (json.dumps({"config": {"channels": [8, 16], "blocks": 2, "emb_dim": 8}}), "does not match"),
    ("[" * 100_000 + "]" * 100_000, "corrupt otmap metadata"),  # was RecursionError
    (json.dumps([1, 2]), "corrupt otmap metadata"),
])
def test_bad_prior_files_are_one_line_input_errors(tmp_path, meta, words):
    from otmap_cli.restoration.prior import load_prior

    with pytest.raises(InputError, match=words) as caught:
        load_prior(_prior_file(tmp_path, meta))
    assert "\n" not in str(caught.value)


def test_prior_with_wrong_tensors_is_refused_by_the_cli(tmp_path):
    import torch

    meta = json.dumps({"config": {"channels": [8, 16], "blocks": 1, "emb_dim": 8}})
    path = _prior_file(tmp_path, meta, tensors={"w": torch.zeros(3)})
    proc = run_cli("restore", str(SAMPLES / "day.jpg"), "--task", "denoise", "--weights", str(path),
                   "-o", str(tmp_path / "out.png"))
    assert proc.returncode == 2, proc.stderr.decode()
    assert proc.stderr.decode().count("\n") == 1 and "Traceback" not in proc.stderr.decode()
    assert not (tmp_path / "out.png").exists()


def test_valid_files_still_load(tmp_path):
    import torch

    from otmap_cli.restoration.prior import load_prior
    from otmap_cli.transport.colormap import ColourMap

    colour_map = _small_map()
    colour_map.save(tmp_path / "map.safetensors")
    colours = np.random.default_rng(0).random((5, 3), dtype=np.float32)
    np.testing.assert_array_equal(ColourMap.load(tmp_path / "map.safetensors").transform(colours),
                                  colour_map.transform(colours))
    prior = _small_prior()
    meta = json.dumps({"config": prior.config})
    loaded = load_prior(_prior_file(tmp_path, meta, tensors=prior.state_dict()))
    assert loaded.config == prior.config


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=8)
_BIG_INTS = st.integers(-(2**63), 2**63) | st.sampled_from([0, 1, 2, 3, 8, 750_000_000, 10**400])


@FUZZ
@given(config=st.fixed_dictionaries({}, optional={"model": st.sampled_from(["cmgn", "mmgn", "other"]) | _JSON,
                                                  "dim": _BIG_INTS | _JSON, "width": _BIG_INTS | _JSON,
                                                  "layers": _BIG_INTS | _JSON, "modules": _BIG_INTS,
                                                  "sharpness": st.floats() | _JSON}) | _JSON)
def test_fuzzed_map_configs_fail_cleanly(tmp_path, config):
    from otmap_cli.transport.colormap import ColourMap

    try:
        colour_map = ColourMap.load(_map_file(tmp_path, config))
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert np.isfinite(colour_map.transform(np.random.default_rng(0).random((4, 3), dtype=np.float32))).all()


@FUZZ
@given(meta=st.text(max_size=200) | _JSON.map(json.dumps)
       | st.fixed_dictionaries({"config": st.fixed_dictionaries({}, optional={
           "channels": st.lists(_BIG_INTS, max_size=10) | _JSON, "blocks": _BIG_INTS | _JSON,
           "emb_dim": _BIG_INTS | _JSON, "in_channels": _BIG_INTS})}).map(json.dumps))
def test_fuzzed_prior_metadata_fails_cleanly(tmp_path, meta):
    from otmap_cli.restoration.prior import load_prior

    try:
        load_prior(_prior_file(tmp_path, meta))
    except InputError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("config", [{"model": "cmgn"}, {"model": "cmgn", "dim": 3, "width": 5, "layers": 4},
                                    {"model": "mmgn"}, {"model": "mmgn", "dim": 3, "modules": 3, "width": 7}])
def test_monotone_shapes_match_the_built_network(config):
    from otmap_cli.nets.monotone import build_monotone
    from otmap_cli.nets.monotone_numpy import NumpyCMGN, monotone_shapes

    built = {name: tuple(t.shape) for name, t in build_monotone(config).state_dict().items()}
    assert monotone_shapes(config) == built
    if config["model"] == "cmgn":
        options = {k: v for k, v in config.items() if k != "model"}
        assert {name: a.shape for name, a in NumpyCMGN(**options).state_dict().items()} == built


def test_checkpoint_of_another_model_is_an_input_error(tmp_path):
    from otmap_cli.training import load_module_tensors, module_tensors

    prior = _small_prior()
    other = module_tensors("model", flow_prior({"channels": [8], "blocks": 1, "emb_dim": 8}))
    with pytest.raises(InputError, match="checkpoint of another model") as caught:
        load_module_tensors("model", prior, other)
    assert "\n" not in str(caught.value)


def test_saving_a_map_without_overwrite_refuses_an_existing_file(tmp_path):
    colour_map = _small_map()
    colour_map.save(tmp_path / "m.safetensors", overwrite=False)
    with pytest.raises(InputError, match="already exists"):
        colour_map.save(tmp_path / "m.safetensors", overwrite=False)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=st.fixed_dictionaries({}, optional={
    "model": st.sampled_from(["brenier", "icnn", "gaussian", "cmgn", "dcgan", "x"]) | _JSON,
    "potential": st.sampled_from(["conv", "decoder"]) | _JSON, "channels": st.lists(_BIG_INTS, max_size=3) | _JSON,
    "hidden": _BIG_INTS, "code": _BIG_INTS, "rank": _BIG_INTS, "width": _BIG_INTS, "layers": _BIG_INTS,
    "latent": _BIG_INTS, "alpha": st.floats() | _JSON, "gain": st.floats()}))
def test_fuzzed_generator_configs_fail_cleanly(tmp_path, config):
    from otmap_cli.generate.models import GaussianGenerator, load_generator

    path = _rewrite(tmp_path / "gen.safetensors", GaussianGenerator().state_dict(), "mnist-generator",
                    json.dumps({"config": config}))
    try:
        load_generator(path)
    except InputError as exc:
        assert "\n" not in str(exc)
