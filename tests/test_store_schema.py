"""Every table lives on the one metadata in ``store/schema.py``, and it says exactly what
the migrations built: Alembic's autogenerate, run against a freshly migrated database,
finds nothing to change (issue 12: it proposed dropping 7 of 12 tables)."""

from __future__ import annotations

import pprint


def test_autogenerate_finds_nothing_to_change_after_migrating(store_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from pipeline.store import open_store
    from pipeline.store.schema import metadata

    engine = open_store(store_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            tables = set(conn.dialect.get_table_names(conn))
    finally:
        engine.dispose()
    assert diff == [], pprint.pformat(diff)
    # Every table the migrations made is on the metadata (not only those it happens to have).
    assert tables - {"alembic_version"} == set(metadata.tables)


def test_no_module_keeps_a_table_of_its_own():
    """A table defined on another MetaData is invisible to autogenerate."""
    import re
    from pathlib import Path

    import pipeline

    root = Path(pipeline.__file__).parent
    strays = [
        f"{path.relative_to(root)}"
        for path in root.rglob("*.py")
        # importer.py's staging table is a temporary one, on purpose not in the schema
        if "migrations" not in path.parts
        and path.name not in ("schema.py", "importer.py")
        and re.search(r"sa\.Table\(", path.read_text())
    ]
    assert strays == []
