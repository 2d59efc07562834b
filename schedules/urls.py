from django.urls import path

from schedules import views

urlpatterns = [
    path("", views.schedule_list, name="schedule_list"),
    path("new/", views.schedule_new, name="schedule_new"),
    path("<int:schedule_id>/", views.schedule_edit, name="schedule_edit"),
    path("<int:schedule_id>/pause/", views.schedule_pause, name="schedule_pause"),
    path("<int:schedule_id>/delete/", views.schedule_delete, name="schedule_delete"),
]
