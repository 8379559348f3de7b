"""What never goes into a model: secrets (engine.secrets), the user's exclusion patterns and
anything written while incognito (engine.privacy), through the real CLI."""

import gzip
import json
from pathlib import Path

from click.testing import CliRunner

from engine.cli import cli
from engine.privacy import excluded_by
from engine.store import ModelStore

# Each kind of secret planted, and a piece of it that must appear nowhere afterwards.
PLANTED = {
    "bucket.md": ("The key is AKIAIOSFODNN7EXAMPLE for the bucket. The key is old.\n", "AKIAIOSFODNN7"),
    "setup.txt": ("The admin password: hunter2Secret and token = ghp_abcdefghijklmnopqrstuvwxyz0123456789\n", "hunter2"),
    "github.md": ("Push with ghp_abcdefghijklmnopqrstuvwxyz0123456789 today.\n", "ghp_"),
    "openai.md": ("The service uses sk-proj-Qw3rTy8uIoPaSdFgHjKlZx12 for requests.\n", "Qw3rTy8"),
    "notes.md": ("Our deploy key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\nThe deploy is done.\n", "b3BlbnNz"),
    "random.md": ("The session id was Xk9mQ2vL7pR4tW8nZ3bY5cJ6 yesterday.\n", "Xk9mQ2vL"),
    # Files named like secrets: skipped whole, whatever they hold.
    "config.env": ("DB_PASSWORD=s3cretPassw0rd\nDB_HOST=localhost\n", "s3cretPassw0rd"),
    "server.pem": ("The certificate words pemonlyword here.\n", "pemonlyword"),
    "site.key": ("The keyfile words keyonlyword here.\n", "keyonlyword"),
    "id_rsa": ("The ssh words rsaonlyword here.\n", "rsaonlyword"),
    ".netrc": ("machine example login me password netrconlyword\n", "netrconlyword"),
    "vault.kdbx": ("The vault words kdbxonlyword here.\n", "kdbxonlyword"),
}
LATER = ("Deploy with api_key: Zq81mPw02LxNcv and the key AKIAI44QH8DHBEXAMPLE today.\n", ("Zq81", "AKIAI44"))


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def plant(folder: Path) -> None:
    folder.mkdir()
    for name, (text, _) in PLANTED.items():
        (folder / name).write_text(text)


def everything_written(root: Path) -> bytes:
    """Every byte of every file under ``root`` (gzip files opened)."""
    out = b""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        out += gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return out


def test_planted_secrets_are_in_no_model_file_completion_history_or_arpa(tmp_path, isolated_home):
    notes = tmp_path / "notes"
    plant(notes)
    trained = run("train", "--name", "s", str(notes))
    assert trained.exit_code == 0, trained.output
    for name in ("config.env", "server.pem", "site.key", "id_rsa", "vault.kdbx"):
        assert f"{name}: may hold keys or passwords" in trained.output
    later = tmp_path / "later.md"
    later.write_text(LATER[0])
    assert run("learn", "-m", "s", str(later)).exit_code == 0

    secrets = [piece for _, piece in PLANTED.values()] + list(LATER[1])
    for piece in secrets:
        out = json.loads(run("predict", "-m", "s", "--json", piece[:4]).output)
        assert not [p["token"] for p in out["predictions"] if piece[:4] in p["token"]], (piece, out)
    history, arpa = tmp_path / "history.json", tmp_path / "s.arpa"
    assert run("models", "history", "s", "--export", str(history)).exit_code == 0
    assert run("models", "export", "s", str(arpa)).exit_code == 0
    written = {"the model's files": everything_written(isolated_home), "the history export": history.read_bytes(), "the ARPA export": arpa.read_bytes()}
    for where, data in written.items():
        found = [piece for piece in secrets if piece.encode() in data]
        assert not found, f"{found} in {where}"
    vocab = set(ModelStore().load("s").vocab.tokens)
    assert {"bucket", "admin", "deploy", "session", "Deploy", "yesterday"} <= vocab  # the rest of each file is learned
    assert b"yesterday" in written["the ARPA export"] and b"Deploy" in written["the history export"]


def test_exclusion_patterns_keep_files_out_of_training_and_learning(tmp_path):
    notes = tmp_path / "notes"
    (notes / "private").mkdir(parents=True)
    (notes / "mail" / "drafts").mkdir(parents=True)
    (notes / "public.md").write_text("The cat sat on the mat.\n")
    (notes / "private" / "plans.md").write_text("Zanzibar holidays are planned.\n")
    (notes / "today.journal").write_text("Quixotic feelings today.\n")
    (notes / "mail" / "drafts" / "letter.txt").write_text("Dearest Wilhelmina, hello.\n")
    assert run("exclude", "add", "private", "*.journal").exit_code == 0
    assert json.loads(run("exclude", "list", "--json").output) == {"exclude": ["private", "*.journal"]}
    trained = run("train", "--name", "n", "--exclude", "mail/drafts", str(notes))
    assert trained.exit_code == 0
    assert "excluded by your pattern 'private'" in trained.output and "excluded by your pattern '*.journal'" in trained.output
    assert "excluded by your pattern 'mail/drafts'" in trained.output
    vocab = set(ModelStore().load("n").vocab.tokens)
    assert "cat" in vocab and not {"Zanzibar", "Quixotic", "Wilhelmina"} & vocab

    learned = run("learn", "-m", "n", str(notes))
    assert "private/plans.md: learned" not in learned.output and "today.journal: learned" not in learned.output
    assert "letter.txt: learned" in learned.output  # --exclude held for that one command only
    assert run("exclude", "remove", "private").exit_code == 0
    assert "private/plans.md: learned" in run("learn", "-m", "n", str(notes)).output
    gone = run("exclude", "remove", "nothing-like-it")
    assert gone.exit_code == 1 and "not in the exclusion list" in gone.output


def test_patterns_name_files_folders_and_paths():
    home = str(Path.home())
    assert excluded_by("/x/notes/private/a.md", ["private"]) == "private"
    assert excluded_by("/x/notes/a.journal", ["*.md", "*.journal"]) == "*.journal"
    assert excluded_by("/x/mail/drafts/deep/a.txt", ["mail/drafts"]) == "mail/drafts"
    assert excluded_by(f"{home}/mail/a.txt", ["~/mail/*"]) == "~/mail/*"
    assert excluded_by(f"{home}/mail", ["~/mail"]) == "~/mail"
    assert excluded_by("/x/privately.md", ["private"]) is None
    assert excluded_by("/x/notes/a.md", ["/y/*", "drafts/"]) is None


def test_incognito_stops_learning_until_switched_off(tmp_path):
    doc = tmp_path / "diary.md"
    doc.write_text("Confidential musings about Ouagadougou.\n")
    (tmp_path / "base.md").write_text("The cat sat on the mat.\n")
    assert run("train", "--name", "d", str(tmp_path / "base.md")).exit_code == 0
    assert "Incognito is on" in run("incognito", "on").output
    refused = run("learn", "-m", "d", str(doc))
    assert refused.exit_code == 1 and "incognito is on: nothing is learned" in refused.output
    assert ModelStore().layer("d").documents() == [] and "Incognito is on" in run("incognito").output
    assert "Incognito is off" in run("incognito", "off").output
    assert run("learn", "-m", "d", str(doc)).exit_code == 0
    assert "Ouagadougou" in ModelStore().load("d").vocab.tokens


def test_redaction_blanks_overlapping_secrets_and_keeps_everything_else_in_place():
    from engine.secrets import redact

    text = "db_password=AKIAABCDEFGHIJKLMNOP rest\nkey: ghp_" + "aB3" * 12 + "\n" + "Through the night.\n"
    clean = redact(text)
    assert len(clean) == len(text) and clean.count("\n") == text.count("\n")
    assert "AKIA" not in clean and "ghp_" not in clean and "aB3" not in clean
    assert clean.startswith("db_password=") and " rest\n" in clean and clean.endswith("Through the night.\n")


def test_every_credential_shape_is_blanked_where_it_stands_and_the_prose_around_it_kept():
    # The shapes are matched only where a hint of theirs is: all that a search of the whole text finds.
    from engine.secrets import _SHAPES, redact

    shapes = ["AKIAIOSFODNN7EXAMPLE", "ASIAIOSFODNN7EXAMPLE", "ghp_" + "a1B2" * 9, "gho_" + "x" * 30, "xoxb-1234567890-abc",
              "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "rk_test_" + "a" * 16, "sk-" + "Qw3rTy8uIoPaSdFgHjKlZx12",
              "sk-ant-api03-" + "x" * 24, "AIza" + "Sy" * 16, "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2QT4"]
    for shape in shapes:
        text = f"{shape} at the start. The task-force used ({shape}), then left. Ask-me later: {shape}"
        clean = redact(text)
        spans = [m.span() for m in _SHAPES.finditer(text)]
        assert len(spans) == 3 and all(clean[a:b].strip() == "" for a, b in spans), text
        assert " at the start. The task-force used (" in clean and "), then left. Ask-me later: " in clean
    assert redact("a lower-case corpus keeps xk9mq2vl7pr4tw8nz3by5cj6 and words") == "a lower-case corpus keeps xk9mq2vl7pr4tw8nz3by5cj6 and words"


def test_long_random_runs_are_found_at_their_character_offsets_in_any_script():
    # Runs are found over the UTF-8 bytes: their offsets in characters must be those a pattern
    # over the characters gives, whatever multi-byte characters stand before them.
    import random
    import re

    from engine.secrets import _long_runs, redact

    pattern = re.compile(r"[A-Za-z0-9+/=_-]{20,}")
    rng = random.Random(3)
    pieces = ["aB3", "x", "9", "+/=", "_-", " ", "\n", ".", "é", "漢字", "\U0001F600", "\ud800"]
    for _ in range(2000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        assert _long_runs(text) == [m.span() for m in pattern.finditer(text)], ascii(text)
    secret = "Zq7" * 8
    clean = redact(f"漢字 café {secret}, then prose")
    assert clean == f"漢字 café {' ' * len(secret)}, then prose"


def test_names_and_shapes_found_backwards_are_every_one_a_search_at_each_position_finds():
    # The names and shapes are found in one pass over the text read backwards: the spans must be
    # those of trying every name and every shape at every position, whatever the case, the
    # spacing, the quotes and the characters before them (İ is two characters in lower case: a
    # search over the lowered text once put every value after it in the wrong place).
    import random

    from engine.secrets import _NAMES, _SHAPES, _VALUE, _named_and_shaped

    def at_every_position(text):
        spans = set()
        for p in range(len(text)):
            for name in _NAMES:
                if text[p : p + len(name)].lower() == name and (m := _VALUE.match(text, p + len(name))):
                    spans.add(m.span(1))
            if m := _SHAPES.match(text, p):
                spans.add(m.span())
        return spans

    rng = random.Random(5)
    pieces = ["Password", "PASSWD", "token", "api-key", "credentials", "pass", "pwd", "secret", "x", "İ", "é", "漢",
              " ", "\t", "\n", "'", '"', ":", "=", ":=", "=>", "A", "AKIA", "IA", "ghp_", "xoxb-", "sk_live_", "rk_test_",
              "sk-", "AIza", "eyJ", ".", "Zq7aB3", "9" * 8, "_", "-"]
    found = 0
    for _ in range(1500):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        expected = at_every_position(text)
        assert set(_named_and_shaped(text)) == expected, ascii(text)
        found += bool(expected)
    assert found > 300
