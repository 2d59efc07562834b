"""The signed-in user's API tokens page (under /account/)."""

from django.urls import path

from api.views import tokens

urlpatterns = [
    path("api-tokens/", tokens.tokens, name="api_tokens"),
    path("api-tokens/new/", tokens.create, name="api_token_create"),
    path("api-tokens/<int:token_id>/revoke/", tokens.revoke, name="api_token_revoke"),
]
