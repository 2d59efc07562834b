from django.urls import path

from alerts import views

urlpatterns = [
    path("", views.alert_list, name="alert_list"),
    path("<int:alert_id>/acknowledge/", views.acknowledge, name="alert_acknowledge"),
    path("<int:alert_id>/resolve/", views.resolve, name="alert_resolve"),
    path("pauses/<int:pause_id>/lift/", views.lift_pause, name="pause_lift"),
]
