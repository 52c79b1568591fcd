"""The only module that touches llama.cpp: model and context, tokenizing, chunked decoding,
sequence copies and trims, sampler chains and logits rows.

It uses llama-cpp-python's low-level API because the high-level `Llama` class has no parallel
sequences. All critiques share one unified KV cache: sequence 0 holds the prompt, sequences
1..K each hold one critique, and copying the prompt into them shares cells instead of copying data.
"""

from __future__ import annotations

import collections
import ctypes
import math
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import llama_cpp

from rprm_lite.config import default_threads, max_threads
from rprm_lite.errors import ContextOverflowError, InputError, ModelFileError, RprmError, ScoringCancelled
from rprm_lite.seeds import LLAMA_SEED_MASK, derive_seed
from rprm_lite.weight_placement import buffer_rule, model_params, weight_buffers

MAX_SEQUENCES = 256  # llama.cpp's LLAMA_MAX_SEQ
DEFAULT_N_BATCH = 512


class Segmented(Protocol):
    """A rendered prompt as the engine reads it (`rprm_lite.prompt.Prompt`): (is_special, text) runs."""

    def segments(self) -> list[tuple[bool, str]]: ...


@dataclass(frozen=True)
class DecodeEntry:
    token: int
    pos: int
    seq: int
    logits: bool = False


LOG_LEVEL_ERROR = 4  # GGML_LOG_LEVEL_ERROR
recent_errors: collections.deque[str] = collections.deque(maxlen=8)
buffer_lines: list[str] = []  # llama.cpp's "X model buffer size" lines of the load in progress
_loading = threading.Lock()  # one model or adapter load at a time reads those lines and `recent_errors`
_log_callback: object = None  # the ctypes callback that llama.cpp calls, kept alive while it may


def _silence_llama_logs() -> None:
    """Keep llama.cpp quiet (RPRM_LLAMA_LOGS=1 lets it print), but remember its error lines to explain a
    failed load and its buffer lines to say where the weights went."""
    show = bool(os.environ.get("RPRM_LLAMA_LOGS"))

    global _log_callback

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]  # a ctypes CFUNCTYPE, unannotated upstream
    def _quiet(level: int, text: bytes | None, user_data: int | None) -> None:
        if not text:
            return
        line = text.decode("utf-8", errors="replace")
        if show:
            sys.stderr.write(line)
        if level == LOG_LEVEL_ERROR:
            recent_errors.append(line.strip())
        elif "model buffer size" in line:
            buffer_lines.append(line)

    llama_cpp.llama_log_set(_quiet, ctypes.c_void_p())
    _log_callback = _quiet


_backend_ready = False


def _init_backend() -> None:
    global _backend_ready
    if not _backend_ready:
        _silence_llama_logs()
        llama_cpp.llama_backend_init()
        _backend_ready = True


class Engine:
    """A loaded GGUF model with one context that is resized on demand."""

    memory: llama_cpp.llama_memory_t  # the context's KV cache, set with the context by `ensure_context`

    def __init__(self, model_path: str | Path, *, n_gpu_layers: int = 0, threads: int | None = None,
                 n_batch: int = DEFAULT_N_BATCH, vocab_only: bool = False,
                 loras: Sequence[tuple[Path, float]] = ()) -> None:
        """`vocab_only` loads the vocabulary without weights: tokenizing only (the remote backend).
        `loras`: (adapter GGUF, scale) pairs applied to every context, checked first by `adapter_file.py`."""
        if threads is not None and not 1 <= threads <= max_threads():
            raise InputError(f"threads must be between 1 and {max_threads()}, got {threads}")
        _init_backend()
        self.model_path = Path(model_path)
        self.stopping = False  # set by `stop()` from another thread: the decode in flight gives up
        self.should_stop: Callable[[], bool] | None = None  # asked before each chunk: True cancels the call
        self.buffer_rule = buffer_rule()
        self.ctx: llama_cpp.llama_context_p | None = None
        self.batch: llama_cpp.llama_batch | None = None
        params = model_params(n_gpu_layers=n_gpu_layers if n_gpu_layers >= 0 else 10_000, vocab_only=vocab_only)
        with _loading:  # the log lines collected below are this load's, not another thread's
            recent_errors.clear()
            buffer_lines.clear()
            self.model = llama_cpp.llama_model_load_from_file(str(self.model_path).encode(), params)
            if not self.model:
                why = "; ".join(line for line in recent_errors if line) or "set RPRM_LLAMA_LOGS=1 to see why"
                raise ModelFileError(f"{self.model_path}: llama.cpp could not load this model ({why})")
            self.weight_buffers = weight_buffers(buffer_lines)  # MiB per buffer type, e.g. {"CPU_Mapped": 3.5}
        # the loaded adapters, applied to each new context with their scales (llama-cpp-python's annotations say
        # c_void_p; the function returns a pointer to one, the array element type of llama_set_adapters_lora)
        self.loras: list[ctypes._Pointer[ctypes.c_void_p]] = []
        self.lora_scales = [scale for _, scale in loras]
        self._load_loras([path for path, _ in loras])
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = llama_cpp.llama_model_n_ctx_train(self.model)
        self.threads = threads or default_threads()
        self.n_batch = n_batch
        self.n_ctx = 0
        self.n_seq = 0
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.bos = llama_cpp.llama_vocab_bos(self.vocab)
        self._pieces: dict[int, bytes] = {}
        self._ends = frozenset(t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t))

    def _load_loras(self, paths: Sequence[Path]) -> None:
        for path in paths:
            with _loading:
                recent_errors.clear()
                adapter = llama_cpp.llama_adapter_lora_init(self.model, str(path).encode())
            if not adapter:
                why = "; ".join(line for line in recent_errors if line) or "set RPRM_LLAMA_LOGS=1 to see why"
                self.close()
                raise ModelFileError(f"{path}: llama.cpp could not load this LoRA adapter onto "
                                     f"{self.model_path.name} ({why})")
            self.loras.append(adapter)

    def _apply_loras(self) -> None:
        if not self.loras:
            return
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * len(self.loras))(*self.loras)
        scales = (ctypes.c_float * len(self.loras))(*self.lora_scales)
        if llama_cpp.llama_set_adapters_lora(self.ctx, adapters, len(self.loras), scales) != 0:
            self._free_context()  # never score in a context that lacks the adapters
            self.n_ctx = self.n_seq = 0
            raise ModelFileError(f"llama.cpp could not apply {len(self.loras)} LoRA adapter(s) to "
                                 f"{self.model_path.name}")

    # -- context -----------------------------------------------------------------------------
    def ensure_context(self, n_ctx: int, n_seq: int, *, limit: int | None = None) -> None:
        """Make sure the context holds at least `n_ctx` cells (rounded up to 256 so that slightly longer
        solutions reuse it, but never past `limit`) and `n_seq` sequences."""
        self._check_open()
        if n_seq > MAX_SEQUENCES:
            raise ContextOverflowError(f"llama.cpp supports at most {MAX_SEQUENCES - 1} parallel critiques, "
                                       f"asked for {n_seq - 1}")
        if self.ctx is not None and n_ctx <= self.n_ctx and n_seq <= self.n_seq:
            return
        self._free_context()
        n_ctx = max(-(-n_ctx // 256) * 256, self.n_ctx)
        if limit is not None:
            n_ctx = min(n_ctx, limit)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = self.n_batch
        params.n_ubatch = self.n_batch
        params.n_seq_max = max(n_seq, self.n_seq)
        params.n_threads = self.threads
        params.n_threads_batch = self.threads
        params.kv_unified = True
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.ctx:
            raise ContextOverflowError(f"llama.cpp could not create a context of {n_ctx} tokens "
                                       f"(out of memory?); lower --k, --max-tokens or --n-ctx")
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx)
        self.n_seq = params.n_seq_max
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._apply_loras()

    def _free_context(self) -> None:
        if self.batch is not None:
            llama_cpp.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx is not None:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None

    def stop(self) -> None:
        """Ask a decode running in another thread to stop at its next chunk (it raises RprmError)."""
        self.stopping = True

    def close(self) -> None:
        """Free the model and context. The caller makes sure no other thread is decoding."""
        self.stopping = True
        self._free_context()
        for adapter in getattr(self, "loras", ()):
            llama_cpp.llama_adapter_lora_free(adapter)  # before the model, which would free them too
        self.loras = []
        if getattr(self, "model", None):
            llama_cpp.llama_model_free(self.model)
            self.model = None

    def _check_open(self) -> None:
        if self.stopping or not getattr(self, "model", None):
            raise RprmError(f"{self.model_path.name}: this model has been closed; load it again to score")

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass

    # -- tokens ------------------------------------------------------------------------------
    def tokenize(self, text: str, *, special: bool) -> list[int]:
        """Tokens of `text` without BOS; `special` parses `<|...|>` markers as control tokens."""
        self._check_open()
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buffer = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buffer, capacity, False, special)
        if n < 0:
            capacity = -n
            buffer = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buffer, capacity, False, special)
        return list(buffer[:n])

    def tokenize_prompt(self, prompt: Segmented) -> list[int]:
        """Tokens of a rendered prompt, as the Hugging Face tokenizer would split them.

        The text is cut only at the template's own special markers; everything between two
        markers (template and user text together) is tokenized as one plain run, so tokens at
        the seams match tokenizing the whole string, and markers inside user text stay text.
        """
        tokens = [self.bos] if self.add_bos else []
        for is_special, text in prompt.segments():
            tokens += self.tokenize(text, special=is_special)
        return tokens

    def piece(self, token: int) -> bytes:
        """The bytes of one token (cached: this runs for every generated token)."""
        cached = self._pieces.get(token)
        if cached is None:
            cached = self._pieces[token] = self._piece(token)
        return cached

    def _piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, 64, 0, False)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, -n, 0, False)
        return buffer.raw[:n]

    def is_end(self, token: int) -> bool:
        return token in self._ends

    def end_tokens(self) -> list[int]:
        return sorted(self._ends)

    # -- decoding ----------------------------------------------------------------------------
    def decode(self, entries: Sequence[DecodeEntry]) -> Iterator[tuple[int, int]]:
        """Decode entries in chunks of the batch size; yields (entry index, logits row) for each
        entry that asked for logits, right after its chunk, while that row is still valid."""
        for start in range(0, len(entries), self.n_batch):
            self._check_open()
            if self.should_stop is not None and self.should_stop():
                raise ScoringCancelled(f"{self.model_path.name}: the call was cancelled by its caller")
            chunk = entries[start:start + self.n_batch]
            batch = self.batch
            assert batch is not None, "ensure_context makes the batch before any decode"
            wanted = []
            for i, entry in enumerate(chunk):
                batch.token[i] = entry.token
                batch.pos[i] = entry.pos  # type: ignore[call-overload]  # upstream declares int32_t * as an array of arrays
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = entry.seq
                batch.logits[i] = entry.logits
                if entry.logits:
                    wanted.append((start + i, i))
            batch.n_tokens = len(chunk)
            status = llama_cpp.llama_decode(self.ctx, batch)
            if status != 0:
                raise ContextOverflowError(
                    f"llama.cpp could not decode a batch of {len(chunk)} tokens (status {status}); "
                    f"the context of {self.n_ctx} tokens is probably full: lower --k or --max-tokens")
            yield from wanted

    def logits(self, row: int) -> ctypes.Array[ctypes.c_float]:
        """The logits row of a decoded entry (a view into llama.cpp's buffer, valid until the next decode)."""
        row_logits: ctypes.Array[ctypes.c_float] = llama_cpp.llama_get_logits_ith(self.ctx, row)
        return row_logits

    def p_yes(self, row: int, yes: int, no: int) -> float:
        """P(Yes) = softmax over the raw logits of the " Yes" and " No" tokens."""
        logits = self.logits(row)
        margin = logits[no] - logits[yes]
        if not math.isfinite(margin):
            raise ModelFileError(f"{self.model_path.name}: the model computed non-finite logits "
                                 f"(' Yes' {logits[yes]}, ' No' {logits[no]}); its weights are broken")
        if margin > 0:  # the two forms keep exp() from overflowing for large margins
            odds = math.exp(-margin)
            return odds / (1.0 + odds)
        return 1.0 / (1.0 + math.exp(margin))

    # -- sequences ---------------------------------------------------------------------------
    def trim(self, seq: int, start: int = 0) -> None:
        """Remove positions >= start of a sequence (all of it when start is 0)."""
        llama_cpp.llama_memory_seq_rm(self.memory, seq, start, -1)

    def copy(self, src: int, dst: int) -> None:
        llama_cpp.llama_memory_seq_cp(self.memory, src, dst, -1, -1)

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self.memory, True)

    def save_sequence(self, seq: int) -> bytes:
        """The KV state of a sequence (llama.cpp's sequence state: its cells' positions and K/V rows)."""
        size = llama_cpp.llama_state_seq_get_size(self.ctx, seq)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self.ctx, buffer, size, seq)
        return bytes(memoryview(buffer)[:written])

    def load_sequence(self, seq: int, state: bytes, n_tokens: int) -> bool:
        """Put a state from `save_sequence` into sequence `seq` of an empty cache; True when llama.cpp took all
        of it and the sequence then holds exactly positions 0..n_tokens-1. Otherwise the cache is cleared and
        False returned: the state is data, llama.cpp checks its layout and this its extent."""
        source = ctypes.cast(ctypes.c_char_p(state), ctypes.POINTER(ctypes.c_uint8))  # no copy of the bytes
        read = llama_cpp.llama_state_seq_set_data(self.ctx, source, len(state), seq) if state else 0
        held = (llama_cpp.llama_memory_seq_pos_min(self.memory, seq),
                llama_cpp.llama_memory_seq_pos_max(self.memory, seq))
        if read == len(state) and held == (0, n_tokens - 1):
            return True
        self.clear()
        return False


class Sampler:
    """One critique's sampler chain: temp -> top_p -> dist(seed), or greedy at temperature 0.

    `banned` tokens (e.g. end-of-text, for benchmarks that need a fixed critique length) get a
    logit bias of -inf before sampling.
    """

    def __init__(self, *, temperature: float, top_p: float, seed: int, n_vocab: int = 0,
                 banned: Sequence[int] = ()) -> None:
        self.chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        if banned:
            biases = (llama_cpp.llama_logit_bias * len(banned))(
                *[llama_cpp.llama_logit_bias(token, float("-inf")) for token in banned])
            self._add(llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(banned), biases))
        if temperature == 0:
            self._add(llama_cpp.llama_sampler_init_greedy())
        else:
            self._add(llama_cpp.llama_sampler_init_temp(temperature))
            if top_p < 1:
                self._add(llama_cpp.llama_sampler_init_top_p(top_p, 1))
            self._add(llama_cpp.llama_sampler_init_dist(seed))

    def _add(self, sampler: llama_cpp.llama_sampler_p) -> None:
        llama_cpp.llama_sampler_chain_add(self.chain, sampler)

    def sample(self, engine: Engine, row: int) -> int:
        token: int = llama_cpp.llama_sampler_sample(self.chain, engine.ctx, row)  # samples and accepts the token
        return token

    def accept(self, token: int) -> None:
        """Take a token the runtime wrote (the calculator's) into the chain's state, as a sampled one is."""
        llama_cpp.llama_sampler_accept(self.chain, token)

    def close(self) -> None:
        if self.chain:
            llama_cpp.llama_sampler_free(self.chain)
            self.chain = None

    def __del__(self) -> None:  # pragma: no cover
        self.close()


def stream_seed(seed: int, step_index: int, stream: int) -> int:
    """A distinct, reproducible 32-bit seed per (run seed, step, critique)."""
    return derive_seed(f"{seed}:{step_index}:{stream}", LLAMA_SEED_MASK)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two token lists share (what a KV cache holding `a` can keep for `b`)."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
