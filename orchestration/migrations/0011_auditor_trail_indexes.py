"""The audit trail page's indexes (orchestration.trail_search): newest first (id order) by kind,
by actor, by actor and kind, by the ticket or approval request a payload names, by time, full
text over the payloads; the actor-and-kind one also serves orchestration.person_activity."""

import django.contrib.postgres.indexes
import django.db.models.fields.json
from django.conf import settings
from django.db import migrations, models

import orchestration.models


class Migration(migrations.Migration):
    dependencies = [
        ("orchestration", "0010_engine_core_first_token"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["kind", "id"], name="auditevent_kind_id"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["actor_label", "id"], name="auditevent_actor_id"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["created_at"], name="auditevent_created"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(
                fields=["actor_label", "kind", "id"],
                include=("created_at",),
                name="auditevent_actor_kind_id",
            ),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(
                django.db.models.fields.json.KeyTextTransform("ticket", "payload"),
                models.F("id"),
                condition=models.Q(("payload__has_key", "ticket")),
                name="auditevent_ticket_id",
            ),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(
                django.db.models.fields.json.KeyTextTransform("request", "payload"),
                models.F("id"),
                condition=models.Q(("payload__has_key", "request")),
                name="auditevent_request_id",
            ),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=django.contrib.postgres.indexes.GinIndex(
                orchestration.models.JsonbTsvector(models.F("payload")),
                name="auditevent_payload_search",
            ),
        ),
    ]
