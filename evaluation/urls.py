from django.urls import path

from evaluation import views

urlpatterns = [
    path("", views.index, name="evaluation_index"),
    path("datasets/new/", views.dataset_create, name="evaluation_dataset_create"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="evaluation_dataset"),
    path(
        "datasets/<int:dataset_id>/delete/", views.dataset_delete, name="evaluation_dataset_delete"
    ),
    path(
        "datasets/<int:dataset_id>/import/", views.dataset_import, name="evaluation_dataset_import"
    ),
    path(
        "datasets/<int:dataset_id>/export.jsonl",
        views.dataset_export,
        name="evaluation_dataset_export",
    ),
    path("datasets/<int:dataset_id>/cases/new/", views.case_edit, name="evaluation_case_new"),
    path(
        "datasets/<int:dataset_id>/cases/<int:case_id>/",
        views.case_edit,
        name="evaluation_case_edit",
    ),
    path(
        "datasets/<int:dataset_id>/cases/<int:case_id>/delete/",
        views.case_delete,
        name="evaluation_case_delete",
    ),
    path("datasets/<int:dataset_id>/evaluate/", views.evaluation_start, name="evaluation_start"),
    path("<int:evaluation_id>/", views.evaluation_detail, name="evaluation_detail"),
    path("compare/", views.compare, name="evaluation_compare"),
]
