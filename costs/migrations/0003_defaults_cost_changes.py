"""Prices and budgets become append-only history (issue 12, section 2: price and budget changes).

- Budget.effective_from (existing rows: their created_at), so a budget change is a new row.
- Bounds as CheckConstraints: every price > 0 and <= 1000 per million tokens, batch discount in
  [0, 0.9], budget limit >= 0. (A database holding a row outside them fails here: fix that row
  first, it is the kind of change this migration exists to stop.)
- A trigger refuses any UPDATE of a price or budget row, and the DELETE of a price in force,
  whatever the client (the ORM's queryset.update() skips Model.save()).
"""

import costs.models
import django.utils.timezone
from decimal import Decimal
from django.conf import settings
from django.db import migrations, models


TRIGGERS = """
CREATE FUNCTION costs_refuse_history_edit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION '% rows are never edited: add a new row with a later effective_from', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.effective_from <= now() THEN
        RAISE EXCEPTION '% row % is in force since %: it cannot be deleted', TG_TABLE_NAME, OLD.id, OLD.effective_from
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN OLD;
END
$$;
CREATE TRIGGER modelprice_history BEFORE UPDATE OR DELETE ON costs_modelprice
    FOR EACH ROW EXECUTE FUNCTION costs_refuse_history_edit();
-- Budgets: updates only. A user's budgets go with the user (ON DELETE CASCADE in Django);
-- the app refuses to withdraw a budget in force (Budget.delete, costs.changes.withdraw).
CREATE TRIGGER budget_history BEFORE UPDATE ON costs_budget
    FOR EACH ROW EXECUTE FUNCTION costs_refuse_history_edit();
"""
DROP_TRIGGERS = """
DROP TRIGGER IF EXISTS budget_history ON costs_budget;
DROP TRIGGER IF EXISTS modelprice_history ON costs_modelprice;
DROP FUNCTION IF EXISTS costs_refuse_history_edit();
"""


class Migration(migrations.Migration):

    dependencies = [
        ('costs', '0002_seed_prices'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='budget',
            name='effective_from',
            field=models.DateTimeField(default=django.utils.timezone.now, help_text='When this limit replaces the one in force for the same scope, period and kind.'),
        ),
        migrations.RunSQL("UPDATE costs_budget SET effective_from = created_at", migrations.RunSQL.noop),
        migrations.AlterField(
            model_name='budget',
            name='limit_usd',
            field=models.DecimalField(decimal_places=2, max_digits=12, validators=[costs.models.validate_limit]),
        ),
        migrations.AlterField(
            model_name='modelprice',
            name='batch_discount',
            field=models.DecimalField(decimal_places=3, default=Decimal('0.5'), help_text='Fraction taken off in batch.', max_digits=4, validators=[costs.models.validate_batch_discount]),
        ),
        migrations.AlterField(
            model_name='modelprice',
            name='cache_read_per_mtok',
            field=models.DecimalField(decimal_places=4, max_digits=10, validators=[costs.models.validate_price]),
        ),
        migrations.AlterField(
            model_name='modelprice',
            name='cache_write_1h_per_mtok',
            field=models.DecimalField(decimal_places=4, max_digits=10, validators=[costs.models.validate_price]),
        ),
        migrations.AlterField(
            model_name='modelprice',
            name='cache_write_5m_per_mtok',
            field=models.DecimalField(decimal_places=4, max_digits=10, validators=[costs.models.validate_price]),
        ),
        migrations.AlterField(
            model_name='modelprice',
            name='input_per_mtok',
            field=models.DecimalField(decimal_places=4, max_digits=10, validators=[costs.models.validate_price]),
        ),
        migrations.AlterField(
            model_name='modelprice',
            name='output_per_mtok',
            field=models.DecimalField(decimal_places=4, max_digits=10, validators=[costs.models.validate_price]),
        ),
        migrations.AddConstraint(
            model_name='budget',
            constraint=models.CheckConstraint(condition=models.Q(('limit_usd__gte', 0)), name='budget_limit_not_negative', violation_error_message='A budget limit cannot be negative.'),
        ),
        migrations.AddConstraint(
            model_name='modelprice',
            constraint=models.CheckConstraint(condition=models.Q(('input_per_mtok__gt', 0), ('input_per_mtok__lte', Decimal('1000'))), name='modelprice_input_per_mtok_bounded', violation_error_message='input per mtok must be more than $0 and at most $1000 per million tokens.'),
        ),
        migrations.AddConstraint(
            model_name='modelprice',
            constraint=models.CheckConstraint(condition=models.Q(('output_per_mtok__gt', 0), ('output_per_mtok__lte', Decimal('1000'))), name='modelprice_output_per_mtok_bounded', violation_error_message='output per mtok must be more than $0 and at most $1000 per million tokens.'),
        ),
        migrations.AddConstraint(
            model_name='modelprice',
            constraint=models.CheckConstraint(condition=models.Q(('cache_write_5m_per_mtok__gt', 0), ('cache_write_5m_per_mtok__lte', Decimal('1000'))), name='modelprice_cache_write_5m_per_mtok_bounded', violation_error_message='cache write 5m per mtok must be more than $0 and at most $1000 per million tokens.'),
        ),
        migrations.AddConstraint(
            model_name='modelprice',
            constraint=models.CheckConstraint(condition=models.Q(('cache_write_1h_per_mtok__gt', 0), ('cache_write_1h_per_mtok__lte', Decimal('1000'))), name='modelprice_cache_write_1h_per_mtok_bounded', violation_error_message='cache write 1h per mtok must be more than $0 and at most $1000 per million tokens.'),
        ),
        migrations.AddConstraint(
            model_name='modelprice',
            constraint=models.CheckConstraint(condition=models.Q(('cache_read_per_mtok__gt', 0), ('cache_read_per_mtok__lte', Decimal('1000'))), name='modelprice_cache_read_per_mtok_bounded', violation_error_message='cache read per mtok must be more than $0 and at most $1000 per million tokens.'),
        ),
        migrations.AddConstraint(
            model_name='modelprice',
            constraint=models.CheckConstraint(condition=models.Q(('batch_discount__gte', 0), ('batch_discount__lte', Decimal('0.9'))), name='modelprice_batch_discount_bounded', violation_error_message='The batch discount must be between 0 and 0.9.'),
        ),
        migrations.RunSQL(TRIGGERS, DROP_TRIGGERS),
    ]
