"""A GIN index for full-text search on PostgreSQL (SQLite has no such index; it is skipped)."""

from django.db import migrations

INDEX = "catalog_rule_search_vector_gin"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON catalog_rule USING gin (search_vector)"
        )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_conversion")]

    operations = [migrations.RunPython(create_index, drop_index)]
