"""The README's quickstart runs as written, on generated images."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from hashmatch.testing.synthetic import generate_image

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quickstart_runs_and_matches_the_altered_copy(tmp_path, monkeypatch, capsys):
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    generate_image(1, size=(640, 480)).save("photo.jpg", quality=90)
    known = generate_image(2, size=(640, 480))
    known.save("known-1.jpg", quality=90)
    generate_image(3, size=(640, 480)).save("known-2.jpg", quality=90)
    known.resize((320, 240), Image.Resampling.BILINEAR).save("upload.jpg", quality=60)
    exec(compile(code, str(README), "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("case-1 ")  # the altered copy matched its original, nothing else did
    assert not any(line.startswith("case-2") for line in lines)
    assert int(lines[-1]) > 31  # two unrelated photos are far apart


def test_readme_command_lines_name_real_commands_and_options(capsys):
    import shlex

    from hashmatch.cli import main

    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    lines = [
        line.split("#", 1)[0].strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip().startswith("hashmatch ")
    ]
    assert len(lines) >= 8
    for line in lines:
        # Every option is parsed before --help acts: an unknown one exits 2.
        assert main([*shlex.split(line)[1:], "--help"]) == 0, line
    capsys.readouterr()
