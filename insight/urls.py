from django.urls import path

from insight import views

urlpatterns = [
    path("", views.operations, name="operations"),
    path("digest/", views.digest_preview, name="operations_digest"),
]
