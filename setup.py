"""Adds ``tandem-drum.pth`` to the wheel's root, which pyproject.toml alone cannot express.

The .pth makes every interpreter of the environment import ``_tandem_drum``, whose import hooks
supply ``datarobot_drum`` when DataRobot's package is absent and route DRUM's ``drum server`` to
Tandem when it is present, without installing a file that DataRobot's package also installs.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = Path("src") / "tandem-drum.pth"


class BuildPyWithPth(build_py):
    """``build_py`` that also copies the .pth file next to the packages."""

    def run(self) -> None:
        super().run()
        self.copy_file(str(PTH), str(Path(self.build_lib) / PTH.name), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH.name)]


setup(cmdclass={"build_py": BuildPyWithPth})
