"""API tokens expire and record why they were revoked (issue 12, section 8: safe defaults).

Tokens issued before this migration get the default lifetime counted from their creation
(created_at + 90 days), so none is left without an expiry.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("api", "0001_api_tokens")]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.RunSQL(
            "UPDATE api_apitoken SET expires_at = created_at + interval '90 days'",
            migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="revoked_reason",
            field=models.CharField(
                blank=True,
                choices=[
                    ("owner", "revoked by its owner"),
                    ("admin", "revoked by an administrator"),
                    ("password_changed", "revoked because the account's password changed"),
                ],
                max_length=20,
            ),
        ),
    ]
