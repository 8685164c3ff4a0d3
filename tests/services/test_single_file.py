"""Single-file (original layout, Civitai-style) checkpoints load with from_single_file and draw what their
diffusers directory draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from devtools.devmodels import build_checkpoint
from devtools.sdxl import build_xl_checkpoint
from devtools.singlefile import write_single_file
from services.engine import DiffusersEngine, EngineConfig
from services.types import GenerationRequest, ImageTask, ModelSpec, ModelUnavailable

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("single")
    build_checkpoint(root / "sd", shape="tiny", seed=4)
    build_xl_checkpoint(root / "xl", shape="tiny", seed=5)
    write_single_file(root / "sd", root / "sd.safetensors", family="sd1")
    write_single_file(root / "xl", root / "xl.safetensors", family="sdxl")
    return root


def pixels(processor: DiffusersEngine, spec: ModelSpec) -> np.ndarray:
    outputs: list = []
    item = ImageTask(prompt="a red fox", seed=3, width=64, height=64)
    processor.generate(GenerationRequest(model=spec, items=[item], steps=2), on_batch=outputs.extend)
    return np.asarray(outputs[0].image)


@pytest.mark.parametrize("family, name", [("sd1", "sd"), ("sdxl", "xl")])
def test_a_single_file_checkpoint_draws_the_pixels_of_its_directory(root: Path, family: str, name: str) -> None:
    processor = DiffusersEngine(EngineConfig())
    directory = ModelSpec(name="dir", source=str(root / name), family=family, resolution=64)
    single = ModelSpec(
        name="file",
        source=str(root / f"{name}.safetensors"),
        family=family,
        resolution=64,
        config=str(root / name),
    )
    assert np.array_equal(pixels(processor, single), pixels(processor, directory))
    resident, _ = processor.pipelines.get(single)
    assert resident.revision and resident.revision != processor.pipelines.get(directory)[0].revision


def test_a_pickled_single_file_is_refused_before_anything_is_read(root: Path) -> None:
    pickle = root / "evil.ckpt"
    pickle.write_bytes(b"not read")
    spec = ModelSpec(name="evil", source=str(pickle), resolution=64, config=str(root / "sd"))
    with pytest.raises(ModelUnavailable, match="safetensors"):
        DiffusersEngine(EngineConfig()).pipelines.get(spec)


def test_a_config_directory_holding_pickled_weights_is_refused_before_anything_is_read(root: Path) -> None:
    import shutil

    config = root / "sd-with-pickle"
    shutil.copytree(root / "sd", config, dirs_exist_ok=True)
    (config / "vae" / "diffusion_pytorch_model.bin").write_bytes(b"a pickle would run code when loaded")
    spec = ModelSpec(name="mixed", source=str(root / "sd.safetensors"), resolution=64, config=str(config))
    with pytest.raises(ModelUnavailable, match=r"pickled weights \(vae/diffusion_pytorch_model.bin\)"):
        DiffusersEngine(EngineConfig()).pipelines.get(spec)
