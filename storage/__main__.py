"""Command line: python -m storage {stats, export, import-pairs, backup} --data-dir DIR.

Each command prints one JSON object on stdout. A refused command prints one sentence on stderr,
exits with status 2 and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from .backup import backup_database
from .config import StorageConfig, db_path
from .errors import StoreError
from .export import EXPORT_FILES, export_all
from .importer import read_pairs, store_pairs
from .permissions import owner_only_umask
from .store import FeedbackStore

EXIT_REFUSED = 2  # the same status argparse uses for a bad command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m storage", description="Inspect, export and import feedback.")
    commands = parser.add_subparsers(dest="command", required=True)

    stats = commands.add_parser("stats", help="Print the number of rows in each table as JSON.")
    export = commands.add_parser("export", help=f"Write {', '.join(EXPORT_FILES.values())} and print their counts.")
    export.add_argument("--out", required=True, help="Directory to write the JSONL files into.")
    pairs = commands.add_parser("import-pairs", help="Import prompt/chosen/rejected pairs from JSONL or JSONL.gz.")
    pairs.add_argument("file", help="The JSONL or JSONL.gz file to import.")
    pairs.add_argument("--user", default="import", help="User the imported conversations belong to.")
    backup = commands.add_parser("backup", help="Copy the database consistently, even while the app writes to it "
                                                "(SQLite's online backup API), and print the copy's path and size.")
    backup.add_argument("--out", required=True, help="The backup file to create (a new file; never overwritten).")
    for command in (stats, export, pairs, backup):
        add_config_arguments(command)
    return parser


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One --flag per StorageConfig field, with the field's default and help text."""
    for f in fields(StorageConfig):
        parser.add_argument(
            "--" + f.name.replace("_", "-"), type=type(f.default), default=f.default, help=f.metadata["help"]
        )


def config_from(args: argparse.Namespace) -> StorageConfig:
    return StorageConfig(**{f.name: getattr(args, f.name) for f in fields(StorageConfig)})


def run_stats(args: argparse.Namespace, config: StorageConfig) -> dict[str, int]:
    with open_existing(config) as store:
        return store.stats()


def run_export(args: argparse.Namespace, config: StorageConfig) -> dict[str, int]:
    with open_existing(config) as store:
        return export_all(store, args.out)


def run_import_pairs(args: argparse.Namespace, config: StorageConfig) -> dict[str, int]:
    # Read and check the whole file before the database is even created.
    rows = read_pairs(args.file)
    with FeedbackStore.open(config.data_dir, config=config) as store:
        return store_pairs(store, rows, user=args.user)


def run_backup(args: argparse.Namespace, config: StorageConfig) -> dict:
    # Not through FeedbackStore: a backup must not migrate or otherwise touch the live database.
    return backup_database(config.data_dir, args.out, busy_timeout_s=config.busy_timeout_s)


def open_existing(config: StorageConfig) -> FeedbackStore:
    """Open the database for a command that only reads it; a missing one is an error, not created."""
    path = db_path(config.data_dir)
    if not path.is_file():
        raise StoreError(f"There is no database at {path}; check --data-dir.")
    return FeedbackStore.open(config.data_dir, config=config)


COMMANDS = {"stats": run_stats, "export": run_export, "import-pairs": run_import_pairs, "backup": run_backup}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    owner_only_umask()  # exports and backups hold users' conversations
    try:
        result = COMMANDS[args.command](args, config_from(args))
    except StoreError as error:
        print(error, file=sys.stderr)
        return EXIT_REFUSED
    except OSError as error:
        print(f"Could not use {error.filename or 'a file'}: {error.strerror or error}.", file=sys.stderr)
        return EXIT_REFUSED
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
