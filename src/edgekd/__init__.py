"""edgekd: distilled students to phones, Jetsons and CPUs."""

__version__ = "0.1.0"
