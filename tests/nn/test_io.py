"""Model files: round trip, and refusal of tampered or malformed files."""

from __future__ import annotations

import io
import json
import zipfile

import numpy
import pytest
from nnhelpers import blobs, make_spec

from pipeline.hashing import sha256_file
from pipeline.nn import ModelFileError, build_network, load_model, save_model, validate_spec

LAYERS = [{"type": "fc", "units": 5, "activation": "relu", "dropout": 0.5}, {"type": "softmax", "units": 3}]


@pytest.fixture
def saved(tmp_path):
    spec = make_spec(LAYERS, "log_likelihood", dtype="float32", seed=8)
    net = build_network(spec)
    metadata = {"test_accuracy": numpy.float64(0.9542), "data_sha256": "ab" * 32, "epochs": numpy.int64(30)}
    save_model(tmp_path / "model", net, spec, metadata)
    return tmp_path / "model", net, spec


def rewrite_weights(directory, change):
    with numpy.load(directory / "weights.npz", allow_pickle=False) as npz:
        state = {k: npz[k] for k in npz.files}
    change(state)
    numpy.savez(directory / "weights.npz", **state)


def test_round_trip(saved):
    directory, net, spec = saved
    assert sorted(p.name for p in directory.iterdir()) == ["model.json", "weights.npz"]  # no temp files left
    loaded, loaded_spec, metadata, info = load_model(directory)
    assert info["spec"] == loaded_spec == validate_spec(spec)  # saved with every default filled in
    assert metadata == {"test_accuracy": 0.9542, "data_sha256": "ab" * 32, "epochs": 30}
    assert info["params"]["layers.0.w"] == {"shape": [6, 5], "dtype": "float32"}
    assert loaded.dtype == numpy.float32
    for k, v in net.state_dict().items():
        assert numpy.array_equal(loaded.state_dict()[k], v)
    x, _ = blobs(20, dtype=numpy.float32)
    numpy.testing.assert_array_equal(loaded.forward(x), net.forward(x))  # dropout scaling included


def test_saving_again_overwrites_atomically(saved):
    directory, net, spec = saved
    net.layers[0].params["w"] += 1.0
    save_model(directory, net, spec)
    assert numpy.array_equal(load_model(directory).network.state_dict()["layers.0.w"], net.state_dict()["layers.0.w"])


def test_wrong_shape_is_rejected(saved):
    directory = saved[0]
    rewrite_weights(directory, lambda s: s.update({"layers.0.w": numpy.zeros((5, 6), numpy.float32)}))
    with pytest.raises(ModelFileError, match=r"'layers.0.w' has shape \(5, 6\), expected \(6, 5\)"):
        load_model(directory)


TAMPERINGS = {
    "missing array": (lambda s: s.pop("layers.1.b"), r"missing array\(s\) \['layers.1.b'\]"),
    "extra array": (lambda s: s.update({"layers.2.w": numpy.zeros(3, numpy.float32)}),
                    "unexpected array"),
    "pickled object array": (
        lambda s: s.update({"layers.0.b": numpy.array([{"x": 1}] * 5, dtype=object)}),
        "pickled object array.*allow_pickle=False"),
    "non-float array": (lambda s: s.update({"layers.0.b": numpy.zeros(5, numpy.int32)}),
                        "dtype int32"),
    "changed values": (lambda s: s.update({"layers.0.w": s["layers.0.w"] + 1}), "SHA-256"),
}


@pytest.mark.parametrize("change,message", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_tampered_weights_are_rejected(saved, change, message):
    directory = saved[0]
    rewrite_weights(directory, change)
    with pytest.raises(ModelFileError, match=message):
        load_model(directory)


def rewrite_entry(directory, name, member, data):
    """weights.npz with ``name``'s entry replaced by ``data`` stored as ``member``, and
    model.json's digest updated, so only the entry itself is wrong."""
    path = directory / "weights.npz"
    with numpy.load(path, allow_pickle=False) as npz:
        state = {k: npz[k] for k in npz.files}
    with zipfile.ZipFile(path, "w") as zf:
        for key, value in state.items():
            if key == name:
                zf.writestr(member, data)
                continue
            buf = io.BytesIO()
            numpy.lib.format.write_array(buf, value)
            zf.writestr(key + ".npy", buf.getvalue())
    edit_info(directory, lambda info: info.update(weights_sha256=sha256_file(path)))


def edit_info(directory, edit):
    info = json.loads((directory / "model.json").read_text())
    edit(info)
    (directory / "model.json").write_text(json.dumps(info))


@pytest.mark.parametrize(
    "member, data, message",
    [
        ("layers.0.b", b"hello", r"entry 'layers.0.b' is not a .npy array \(bytes\); train it again"),
        ("layers.0.b.npy", b"\x93NUMPY\x01\x00garbage", r"array 'layers.0.b' is unreadable \(.*\); train it again"),
    ],
    ids=["entry without a .npy header", "damaged .npy header"],
)
def test_damaged_entries_are_refused_as_such(saved, member, data, message):
    """Not an AttributeError traceback, and not called a pickled object array."""
    directory = saved[0]
    rewrite_entry(directory, "layers.0.b", member, data)
    with pytest.raises(ModelFileError, match=message) as info:
        load_model(directory)
    assert "weights.npz" in str(info.value) and "pickled" not in str(info.value)


def test_arrays_must_have_the_declared_dtype(tmp_path):
    """float64 weights under a float32 description would load silently cast to float32."""
    spec64 = make_spec(LAYERS, "log_likelihood", dtype="float64", seed=8)
    net64 = build_network(spec64)
    for name, edit, message in [
        ("param", lambda info: info["params"]["layers.0.w"].update(dtype="float32"),
         r"'params.layers.0.w.dtype' is 'float32', but weights.npz holds float64"),
        ("model", lambda info: info.update(dtype="float32"),
         r"'dtype' is 'float32', but 'params.layers.0.w.dtype' is 'float64'"),
    ]:
        directory = save_model(tmp_path / name, net64, spec64)
        edit_info(directory, edit)
        with pytest.raises(ModelFileError, match=message):
            load_model(directory)
    # float16 weights declared as float16 in params: refused, not cast up to the spec's float32
    directory = save_model(tmp_path / "half", net64, spec64)
    rewrite_weights(directory, lambda state: state.update({k: v.astype(numpy.float16) for k, v in state.items()}))

    def declare_half(info):
        for entry in info["params"].values():
            entry["dtype"] = "float16"
        info["weights_sha256"] = sha256_file(directory / "weights.npz")

    edit_info(directory, declare_half)
    with pytest.raises(ModelFileError, match="has dtype float16, expected float32 or float64"):
        load_model(directory)
    # asking for another precision is still a cast on purpose
    directory = save_model(tmp_path / "asked", net64, spec64)
    assert load_model(directory, dtype="float32").network.dtype == numpy.float32


@pytest.mark.parametrize("units, fragment", [
    (7, r"\(53 numbers\) do not match the spec's network \(73 numbers\)"),
    # refused before the network is built: a net of 10**9 weights would not fit in memory
    (10**8, "do not match the spec's network"),
])
def test_spec_that_does_not_match_the_weights(saved, units, fragment):
    directory = saved[0]
    info = json.loads((directory / "model.json").read_text())
    info["spec"]["model"]["layers"][0]["units"] = units
    (directory / "model.json").write_text(json.dumps(info))
    with pytest.raises(ModelFileError, match=fragment):
        load_model(directory)


def test_declared_shapes_that_do_not_match_the_spec(saved):
    """As many numbers as the spec's network holds, in other shapes."""
    directory = saved[0]
    info = json.loads((directory / "model.json").read_text())
    info["params"]["layers.0.w"]["shape"] = info["params"]["layers.0.w"]["shape"][::-1]
    (directory / "model.json").write_text(json.dumps(info))
    with pytest.raises(ModelFileError, match="do not match the spec's network"):
        load_model(directory)


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda info: info.update(format="something-else"), "not a nielsen-mnist-model file"),
        (lambda info: info.update(format_version=99), "format_version 99"),
        (lambda info: info.update(format_version=True), "format_version True"),
        (lambda info: info.pop("dtype"), "missing key 'dtype'"),
        (lambda info: info.pop("weights_sha256"), "missing key 'weights_sha256'"),
        (lambda info: info["spec"]["model"].update(cost="hinge"), "invalid spec: model.cost"),
        (lambda info: info.update(params=[1, 2]), "'params' is malformed"),
        (lambda info: info.update(metadata="oops"), "'metadata' must be a mapping, got str"),
        (lambda info: info.update(metadata={"metrics": [1]}), "'metadata.metrics' must be a mapping"),
        (lambda info: info.update(dtype="float99"), "'dtype' 'float99' is not float32 or float64"),
        (lambda info: info.update(dtype="int8"), "'dtype' 'int8' is not float32 or float64"),
        (lambda info: info.update(weights_file="other.npz"), "'weights_file' is 'other.npz'.*always 'weights.npz'"),
        (lambda info: info["params"]["layers.0.w"].pop("dtype"), "'params' is malformed"),
    ],
)
def test_malformed_model_json(saved, edit, fragment):
    directory = saved[0]
    info = json.loads((directory / "model.json").read_text())
    edit(info)
    (directory / "model.json").write_text(json.dumps(info))
    with pytest.raises(ModelFileError, match=fragment):
        load_model(directory)


def test_unreadable_files(saved, tmp_path):
    directory = saved[0]
    (directory / "weights.npz").write_bytes(b"not a zip file")
    with pytest.raises(ModelFileError, match="not a readable .npz"):
        load_model(directory)
    (directory / "model.json").write_text("{broken")
    with pytest.raises(ModelFileError, match=r"not valid JSON .*: the file is damaged; train it again"):
        load_model(directory)
    # models/<id>/seed<k> that was never made: its run's stage, not a whole `dvc repro`, and
    # a folder that does not exist at all may be a misspelt run
    missing = tmp_path / "models" / "ch6-rleu" / "seed1"
    with pytest.raises(ModelFileError, match=r"seed1/model.json: not found: .*seed1 does not exist \(is the "
                       r"path spelt right\?\); .*train it \(`dvc repro train@ch6-rleu`\) or fetch it "
                       r"from a DVC remote \(`dvc repro --pull train@ch6-rleu`\)"):
        load_model(missing)
    # a seed above every one its run trained (seed2's folder half made, seed10 after seed9 by
    # number): retraining the run makes it only if the profile lists it
    for seed in ("seed1", "seed9", "seed10"):
        (missing.parent / seed).mkdir(parents=True)
        (missing.parent / seed / "model.json").write_text("{}")
    (missing.parent / "seed2").mkdir()
    with pytest.raises(ModelFileError, match=r"seed11/model.json: not found: .*; .*ch6-rleu holds only seed1, "
                       r"seed9, seed10: if `book.ch6-rleu.seeds` in params.yaml lists seed 11, train it "
                       r"\(`dvc repro train@ch6-rleu`\) .*; if not, it is another profile's seed"):
        load_model(missing.parent / "seed11")
    # a seed below one it trained was lost (a stopped run): train the run again
    with pytest.raises(ModelFileError, match=r"seed2/model.json: not found; .*; train it \(`dvc repro "
                       r"train@ch6-rleu`\) or fetch it from a DVC remote \(`dvc repro --pull train@ch6-rleu`\) first$"):
        load_model(missing.parent / "seed2")
    run = tmp_path / "run"
    for seed in ("seed1", "seed2"):
        (run / seed).mkdir(parents=True)
        (run / seed / "model.json").write_text("{}")
    with pytest.raises(ModelFileError, match="holds the model directories seed1, seed2: give one of them"):
        load_model(run)


def test_save_refuses_a_spec_that_does_not_describe_the_network(tmp_path):
    spec = make_spec(LAYERS, "log_likelihood")
    other = make_spec([{"type": "fc", "units": 4}, {"type": "softmax", "units": 3}], "log_likelihood")
    with pytest.raises(ValueError, match="spec describes parameters"):
        save_model(tmp_path / "m", build_network(spec), other)


@pytest.mark.parametrize("value", [numpy.nan, numpy.inf])
def test_weights_that_are_not_finite_are_refused_on_loading(saved, value):
    directory, net, spec = saved
    net.layers[0].params["w"][0, 0] = value
    save_model(directory, net, spec)  # its digest matches: only the values are wrong
    with pytest.raises(ModelFileError, match=r"'layers.0.w' contains NaN or infinite values"):
        load_model(directory)


def test_a_network_built_in_another_precision_than_its_spec_loads_in_its_own(tmp_path):
    """model.json's dtype, not the spec's training.dtype, is the precision a model loads in:
    float64 weights of a float32 spec come back as float64, bit for bit."""
    spec32 = make_spec(LAYERS, "log_likelihood", dtype="float32", seed=8)
    net64 = build_network(spec32, dtype="float64")
    net64.layers[0].params["w"] += 1e-12  # not representable in float32
    directory = save_model(tmp_path / "model", net64, spec32)
    loaded = load_model(directory).network
    assert loaded.dtype == numpy.float64
    for k, v in net64.state_dict().items():
        assert numpy.array_equal(loaded.state_dict()[k], v)


def test_load_state_dict_refuses_extra_names_and_non_float_arrays():
    net = build_network(make_spec(LAYERS, "log_likelihood", seed=8))
    state = net.state_dict()
    with pytest.raises(ValueError, match=r"unexpected \['layers.2.w'\]"):
        net.load_state_dict(dict(state, **{"layers.2.w": numpy.zeros((3, 3))}))
    with pytest.raises(ValueError, match="layers.0.w: dtype int64 is not a floating-point type"):
        net.load_state_dict(dict(state, **{"layers.0.w": state["layers.0.w"].astype(numpy.int64)}))
    assert all(numpy.array_equal(net.state_dict()[k], v) for k, v in state.items())


def test_a_trained_runs_spec_is_not_held_to_the_rules_for_new_runs(saved):
    """Early stopping no later than the eta schedule is refused for a new run; a model trained
    that way before the rule (its spec in model.json) still loads."""
    directory = saved[0]

    def plateau_rules(info):
        info["spec"]["training"]["early_stopping"] = {"patience": 5}
        info["spec"]["training"]["eta_schedule"] = {"kind": "halve_on_plateau", "patience": 5,
                                                    "min_fraction": 0.0078125}

    edit_info(directory, plateau_rules)
    info = json.loads((directory / "model.json").read_text())
    with pytest.raises(ValueError, match="training.early_stopping.patience"):
        validate_spec(info["spec"])
    assert load_model(directory).spec["training"]["early_stopping"] == {"patience": 5}


# -- files from others: memory stays within the size of the files given ----------------------


def test_an_entry_that_unpacks_past_the_whole_file_is_refused_unread(saved):
    """A deflated entry of zeros (a zip bomb: 800 kB unpacked 768 MiB) would be read whole."""
    directory = saved[0]
    path = directory / "weights.npz"
    with numpy.load(path, allow_pickle=False) as npz:
        state = {k: npz[k] for k in npz.files}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in state.items():
            if key == "layers.0.b":  # no .npy header: numpy.load returns all of its bytes
                zf.writestr(key, bytes(8 << 20))
                continue
            buf = io.BytesIO()
            numpy.lib.format.write_array(buf, value)
            zf.writestr(key + ".npy", buf.getvalue())
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ModelFileError, match=r"entry 'layers.0.b' unpacks to 8,388,608 bytes, more than the "
                                             r"whole file .*refused unread"):
        load_model(directory)


def test_a_npy_header_declaring_a_huge_array_is_refused_before_it_is_allocated(saved):
    """numpy allocates what an entry's header declares (here 3.6 TiB) before reading its data."""
    directory = saved[0]
    header = io.BytesIO()
    numpy.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                     "shape": (10**7, 10**5)})
    rewrite_entry(directory, "layers.0.w", "layers.0.w.npy", header.getvalue() + bytes(120))
    with pytest.raises(ModelFileError, match=r"'layers.0.w' has shape \(10000000, 100000\), expected \(6, 5\)"):
        load_model(directory)


def test_a_spec_of_more_numbers_than_the_weights_file_holds_is_refused_before_the_net_is_built(saved, monkeypatch):
    """model.json alone decides how large a network is built: 18 kB of files asked for 12 GiB."""
    import pipeline.nn.io as model_io

    directory = saved[0]
    units = 10**6

    def edit(info):
        info["spec"]["model"]["layers"][0]["units"] = units
        params = info["params"]
        inputs = params["layers.0.w"]["shape"][0]
        params["layers.0.w"]["shape"], params["layers.0.b"]["shape"] = [inputs, units], [units]
        params["layers.1.w"]["shape"] = [units, params["layers.1.w"]["shape"][1]]

    edit_info(directory, edit)
    monkeypatch.setattr(model_io, "build_network", lambda *a, **k: pytest.fail("the network was built"))
    with pytest.raises(ModelFileError, match=r"weights.npz: [\d,]+ bytes cannot hold the [\d,]+ float32 numbers "
                                             r"model.json declares .*refused before allocating them"):
        load_model(directory)


@pytest.mark.parametrize("text, fragment", [
    ('"shape": [Infinity]', "'params' is malformed"),  # int(inf): an OverflowError
    ('"x": ' + "9" * 5000, "not valid JSON .*4300 digits"),  # a ValueError, not a JSONDecodeError
    ('"x": ' + "[" * 100_000 + "]" * 100_000, "not valid JSON"),  # a RecursionError
], ids=["infinite shape", "huge integer", "deep nesting"])
def test_model_json_that_python_cannot_convert_is_refused_as_damaged(saved, text, fragment):
    directory = saved[0]
    path = directory / "model.json"
    info = path.read_text()
    if "shape" in text:
        info = info.replace('"shape": [\n        5\n      ]', text, 1)
    else:
        info = info.replace('"format_version": 1', f'"format_version": 1, {text}', 1)
    assert text in info
    path.write_text(info)
    with pytest.raises(ModelFileError, match=fragment):
        load_model(directory)
