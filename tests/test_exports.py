"""The exports for other engines (mlc/runtime/export/), proven with the engines' own readers:
onnxruntime runs the ONNX graph, torch.jit the TorchScript file, protobuf's text-format
parser reads config.pbtxt, XGBoost reads the FIL repository's model, and TorchServe's own
model loader runs the archive's handler. Each must answer what mlc's server answers
(mlc/runtime/serve/loader.py) for real rows of the example project, missing values included.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mlc import step_contract as sc
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment
from mlc.runtime import export, model_format
from mlc.runtime.export import graph, onnx_export, pbtxt, torchscript, torchserve, triton
from mlc.runtime.serve.loader import load_folder
from mlc.runtime.step import StepFailed, build_context, run_step
from mlc.runtime.train import data, trainer

from .conftest import ROOT

onnx = pytest.importorskip("onnx", reason="onnx is not installed (the `export` extra)")
ort = pytest.importorskip("onnxruntime",
                          reason="onnxruntime is not installed (the `export` extra)")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PIPELINE = "train-fraud-classifier"
SMALL = json.dumps({"hidden_layers": [16], "epochs": 2, "batch_size": 64,
                    "learning_rate": 0.003})
BATCHING = triton.Batching(max_batch_size=32, max_queue_delay_microseconds=5000,
                           max_queue_size=256)
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def environ(tmp: Path, **extra) -> dict[str, str]:
    return {"MLC_DATA_ROOT": str(ROOT), "MLC_RUN_DIR": str(tmp / "run"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
            "MLC_CHECKPOINT_DIR": str(tmp / "checkpoints"),  # not the example's bucket
            "MLC_PARAM_HYPERPARAMETERS": SMALL, **extra}


@pytest.fixture(scope="module")
def project():
    resolved = check_environment(ROOT, "dev", Diagnostics())
    assert resolved is not None
    return resolved


@pytest.fixture(scope="module")
def dataset(project, tmp_path_factory):
    """The example's real training set (data/*.parquet, joined point-in-time)."""
    ctx = build_context(project, PIPELINE, "train",
                        environ=environ(tmp_path_factory.mktemp("dataset")))
    return data.build_dataset(ctx, ctx.model)


def _train(dataset, task: str, folder: Path) -> Path:
    hp = trainer.hyperparameters({}, SMALL)
    spec, arrays = trainer.prepare(dataset, task, hp)
    result = trainer.fit(spec, arrays, hp, device=torch.device("cpu"))
    return model_format.save_model(folder, spec, result.state_dict)


@pytest.fixture(scope="module")
def models(dataset, tmp_path_factory):
    """An mlc model folder per output kind, trained on the real rows: the fraud label
    (binary), one of the features predicted from the others (regression), and the fraud
    label crossed with a feature's sign (three classes)."""
    root = tmp_path_factory.mktemp("models")
    frame = dataset.frame.copy()
    target, *rest = dataset.features
    regression = data.Dataset(frame, rest, dataset.feature_refs[1:], target,
                              dataset.timestamp, dataset.info)
    frame3 = frame.copy()
    frame3["kind"] = np.where(frame3[dataset.label] == 1, "fraud",
                              np.where(frame3[rest[0]].fillna(0) > frame3[rest[0]].median(),
                                       "high", "low"))
    multiclass = data.Dataset(frame3, dataset.features, dataset.feature_refs, "kind",
                              dataset.timestamp, dataset.info)
    return {"binary": _train(dataset, "classification", root / "binary"),
            "regression": _train(regression, "regression", root / "regression"),
            "multiclass": _train(multiclass, "classification", root / "multiclass")}


def rows_for(dataset, spec) -> np.ndarray:
    """Real test rows in the spec's feature order, with missing and infinite values among
    them (the server fills both with the training mean)."""
    test = dataset.frame[dataset.frame[data.SPLIT_COLUMN] == "test"]
    rows = test[spec["features"]].to_numpy(dtype=np.float64)[:300].copy()
    rows[::7, 0] = np.nan
    rows[3::11, -1] = np.nan
    rows[5, 0] = np.inf
    rows[6] = np.nan  # a row with nothing known
    assert np.isnan(rows).any()
    return rows


def server(folder: Path, rows: np.ndarray) -> np.ndarray:
    """What mlc's server answers: its loader's predict (the float32 rows an engine gets)."""
    model = load_folder(folder, name="m", version="1", alias=None, trained_at=None)
    out = model.predict(rows.astype(np.float32).astype(np.float64))
    return out.reshape(len(rows), -1)


KINDS = ["binary", "regression", "multiclass"]


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_in_onnxruntime_answers_what_the_server_answers(models, dataset, kind):
    folder = models[kind]
    spec = model_format.load_spec(folder)
    blob = onnx_export.onnx_bytes(folder)
    assert onnx_export.onnx_bytes(folder) == blob  # the same model, the same bytes
    proto = onnx.load_from_string(blob)
    onnx.checker.check_model(proto, full_check=True)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == \
        [onnx_export.OPSET]
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1]) == ("features", "tensor(float)",
                                                  len(spec["features"]))
    assert isinstance(inp.shape[0], str)  # the batch axis is dynamic
    assert (out.name, out.type, out.shape[1]) == ("prediction", "tensor(double)",
                                                  graph.output_width(spec))
    rows = rows_for(dataset, spec)
    want = server(folder, rows)
    got = session.run(None, {"features": rows.astype(np.float32)})[0]
    assert got.shape == want.shape and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, **TOLERANCE)
    one = session.run(None, {"features": rows[:1].astype(np.float32)})[0]
    np.testing.assert_allclose(one, want[:1], **TOLERANCE)
    if kind == "multiclass":
        assert spec["classes"] == ["fraud", "high", "low"]
        np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_torchscript_answers_what_the_server_answers(models, dataset, kind):
    folder = models[kind]
    spec = model_format.load_spec(folder)
    loaded = torch.jit.load(io.BytesIO(torchscript.torchscript_bytes(folder)))
    rows = rows_for(dataset, spec)
    with torch.no_grad():
        got = loaded(torch.from_numpy(rows.astype(np.float32))).numpy()
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, server(folder, rows), **TOLERANCE)


# --- Triton's config.pbtxt, read by protobuf's own text-format parser ----------------------
# A subset of Triton's ModelConfig (model_config.proto: the same field names, types and
# enum values), enough for every field mlc writes; an unknown field fails the parse.

def _model_config_class():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="mlc_test_triton.proto",
                                              package="mlc_test.triton", syntax="proto3")
    data_type = file.enum_type.add(name="DataType")
    for number, name in enumerate(["TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16",
                                   "TYPE_UINT32", "TYPE_UINT64", "TYPE_INT8", "TYPE_INT16",
                                   "TYPE_INT32", "TYPE_INT64", "TYPE_FP16", "TYPE_FP32",
                                   "TYPE_FP64", "TYPE_STRING", "TYPE_BF16"]):
        data_type.value.add(name=name, number=number)

    def message(name, fields, nested=()):
        m = file.message_type.add(name=name)
        for n in nested:
            m.nested_type.add().CopyFrom(n)
        for number, (field, kind, label, type_name) in enumerate(fields, start=1):
            f = m.field.add(name=field, number=number, type=kind, label=label)
            if type_name:
                f.type_name = type_name
        return m

    one, many = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("ModelTensor", [("name", F.TYPE_STRING, one, None),
                            ("data_type", F.TYPE_ENUM, one, ".mlc_test.triton.DataType"),
                            ("dims", F.TYPE_INT64, many, None)])
    group = message("ModelInstanceGroup", [("kind", F.TYPE_ENUM, one,
                                            ".mlc_test.triton.ModelInstanceGroup.Kind"),
                                           ("count", F.TYPE_INT32, one, None)])
    kind = group.enum_type.add(name="Kind")
    for number, name in enumerate(["KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"]):
        kind.value.add(name=name, number=number)
    message("ModelQueuePolicy", [("max_queue_size", F.TYPE_UINT32, one, None)])
    message("ModelDynamicBatching", [
        ("preferred_batch_size", F.TYPE_INT32, many, None),
        ("max_queue_delay_microseconds", F.TYPE_UINT64, one, None),
        ("default_queue_policy", F.TYPE_MESSAGE, one, ".mlc_test.triton.ModelQueuePolicy")])
    message("ModelParameter", [("string_value", F.TYPE_STRING, one, None)])
    message("ParameterEntry", [("key", F.TYPE_STRING, one, None),
                               ("value", F.TYPE_MESSAGE, one, ".mlc_test.triton.ModelParameter")])
    message("ModelConfig", [
        ("name", F.TYPE_STRING, one, None), ("platform", F.TYPE_STRING, one, None),
        ("backend", F.TYPE_STRING, one, None), ("max_batch_size", F.TYPE_INT32, one, None),
        ("input", F.TYPE_MESSAGE, many, ".mlc_test.triton.ModelTensor"),
        ("output", F.TYPE_MESSAGE, many, ".mlc_test.triton.ModelTensor"),
        ("instance_group", F.TYPE_MESSAGE, many, ".mlc_test.triton.ModelInstanceGroup"),
        ("dynamic_batching", F.TYPE_MESSAGE, one, ".mlc_test.triton.ModelDynamicBatching"),
        ("parameters", F.TYPE_MESSAGE, many, ".mlc_test.triton.ParameterEntry")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(
        "mlc_test.triton.ModelConfig"))


ModelConfig = _model_config_class()
ONNX_TYPES = {1: "TYPE_FP32", 11: "TYPE_FP64"}  # onnx.TensorProto's FLOAT and DOUBLE


def parse_config(path: Path):
    from google.protobuf import text_format

    return text_format.Parse(path.read_text("utf-8"), ModelConfig())


def names_and_dims(config, part: str) -> list[tuple[str, str, list[int]]]:
    enum = ModelConfig.DESCRIPTOR.file.enum_types_by_name["DataType"]
    return [(t.name, enum.values_by_number[t.data_type].name, list(t.dims))
            for t in getattr(config, part)]


def onnx_io(proto, part: str) -> list[tuple[str, str, list[int]]]:
    out = []
    for value in getattr(proto.graph, part):
        shape = value.type.tensor_type.shape.dim
        assert shape[0].dim_param  # the batch axis, which Triton's dims leave out
        out.append((value.name, ONNX_TYPES[value.type.tensor_type.elem_type],
                    [d.dim_value for d in shape[1:]]))
    return out


def check_batching(config) -> None:
    assert config.max_batch_size == BATCHING.max_batch_size
    assert config.dynamic_batching.max_queue_delay_microseconds == 5000
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 256


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_triton_onnx_repository_names_the_model_s_own_inputs_and_outputs(models, dataset,
                                                                         tmp_path, kind):
    model = triton.write_onnx_repository(tmp_path / "repo", "fraud-classifier", models[kind],
                                         BATCHING)
    assert sorted(str(p.relative_to(tmp_path)) for p in model.rglob("*") if p.is_file()) == \
        ["repo/fraud-classifier/1/model.onnx", "repo/fraud-classifier/config.pbtxt"]
    config = parse_config(model / "config.pbtxt")
    assert (config.name, config.backend) == ("fraud-classifier", "onnxruntime")
    proto = onnx.load(model / "1" / "model.onnx")
    assert names_and_dims(config, "input") == onnx_io(proto, "input")
    assert names_and_dims(config, "output") == onnx_io(proto, "output")
    check_batching(config)
    # the repository's file is the ONNX export itself
    assert (model / "1" / "model.onnx").read_bytes() == onnx_export.onnx_bytes(models[kind])


def test_triton_libtorch_repository_loads_and_answers(models, dataset, tmp_path):
    folder = models["regression"]
    spec = model_format.load_spec(folder)
    model = triton.write_libtorch_repository(tmp_path / "repo", "m", folder, BATCHING)
    config = parse_config(model / "config.pbtxt")
    assert config.backend == "pytorch"
    assert names_and_dims(config, "input") == [("features__0", "TYPE_FP32",
                                                [len(spec["features"])])]
    assert names_and_dims(config, "output") == [("prediction__0", "TYPE_FP64", [1])]
    check_batching(config)
    loaded = torch.jit.load(str(model / "1" / "model.pt"))
    rows = rows_for(dataset, spec)
    with torch.no_grad():
        got = loaded(torch.from_numpy(rows.astype(np.float32))).numpy()
    np.testing.assert_allclose(got, server(folder, rows), **TOLERANCE)


@pytest.mark.parametrize("text", ['plain', 'a "quoted" name', "back\\slash", "new\nline",
                                  "tab\tand 'single'", "ünïcødé ✓", "}\nbackend: \"evil\"",
                                  "\x00\x7f\x1b"])
def test_pbtxt_strings_parse_back_unchanged(text):
    from google.protobuf import text_format

    rendered = pbtxt.render([("backend", text), ("parameters", pbtxt.repeated(
        [("key", text), ("value", [("string_value", text)])]))])
    config = text_format.Parse(rendered, ModelConfig())
    assert config.backend == text
    assert (config.parameters[0].key, config.parameters[0].value.string_value) == (text, text)


def test_pbtxt_refuses_what_it_cannot_write():
    with pytest.raises(ValueError, match="not a field name"):
        pbtxt.render([("bad field", 1)])
    with pytest.raises(ValueError, match="no place"):
        pbtxt.render([("x", float("nan"))])
    with pytest.raises(ValueError, match="enum identifier"):
        pbtxt.Enum("TYPE FP32")
    for name in ("../up", "a/b", "", "."):
        with pytest.raises(ValueError, match="cannot name a Triton model"):
            triton.check_model_name(name)
    with pytest.raises(ValueError, match="lacks"):
        triton.Batching.parse("max_batch_size=4")
    assert triton.Batching.parse(BATCHING.text()) == BATCHING


# --- Triton's FIL backend: an XGBoost model saved as the tree trainers save it ------------

@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_triton_fil_repository_of_an_xgboost_model(dataset, tmp_path, task):
    xgb = pytest.importorskip("xgboost", reason="xgboost is not installed (the `train` extra)")
    train = dataset.frame[dataset.frame[data.SPLIT_COLUMN] == "train"]
    x = train[dataset.features].to_numpy(dtype=np.float32)  # NaN stays missing
    if task == "regression":
        estimator, y = xgb.XGBRegressor(n_estimators=8, max_depth=3), x[:, 0] * 2.0
        x = x[:, 1:]
    elif task == "multiclass":
        estimator = xgb.XGBClassifier(n_estimators=8, max_depth=3)
        y = np.where(train[dataset.label] == 1, 2, (x[:, 0] > np.nanmedian(x[:, 0])) * 1)
    else:
        estimator = xgb.XGBClassifier(n_estimators=8, max_depth=3)
        y = train[dataset.label].to_numpy()
    estimator.fit(x, y)
    folder = tmp_path / "model"
    folder.mkdir()
    estimator.get_booster().save_model(str(folder / "model.json"))
    model_type, model_file = triton.fil_model_type(folder)
    assert (model_type, model_file.name) == ("xgboost_json", "model.json")
    kind = "regression" if task == "regression" else "classification"
    repo = tmp_path / "repo"
    files = export.make_exports(folder, ["triton"], repo, model_name="fraud-trees", task=kind,
                                triton_batching=BATCHING)
    assert [str(p.relative_to(repo)) for p in files] == [
        "triton/fraud-trees/1/xgboost.json", "triton/fraud-trees/config.pbtxt"]
    config = parse_config(repo / "triton/fraud-trees/config.pbtxt")
    assert config.backend == "fil"
    params = {p.key: p.value.string_value for p in config.parameters}
    classes = {"binary": 1, "multiclass": 3, "regression": 1}[task]
    assert params["model_type"] == "xgboost_json"
    assert params["output_class"] == ("false" if task == "regression" else "true")
    assert names_and_dims(config, "input") == [("input__0", "TYPE_FP32", [x.shape[1]])]
    assert names_and_dims(config, "output") == [("output__0", "TYPE_FP32", [classes])]
    check_batching(config)
    # the repository's file is the model: XGBoost reads it back to the same predictions
    copy = xgb.Booster(model_file=str(repo / "triton/fraud-trees/1/xgboost.json"))
    matrix = xgb.DMatrix(x[:200])
    np.testing.assert_array_equal(copy.predict(matrix),
                                  estimator.get_booster().predict(matrix))


def test_a_tree_model_gets_no_torch_export(tmp_path):
    (tmp_path / "model.txt").write_text("tree\nmax_feature_idx=3\nobjective=binary\n\nTree=0\n")
    assert triton.tree_model_shape(tmp_path / "model.txt", "lightgbm") == (4, 0)
    with pytest.raises(export.ExportError, match="FIL backend only"):
        export.make_exports(tmp_path, ["onnx", "triton"], tmp_path / "out", model_name="m",
                            task="classification", triton_batching=BATCHING)


# --- TorchServe ----------------------------------------------------------------------------

def test_torchserve_archive_layout_and_manifest(models, tmp_path):
    mar = torchserve.write_mar(tmp_path / "a" / "fraud.mar", "fraud", models["binary"])
    again = torchserve.write_mar(tmp_path / "b" / "fraud.mar", "fraud", models["binary"],
                                 torchscript_file=_torchscript_file(models["binary"], tmp_path))
    with zipfile.ZipFile(mar) as archive:
        assert archive.namelist() == ["MAR-INF/MANIFEST.json", "mlc_handler.py", "model.pt",
                                      "spec.json"]
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
        handler = archive.read("mlc_handler.py").decode()
        assert archive.read("spec.json") == (models["binary"] / "spec.json").read_bytes()
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in archive.infolist())
    assert manifest == {"runtime": "python", "archiverVersion": "0.12.0",
                        "model": {"modelName": "fraud", "serializedFile": "model.pt",
                                  "handler": "mlc_handler.py", "modelVersion": "1.0"}}
    assert "import mlc" not in handler and "from mlc" not in handler  # runs without mlc
    with zipfile.ZipFile(again) as archive:
        assert archive.read("mlc_handler.py").decode() == handler
    try:
        from model_archiver.manifest_components.manifest import Manifest
        from model_archiver.manifest_components.model import Model
    except ImportError:
        return  # torch-model-archiver is optional: the layout above is its documented one
    theirs = json.loads(str(Manifest(runtime="python", model=Model(
        model_name="fraud", serialized_file="model.pt", handler="mlc_handler.py",
        model_version="1.0"))))
    theirs.pop("createdOn")  # the time of the archiving, which mlc leaves out
    assert theirs == manifest


def _torchscript_file(folder: Path, tmp: Path) -> Path:
    return torchscript.export_torchscript(folder, tmp / "ts" / "model.pt")


def test_torchserve_handler_runs_in_torchserve_s_model_loader(models, dataset, tmp_path,
                                                              monkeypatch):
    pytest.importorskip("ts", reason="TorchServe (`ts`) is not installed: its handler "
                        "contract cannot be run here")
    from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl
    from ts.model_loader import TsModelLoader

    folder = models["multiclass"]
    spec = model_format.load_spec(folder)
    mar = torchserve.write_mar(tmp_path / "fraud.mar", "fraud", folder)
    model_dir = tmp_path / "model-dir"  # TorchServe unpacks the archive into a folder
    with zipfile.ZipFile(mar) as archive:
        archive.extractall(model_dir)
    monkeypatch.syspath_prepend(str(model_dir))  # as TorchServe's worker sets it
    import ts

    metrics = MetricsCacheYamlImpl(str(Path(ts.__file__).parent / "configs" / "metrics.yaml"))
    metrics.initialize_cache()
    service = TsModelLoader().load("fraud", str(model_dir), handler="mlc_handler",
                                   gpu_id=None, batch_size=2, metrics_cache=metrics)
    rows = rows_for(dataset, spec)[:12]
    # JSON has no NaN or infinity: a missing value is null, or a name left out
    as_lists = [[float(v) if np.isfinite(v) else None for v in r] for r in rows[:6]]
    by_name = [{f: float(v) for f, v in zip(spec["features"], r, strict=True)
                if np.isfinite(v)} for r in rows[6:]]
    batch = [{"requestId": b"r1", "parameters": [{"name": "body", "contentType":
                                                   "application/json", "value": json.dumps(
                                                       {"instances": as_lists}).encode()}]},
             {"requestId": b"r2", "parameters": [{"name": "body", "contentType":
                                                   "application/json", "value": json.dumps(
                                                       {"instances": by_name}).encode()}]}]
    headers, inputs, ids = service.retrieve_data_for_inference(batch)
    service.context.request_ids, service.context.request_processor = ids, headers
    answers = service._entry_point(inputs, service.context)
    assert len(answers) == 2
    got = np.array(answers[0]["predictions"] + answers[1]["predictions"])
    np.testing.assert_allclose(got, server(folder, rows), **TOLERANCE)
    # a bad request is refused as the client's error, through TorchServe's exception
    from ts.utils.util import PredictionException

    with pytest.raises(PredictionException) as refused:
        service._entry_point([{"body": b'{"instances": [[1, 2]]}'}], service.context)
    assert refused.value.error_code == 400
    sys.modules.pop("mlc_handler", None)


# --- the step's contract: MLC_EXPORTS ----------------------------------------------------

def test_requested_exports_are_checked():
    assert export.requested({}) == []
    assert export.requested({sc.EXPORTS_ENV: "triton, onnx"}) == ["onnx", "triton"]
    with pytest.raises(export.ExportError, match="unknown export"):
        export.requested({sc.EXPORTS_ENV: "onnx,savedmodel"})
    with pytest.raises(export.ExportError, match=sc.EXPORT_BATCHING_ENV):
        export.batching({})
    assert export.batching({sc.EXPORT_BATCHING_ENV: BATCHING.text()}) == BATCHING


def test_the_train_step_logs_the_exports_its_variables_ask_for(project, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLC_ARTIFACT_ROOT", (tmp_path / "artifacts").as_uri())
    env = environ(tmp_path, **{sc.EXPORTS_ENV: "onnx,torchscript,triton,torchserve",
                               sc.EXPORT_BATCHING_ENV: BATCHING.text()})
    run_step(build_context(project, PIPELINE, "train", environ=env))
    train = json.loads((tmp_path / "run" / sc.TRAIN_FILE).read_text())
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = client.get_run(train["mlflow_run_id"])
    assert run.data.tags[sc.EXPORTS_TAG] == "onnx,torchscript,triton,torchserve"
    local = Path(client.download_artifacts(run.info.run_id, "exports", str(tmp_path / "dl")))
    assert sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()) == [
        "onnx/model.onnx", "torchscript/model.pt",
        "torchserve/fraud-classifier.mar", "triton/fraud-classifier/1/model.onnx",
        "triton/fraud-classifier/config.pbtxt"]
    folder = tmp_path / "run" / sc.MODEL_DIR
    assert (local / "onnx/model.onnx").read_bytes() == onnx_export.onnx_bytes(folder)
    check_batching(parse_config(local / "triton/fraud-classifier/config.pbtxt"))


def test_a_bad_exports_variable_fails_the_step_before_it_trains(project, tmp_path):
    env = environ(tmp_path, **{sc.EXPORTS_ENV: "triton"})  # no batching
    with pytest.raises(StepFailed, match=sc.EXPORT_BATCHING_ENV):
        trainer.run(build_context(project, PIPELINE, "train", environ=env))
    assert not (tmp_path / "run" / sc.MODEL_DIR).exists()
