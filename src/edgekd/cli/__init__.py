"""The `edgekd` command line: a thin click layer (cli/app.py) over one function per command.

`common.py` holds the error guard every command uses; app.py assembles the group from the area modules (bench, lint,
llm, sensitivity). `main` is resolved lazily so importing a command module never imports the whole CLI.
"""


def __getattr__(name: str):
    if name == "main":
        from edgekd.cli.app import main

        return main
    raise AttributeError(name)
