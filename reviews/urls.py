from django.urls import path

from reviews.views import approvals, tickets

urlpatterns = [
    path("approvals/", approvals.queue, name="approval_queue"),
    path("approvals/bulk/", approvals.bulk_approve, name="approval_bulk"),
    path("approvals/<int:request_id>/", approvals.detail, name="approval_detail"),
    path("approvals/<int:request_id>/decide/", approvals.decide, name="approval_decide"),
    path("tickets/", tickets.queue, name="ticket_queue"),
    path("tickets/<int:ticket_id>/", tickets.detail, name="ticket_detail"),
    path("tickets/<int:ticket_id>/claim/", tickets.claim, name="ticket_claim"),
    path("tickets/<int:ticket_id>/unclaim/", tickets.unclaim, name="ticket_unclaim"),
    path("tickets/<int:ticket_id>/assign/", tickets.assign, name="ticket_assign"),
    path("tickets/<int:ticket_id>/resolve/", tickets.resolve, name="ticket_resolve"),
    path(
        "tickets/<int:ticket_id>/raise-ceiling/", tickets.raise_ceiling, name="ticket_raise_ceiling"
    ),
]
