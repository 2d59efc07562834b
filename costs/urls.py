from django.urls import path

from costs import views

urlpatterns = [
    path("", views.costs, name="costs"),
    path("export.csv", views.costs_csv, name="costs_csv"),
]
