from django.urls import path

from reviews.views import tickets

urlpatterns = [
    path("tickets/", tickets.queue, name="ticket_queue"),
    path("tickets/<int:ticket_id>/", tickets.detail, name="ticket_detail"),
    path("tickets/<int:ticket_id>/claim/", tickets.claim, name="ticket_claim"),
    path("tickets/<int:ticket_id>/unclaim/", tickets.unclaim, name="ticket_unclaim"),
    path("tickets/<int:ticket_id>/assign/", tickets.assign, name="ticket_assign"),
    path("tickets/<int:ticket_id>/resolve/", tickets.resolve, name="ticket_resolve"),
]
