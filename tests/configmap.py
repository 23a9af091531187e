"""A Kubernetes ConfigMap volume, built the way the kubelet builds it, for hot-reload tests.

    folder/..2026_11_25_17_00_00.1/tokens.yaml   the real files, one directory per update
    folder/..data -> ..2026_11_25_17_00_00.1     swapped atomically on every update
    folder/tokens.yaml -> ..data/tokens.yaml     what the sidecar reads
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DATA = "..data"


class ConfigMapVolume:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.generation = 0
        folder.mkdir(parents=True, exist_ok=True)

    def publish(self, files: dict[str, str]) -> None:
        self.generation += 1
        target = self.folder / f"..2026_11_25_17_00_{self.generation % 60:02d}.{self.generation}"
        target.mkdir()
        for name, text in files.items():
            (target / name).write_text(text, encoding="utf-8")
        old = os.readlink(self.folder / DATA) if (self.folder / DATA).is_symlink() else None
        staged = self.folder / "..data_tmp"
        staged.symlink_to(target.name)
        os.replace(staged, self.folder / DATA)  # the one atomic step, as the kubelet does it
        for name in files:
            link = self.folder / name
            if not link.is_symlink():
                link.symlink_to(Path(DATA) / name)
        for link in self.folder.iterdir():
            if link.is_symlink() and link.name != DATA and link.name not in files:
                link.unlink()  # a key removed from the ConfigMap
        if old is not None:
            shutil.rmtree(self.folder / old)
