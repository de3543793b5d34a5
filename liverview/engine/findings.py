"""The findings contract as the engine has always imported it: a re-export of `liverview.findings` (defined there, torch-free)."""

from liverview.findings import *  # noqa: F401,F403
from liverview.findings import __all__  # noqa: F401
