"""What a model has learned from the user's own documents, kept apart from the model itself.

A layer lives in ``ROOT/adaptation/NAME/``: ``layer.json`` lists one entry per document (its
path or URI, content hash, when, how much it added) and ``words.json`` the token strings the
layer's documents use; each document's sentences are stored as ids into those words
(``doc-N.npy``). The model used under NAME is its base with every layer document's n-grams
added (``engine.capabilities.Learnable``): learning never rewrites the base model's files,
forgetting a document drops exactly what it added, and learning a path again replaces its
earlier version (an editor saving a file ten times counts it once). Storing strings rather than
the base's ids keeps a layer valid when its base model is retrained.
"""

from __future__ import annotations

import datetime
import json
import os
import re
# (hashlib, shutil, tempfile: imported in the functions that use them; foretell's start-up needs none of them)
from pathlib import Path

import numpy as np

from engine.capabilities import CombinesModels, check_can_learn
from engine.corpus import CorpusBuilder
from engine.errors import ForetellError, ModelFormatError
from engine.files import locked, read_json, regular_file, write_atomic
from engine.model import LanguageModel
from engine.tokenizer import split_lines
from engine.vocab import SPECIALS, Vocabulary

LAYERS = "adaptation"
DOC_FILE = re.compile(r"doc-[0-9]{1,12}\.npy")
ENTRY_FIELDS = {"key": str, "file": str, "sha256": str, "learned": str, "sentences": int, "tokens": int, "new_words": int}
LAYER_FILE = "layer.json"
WORDS_FILE = "words.json"
ADAPTED = "adapted-"  # + stamp: the model with the layer applied, kept for the next load
FACTS_FILE = "facts.json"


class AdaptationLayer:
    """The documents model ``name`` has learned, and how to apply or undo them."""

    def __init__(self, root: Path, name: str):
        self.name = name
        self.folder = Path(root) / LAYERS / name

    # -- reading ---------------------------------------------------------------------------
    def documents(self) -> list[dict]:
        return self._read()["documents"]

    def _read(self) -> dict:
        """The layer as written, every field checked: file names are plain names of this
        folder, counts are counts. Anything else is refused with the remedy that works."""
        for attempt in range(3):
            try:
                layer = read_json(self.folder / LAYER_FILE, self._what)
                words = read_json(self.folder / WORDS_FILE, self._what)
                break
            except FileNotFoundError:
                if not os.path.lexists(self.folder / LAYER_FILE):
                    return {"documents": [], "next": 1, "words": list(SPECIALS)}
                if attempt == 2:
                    raise self._damaged("a file of it is missing") from None
                # Reading races a writer (unlocked): the layer appeared, or went, meanwhile.
            except ModelFormatError as exc:
                raise self._damaged(str(exc).split(": ", 1)[-1]) from None
        if not isinstance(layer, dict) or not isinstance(layer.get("documents"), list) or not isinstance(words, list) \
                or not all(isinstance(w, str) for w in words) or words[: len(SPECIALS)] != list(SPECIALS):
            raise self._damaged("it is not one foretell wrote")
        next_id = layer.get("next")
        if not isinstance(next_id, int) or isinstance(next_id, bool) or not 1 <= next_id < 1 << 40:
            raise self._damaged(f"its 'next' is {next_id!r}")
        for entry in layer["documents"]:
            self._check_entry(entry)
        return {**layer, "words": words}

    def _check_entry(self, entry) -> None:
        if not isinstance(entry, dict):
            raise self._damaged("an entry is not an object")
        for field, kind in ENTRY_FIELDS.items():
            value = entry.get(field)
            if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
                raise self._damaged(f"an entry has no valid {field!r}")
        if not DOC_FILE.fullmatch(entry["file"]):  # a plain name of this folder, never a path
            raise self._damaged(f"an entry names the file {entry['file']!r}")

    @property
    def _what(self) -> str:
        return f"{self.name}: its adaptation layer"

    def _damaged(self, why: str) -> ModelFormatError:
        return ModelFormatError(f"{self.name}: its adaptation layer is damaged ({why}; {self.folder}); "
                                f"`foretell forget -m {self.name} --all` clears it")

    def _stream(self, entry: dict, size: int) -> np.ndarray:
        path = self.folder / entry["file"]
        try:
            ids = np.load(regular_file(path, self._what), allow_pickle=False)
        except (OSError, ValueError, EOFError, ModelFormatError):
            raise ModelFormatError(f"{self.name}: learned document {entry['key']!r} is missing or corrupt ({path.name}); "
                                   f"`foretell forget -m {self.name} --all` clears the layer") from None
        if ids.ndim != 1 or ids.dtype != np.int32 or (len(ids) and (ids.min() < 0 or ids.max() >= size)):
            raise ModelFormatError(f"{self.name}: learned document {entry['key']!r} is corrupt ({path.name}); "
                                   f"`foretell forget -m {self.name} --all` clears the layer")
        return ids

    def apply(self, base: LanguageModel, base_identity=None) -> LanguageModel:
        """``base`` with every learned document's n-grams added. With ``base_identity`` (which
        base folder this is), the result is kept beside the layer as ``adapted-STAMP/`` (the
        stamp names the layer's contents and the base), so the next load maps it instead of
        adding the counts and re-estimating the model again."""
        layer = self._read()
        if not layer["documents"]:
            return base
        parts = [base.name, base.format_version, repr(base_identity)]
        stamp = self._stamp(layer, parts)
        # A combined model (a mixture) is saved as its parts' names, so a copy of it would load
        # its parts unadapted: it is adapted afresh at each load instead.
        keep = base_identity is not None and not isinstance(type(base), CombinesModels)
        model = self._cached(base, stamp) if keep else None
        if model is None:
            model = self._adapted(base, layer)
            if keep:
                self._keep(model, stamp, parts)
        model.model_name = base.model_name or self.name
        model.learned_documents = len(layer["documents"])
        return model

    def _adapted(self, base: LanguageModel, layer: dict) -> LanguageModel:
        words = layer["words"]
        to_model = np.array([base.vocab.ids.get(w, -1) for w in words], dtype=np.int64)
        added: list[str] = []
        streams = []
        for entry in layer["documents"]:
            ids = self._stream(entry, len(words))
            unique, first = np.unique(ids, return_index=True)
            for layer_id in unique[np.argsort(first)]:  # new words in order of first appearance
                if to_model[layer_id] < 0:
                    to_model[layer_id] = len(base.vocab) + len(added)
                    added.append(words[layer_id])
            streams.append(to_model[ids])
        check_can_learn(base)
        return base.with_documents(added, streams)

    # -- the adapted model kept for the next load -------------------------------------------
    def _stamp(self, layer: dict, parts: list) -> str:
        """What the adapted model depends on: the entries, the words, each document file as it
        is on disk (a file changed since is read again, and found damaged if it is) and the base."""
        import hashlib
        files = [self._file_identity(entry["file"]) for entry in layer["documents"]]
        what = json.dumps([layer["documents"], layer["words"], files, *parts], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(what.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def _file_identity(self, name: str):
        try:
            st = os.lstat(self.folder / name)
        except OSError:
            return None
        return [st.st_ino, st.st_size, st.st_mtime_ns]

    def _cached(self, base: LanguageModel, stamp: str) -> LanguageModel | None:
        """The adapted model kept under ``stamp``, or None (none kept, or one that does not
        load: it is checked as every model is, and then rebuilt)."""
        folder = self.folder / f"{ADAPTED}{stamp}"
        if folder.is_symlink() or not folder.is_dir():
            return None
        try:
            facts = read_json(folder / FACTS_FILE, self._what)
            if not isinstance(facts, dict):
                return None
            return type(base).load(folder, Vocabulary.load(folder), base.options, facts)
        except (ModelFormatError, OSError, ValueError):
            return None

    def _keep(self, model: LanguageModel, stamp: str, parts: list) -> None:
        """Save the adapted model as ``adapted-STAMP`` if the layer still has those contents
        (checked under the layer's lock: a document forgotten meanwhile is never written back),
        and drop older ones. Best effort: where the store cannot be written, loads go on as
        before."""
        import shutil
        import tempfile
        tmp = None
        try:
            tmp = Path(tempfile.mkdtemp(prefix=".adapted-", dir=self.folder))
            facts = model.save(tmp) or {}
            model.vocab.save(tmp)
            (tmp / FACTS_FILE).write_text(json.dumps(facts), encoding="utf-8")
            with self._locked():
                now = self._read()
                if now["documents"] and self._stamp(now, parts) == stamp:
                    os.rename(tmp, self.folder / f"{ADAPTED}{stamp}")
                    tmp = None
                self._drop_adapted(keep=stamp)
        except (OSError, ModelFormatError):
            pass
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    def _drop_adapted(self, keep: str | None = None) -> None:
        """Remove the kept adapted models but ``keep``: after learning or forgetting, none may
        hold what the layer no longer does."""
        import shutil
        for folder in list(self.folder.glob(f"{ADAPTED}*")) + list(self.folder.glob(".adapted-*")):
            if folder.name == f"{ADAPTED}{keep}" or (folder.name.startswith(".") and keep is not None):
                continue
            if folder.is_symlink():
                folder.unlink()
            else:
                shutil.rmtree(folder, ignore_errors=True)

    # -- writing ---------------------------------------------------------------------------
    def learn(self, key: str, text: str, base: LanguageModel, pretokenized: bool = False) -> dict | None:
        """Add (or replace) document ``key`` with ``text``; None when that text is learned already."""
        import hashlib
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        with self._locked():
            layer = self._read()
            old = next((d for d in layer["documents"] if d["key"] == key), None)
            if old is not None and old["sha256"] == digest:
                return None
            check_can_learn(base)
            builder = CorpusBuilder(pretokenized, known=layer["words"])
            builder.add_lines(split_lines(text))
            ids = np.asarray(builder.ids.finish(), dtype=np.int32)
            if builder.sentences == 0:
                raise ForetellError(f"{key}: no usable text to learn from")
            words = builder.vocab.tokens
            new = sorted({words[i] for i in np.unique(ids)} - set(base.vocab.tokens))
            entry = {
                "key": key,
                "file": f"doc-{layer['next']}.npy",
                "sha256": digest,
                "learned": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "sentences": builder.sentences,
                "tokens": int(len(ids) - builder.sentences),  # words and </s>, as perplexity counts
                "new_words": len(new),  # words the base model did not know
                "new_word_examples": new[:20],
            }
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(self.folder / entry["file"], lambda f: np.save(f, ids, allow_pickle=False))
            documents = [d for d in layer["documents"] if d["key"] != key] + [entry]
            write_atomic(self.folder / WORDS_FILE, json.dumps(words, ensure_ascii=False))
            self._write_layer(documents, layer["next"] + 1)
            self._drop_adapted()
            if old is not None:
                (self.folder / old["file"]).unlink(missing_ok=True)
            return {**entry, "replaced": old is not None}

    def forget(self, keys: list[str] | None) -> list[dict]:
        """Drop documents ``keys`` (None: all of them); returns the entries removed."""
        with self._locked():
            if keys is None:
                return self._clear()
            layer = self._read()
            known = {d["key"] for d in layer["documents"]}
            missing = [k for k in keys if k not in known]
            if missing:
                raise ForetellError(f"{self.name} has not learned {missing[0]!r}; see `foretell models history {self.name}`")
            gone = [d for d in layer["documents"] if d["key"] in keys]
            kept = [d for d in layer["documents"] if d not in gone]
            if self.folder.exists():
                self._write_layer(kept, layer["next"])
                self._drop_adapted()
            for d in gone:
                (self.folder / d["file"]).unlink(missing_ok=True)
            return gone

    def _clear(self) -> list[dict]:
        """Forget everything, whatever state the layer is in: its entries when they can be
        read (to say what went), and the folder goes either way, unparsed."""
        try:
            gone = self._read()["documents"]
        except ModelFormatError:
            gone = []
        self.remove()
        return gone

    def rehearsal(self, base: LanguageModel, texts: list[str], pretokenized: bool = False):
        """For ``engine.evaluate``'s ``learn``: ``learn(model, n)`` learns ``texts[n]`` into this
        layer (a throwaway one) and gives ``base`` with every document learned so far, as the
        language server's learning on save would give it."""
        def learn(model: LanguageModel, n: int) -> LanguageModel:
            try:
                self.learn(f"document {n + 1}", texts[n], base, pretokenized)
            except ForetellError:  # no words in it (``base`` was checked to learn): nothing learned
                return model
            return self.apply(base)
        return learn

    def remove(self) -> None:
        import shutil
        if os.path.islink(self.folder):
            os.unlink(self.folder)
        else:
            shutil.rmtree(self.folder, ignore_errors=True)

    def export(self, base: LanguageModel) -> dict:
        """The layer as JSON: each document's entry and its sentences as words."""
        layer = self._read()
        words = layer["words"]
        out = []
        for entry in layer["documents"]:
            ids = self._stream(entry, len(words))
            sentences, current = [], []
            for i in ids[1:]:
                if words[i] == SPECIALS[1]:
                    sentences.append(current)
                    current = []
                elif words[i] != SPECIALS[2]:
                    current.append(words[i])
            sentences.append(current)
            out.append({**{k: v for k, v in entry.items() if k != "file"}, "sentences_text": [" ".join(s) for s in sentences]})
        return {"model": self.name, "base_backend": base.name, "documents": out}

    def _write_layer(self, documents: list[dict], next_id: int) -> None:
        body = {"model": self.name, "documents": documents, "next": next_id}
        write_atomic(self.folder / LAYER_FILE, json.dumps(body, indent=2, ensure_ascii=False))

    def _locked(self):
        self.folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return locked(self.folder.parent / f".lock-{self.name}")
