from __future__ import annotations

from django.contrib import admin

from costs.models import Budget, ModelPrice


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ("model", "input_per_mtok", "cache_write_5m_per_mtok", "cache_write_1h_per_mtok",
                    "cache_read_per_mtok", "output_per_mtok", "batch_discount", "effective_from")
    list_filter = ("model",)

    def has_change_permission(self, request, obj=None):
        # Prices are history: add a new row with a later effective_from instead of editing.
        return False


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ("scope", "workflow_name", "user", "period", "limit_usd", "hard")
    list_filter = ("scope", "period", "hard")
