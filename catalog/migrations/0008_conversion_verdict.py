"""The conversion cache keeps each query's check: parser, problem and fixes (issue 15)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0007_draft"),
    ]

    operations = [
        migrations.AddField(
            model_name="conversion",
            name="verifier",
            field=models.CharField(blank=True, max_length=20),
        ),
        migrations.AddField(
            model_name="conversion",
            name="problem",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="conversion",
            name="fixes",
            field=models.JSONField(default=list),
        ),
    ]
