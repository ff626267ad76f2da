from django.urls import path

from chatrooms import views

app_name = "chatrooms"

urlpatterns = [
    path("", views.lobby, name="lobby"),
]
