"""liverview: a desktop AI workstation for pediatric liver tumor diagnosis on four-phase CT."""

__version__ = "0.1.0"

RESEARCH_NOTICE = "research use only — trained on synthetic phantom data"
