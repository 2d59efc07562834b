from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.decorators.http import require_http_methods

urlpatterns = [
    # LoginView would also take PUT as a POST: only the two methods the form uses.
    path(
        "login/",
        require_http_methods(["GET", "POST"])(auth_views.LoginView.as_view()),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("reviews/", include("reviews.urls")),
    path("costs/", include("costs.urls")),
    path("operations/", include("insight.urls")),
    path("alerts/", include("alerts.urls")),
    path("schedules/", include("schedules.urls")),
    path("evaluations/", include("evaluation.urls")),
    path("api/", include("api.urls")),
    path("account/", include("api.account_urls")),
    path("", include("ops.urls")),
    path("", include("orchestration.urls")),
]
